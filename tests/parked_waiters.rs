//! Parked waiters (issue 13): a remote `get` on an empty queue or `acquire`
//! of a held lock waits as a record in the object, not on a thread; grants
//! go out oldest first; a timeout is a timer; a caller that hangs up or is
//! killed while parked is cancelled before it takes anything. The manager
//! runs in a child process, so its threads can be counted.

mod common;

use std::process::Child;
use std::thread;
use std::time::Duration;

use common::{bounded, eventually, read_marked, role, sigkill, spawn_role, threads_of};
use manager::{Address, AuthKey, Client, EventProxy, LockProxy, Manager, QueueProxy};

const KEY: &str = "00112233445566778899aabbccddeeff";

fn key() -> AuthKey {
    AuthKey::from_hex(KEY).unwrap()
}

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
        let during = threads_of(manager.0.id());
        assert!(
            during <= before + 8,
            "{during} manager threads for {N} parked gets (were {before})"
        );
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
        let waiters: Vec<_> = (0..N)
            .map(|_| {
                let address = address.clone();
                thread::spawn(move || {
                    let client = Client::connect(&address, &key()).unwrap();
                    let e: EventProxy = client.lookup("e").unwrap();
                    e.wait_timeout(LONG).unwrap()
                })
            })
            .collect();
        until_blocked(&client, N as u64);
        let during = threads_of(manager.0.id());
        assert!(
            during <= before + 8,
            "{during} manager threads for {N} parked event waits (were {before})"
        );
        e.set().unwrap();
        e.clear().unwrap(); // the woken waiters were granted already
        for w in waiters {
            assert!(w.join().unwrap(), "a waiter missed the set");
        }
        assert!(!e.wait_timeout(Duration::from_millis(20)).unwrap());
        assert_eq!(client.stats().unwrap().blocked_calls, 0);
    });
}
