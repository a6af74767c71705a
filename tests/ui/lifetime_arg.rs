use manager::shared;

#[shared]
pub struct Greeter;

#[shared]
impl Greeter {
    pub fn new() -> Self { Greeter }
    pub fn greet(&self, name: &'static str) -> String { format!("hi {name}") }
}

fn main() {}
