//! The manager survives what clients do: panics in methods, clients killed
//! mid-call, oversized messages; and it dies with the process that started it.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{eventually, process_gone, read_marked, role, sigkill, spawn_role};
use manager::{shared, AuthKey, Error, Manager, Proxy};

/// A type whose methods misbehave on request.
#[shared]
#[derive(Default)]
pub struct Fragile {
    entered: AtomicU64,
}

#[shared]
impl Fragile {
    /// A fresh one.
    pub fn new() -> Self {
        Self::default()
    }

    /// Panics with `message`.
    pub fn explode(&self, message: String) -> u32 {
        panic!("{message}")
    }

    /// Panics while holding the object exclusively.
    pub fn explode_mut(&mut self) {
        panic!("exclusive boom")
    }

    /// Works.
    pub fn fine(&self) -> String {
        "fine".to_owned()
    }

    /// Counts the call, then takes `ms` milliseconds.
    pub fn slow(&self, ms: u64) {
        self.entered.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(ms));
    }

    /// How many `slow` calls have started.
    pub fn entered(&self) -> u64 {
        self.entered.load(Ordering::SeqCst)
    }

    /// The bytes, back.
    pub fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }

    /// Length and a checksum of `data`, and the data reversed.
    pub fn digest(&self, data: Vec<u8>) -> (usize, u64, Vec<u8>) {
        let sum = data.iter().map(|b| u64::from(*b)).sum();
        let mut rev = data;
        rev.reverse();
        (rev.len(), sum, rev)
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set for child roles"))
}

/// Entry point of the child processes this file starts; a no-op otherwise.
#[test]
fn child_role() {
    let Some(role) = role() else { return };
    match role.as_str() {
        "slow-caller" => {
            let key = AuthKey::from_hex(&env("KEY")).unwrap();
            let f = FragileProxy::from_token(&env("TOKEN"), &key).unwrap();
            f.slow(3_000).unwrap();
            unreachable!("the test kills this process mid-call");
        }
        "manager-parent" => {
            let mgr = Manager::builder().register::<Fragile>().start().unwrap();
            let f = FragileProxy::new(&mgr).unwrap();
            assert_eq!(f.fine().unwrap(), "fine");
            println!("manager-pid={}", mgr.process_id().unwrap());
            // Wait to be killed.
            loop {
                std::thread::park();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn a_panicking_method_is_reported_and_the_next_call_works() {
    let mgr = Manager::builder().register::<Fragile>().start().unwrap();
    let f = FragileProxy::new(&mgr).unwrap();
    match f.explode("kaboom 42".into()) {
        Err(Error::RemotePanic {
            type_name,
            method,
            message,
        }) => {
            assert!(type_name.ends_with("::Fragile"), "{type_name}");
            assert_eq!(method, "explode");
            assert_eq!(message, "kaboom 42");
        }
        other => panic!("expected RemotePanic, got {other:?}"),
    }
    assert_eq!(f.fine().unwrap(), "fine");
    // A panic under the write lock does not poison the object.
    assert!(matches!(f.explode_mut(), Err(Error::RemotePanic { .. })));
    assert_eq!(f.fine().unwrap(), "fine");
    assert_eq!(f.entered().unwrap(), 0);
}

#[test]
fn a_client_killed_mid_call_costs_the_manager_nothing() {
    let mgr = Manager::builder().register::<Fragile>().start().unwrap();
    let f = FragileProxy::new(&mgr).unwrap();
    let base = mgr.stats().unwrap();
    let mut child = spawn_role(
        "child_role",
        "slow-caller",
        &[
            ("KEY", mgr.auth_key().to_hex()),
            ("TOKEN", f.to_token().unwrap()),
        ],
    );
    assert!(
        eventually(Duration::from_secs(30), || f.entered().unwrap() == 1),
        "the child's call never started"
    );
    sigkill(child.id());
    let _ = child.wait();
    // Other calls are served at once, while the dead client's call is still running.
    assert_eq!(f.fine().unwrap(), "fine");
    // The dead client's connections and session go once its call returns or
    // its socket is seen closed; the object stays, held by our proxy.
    assert!(eventually(Duration::from_secs(30), || {
        let s = mgr.stats().unwrap();
        s.sessions == base.sessions
    }));
    assert_eq!(mgr.stats().unwrap().objects, base.objects);
    assert_eq!(f.fine().unwrap(), "fine");
}

#[test]
fn a_started_manager_dies_with_its_parent_even_by_sigkill() {
    let mut parent = spawn_role("child_role", "manager-parent", &[]);
    let pid: u32 = read_marked(&mut parent, "manager-pid=")
        .expect("the parent reports its manager")
        .parse()
        .unwrap();
    assert!(!process_gone(pid));
    sigkill(parent.id());
    let _ = parent.wait();
    assert!(
        eventually(Duration::from_secs(10), || process_gone(pid)),
        "manager process {pid} outlived its parent"
    );
}

#[test]
fn an_8_mib_argument_round_trips() {
    let mgr = Manager::builder().register::<Fragile>().start().unwrap();
    let f = FragileProxy::new(&mgr).unwrap();
    let data: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let expected_sum: u64 = data.iter().map(|b| u64::from(*b)).sum();
    let (len, sum, rev) = f.digest(data.clone()).unwrap();
    assert_eq!(len, data.len());
    assert_eq!(sum, expected_sum);
    assert!(rev.iter().eq(data.iter().rev()));
    assert!(f.echo(data.clone()).unwrap() == data, "Vec<u8> both ways");
}

#[test]
fn a_frame_over_the_maximum_is_refused_and_the_manager_goes_on() {
    let mgr = Manager::builder()
        .register::<Fragile>()
        .max_frame_size(1 << 20)
        .start()
        .unwrap();
    let f = FragileProxy::new(&mgr).unwrap();
    match f.digest(vec![7; 2 << 20]) {
        Err(Error::Protocol(msg)) => assert!(msg.contains("maximum"), "{msg}"),
        other => panic!("expected Protocol, got {other:?}"),
    }
    let (len, _, _) = f.digest(vec![7; 1000]).unwrap();
    assert_eq!(len, 1000);
}

#[test]
fn an_oversized_length_prefix_from_a_raw_peer_drops_only_that_connection() {
    use std::io::{Read, Write};
    let mgr = Manager::builder().register::<Fragile>().start().unwrap();
    let f = FragileProxy::new(&mgr).unwrap();
    let path = mgr.address().local_path().unwrap().to_owned();
    let mut raw = std::os::unix::net::UnixStream::connect(&path).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(&u32::MAX.to_le_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = raw.read_to_end(&mut buf);
    assert_eq!(f.fine().unwrap(), "fine");
}

#[test]
fn a_manager_killed_mid_call_gives_connection_lost_at_once() {
    let mgr = Manager::builder().register::<Fragile>().start().unwrap();
    let f = FragileProxy::new(&mgr).unwrap();
    let pid = mgr.process_id().unwrap();
    let caller = {
        let f = f.clone();
        std::thread::spawn(move || {
            let r = f.slow(60_000);
            (r, std::time::Instant::now())
        })
    };
    assert!(eventually(Duration::from_secs(30), || f.entered().unwrap() == 1));
    sigkill(pid);
    let killed_at = std::time::Instant::now();
    let (result, returned_at) = caller.join().unwrap();
    assert!(
        matches!(result, Err(Error::ConnectionLost(_))),
        "{result:?}"
    );
    assert!(returned_at.duration_since(killed_at) < Duration::from_secs(5));
    assert!(matches!(f.fine(), Err(Error::ConnectionLost(_))));
}
