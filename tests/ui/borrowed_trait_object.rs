use manager::shared;

#[shared]
pub struct Printer;

#[shared]
impl Printer {
    pub fn new() -> Self { Printer }
    pub fn print(&self, what: &dyn std::fmt::Display) -> String { what.to_string() }
}

fn main() {}
