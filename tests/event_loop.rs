//! The event-driven manager (issue 13): idle connections hold no thread, the
//! connection limit holds under a burst, running out of file descriptors is
//! a clean `LimitReached` with nothing lost, and a method that blocks does
//! not stall other connections. Real processes, real sockets.

mod common;

use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{
    allowed_cpus, bounded, eventually, pin_this_thread, read_marked, role, sigkill, spawn_role,
    threads_of,
};
use manager::{shared, Address, AuthKey, Client, Error, Manager, QueueProxy};

const KEY: &str = "8899aabbccddeeff0011223344556677";

fn key() -> AuthKey {
    AuthKey::from_hex(KEY).unwrap()
}

/// Set while a `Sleeper::nap` runs (the manager runs in this process).
static NAPPING: AtomicBool = AtomicBool::new(false);

#[shared]
pub struct Sleeper;

#[shared]
impl Sleeper {
    pub fn new() -> Self {
        Sleeper
    }
    /// Blocks its thread, as a user method may.
    pub fn nap(&self, ms: u64) -> u64 {
        NAPPING.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(ms));
        NAPPING.store(false, Ordering::SeqCst);
        ms
    }
    pub fn quick(&self) -> u32 {
        7
    }
}

/// Entry point of the child processes this file starts; a no-op otherwise.
#[test]
fn child_role() {
    let Some(role) = role() else { return };
    match role.as_str() {
        "serve" | "serve-few-fds" => {
            if role == "serve-few-fds" {
                // Soft and hard, so the manager cannot raise it.
                let l = libc::rlimit {
                    rlim_cur: FEW_FDS,
                    rlim_max: FEW_FDS,
                };
                // SAFETY: `l` is a valid rlimit.
                assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) }, 0);
            }
            Manager::builder()
                .address("tcp:127.0.0.1:0".parse().unwrap())
                .auth_key(key())
                .serve_with(|client| {
                    client.publish("q", &client.queue::<u32>(0)?)?;
                    println!("address={}", client.address());
                    Ok(())
                })
                .unwrap();
        }
        "block-get" => {
            let address: Address = std::env::var("ADDRESS").unwrap().parse().unwrap();
            let client = Client::connect(&address, &key()).unwrap();
            let q: QueueProxy<u32> = client.lookup("q").unwrap();
            println!("blocking=get");
            let got = q.get();
            panic!("the blocked get returned {got:?}; it should have been killed");
        }
        other => panic!("unknown role {other}"),
    }
}

/// The descriptor limit of the manager that runs short of them.
const FEW_FDS: u64 = 64;

fn start(role: &str) -> (Child, Address) {
    let mut child = spawn_role("child_role", role, &[]);
    let address = read_marked(&mut child, "address=").expect("the manager reports its address");
    (child, address.parse().unwrap())
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn idle_connections_hold_no_thread() {
    bounded(|| {
        let (child, address) = start("serve");
        let pid = child.id();
        let _child = Killed(child);
        let first = Client::connect(&address, &key()).unwrap();
        first.ping().unwrap();
        let before = threads_of(pid);
        let clients: Vec<Client> = (0..300)
            .map(|_| {
                let c = Client::connect(&address, &key()).unwrap();
                c.ping().unwrap();
                c
            })
            .collect();
        let stats = first.stats().unwrap();
        assert!(
            stats.connections >= 301,
            "{} connections",
            stats.connections
        );
        // A thread per connection would be 300 more; the pool may have
        // grown by a few while handshakes ran, and shrinks back when idle.
        let during = threads_of(pid);
        assert!(
            during <= before + 8,
            "{during} threads for 300 idle connections (were {before} for one)"
        );
        drop(clients);
        assert!(eventually(Duration::from_secs(20), || first
            .stats()
            .is_ok_and(|s| s.connections <= 2)));
    });
}

#[test]
fn a_burst_of_clients_cannot_pass_the_connection_limit() {
    bounded(|| {
        const LIMIT: usize = 12;
        let mgr = Manager::builder()
            .address("tcp:127.0.0.1:0".parse().unwrap())
            .max_connections(LIMIT)
            .spawn_thread()
            .unwrap();
        let (address, key) = (mgr.address().clone(), mgr.auth_key().clone());
        let go = Arc::new(Barrier::new(48));
        let tries: Vec<_> = (0..48)
            .map(|_| {
                let (go, address, key) = (Arc::clone(&go), address.clone(), key.clone());
                std::thread::spawn(move || {
                    go.wait();
                    Client::connect(&address, &key)
                })
            })
            .collect();
        let results: Vec<_> = tries.into_iter().map(|t| t.join().unwrap()).collect();
        let admitted = results.iter().filter(|r| r.is_ok()).count();
        assert!(
            admitted <= LIMIT,
            "{admitted} connections admitted past a limit of {LIMIT}"
        );
        assert!(admitted > 0, "nobody was admitted");
        // An admitted client calls on the connection it was admitted with,
        // so it can ask the manager what it counts.
        let counted = results
            .iter()
            .find_map(|r| r.as_ref().ok())
            .map(|c| c.stats().unwrap().connections);
        assert!(
            counted.is_some_and(|n| n <= LIMIT as u64),
            "the manager counts {counted:?} connections past a limit of {LIMIT}"
        );
        for r in &results {
            if let Err(e) = r {
                assert!(matches!(e, Error::LimitReached(_)), "{e}");
            }
        }
    });
}

#[test]
fn out_of_file_descriptors_is_limit_reached_and_loses_nothing() {
    bounded(|| {
        let (child, address) = start("serve-few-fds");
        let _child = Killed(child);
        // A client blocked in `get` on the manager that is about to run out.
        let mut blocked = spawn_role(
            "child_role",
            "block-get",
            &[("ADDRESS", address.to_string())],
        );
        read_marked(&mut blocked, "blocking=").expect("the getter connects");
        let probe = Client::connect(&address, &key()).unwrap();
        assert!(eventually(Duration::from_secs(10), || probe
            .stats()
            .is_ok_and(|s| s.blocked_calls == 1)));
        // Fill every descriptor the manager has.
        let mut clients = Vec::new();
        let refused = loop {
            assert!(
                clients.len() < FEW_FDS as usize,
                "{} clients connected to a manager with {FEW_FDS} descriptors",
                clients.len()
            );
            match Client::connect(&address, &key()).and_then(|c| c.ping().map(|()| c)) {
                Ok(c) => clients.push(c),
                Err(e) => break e,
            }
        };
        match &refused {
            Error::LimitReached(why) => {
                assert!(why.contains("file descriptor"), "{why}")
            }
            e => panic!("out of descriptors answered {e:?}, not LimitReached"),
        }
        assert!(!clients.is_empty());
        // The blocked getter dies: its get must not take the next item.
        sigkill(blocked.id());
        let _ = blocked.wait();
        assert!(eventually(Duration::from_secs(10), || probe
            .stats()
            .is_ok_and(|s| s.blocked_calls == 0)));
        let q: QueueProxy<u32> = probe.lookup("q").unwrap();
        q.put(41).unwrap();
        assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), Some(41));
        // Descriptors come back: the manager serves new clients again.
        clients.truncate(clients.len() - 2);
        assert!(eventually(Duration::from_secs(10), || Client::connect(
            &address,
            &key()
        )
        .and_then(|c| c.ping())
        .is_ok()));
    });
}

#[test]
fn a_method_that_blocks_does_not_stall_other_connections() {
    bounded(|| {
        let mgr = Manager::builder()
            .address("tcp:127.0.0.1:0".parse().unwrap())
            .register::<Sleeper>()
            .spawn_thread()
            .unwrap();
        let sleeper = SleeperProxy::new(&mgr).unwrap();
        mgr.publish("sleeper", &sleeper).unwrap();
        let (address, key) = (mgr.address().clone(), mgr.auth_key().clone());
        let napping = {
            let (address, key) = (address.clone(), key.clone());
            std::thread::spawn(move || {
                let c = Client::connect(&address, &key).unwrap();
                let s: SleeperProxy = c.lookup("sleeper").unwrap();
                s.nap(30_000).unwrap()
            })
        };
        assert!(eventually(Duration::from_secs(10), || NAPPING.load(Ordering::SeqCst)));
        // Several clients, each on its own connection, while one thread of
        // the manager sleeps inside the method.
        for _ in 0..8 {
            let c = Client::connect(&address, &key).unwrap();
            let s: SleeperProxy = c.lookup("sleeper").unwrap();
            assert_eq!(s.quick().unwrap(), 7);
        }
        assert!(
            NAPPING.load(Ordering::SeqCst),
            "the other calls waited for the nap to end"
        );
        drop(napping);
    });
}

/// One poll per CPU the manager may use, each serving its share of the
/// connections; a manager started from a thread allowed one CPU (its
/// process inherits the mask) has one.
#[test]
fn the_manager_polls_once_per_cpu_and_serves_every_poll() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let polls = mgr.stats().unwrap().polls;
        assert_eq!(polls, cpus.min(8) as u64);
        // Connections fall to the polls by their ids, so a few per poll
        // reach every one of them; each counts exactly.
        let total = mgr.value(0u64).unwrap();
        let (address, key) = (mgr.address().clone(), mgr.auth_key().clone());
        mgr.publish("total", &total).unwrap();
        let workers: Vec<_> = (0..3 * polls)
            .map(|_| {
                let (address, key) = (address.clone(), key.clone());
                std::thread::spawn(move || {
                    let c = Client::connect(&address, &key).unwrap();
                    let t: manager::ValueProxy<u64> = c.lookup("total").unwrap();
                    for _ in 0..200 {
                        t.fetch_add(1).unwrap();
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(total.get().unwrap(), 3 * polls * 200);

        let Some(&cpu) = allowed_cpus().first() else {
            println!("skipped the one-CPU half: this thread's CPU mask is unreadable");
            return;
        };
        let one_cpu = std::thread::spawn(move || {
            pin_this_thread(cpu);
            let mgr = Manager::builder().start().unwrap();
            let v = mgr.value(1u8).unwrap();
            assert_eq!(v.get().unwrap(), 1);
            mgr.stats().unwrap().polls
        });
        assert_eq!(one_cpu.join().unwrap(), 1);
    });
}
