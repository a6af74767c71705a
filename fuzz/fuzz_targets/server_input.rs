//! Whatever an authenticated peer sends on a connection: frames, headers,
//! arguments for the manager's control methods, the built-ins and a sample
//! `#[shared]` type. The manager must answer or hang up, never panic, and
//! leak no object once the connection ends.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use manager::__private::{FuzzHarness, TypeEntry};

/// A sample type with the argument shapes a dispatcher must decode.
#[manager::shared]
#[derive(Default)]
pub struct Sample {
    items: Vec<String>,
}

#[manager::shared]
impl Sample {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds one.
    pub fn push(&mut self, s: String, n: Option<u32>) -> usize {
        self.items.push(format!("{s}{n:?}"));
        self.items.len()
    }
    /// Reads one.
    pub fn get(&self, i: u64) -> Option<String> {
        self.items.get(i as usize).cloned()
    }
}

fn harness() -> &'static FuzzHarness {
    static H: OnceLock<FuzzHarness> = OnceLock::new();
    H.get_or_init(|| FuzzHarness::new(&[TypeEntry::of::<Sample>()]))
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let _ = h.feed(data);
    assert_eq!(h.live_objects(), 0, "an object outlived its connection");
});
