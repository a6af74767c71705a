//! The built-ins' waits are first come, first served: what a blocked call
//! waits for (a lock, a permit, an item, a queue slot) is handed to the
//! longest waiter the moment it comes free, so a later caller cannot take
//! it first.

mod common;

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::{bounded, eventually};
use manager::Manager;

const LONG: Duration = Duration::from_secs(20);
/// Runs `connect` then `wait` on a thread of its own (its own connection),
/// and returns once `wait` is blocked in the manager (one more blocked call
/// in `stats()`).
fn blocked<T: Send + 'static>(
    mgr: &Manager,
    connect: impl FnOnce() + Send + 'static,
    wait: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let before = mgr.stats().unwrap().blocked_calls;
    let (ready, connected) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        connect();
        let _ = ready.send(());
        wait()
    });
    connected.recv_timeout(LONG).expect("the waiter connected");
    assert!(
        eventually(LONG, || mgr.stats().unwrap().blocked_calls > before),
        "the waiter blocks in the manager"
    );
    waiter
}

#[test]
fn a_released_lock_goes_to_its_waiter_not_to_a_later_try() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let lock = mgr.lock().unwrap();
        lock.acquire().unwrap();
        let (l1, l2) = (lock.clone(), lock.clone());
        let waiter = blocked(
            &mgr,
            move || assert!(!l1.try_acquire().unwrap()),
            move || l2.acquire_timeout(LONG).unwrap(),
        );
        lock.release().unwrap();
        assert!(!lock.try_acquire().unwrap(), "handed over, not free");
        assert!(waiter.join().unwrap());
    });
}

#[test]
fn semaphore_waiters_are_served_in_arrival_order() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let sem = mgr.semaphore(0).unwrap();
        let (served, order) = mpsc::channel();
        let waiters: Vec<_> = (1..=2)
            .map(|i| {
                let (s1, s2, served) = (sem.clone(), sem.clone(), served.clone());
                blocked(
                    &mgr,
                    move || assert!(!s1.try_acquire().unwrap()),
                    move || {
                        assert!(s2.acquire_timeout(LONG).unwrap());
                        served.send(i).unwrap();
                    },
                )
            })
            .collect();
        for first in 1..=2 {
            sem.release().unwrap();
            assert_eq!(order.recv_timeout(LONG), Ok(first));
        }
        waiters.into_iter().for_each(|w| w.join().unwrap());
    });
}

#[test]
fn an_item_put_goes_to_the_waiting_get() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let q = mgr.queue::<u32>(0).unwrap();
        let (q1, q2) = (q.clone(), q.clone());
        let getter = blocked(
            &mgr,
            move || assert_eq!(q1.len().unwrap(), 0),
            move || q2.get_timeout(LONG).unwrap(),
        );
        q.put(7).unwrap();
        assert_eq!(q.try_get().unwrap(), None, "the item was the waiter's");
        assert_eq!(getter.join().unwrap(), Some(7));
    });
}

#[test]
fn a_slot_freed_in_a_full_queue_is_kept_for_the_waiting_put() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let q = mgr.queue::<u32>(1).unwrap();
        q.put(1).unwrap();
        let (q1, q2) = (q.clone(), q.clone());
        let putter = blocked(
            &mgr,
            move || assert!(q1.is_full().unwrap()),
            move || q2.put_timeout(2, LONG).unwrap(),
        );
        assert_eq!(q.get().unwrap(), 1);
        assert!(!q.try_put(3).unwrap(), "the slot is the waiting put's");
        assert!(putter.join().unwrap());
        assert_eq!(q.try_get().unwrap(), Some(2));
        assert_eq!(q.try_get().unwrap(), None);
    });
}
