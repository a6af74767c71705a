//! Built-in synchronization with Python's semantics, and beyond Python:
//! what a dead client held is released and its waiters wake.

mod common;

use std::collections::BTreeSet;
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use common::{bounded, eventually, read_marked, role, sigkill, spawn_role};
use manager::{
    AuthKey, BarrierProxy, ConditionProxy, Error, EventProxy, LockProxy, Manager, Proxy,
    RLockProxy, SemaphoreProxy,
};

/// For waits that must time out.
const SHORT: Duration = Duration::from_millis(20);
/// For waits that must succeed: a bound, so a bug fails instead of hanging.
const LONG: Duration = Duration::from_secs(20);
/// How soon the survivors of a killed client proceed.
const PROMPTLY: Duration = Duration::from_secs(1);

#[test]
fn lock_acquire_release_and_guard() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let l = mgr.lock().unwrap();
        l.acquire().unwrap();
        // Another client thread sees it held.
        let other = {
            let l = l.clone();
            thread::spawn(move || l.acquire_timeout(SHORT).unwrap())
        };
        assert!(!other.join().unwrap());
        assert!(!l.try_acquire().unwrap(), "a Lock is not reentrant");
        l.release().unwrap();
        assert!(matches!(l.release(), Err(Error::NotHeld(_))));
        {
            let _g = l.lock().unwrap();
            assert!(!l.try_acquire().unwrap());
        }
        assert!(l.try_acquire().unwrap(), "the guard released it");
        // A plain lock may be released by another client thread, as in Python.
        let l2 = l.clone();
        thread::spawn(move || l2.release().unwrap()).join().unwrap();
        assert!(l.try_acquire().unwrap());
        l.release().unwrap();
    });
}

#[test]
fn a_blocked_acquire_proceeds_when_the_holder_releases() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let l = mgr.lock().unwrap();
        let entered = mgr.event().unwrap();
        l.acquire().unwrap();
        let waiter = {
            let (l, entered) = (l.clone(), entered.clone());
            thread::spawn(move || {
                entered.set().unwrap();
                let got = l.acquire_timeout(LONG).unwrap();
                l.release().unwrap();
                got
            })
        };
        assert!(entered.wait_timeout(LONG).unwrap());
        l.release().unwrap();
        assert!(waiter.join().unwrap());
        assert!(l.try_acquire().unwrap());
    });
}

#[test]
fn rlock_is_reentrant_and_owned_by_one_client_thread() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let r = mgr.rlock().unwrap();
        r.acquire().unwrap();
        assert!(r.try_acquire().unwrap());
        let _g = r.lock().unwrap();
        let r2 = r.clone();
        let stranger = thread::spawn(move || (r2.release(), r2.acquire_timeout(SHORT).unwrap()));
        let (release, acquired) = stranger.join().unwrap();
        assert!(matches!(release, Err(Error::NotHeld(_))));
        assert!(!acquired);
        drop(_g);
        r.release().unwrap();
        r.release().unwrap();
        assert!(matches!(r.release(), Err(Error::NotHeld(_))));
        let r2 = r.clone();
        let later = thread::spawn(move || {
            let got = r2.try_acquire().unwrap();
            r2.release().unwrap();
            got
        });
        assert!(later.join().unwrap(), "free once every level was released");
    });
}

#[test]
fn semaphores_count_and_bounded_ones_refuse_over_release() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let s = mgr.semaphore(2).unwrap();
        s.acquire().unwrap();
        assert!(s.try_acquire().unwrap());
        assert!(!s.acquire_timeout(SHORT).unwrap());
        s.release().unwrap();
        s.release().unwrap();
        s.release().unwrap(); // a plain semaphore may go above its start
        for _ in 0..3 {
            assert!(s.try_acquire().unwrap());
        }
        assert!(!s.try_acquire().unwrap());
        let b = mgr.bounded_semaphore(1).unwrap();
        assert!(matches!(b.release(), Err(Error::NotHeld(_))));
        b.acquire().unwrap();
        b.release().unwrap();
        assert!(matches!(b.release(), Err(Error::NotHeld(_))));
        let zero = mgr.semaphore(0).unwrap();
        assert!(!zero.try_acquire().unwrap());
    });
}

#[test]
fn a_permit_released_on_anothers_behalf_is_not_given_back_twice() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let base = mgr.stats().unwrap().connections;
        let s = mgr.semaphore(1).unwrap();
        let (taken, released) = (mgr.event().unwrap(), mgr.event().unwrap());
        let taker = {
            let (s, taken, released) = (s.clone(), taken.clone(), released.clone());
            thread::spawn(move || {
                assert!(s.acquire_timeout(LONG).unwrap());
                taken.set().unwrap();
                // Stay connected until another thread has released for us.
                assert!(released.wait_timeout(LONG).unwrap());
            })
        };
        assert!(taken.wait_timeout(LONG).unwrap());
        let s2 = s.clone();
        thread::spawn(move || s2.release().unwrap()).join().unwrap();
        released.set().unwrap();
        taker.join().unwrap();
        // Once the manager has seen both threads' connections close, exactly
        // one permit is free: the taker's was already given back for it.
        assert!(eventually(LONG, || mgr.stats().unwrap().connections == base));
        assert!(s.try_acquire().unwrap());
        assert!(!s.try_acquire().unwrap());
    });
}

#[test]
fn condition_wait_and_notify_need_the_lock() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let c = mgr.condition().unwrap();
        assert!(matches!(c.wait(), Err(Error::NotHeld(_))));
        assert!(matches!(c.wait_timeout(SHORT), Err(Error::NotHeld(_))));
        assert!(matches!(c.notify(), Err(Error::NotHeld(_))));
        assert!(matches!(c.notify_all(), Err(Error::NotHeld(_))));
        assert!(matches!(c.release(), Err(Error::NotHeld(_))));
        c.acquire().unwrap();
        c.acquire().unwrap(); // its lock is reentrant
        c.notify().unwrap(); // nobody waits: nothing happens
        assert!(!c.wait_timeout(SHORT).unwrap(), "nobody notified");
        // The wait took the lock back at both levels.
        c.release().unwrap();
        c.release().unwrap();
        assert!(matches!(c.release(), Err(Error::NotHeld(_))));
        // Another client thread cannot use a lock it does not hold.
        c.acquire().unwrap();
        let c2 = c.clone();
        let stranger = thread::spawn(move || {
            (
                c2.notify(),
                c2.release(),
                c2.try_acquire().unwrap(),
                c2.acquire_timeout(SHORT).unwrap(),
            )
        });
        let (notify, release, tried, timed) = stranger.join().unwrap();
        assert!(matches!(notify, Err(Error::NotHeld(_))));
        assert!(matches!(release, Err(Error::NotHeld(_))));
        assert!(!tried && !timed, "the lock is ours");
        assert!(c.try_acquire().unwrap(), "reentrant");
        c.release().unwrap();
        c.release().unwrap();
        let c2 = c.clone();
        let later = thread::spawn(move || {
            let got = c2.acquire_timeout(LONG).unwrap();
            c2.release().unwrap();
            got
        });
        assert!(later.join().unwrap(), "free once released");
    });
}

/// Starts a thread that takes `c`'s lock, counts itself in `entered`, waits
/// to be notified, counts itself in `woken`, and returns whether it was notified.
fn waiter(
    c: &ConditionProxy,
    entered: &manager::ValueProxy<u32>,
    woken: &manager::ValueProxy<u32>,
) -> thread::JoinHandle<bool> {
    let (c, entered, woken) = (c.clone(), entered.clone(), woken.clone());
    thread::spawn(move || {
        c.acquire().unwrap();
        entered.fetch_add(1).unwrap();
        let notified = c.wait_timeout(LONG).unwrap();
        woken.fetch_add(1).unwrap();
        c.release().unwrap();
        notified
    })
}

#[test]
fn notify_wakes_one_waiter_and_notify_all_the_rest() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let c = mgr.condition().unwrap();
        let entered = mgr.value(0u32).unwrap();
        let woken = mgr.value(0u32).unwrap();
        let waiters: Vec<_> = (0..3).map(|_| waiter(&c, &entered, &woken)).collect();
        // Each waiter counts itself while holding the lock and lets go of it
        // only by waiting: once all three counted and the lock is ours, all
        // three wait.
        assert!(eventually(LONG, || entered.get().unwrap() == 3));
        c.acquire().unwrap();
        c.notify().unwrap();
        c.release().unwrap();
        assert!(eventually(LONG, || woken.get().unwrap() == 1));
        c.acquire().unwrap();
        assert_eq!(woken.get().unwrap(), 1, "notify woke one waiter");
        c.notify_all().unwrap();
        c.release().unwrap();
        for w in waiters {
            assert!(
                w.join().unwrap(),
                "every waiter was notified, none timed out"
            );
        }
        assert_eq!(woken.get().unwrap(), 3);
    });
}

#[test]
fn event_set_wakes_waiters() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let e = mgr.event().unwrap();
        assert!(!e.is_set().unwrap());
        assert!(!e.wait_timeout(SHORT).unwrap());
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let e = e.clone();
                thread::spawn(move || e.wait_timeout(LONG).unwrap())
            })
            .collect();
        e.set().unwrap();
        for w in waiters {
            assert!(w.join().unwrap());
        }
        e.wait().unwrap(); // set: returns at once
        assert!(e.is_set().unwrap());
        e.clear().unwrap();
        assert!(!e.is_set().unwrap());
        assert!(!e.wait_timeout(SHORT).unwrap());
    });
}

#[test]
fn barrier_gives_each_party_a_distinct_index_per_generation() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let b = mgr.barrier(3).unwrap();
        assert_eq!(b.parties().unwrap(), 3);
        for _generation in 0..3 {
            let parties: Vec<_> = (0..3)
                .map(|_| {
                    let b = b.clone();
                    thread::spawn(move || b.wait_timeout(LONG).unwrap())
                })
                .collect();
            let indices: BTreeSet<usize> = parties.into_iter().map(|p| p.join().unwrap()).collect();
            assert_eq!(indices, BTreeSet::from([0, 1, 2]));
        }
        assert_eq!(b.n_waiting().unwrap(), 0);
        assert!(!b.is_broken().unwrap());
        let alone = mgr.barrier(1).unwrap();
        assert_eq!(alone.wait().unwrap(), 0);
        assert!(matches!(mgr.barrier(0), Err(Error::Protocol(_))));
    });
}

/// Starts a thread waiting at `b`; returns once it waits there.
fn wait_at(b: &BarrierProxy) -> thread::JoinHandle<manager::Result<usize>> {
    let before = b.n_waiting().unwrap();
    let handle = {
        let b = b.clone();
        thread::spawn(move || b.wait_timeout(LONG))
    };
    assert!(eventually(LONG, || b.n_waiting().unwrap() == before + 1));
    handle
}

#[test]
fn barrier_abort_timeout_and_reset_break_it() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let b = mgr.barrier(2).unwrap();
        // abort: the waiter is told, and so is every wait until reset.
        let waiter = wait_at(&b);
        b.abort().unwrap();
        assert!(matches!(waiter.join().unwrap(), Err(Error::BrokenBarrier)));
        assert!(b.is_broken().unwrap());
        assert_eq!(b.n_waiting().unwrap(), 0);
        assert!(matches!(b.wait_timeout(LONG), Err(Error::BrokenBarrier)));
        assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
        b.reset().unwrap();
        assert!(!b.is_broken().unwrap());
        // A wait that times out breaks it for everyone, as in Python.
        let b3 = mgr.barrier(3).unwrap();
        let other = wait_at(&b3);
        assert!(matches!(b3.wait_timeout(SHORT), Err(Error::BrokenBarrier)));
        assert!(matches!(other.join().unwrap(), Err(Error::BrokenBarrier)));
        assert!(b3.is_broken().unwrap());
        // A reset while someone waits breaks that wait, and the barrier works again.
        let waiter = wait_at(&b);
        b.reset().unwrap();
        assert!(matches!(waiter.join().unwrap(), Err(Error::BrokenBarrier)));
        assert!(!b.is_broken().unwrap());
        let first = wait_at(&b);
        assert_eq!(b.wait_timeout(LONG).unwrap(), 1);
        assert_eq!(first.join().unwrap().unwrap(), 0);
    });
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set for child roles"))
}

/// Keeps a child role's proxies (and so its connections) alive until the
/// test kills the process.
fn hold_until_killed<T>(_held: T) -> ! {
    loop {
        thread::park();
    }
}

/// Entry point of the child processes this file starts; a no-op otherwise.
#[test]
fn child_role() {
    let Some(role) = role() else { return };
    let key = AuthKey::from_hex(&env("KEY")).unwrap();
    match role.as_str() {
        "hold-locks" => {
            let l = LockProxy::from_token(&env("LOCK"), &key).unwrap();
            let r = RLockProxy::from_token(&env("RLOCK"), &key).unwrap();
            let c = ConditionProxy::from_token(&env("CONDITION"), &key).unwrap();
            assert!(l.acquire_timeout(LONG).unwrap());
            assert!(r.acquire_timeout(LONG).unwrap());
            assert!(r.acquire_timeout(LONG).unwrap());
            assert!(c.acquire_timeout(LONG).unwrap());
            assert!(c.acquire_timeout(LONG).unwrap());
            println!("holding=locks");
            hold_until_killed((l, r, c))
        }
        "hold-permits" => {
            let s = SemaphoreProxy::from_token(&env("SEMAPHORE"), &key).unwrap();
            assert!(s.acquire_timeout(LONG).unwrap());
            assert!(s.acquire_timeout(LONG).unwrap());
            println!("holding=permits");
            hold_until_killed(s)
        }
        "wait-at-barrier" => {
            let b = BarrierProxy::from_token(&env("BARRIER"), &key).unwrap();
            println!("holding=barrier");
            let r = b.wait_timeout(LONG);
            unreachable!("the test kills this process first, not {r:?}");
        }
        "wait-on-condition" => {
            let c = ConditionProxy::from_token(&env("CONDITION"), &key).unwrap();
            assert!(c.acquire_timeout(LONG).unwrap());
            println!("holding=condition");
            let r = c.wait_timeout(LONG);
            unreachable!("the test kills this process first, not {r:?}");
        }
        other => panic!("unknown role {other}"),
    }
}

/// Starts a child role with the manager's key and `tokens`, and waits until
/// it reports that it holds what it should.
fn start_holder(mgr: &Manager, role: &str, tokens: &[(&str, String)]) -> Child {
    let mut env = vec![("KEY", mgr.auth_key().to_hex())];
    env.extend(tokens.iter().cloned());
    let mut child = spawn_role("child_role", role, &env);
    let what = role.rsplit('-').next().unwrap_or(role);
    assert_eq!(read_marked(&mut child, "holding=").as_deref(), Some(what));
    child
}

fn kill(mut child: Child) -> Instant {
    sigkill(child.id());
    let _ = child.wait();
    Instant::now()
}

/// Runs `f` on a new client thread; `f` blocks until the test's kill.
fn survivor<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<(T, Instant)> {
    thread::spawn(move || {
        let r = f();
        (r, Instant::now())
    })
}

#[test]
fn a_killed_holder_releases_its_lock_rlock_and_condition() {
    bounded(|| {
        let mgr = Manager::builder().start().unwrap();
        let l = mgr.lock().unwrap();
        let r = mgr.rlock().unwrap();
        let c = mgr.condition().unwrap();
        let child = start_holder(
            &mgr,
            "hold-locks",
            &[
                ("LOCK", l.to_token().unwrap()),
                ("RLOCK", r.to_token().unwrap()),
                ("CONDITION", c.to_token().unwrap()),
            ],
        );
        assert!(!l.try_acquire().unwrap());
        assert!(!r.try_acquire().unwrap());
        let waiting = {
            let l = l.clone();
            survivor(move || l.acquire_timeout(LONG).unwrap())
        };
        let killed_at = kill(child);
        let (got, at) = waiting.join().unwrap();
        assert!(got, "the dead holder's lock was released");
        assert!(
            at.duration_since(killed_at) < PROMPTLY,
            "{:?}",
            at - killed_at
        );
        assert!(
            r.acquire_timeout(LONG).unwrap(),
            "every level of its rlock too"
        );
        r.release().unwrap();
        assert!(matches!(r.release(), Err(Error::NotHeld(_))));
        c.acquire().unwrap();
        c.notify_all().unwrap(); // we hold it: no NotHeld
        c.release().unwrap();
    });
}

#[test]
fn a_killed_permit_holder_gives_its_permits_back() {
    bounded(|| {
        let mgr = Manager::builder().start().unwrap();
        let s = mgr.bounded_semaphore(3).unwrap();
        let child = start_holder(
            &mgr,
            "hold-permits",
            &[("SEMAPHORE", s.to_token().unwrap())],
        );
        assert!(s.try_acquire().unwrap());
        assert!(!s.try_acquire().unwrap(), "the child holds two of three");
        let waiting = {
            let s = s.clone();
            survivor(move || {
                let got = s.acquire_timeout(LONG).unwrap();
                // Hand it back before the thread's connection closes.
                s.release().unwrap();
                got
            })
        };
        let killed_at = kill(child);
        let (got, at) = waiting.join().unwrap();
        assert!(got);
        assert!(
            at.duration_since(killed_at) < PROMPTLY,
            "{:?}",
            at - killed_at
        );
        // Exactly the two permits came back: a bounded semaphore does not overflow.
        assert!(s.try_acquire().unwrap());
        assert!(s.try_acquire().unwrap());
        assert!(!s.try_acquire().unwrap());
        for _ in 0..3 {
            s.release().unwrap();
        }
        assert!(matches!(s.release(), Err(Error::NotHeld(_))));
    });
}

#[test]
fn a_killed_barrier_waiter_breaks_the_barrier_for_the_others() {
    bounded(|| {
        let mgr = Manager::builder().start().unwrap();
        let b = mgr.barrier(3).unwrap();
        let child = start_holder(
            &mgr,
            "wait-at-barrier",
            &[("BARRIER", b.to_token().unwrap())],
        );
        assert!(eventually(LONG, || b.n_waiting().unwrap() == 1));
        let waiting = {
            let b = b.clone();
            survivor(move || b.wait_timeout(LONG))
        };
        assert!(eventually(LONG, || b.n_waiting().unwrap() == 2));
        let killed_at = kill(child);
        let (result, at) = waiting.join().unwrap();
        assert!(matches!(result, Err(Error::BrokenBarrier)), "{result:?}");
        assert!(
            at.duration_since(killed_at) < PROMPTLY,
            "{:?}",
            at - killed_at
        );
        assert!(b.is_broken().unwrap());
        // The survivors reset it and go on without the dead one.
        b.reset().unwrap();
        let parties: Vec<_> = (0..3)
            .map(|_| {
                let b = b.clone();
                thread::spawn(move || b.wait_timeout(LONG).unwrap())
            })
            .collect();
        let indices: BTreeSet<usize> = parties.into_iter().map(|p| p.join().unwrap()).collect();
        assert_eq!(indices, BTreeSet::from([0, 1, 2]));
    });
}

#[test]
fn a_killed_condition_waiter_does_not_swallow_a_notify() {
    bounded(|| {
        let mgr = Manager::builder().start().unwrap();
        let c = mgr.condition().unwrap();
        let child = start_holder(
            &mgr,
            "wait-on-condition",
            &[("CONDITION", c.to_token().unwrap())],
        );
        // The child lets go of the lock only by waiting.
        c.acquire().unwrap();
        c.release().unwrap();
        // A second waiter, behind the child in the queue.
        let entered: EventProxy = mgr.event().unwrap();
        let waiting = {
            let (c, entered) = (c.clone(), entered.clone());
            survivor(move || {
                c.acquire().unwrap();
                entered.set().unwrap();
                let notified = c.wait_timeout(LONG).unwrap();
                c.release().unwrap();
                notified
            })
        };
        assert!(entered.wait_timeout(LONG).unwrap());
        c.acquire().unwrap(); // the survivor waits now
        kill(child);
        let notified_at = Instant::now();
        c.notify().unwrap(); // the oldest waiter is the dead child
        c.release().unwrap();
        let (notified, at) = waiting.join().unwrap();
        assert!(notified, "the notification went on to the living waiter");
        assert!(
            at.duration_since(notified_at) < PROMPTLY,
            "{:?}",
            at - notified_at
        );
    });
}
