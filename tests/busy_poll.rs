//! Busy-polling (issue 15): the manager's poller spins briefly for the next
//! request before it sleeps, where that can pay, and not where it cannot.
//! Observed through the manager's own counts (`Stats::busy_polls`,
//! `Stats::busy_polls_caught`), never through timing.

mod common;

use std::time::Duration;

use common::{allowed_cpus, pin_this_thread};
use manager::{Manager, Stats};

fn stats(mgr: &Manager) -> Stats {
    mgr.stats().expect("stats")
}

#[test]
fn a_manager_with_several_cpus_catches_requests_of_a_client_calling_in_a_loop() {
    if allowed_cpus().len() < 2 {
        println!("skipped: this test may use one CPU only, where the manager never spins");
        return;
    }
    let mgr = Manager::builder().start().expect("start a manager process");
    let v = mgr.value(0u64).expect("a value");
    let mut calls = 0u64;
    // A client calling back to back sends its next request microseconds
    // after its reply: some of the manager's spins catch one. Bounded by
    // calls, not by time.
    while stats(&mgr).busy_polls_caught == 0 {
        for _ in 0..1000 {
            v.fetch_add(1).expect("fetch_add");
        }
        calls += 1000;
        assert!(
            calls < 200_000,
            "no spin caught a request in {calls} calls: {:?}",
            stats(&mgr)
        );
    }
    let s = stats(&mgr);
    assert!(s.busy_polls >= s.busy_polls_caught);
    assert_eq!(v.get().expect("get"), calls, "every call counted once");
}

#[test]
fn a_manager_built_without_busy_polling_never_spins() {
    let mgr = Manager::builder()
        .busy_poll(false)
        .start()
        .expect("start a manager process");
    mgr.set_busy_poll(false);
    let v = mgr.value(0u64).expect("a value");
    for _ in 0..3000 {
        v.fetch_add(1).expect("fetch_add");
    }
    let s = stats(&mgr);
    assert_eq!((s.busy_polls, s.busy_polls_caught), (0, 0), "{s:?}");
    assert_eq!(v.get().expect("get"), 3000);
}

#[test]
fn a_manager_allowed_one_cpu_never_spins() {
    let cpus = allowed_cpus();
    let Some(&cpu) = cpus.first() else {
        println!("skipped: the CPU affinity of this test cannot be read");
        return;
    };
    // The manager process inherits the affinity of the thread that starts it.
    let mgr = std::thread::spawn(move || {
        pin_this_thread(cpu);
        Manager::builder().start().expect("start a manager process")
    })
    .join()
    .expect("the starting thread");
    let v = mgr.value(0u64).expect("a value");
    for _ in 0..3000 {
        v.fetch_add(1).expect("fetch_add");
    }
    let s = stats(&mgr);
    assert_eq!(s.busy_polls, 0, "a manager on one CPU spun: {s:?}");
}

#[test]
fn spins_back_off_when_requests_come_slowly() {
    if allowed_cpus().len() < 2 {
        println!("skipped: this test may use one CPU only, where the manager never spins");
        return;
    }
    let mgr = Manager::builder().start().expect("start a manager process");
    let v = mgr.value(0u64).expect("a value");
    const CALLS: u64 = 300;
    for _ in 0..CALLS {
        v.fetch_add(1).expect("fetch_add");
        // A client that works between its calls: the next request never
        // comes within a spin.
        std::thread::sleep(Duration::from_millis(1));
    }
    let s = stats(&mgr);
    // Without the back-off every poll after an answer would spin (about
    // one per call); with it, misses in a row skip 1, 3, 7, ... polls.
    assert!(
        s.busy_polls < CALLS / 5,
        "{} spins for {CALLS} slow calls: {s:?}",
        s.busy_polls
    );
    assert_eq!(v.get().expect("get"), CALLS);
}
