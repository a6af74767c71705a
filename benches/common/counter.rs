//! The `#[shared]` type of the benches' custom-type rows (Python: a class
//! registered with a `BaseManager`), shared by `benches/calls.rs` and
//! `benches/instructions.rs`.

use manager::shared;

/// A counter, with a large-argument method.
#[shared]
pub struct Counter {
    value: i64,
}

#[shared]
impl Counter {
    /// Starts at `start`.
    pub fn new(start: i64) -> Self {
        Counter { value: start }
    }
    /// The value: the small `&self` call.
    pub fn get(&self) -> i64 {
        self.value
    }
    /// Adds `by`: the small `&mut self` call.
    pub fn incr(&mut self, by: i64) -> i64 {
        self.value += by;
        self.value
    }
    /// The length of `data`: the large argument.
    pub fn size(&self, data: Vec<u8>) -> u64 {
        data.len() as u64
    }
}
