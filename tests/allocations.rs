//! The hot path allocates nothing: in steady state, a call with fixed-size
//! arguments and result makes no heap allocation on the calling thread
//! (the frame buffers are reused), nor in the manager serving it. Counted
//! with a global allocator that tallies allocations per thread and in all;
//! the manager process runs this same binary, so it counts too.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use manager::{shared, Manager};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Allocations by every thread of this process.
static TOTAL: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator; the thread-local is a const-
// initialized Cell, so counting never allocates or re-enters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        TOTAL.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        TOTAL.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[shared]
pub struct Counter {
    value: i64,
}

#[shared]
impl Counter {
    /// At zero.
    pub fn new() -> Self {
        Counter { value: 0 }
    }
    /// Adds `by`.
    pub fn incr(&mut self, by: i64) -> i64 {
        self.value += by;
        self.value
    }
    /// The value.
    pub fn get(&self) -> i64 {
        self.value
    }
    /// Allocations so far by every thread of the manager's process.
    pub fn manager_allocations(&self) -> u64 {
        TOTAL.load(Ordering::Relaxed)
    }
}

#[test]
fn steady_state_calls_do_not_allocate_on_the_client() {
    // A manager process, so that only the client's allocations are counted.
    let mgr = Manager::builder().register::<Counter>().start().unwrap();
    let c = CounterProxy::new(&mgr).unwrap();
    let v = mgr.value(0u64).unwrap();
    for _ in 0..100 {
        c.incr(1).unwrap();
        c.get().unwrap();
        v.fetch_add(1).unwrap();
    }
    let before = allocations();
    for _ in 0..1000 {
        c.incr(1).unwrap();
        c.get().unwrap();
    }
    let per_call = (allocations() - before) as f64 / 2000.0;
    assert_eq!(per_call, 0.0, "allocations per #[shared] call");
    let before = allocations();
    for _ in 0..1000 {
        v.fetch_add(1).unwrap();
    }
    let per_call = (allocations() - before) as f64 / 1000.0;
    assert_eq!(per_call, 0.0, "allocations per fetch_add");
}

#[test]
fn steady_state_calls_do_not_allocate_in_the_manager() {
    let mgr = Manager::builder().register::<Counter>().start().unwrap();
    let c = CounterProxy::new(&mgr).unwrap();
    let v = mgr.value(0u64).unwrap();
    for _ in 0..100 {
        c.incr(1).unwrap();
        c.get().unwrap();
        v.fetch_add(1).unwrap();
        c.manager_allocations().unwrap();
    }
    let before = c.manager_allocations().unwrap();
    for _ in 0..1000 {
        c.incr(1).unwrap();
        c.get().unwrap();
        v.fetch_add(1).unwrap();
    }
    let after = c.manager_allocations().unwrap();
    // Zero per call; the slack is for the manager's own background work
    // (its reference sweeper) that may run in between.
    assert!(
        after - before < 10,
        "{} allocations in the manager for 3000 calls",
        after - before
    );
}
