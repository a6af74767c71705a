//! Parked waiters (issue 13): a remote `get` on an empty queue, an `acquire`
//! of a held lock, and a condition's, barrier's or event's `wait` or a
//! joinable queue's `join` wait as a record in the object, not on a thread; grants
//! go out oldest first; a timeout is a timer; a caller that hangs up or is
//! killed while parked is cancelled before it takes anything. The manager
//! runs in a child process, so its threads can be counted.

mod common;

use std::process::Child;
use std::thread;
use std::time::Duration;

use common::{bounded, eventually, read_marked, role, sigkill, spawn_role, threads_of};
use manager::{
    Address, AuthKey, BarrierProxy, Client, ConditionProxy, Error, EventProxy, JoinableQueueProxy,
    LockProxy, Manager, QueueProxy,
};

const KEY: &str = "00112233445566778899aabbccddeeff";

fn key() -> AuthKey {
    AuthKey::from_hex(KEY).unwrap()
}

/// The parties of the published barrier: `PARTIES - 1` parked waiters
/// and the test.
const PARTIES: usize = 41;

/// Long enough never to be the reason a test passes.
const LONG: Duration = Duration::from_secs(30);

/// Entry point of the child processes this file starts; a no-op otherwise.
#[test]
fn child_role() {
    let Some(role) = role() else { return };
    let address = || -> Address { std::env::var("ADDRESS").unwrap().parse().unwrap() };
    match role.as_str() {
        "serve" => {
            Manager::builder()
                .address("tcp:127.0.0.1:0".parse().unwrap())
                .auth_key(key())
                .serve_with(|client| {
                    client.publish("q", &client.queue::<u32>(0)?)?;
                    client.publish("l", &client.lock()?)?;
                    client.publish("e", &client.event()?)?;
                    client.publish("c", &client.condition()?)?;
                    client.publish("b", &client.barrier(PARTIES)?)?;
                    client.publish("jq", &client.joinable_queue::<u32>(0)?)?;
                    println!("address={}", client.address());
                    Ok(())
                })
                .unwrap();
        }
        "get" => {
            let client = Client::connect(&address(), &key()).unwrap();
            let q: QueueProxy<u32> = client.lookup("q").unwrap();
            println!("getting=1");
            let got = q.get();
            panic!("the get returned {got:?}; it should have been killed");
        }
        "hold" => {
            let client = Client::connect(&address(), &key()).unwrap();
            let l: LockProxy = client.lookup("l").unwrap();
            l.acquire().unwrap();
            println!("holding=1");
            thread::sleep(LONG * 2);
        }
        "barrier" => {
            let client = Client::connect(&address(), &key()).unwrap();
            let b: BarrierProxy = client.lookup("b").unwrap();
            println!("waiting=1");
            let r = b.wait();
            panic!("the barrier wait returned {r:?}; it should have been killed");
        }
        "acquire" => {
            let client = Client::connect(&address(), &key()).unwrap();
            let l: LockProxy = client.lookup("l").unwrap();
            println!("acquiring=1");
            let r = l.acquire();
            panic!("the acquire returned {r:?}; it should have been killed");
        }
        other => panic!("unknown role {other}"),
    }
}

/// A child process, killed and reaped when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Killed {
    /// SIGKILLs the process and waits until it is gone: its sockets are
    /// closed when this returns.
    fn kill_now(mut self) {
        sigkill(self.0.id());
        let _ = self.0.wait();
    }
}

/// Starts a manager process; it, its address and a client of it.
fn serve() -> (Killed, Address, Client) {
    let mut child = spawn_role("child_role", "serve", &[]);
    let address: Address = read_marked(&mut child, "address=")
        .expect("the manager reports its address")
        .parse()
        .unwrap();
    let client = Client::connect(&address, &key()).unwrap();
    (Killed(child), address, client)
}

/// Starts a client process in `role` against `address`, and waits for its
/// `marker` line.
fn start(role: &str, marker: &str, address: &Address) -> Killed {
    let mut child = spawn_role("child_role", role, &[("ADDRESS", address.to_string())]);
    read_marked(&mut child, marker).expect("the client process reports in");
    Killed(child)
}

/// Waits until the manager counts `n` calls blocked.
fn until_blocked(client: &Client, n: u64) {
    assert!(
        eventually(LONG, || client.stats().is_ok_and(|s| s.blocked_calls == n)),
        "never {n} calls blocked: {:?}",
        client.stats().map(|s| s.blocked_calls)
    );
}

#[test]
fn parked_gets_hold_no_thread_and_are_served_oldest_first() {
    bounded(|| {
        let (manager, address, client) = serve();
        client.ping().unwrap();
        let before = threads_of(manager.0.id());
        const N: usize = 120;
        // Each getter joins the queue only once the one before it waits, so
        // the order they wait in is known.
        let mut getters = Vec::new();
        for i in 0..N {
            let address = address.clone();
            getters.push(thread::spawn(move || {
                let client = Client::connect(&address, &key()).unwrap();
                let q: QueueProxy<u32> = client.lookup("q").unwrap();
                (i, q.get().unwrap())
            }));
            until_blocked(&client, i as u64 + 1);
        }
        // A thread per blocked call would be N more; the pool may have grown
        // by a few while the connections came in.
        assert_no_thread_each(&manager, before, N, "gets");
        let q: QueueProxy<u32> = client.lookup("q").unwrap();
        for item in 0..N as u32 {
            q.put(item).unwrap();
        }
        for getter in getters {
            let (i, item) = getter.join().unwrap();
            assert_eq!(item, i as u32, "getter {i} was served out of turn");
        }
        assert_eq!(client.stats().unwrap().blocked_calls, 0);
        assert_eq!(q.len().unwrap(), 0);
    });
}

#[test]
fn a_parked_wait_times_out_on_its_timer_and_takes_nothing_after() {
    bounded(|| {
        let (_manager, _address, client) = serve();
        let q: QueueProxy<u32> = client.lookup("q").unwrap();
        let l: LockProxy = client.lookup("l").unwrap();
        assert_eq!(q.get_timeout(Duration::from_millis(50)).unwrap(), None);
        // A holder elsewhere, and a timed acquire here that gives up.
        let other = Client::connect(client.address(), &key()).unwrap();
        let held: LockProxy = other.lookup("l").unwrap();
        held.acquire().unwrap();
        assert!(!l.acquire_timeout(Duration::from_millis(50)).unwrap());
        assert_eq!(client.stats().unwrap().blocked_calls, 0);
        // The waiters that timed out are gone: an item stays in the queue,
        // and a release leaves the lock free.
        q.put(9).unwrap();
        assert_eq!(q.len().unwrap(), 1);
        held.release().unwrap();
        assert!(l.try_acquire().unwrap());
        l.release().unwrap();
        assert_eq!(q.try_get().unwrap(), Some(9));
    });
}

#[test]
fn a_killed_parked_getter_takes_no_item() {
    bounded(|| {
        let (_manager, address, client) = serve();
        let q: QueueProxy<u32> = client.lookup("q").unwrap();
        let getter = start("get", "getting=", &address);
        until_blocked(&client, 1);
        getter.kill_now();
        // Put at once: the killed getter is the oldest waiter, unless the
        // manager already let it go. Either way the item is not lost.
        q.put(5).unwrap();
        assert_eq!(q.get_timeout(LONG).unwrap(), Some(5));
        assert!(eventually(LONG, || client
            .stats()
            .is_ok_and(|s| s.blocked_calls == 0)));
    });
}

#[test]
fn a_killed_holders_lock_goes_to_a_parked_acquirer() {
    bounded(|| {
        let (_manager, address, client) = serve();
        let holder = start("hold", "holding=", &address);
        let waiter = {
            let address = address.clone();
            thread::spawn(move || {
                let client = Client::connect(&address, &key()).unwrap();
                let l: LockProxy = client.lookup("l").unwrap();
                l.acquire().unwrap();
                l.release().unwrap();
            })
        };
        until_blocked(&client, 1);
        holder.kill_now();
        waiter.join().unwrap();
        let l: LockProxy = client.lookup("l").unwrap();
        assert!(l.try_acquire().unwrap());
    });
}

#[test]
fn a_killed_parked_acquirer_does_not_swallow_a_release() {
    bounded(|| {
        let (_manager, address, client) = serve();
        let l: LockProxy = client.lookup("l").unwrap();
        l.acquire().unwrap();
        // Oldest waiter: a process about to die; behind it, a thread here.
        let doomed = start("acquire", "acquiring=", &address);
        until_blocked(&client, 1);
        let survivor = {
            let address = address.clone();
            thread::spawn(move || {
                let client = Client::connect(&address, &key()).unwrap();
                let l: LockProxy = client.lookup("l").unwrap();
                l.acquire_timeout(LONG).unwrap()
            })
        };
        until_blocked(&client, 2);
        doomed.kill_now();
        l.release().unwrap();
        assert!(
            survivor.join().unwrap(),
            "the release went to the living waiter"
        );
    });
}

#[test]
fn parked_event_waits_hold_no_thread_and_one_set_wakes_them_all() {
    bounded(|| {
        let (manager, address, client) = serve();
        let e: EventProxy = client.lookup("e").unwrap();
        assert!(!e.wait_timeout(Duration::from_millis(20)).unwrap());
        let before = threads_of(manager.0.id());
        const N: usize = 60;
        let waiters = one_at_a_time(&client, &address, N, |client| {
            let e: EventProxy = client.lookup("e").unwrap();
            e.wait_timeout(LONG).unwrap()
        });
        assert_no_thread_each(&manager, before, N, "event waits");
        e.set().unwrap();
        e.clear().unwrap(); // the woken waiters were granted already
        for w in waiters {
            assert!(w.join().unwrap(), "a waiter missed the set");
        }
        assert!(!e.wait_timeout(Duration::from_millis(20)).unwrap());
        assert_eq!(client.stats().unwrap().blocked_calls, 0);
    });
}

/// Starts `n` threads, each with a client of its own that runs `wait`,
/// one at a time: each is parked before the next connects, so that no
/// burst of handshakes grows the pool while the threads are counted.
fn one_at_a_time<R: Send + 'static>(
    client: &Client,
    address: &Address,
    n: usize,
    wait: fn(&Client) -> R,
) -> Vec<thread::JoinHandle<R>> {
    (0..n)
        .map(|i| {
            let address = address.clone();
            let t = thread::spawn(move || wait(&Client::connect(&address, &key()).unwrap()));
            until_blocked(client, i as u64 + 1);
            t
        })
        .collect()
}

/// Asserts that `n` parked calls cost the manager no thread each.
fn assert_no_thread_each(manager: &Killed, before: usize, n: usize, what: &str) {
    let during = threads_of(manager.0.id());
    assert!(
        during <= before + 8,
        "{during} manager threads for {n} parked {what} (were {before})"
    );
}

#[test]
fn parked_condition_waits_hold_no_thread_and_get_their_lock_back() {
    bounded(|| {
        let (manager, address, client) = serve();
        let c: ConditionProxy = client.lookup("c").unwrap();
        c.acquire().unwrap();
        assert!(!c.wait_timeout(Duration::from_millis(20)).unwrap());
        c.release().unwrap();
        let before = threads_of(manager.0.id());
        const N: usize = 40;
        // One at a time: each takes the lock the one before put down.
        let mut waiters = Vec::new();
        for i in 0..N {
            let address = address.clone();
            waiters.push(thread::spawn(move || {
                let client = Client::connect(&address, &key()).unwrap();
                let c: ConditionProxy = client.lookup("c").unwrap();
                c.acquire().unwrap();
                c.acquire().unwrap(); // two levels, both taken back
                let notified = c.wait_timeout(LONG).unwrap();
                // Holding the lock again, at both levels.
                c.notify().unwrap();
                c.release().unwrap();
                c.release().unwrap();
                let again = c.release();
                (notified, again)
            }));
            until_blocked(&client, i as u64 + 1);
        }
        assert_no_thread_each(&manager, before, N, "condition waits");
        c.acquire().unwrap();
        c.notify_all().unwrap();
        // Notified, each waits for the lock this thread holds.
        until_blocked(&client, N as u64);
        c.release().unwrap();
        for w in waiters {
            let (notified, again) = w.join().unwrap();
            assert!(notified, "a waiter missed the notify_all");
            assert!(matches!(again, Err(Error::NotHeld(_))), "{again:?}");
        }
        assert_eq!(client.stats().unwrap().blocked_calls, 0);
        assert!(c.try_acquire().unwrap(), "the lock is free at the end");
        c.release().unwrap();
    });
}

#[test]
fn a_parked_condition_wait_times_out_and_takes_its_lock_back() {
    bounded(|| {
        let (_manager, _address, client) = serve();
        let c: ConditionProxy = client.lookup("c").unwrap();
        c.acquire().unwrap();
        assert!(!c.wait_timeout(Duration::from_millis(50)).unwrap());
        c.release().unwrap();
        assert!(matches!(c.release(), Err(Error::NotHeld(_))));
        assert_eq!(client.stats().unwrap().blocked_calls, 0);
        // No waiter is left behind to swallow a notification.
        let other = Client::connect(client.address(), &key()).unwrap();
        let waiter = {
            let address = client.address().clone();
            thread::spawn(move || {
                let client = Client::connect(&address, &key()).unwrap();
                let c: ConditionProxy = client.lookup("c").unwrap();
                c.acquire().unwrap();
                let notified = c.wait_timeout(LONG).unwrap();
                c.release().unwrap();
                notified
            })
        };
        until_blocked(&client, 1);
        let c2: ConditionProxy = other.lookup("c").unwrap();
        c2.acquire().unwrap();
        c2.notify().unwrap();
        c2.release().unwrap();
        assert!(waiter.join().unwrap());
    });
}

#[test]
fn parked_barrier_waits_hold_no_thread_and_the_last_party_releases_them() {
    bounded(|| {
        let (manager, address, client) = serve();
        let before = threads_of(manager.0.id());
        const N: usize = PARTIES - 1;
        let waiters = one_at_a_time(&client, &address, N, |client| {
            let b: BarrierProxy = client.lookup("b").unwrap();
            b.wait_timeout(LONG).unwrap()
        });
        assert_no_thread_each(&manager, before, N, "barrier waits");
        let b: BarrierProxy = client.lookup("b").unwrap();
        assert_eq!(b.n_waiting().unwrap(), N);
        let mut indexes = vec![b.wait().unwrap()];
        indexes.extend(waiters.into_iter().map(|w| w.join().unwrap()));
        indexes.sort_unstable();
        assert_eq!(indexes, (0..PARTIES).collect::<Vec<_>>());
        assert_eq!(client.stats().unwrap().blocked_calls, 0);
        assert!(!b.is_broken().unwrap());
    });
}

#[test]
fn a_killed_parked_barrier_waiter_breaks_the_barrier_and_a_timeout_does_too() {
    bounded(|| {
        let (_manager, address, client) = serve();
        let b: BarrierProxy = client.lookup("b").unwrap();
        let doomed = start("barrier", "waiting=", &address);
        until_blocked(&client, 1);
        let survivor = {
            let address = address.clone();
            thread::spawn(move || {
                let client = Client::connect(&address, &key()).unwrap();
                let b: BarrierProxy = client.lookup("b").unwrap();
                b.wait_timeout(LONG)
            })
        };
        until_blocked(&client, 2);
        doomed.kill_now();
        assert!(matches!(
            survivor.join().unwrap(),
            Err(Error::BrokenBarrier)
        ));
        assert!(b.is_broken().unwrap());
        b.reset().unwrap();
        // A parked wait that times out breaks it too, as in Python.
        assert!(matches!(
            b.wait_timeout(Duration::from_millis(50)),
            Err(Error::BrokenBarrier)
        ));
        assert!(b.is_broken().unwrap());
        assert_eq!(client.stats().unwrap().blocked_calls, 0);
    });
}

#[test]
fn parked_joins_hold_no_thread_and_the_last_task_done_wakes_them_all() {
    bounded(|| {
        let (manager, address, client) = serve();
        let jq: JoinableQueueProxy<u32> = client.lookup("jq").unwrap();
        jq.put(1).unwrap();
        assert!(!jq.join_timeout(Duration::from_millis(20)).unwrap());
        let before = threads_of(manager.0.id());
        const N: usize = 40;
        let joiners = one_at_a_time(&client, &address, N, |client| {
            let jq: JoinableQueueProxy<u32> = client.lookup("jq").unwrap();
            jq.join_timeout(LONG).unwrap()
        });
        assert_no_thread_each(&manager, before, N, "joins");
        assert_eq!(jq.get().unwrap(), 1);
        jq.task_done().unwrap();
        for j in joiners {
            assert!(j.join().unwrap(), "a join missed the last task_done");
        }
        assert!(jq.join_timeout(Duration::from_millis(20)).unwrap());
        assert_eq!(client.stats().unwrap().blocked_calls, 0);
    });
}
