use manager::shared;

#[shared]
pub fn helper() -> u32 { 1 }

fn main() {}
