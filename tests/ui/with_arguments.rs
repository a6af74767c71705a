use manager::shared;

#[shared(name = "counter")]
pub struct Counter { value: i64 }

fn main() {}
