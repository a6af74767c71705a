use manager::shared;

#[shared]
pub struct Joiner;

#[shared]
impl Joiner {
    pub fn new() -> Self { Joiner }
    pub fn join(&self, parts: Vec<&'static str>) -> String { parts.concat() }
}

fn main() {}
