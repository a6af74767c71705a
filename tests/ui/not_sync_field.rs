use std::cell::Cell;

use manager::shared;

#[shared]
pub struct Counter { value: Cell<u64> }

#[shared]
impl Counter {
    pub fn new() -> Self { Counter { value: Cell::new(0) } }
    pub fn incr(&self) -> u64 { self.value.set(self.value.get() + 1); self.value.get() }
}

fn main() {}
