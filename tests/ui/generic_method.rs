use manager::shared;

#[shared]
pub struct Bag;

#[shared]
impl Bag {
    pub fn new() -> Self { Bag }
    pub fn put<T: ToString>(&self, item: T) -> String { item.to_string() }
}

fn main() {}
