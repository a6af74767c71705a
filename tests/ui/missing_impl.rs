use manager::shared;

#[shared]
pub struct Lonely { value: u8 }

fn main() {}
