use manager::shared;

pub struct Boxed<T> { item: T }

#[shared]
impl<T> Boxed<T> {
    pub fn get(&self) -> u8 { 0 }
}

fn main() {}
