//! The wait core's bookkeeping: who is granted what, in which order, and
//! what a connection's end gives back. (Blocking itself is
//! `Context::wait_until`, exercised by the built-ins' integration tests.)

use std::sync::{Arc, Condvar};

use super::{Permits, Policy, Refused, Waiters, Wake};
use crate::shared::End;

/// Queues a waiter for `conn`, as a blocked call does; its ticket.
fn waiting<G>(w: &mut Waiters<G>, conn: u64) -> u64 {
    w.join(conn, Wake::Thread(Arc::new(Condvar::new())))
}

#[test]
fn grants_go_to_the_oldest_waiter_and_wait_to_be_taken_up() {
    let mut w = Waiters::<&str>::default();
    let first = waiting(&mut w, 1);
    let second = waiting(&mut w, 2);
    assert_eq!(w.hand_off("a"), Ok(1));
    assert!(w.is_granted(first) && !w.is_granted(second));
    assert_eq!(w.pending(), 1);
    assert_eq!(w.hand_off("b"), Ok(2));
    assert_eq!(w.hand_off("c"), Err("c"), "nobody left waiting");
    assert_eq!(w.leave(second), Some("b"));
    assert_eq!(w.leave(first), Some("a"));
    assert_eq!(w.pending(), 0);
}

#[test]
fn a_waiter_that_gives_up_ungranted_leaves_the_queue() {
    let mut w = Waiters::<u8>::default();
    let first = waiting(&mut w, 1);
    waiting(&mut w, 2);
    assert_eq!(w.leave(first), None);
    assert_eq!(w.hand_off(7), Ok(2), "the next waiter is served");
}

#[test]
fn a_released_permit_is_handed_to_the_first_waiter_not_freed() {
    let mut p = Permits::new(1, Some(1), Policy::Counted);
    assert!(p.try_take(1, 1).unwrap());
    waiting(&mut p.waiters, 2);
    waiting(&mut p.waiters, 3);
    p.release(1).unwrap();
    assert!(p.holds(2), "handed over, recorded as the waiter's");
    assert!(!p.try_take(4, 1).unwrap(), "nobody jumps the queue");
    // A plain lock may be released by anyone: the holder's permit goes.
    p.release(4).unwrap();
    assert!(!p.holds(2) && p.holds(3));
    p.release(3).unwrap();
    assert!(p.try_take(4, 1).unwrap());
    p.release(4).unwrap();
    assert_eq!(p.release(4), Err(Refused::NothingOut), "an unlocked lock");
}

#[test]
fn an_owned_permit_counts_levels_and_only_its_holder_gives_them_back() {
    let mut p = Permits::new(1, Some(1), Policy::Owned);
    assert_eq!(p.release(1), Err(Refused::NothingOut));
    assert!(p.try_take(1, 1).unwrap());
    assert!(p.try_take(1, 1).unwrap(), "reentrant");
    assert!(!p.try_take(2, 1).unwrap());
    assert_eq!(p.release(2), Err(Refused::HeldByAnother));
    p.release(1).unwrap();
    assert!(p.holds(1), "one level left");
    waiting(&mut p.waiters, 2);
    p.release(1).unwrap();
    assert!(p.holds(2), "the waiter's now");
    assert_eq!(p.release(1), Err(Refused::HeldByAnother));
}

#[test]
fn putting_down_every_level_hands_the_permit_on() {
    let mut p = Permits::new(1, Some(1), Policy::Owned);
    assert!(p.try_take(1, 3).unwrap());
    waiting(&mut p.waiters, 2);
    assert_eq!(p.put_down(1), Some(3));
    assert!(p.holds(2));
    assert_eq!(p.put_down(1), None);
}

#[test]
fn a_normal_end_leaves_counted_permits_taken_and_frees_owned_ones() {
    assert!(!Policy::Counted.gives_back(End::Normal));
    assert!(Policy::Counted.gives_back(End::Abnormal));
    assert!(Policy::Owned.gives_back(End::Normal));
    assert!(Policy::Owned.gives_back(End::Abnormal));

    let mut sem = Permits::new(2, None, Policy::Counted);
    assert!(sem.try_take(1, 1).unwrap());
    sem.settle(1, End::Normal);
    assert!(!sem.holds(1), "the record goes");
    assert!(sem.try_take(2, 1).unwrap());
    assert!(!sem.try_take(3, 1).unwrap(), "the permit stays taken");

    let mut rlock = Permits::new(1, Some(1), Policy::Owned);
    assert!(rlock.try_take(1, 2).unwrap());
    rlock.settle(1, End::Normal);
    assert!(rlock.try_take(2, 1).unwrap(), "every level is freed");
}

#[test]
fn an_abnormal_end_gives_back_to_waiters_first_then_up_to_the_limit() {
    let mut sem = Permits::new(2, Some(2), Policy::Counted);
    assert!(sem.try_take(1, 1).unwrap());
    assert!(sem.try_take(1, 1).unwrap());
    waiting(&mut sem.waiters, 2);
    // Released on its behalf meanwhile: it holds one now, and one is free.
    sem.release(3).unwrap();
    assert!(sem.holds(2) && sem.holds(1));
    sem.settle(1, End::Abnormal);
    assert_eq!(sem.free, 1, "what is still out comes back, no more");
    assert_eq!(sem.release(4), Ok(()));
    assert_eq!(sem.release(4), Err(Refused::NothingOut), "bounded");
}
