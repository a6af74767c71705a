//! Deep pipelines (issue 13): any number of deferred calls may be in flight
//! on one connection. The manager stops reading a connection whose replies
//! pile up past a bound; a client that only wrote its calls would then wait
//! for the manager forever while the manager waited for it. The client
//! reads replies whenever the manager takes no more calls, so the pipeline
//! drains. A manager process, real sockets, every transport.

mod common;

use std::process::Child;

use common::{bounded, read_marked, role, spawn_role};
use manager::{Address, AuthKey, Client, Manager, ValueProxy};

const KEY: &str = "00112233445566778899aabbccddeeff";

fn key() -> AuthKey {
    AuthKey::from_hex(KEY).unwrap()
}

/// Each reply carries this many bytes, so that replies pile up in the
/// manager long before the calls stop fitting in the socket.
const REPLY_BYTES: usize = 256;

/// Entry point of the child processes this file starts; a no-op otherwise.
#[test]
fn child_role() {
    let Some(role) = role() else { return };
    let address: Address = match role.as_str() {
        "serve-local" => Address::local(&format!("deep-pipeline-{}", std::process::id())).unwrap(),
        "serve-tcp" => "tcp:127.0.0.1:0".parse().unwrap(),
        "serve-tcp-plain" => "tcp-plain:127.0.0.1:0".parse().unwrap(),
        other => panic!("unknown role {other}"),
    };
    Manager::builder()
        .address(address)
        .auth_key(key())
        .serve_with(|client| {
            client.publish("v", &client.value("x".repeat(REPLY_BYTES))?)?;
            println!("address={}", client.address());
            Ok(())
        })
        .unwrap();
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `calls` deferred calls on one connection before taking any reply
/// (a set of a [`REPLY_BYTES`] string, then a get that returns it, and so
/// on), then takes every reply, in order.
fn pipeline(role: &str, calls: usize) {
    let mut child = spawn_role("child_role", role, &[]);
    let address = read_marked(&mut child, "address=").expect("the manager reports its address");
    let _child = Killed(child);
    let address: Address = address.parse().unwrap();
    let client = Client::connect(&address, &key()).unwrap();
    let v: ValueProxy<String> = client.lookup("v").unwrap();
    let d = v.deferred();
    let text = |i: usize| format!("{i:0>REPLY_BYTES$}");
    let mut sets = Vec::with_capacity(calls / 2);
    let mut gets = Vec::with_capacity(calls / 2);
    for i in 0..calls / 2 {
        sets.push(d.set(text(i)).unwrap());
        gets.push(d.get().unwrap());
    }
    for (i, (set, get)) in sets.into_iter().zip(gets).enumerate() {
        set.wait().unwrap_or_else(|e| panic!("set {i}: {e}"));
        let got = get.wait().unwrap_or_else(|e| panic!("get {i}: {e}"));
        assert_eq!(got, text(i), "get {i} sees set {i}: calls run in order");
    }
    // The connection is still in order: a plain call after the pipeline.
    assert_eq!(v.get().unwrap().len(), REPLY_BYTES);
}

/// A million calls: about 140 MB of calls and 70 MB of replies, far more
/// than the manager holds for one connection before it stops reading and
/// than the sockets hold. Hung for good before the client read while it
/// wrote.
#[test]
fn a_million_deferred_calls_in_flight_on_a_local_socket() {
    bounded(|| pipeline("serve-local", 1_000_000));
}

/// TCP's buffers grow to several megabytes: 300,000 calls (42 MB of them)
/// are still far more than they hold.
const TCP_CALLS: usize = 300_000;

#[test]
fn deep_pipelines_over_plain_tcp() {
    bounded(|| pipeline("serve-tcp-plain", TCP_CALLS));
}

#[test]
fn deep_pipelines_over_encrypted_tcp() {
    bounded(|| pipeline("serve-tcp", TCP_CALLS));
}

/// Replies dropped unread while the pipeline is in flight are let go, and
/// the ones kept still arrive.
#[test]
fn dropped_replies_in_a_deep_pipeline_are_let_go() {
    bounded(|| {
        let mut child = spawn_role("child_role", "serve-local", &[]);
        let address = read_marked(&mut child, "address=").expect("address");
        let _child = Killed(child);
        let client = Client::connect(&address.parse().unwrap(), &key()).unwrap();
        let v: ValueProxy<String> = client.lookup("v").unwrap();
        let d = v.deferred();
        let mut kept = Vec::new();
        for i in 0..100_000 {
            let p = d.get().unwrap();
            if i % 10 == 0 {
                kept.push(p);
            }
        }
        for p in kept {
            assert_eq!(p.wait().unwrap().len(), REPLY_BYTES);
        }
        assert_eq!(v.get().unwrap().len(), REPLY_BYTES);
    });
}

/// On an encrypted connection a pipeline's replies are sealed together as
/// they go, and a reply that takes an item (a queue's `get`) is sealed at
/// once, after the ones before it: every reply arrives and opens, each
/// with its own call's result, and every item is taken once.
#[test]
fn replies_that_take_items_keep_their_place_among_sealed_replies() {
    bounded(|| {
        let mgr = Manager::builder()
            .address("tcp:127.0.0.1:0".parse().unwrap())
            .auth_key(key())
            .spawn_thread()
            .unwrap();
        let client = Client::connect(mgr.address(), &key()).unwrap();
        let n = client.value(0u64).unwrap();
        let q = client.queue::<u64>(0).unwrap();
        const ROUNDS: u64 = 2_000;
        for i in 0..ROUNDS {
            q.put(i).unwrap();
        }
        let (dn, dq) = (n.deferred(), q.deferred());
        let mut adds = Vec::new();
        let mut gets = Vec::new();
        for _ in 0..ROUNDS {
            adds.push(dn.fetch_add(1).unwrap());
            gets.push(dq.get().unwrap());
            adds.push(dn.fetch_add(1).unwrap());
        }
        for (i, g) in gets.into_iter().enumerate() {
            assert_eq!(g.wait().unwrap(), i as u64, "get {i} takes item {i}");
        }
        for (i, a) in adds.into_iter().enumerate() {
            assert_eq!(
                a.wait().unwrap(),
                i as u64,
                "fetch_add {i} sees the {i} before it"
            );
        }
        assert_eq!(q.len().unwrap(), 0, "every item taken once");
        assert_eq!(n.get().unwrap(), 2 * ROUNDS);
    });
}
