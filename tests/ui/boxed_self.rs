use manager::shared;

#[shared]
pub struct Cell { value: u8 }

#[shared]
impl Cell {
    pub fn new() -> Self { Cell { value: 0 } }
    pub fn into_value(self: Box<Self>) -> u8 { self.value }
}

fn main() {}
