//! A dedicated server: `serve_with` binds before its setup runs, serves what
//! the setup published, and stops cleanly on SIGINT, SIGTERM or a client's
//! `shutdown_manager()`, finishing the call in progress. `Manager::wait`
//! does the same for a manager this process hosts. Real processes, real
//! signals.

mod common;

use std::net::TcpListener;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{read_marked, role, spawn_role, wait_ok};
use manager::{shared, Address, AuthKey, Client, Error, Manager, ValueProxy};

const KEY: &str = "00112233445566778899aabbccddeeff";

#[shared]
pub struct Slow;

#[shared]
impl Slow {
    pub fn new() -> Self {
        Slow
    }
    /// Takes its time, so that a stop arrives while it runs.
    pub fn nap(&self, ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }
}

fn key() -> AuthKey {
    AuthKey::from_hex(KEY).unwrap()
}

/// Entry point of the child processes this file starts; a no-op otherwise.
#[test]
fn child_role() {
    let Some(role) = role() else { return };
    match role.as_str() {
        "serve" => {
            Manager::builder()
                .address("tcp:127.0.0.1:0".parse().unwrap())
                .auth_key(key())
                .register::<Slow>()
                .serve_with(|client| {
                    client.publish("slow", &SlowProxy::new(client)?)?;
                    client.publish("count", &client.value(7u64)?)?;
                    println!("address={}", client.address());
                    Ok(())
                })
                .unwrap();
            println!("done=served");
        }
        "host-and-wait" => {
            let mgr = Manager::builder()
                .address("tcp:127.0.0.1:0".parse().unwrap())
                .auth_key(key())
                .register::<Slow>()
                .spawn_thread()
                .unwrap();
            mgr.publish("slow", &SlowProxy::new(&mgr).unwrap()).unwrap();
            println!("address={}", mgr.address());
            mgr.wait().unwrap();
            println!("done=waited");
        }
        other => panic!("unknown role {other}"),
    }
}

fn start(role: &str) -> (Child, Address) {
    let mut child = spawn_role("child_role", role, &[]);
    let address = read_marked(&mut child, "address=").expect("the server reports its address");
    (child, address.parse().unwrap())
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
}

/// Starts a slow call, stops the server with `stop` while the call runs,
/// and checks that the call still got its reply and the server exited
/// cleanly, saying `done`.
fn stops_cleanly(role: &str, done: &str, stop: impl FnOnce(&Child, &Client)) {
    let (mut child, address) = start(role);
    let client = Client::connect(&address, &key()).unwrap();
    let slow: SlowProxy = client.lookup("slow").unwrap();
    let in_flight = std::thread::spawn(move || slow.nap(700));
    std::thread::sleep(Duration::from_millis(200));
    stop(&child, &client);
    assert_eq!(
        in_flight.join().unwrap().unwrap(),
        700,
        "the call in progress is answered"
    );
    assert_eq!(read_marked(&mut child, "done=").as_deref(), Some(done));
    assert!(wait_ok(&mut child, Duration::from_secs(20)), "a clean exit");
    let after = Client::connect(&address, &key());
    assert!(after.is_err(), "the server is gone");
}

#[test]
fn serve_with_publishes_its_setup_and_stops_cleanly_on_sigterm() {
    stops_cleanly("serve", "served", |child, client| {
        let count: ValueProxy<u64> = client.lookup("count").unwrap();
        assert_eq!(count.get().unwrap(), 7, "the setup's objects are served");
        signal(child, libc::SIGTERM);
    });
}

#[test]
fn serve_with_stops_cleanly_on_sigint() {
    stops_cleanly("serve", "served", |child, _| signal(child, libc::SIGINT));
}

#[test]
fn serve_with_stops_when_a_client_asks() {
    stops_cleanly("serve", "served", |_, client| {
        client.shutdown_manager().unwrap();
    });
}

#[test]
fn wait_returns_on_sigint_after_the_call_in_progress() {
    stops_cleanly("host-and-wait", "waited", |child, _| {
        signal(child, libc::SIGINT)
    });
}

#[test]
fn wait_returns_when_a_client_asks() {
    stops_cleanly("host-and-wait", "waited", |_, client| {
        client.shutdown_manager().unwrap();
    });
}

#[test]
fn wait_on_a_manager_process_returns_when_a_client_asks() {
    if role().is_some() {
        return;
    }
    let mgr = Manager::builder().start().unwrap();
    let other = Client::connect(mgr.address(), mgr.auth_key()).unwrap();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        other.shutdown_manager()
    });
    mgr.wait().unwrap();
    stopper.join().unwrap().unwrap();
}

#[test]
fn a_taken_port_fails_before_the_setup_runs() {
    if role().is_some() {
        return;
    }
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let ran = AtomicBool::new(false);
    let r = Manager::builder()
        .address(format!("tcp:127.0.0.1:{port}").parse().unwrap())
        .serve_with(|_| {
            ran.store(true, Ordering::Relaxed);
            Ok(())
        });
    assert!(
        matches!(&r, Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::AddrInUse),
        "{r:?}"
    );
    assert!(!ran.load(Ordering::Relaxed), "setup must not run");
}

#[test]
fn an_error_of_the_setup_is_returned_and_nothing_is_served() {
    if role().is_some() {
        return;
    }
    let r = Manager::builder()
        .address("tcp:127.0.0.1:0".parse().unwrap())
        .serve_with(|client| client.lookup::<ValueProxy<u8>>("missing").map(drop));
    assert!(matches!(r, Err(Error::NoSuchName(_))), "{r:?}");
}
