use manager::shared;

#[shared]
pub struct Counter { value: i64 }

#[shared]
impl Counter {
    pub fn new() -> Self { Counter { value: 0 } }
    pub fn get(&self) -> i64 { self.value }
}

#[shared]
impl Counter {
    pub fn incr(&mut self) { self.value += 1 }
}

fn main() {}
