//! A failed authentication is logged, as a warning, with who tried: the
//! address of a TCP peer, the process and user id of a local one.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::eventually;
use manager::{AuthKey, Client, Error, Manager};

/// A log sink the test can read.
#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn lines_with(&self, needle: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

#[test]
fn failed_authentications_are_logged_with_the_peer() {
    let sink = Sink(Arc::new(Mutex::new(Vec::new())));
    let writer = sink.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .init();
    let wrong = AuthKey::from_bytes(b"not the key");

    let tcp = Manager::builder()
        .address("tcp:127.0.0.1:0".parse().unwrap())
        .spawn_thread()
        .unwrap();
    let r = Client::connect(tcp.address(), &wrong);
    assert!(matches!(r, Err(Error::AuthenticationFailed(_))), "{r:?}");
    assert!(
        eventually(Duration::from_secs(10), || sink
            .lines_with("authentication failed")
            .iter()
            .any(|l| l.contains("WARN") && l.contains("127.0.0.1:"))),
        "no warning naming the TCP peer: {:?}",
        sink.lines_with("")
    );

    let local = Manager::builder().spawn_thread().unwrap();
    let r = Client::connect(local.address(), &wrong);
    assert!(matches!(r, Err(Error::AuthenticationFailed(_))), "{r:?}");
    let us = format!("pid {}", std::process::id());
    assert!(
        eventually(Duration::from_secs(10), || sink
            .lines_with("authentication failed")
            .iter()
            .any(|l| l.contains(&us))),
        "no warning naming the local peer's process: {:?}",
        sink.lines_with("")
    );
    // A client with the right key leaves no warning.
    let before = sink.lines_with("WARN").len();
    Client::connect(local.address(), local.auth_key())
        .unwrap()
        .stats()
        .unwrap();
    assert_eq!(sink.lines_with("WARN").len(), before);
}
