use manager::shared;

#[shared(name = "counter")]
pub struct Counter { value: i64 }

#[shared]
impl Counter {
    pub fn new() -> Self { Counter { value: 0 } }
    pub fn get(&self) -> i64 { self.value }
}

fn main() {}
