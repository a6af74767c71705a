//! The manager survives anything a peer sends. These tests speak the wire
//! protocol by hand over raw sockets, so they check the manager, not our
//! client.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::{eventually, role, sigkill, spawn_role};
use manager::{AuthKey, Client, Error, Manager, Proxy};

const MAGIC: [u8; 8] = *b"manager\0";
const VERSION: u32 = 6;
const NOISE: &str = "Noise_NNpsk0_25519_AESGCM_BLAKE2s";

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn read_frame(s: &mut UnixStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(body)
}

/// The Noise pre-shared key the manager derives from `key` (HKDF-SHA256).
fn psk(key: &[u8]) -> [u8; 32] {
    let mut psk = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(b"manager/noise-psk/v1"), key)
        .expand(b"Noise_NNpsk0 pre-shared key", &mut psk)
        .unwrap();
    psk
}

/// Sends the hello and the first handshake message for `key`, asking for
/// no encryption (a local socket), and returns the manager's answer frame
/// with the handshake state.
fn open_handshake(s: &mut UnixStream, key: &[u8]) -> (Vec<u8>, snow::HandshakeState) {
    let hello = postcard::to_allocvec(&(MAGIC, VERSION, [0u8; 32])).unwrap();
    let psk = psk(key);
    let mut noise = snow::Builder::new(NOISE.parse().unwrap())
        .prologue(&hello)
        .unwrap()
        .psk(0, &psk)
        .unwrap()
        .build_initiator()
        .unwrap();
    // Join { session: None, encrypt: false }
    let join = postcard::to_allocvec(&(None::<u64>, false)).unwrap();
    let mut first = vec![0u8; 128];
    let n = noise.write_message(&join, &mut first).unwrap();
    let first = postcard::to_allocvec(&serde_bytes::Bytes::new(&first[..n])).unwrap();
    s.write_all(&[frame(&hello), frame(&first)].concat())
        .unwrap();
    (read_frame(s).expect("an answer"), noise)
}

/// A raw connection that has completed the handshake with `key`.
fn authenticated(mgr: &Manager, key: &[u8]) -> UnixStream {
    let mut s = UnixStream::connect(mgr.address().local_path().unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    handshake(&mut s, key);
    s
}

fn handshake(s: &mut UnixStream, key: &[u8]) {
    let (answer, mut noise) = open_handshake(s, key);
    assert_eq!(answer[0], 0, "Answer::Noise");
    let second: serde_bytes::ByteBuf = postcard::from_bytes(&answer[1..]).unwrap();
    let mut welcome = vec![0u8; 256];
    let n = noise
        .read_message(&second, &mut welcome)
        .expect("the manager proves the key back");
    assert_eq!(welcome[0], 0, "Welcome::Accept");
    assert_eq!(welcome[n - 1], 0, "not encrypted: a local socket");
}

/// A call's header, `Request::Call { seq, object, method }`: the call
/// number and the object id as eight little-endian bytes.
fn call_header(seq: u64, object: u64, method: u32) -> Vec<u8> {
    postcard::to_allocvec(&(0u8, seq.to_le_bytes(), object.to_le_bytes(), method)).unwrap()
}

/// A call frame: Request::Call { seq, object, method } then `args`.
fn call(seq: u8, object: u64, method: u32, args: &[u8]) -> Vec<u8> {
    let mut body = call_header(u64::from(seq), object, method);
    body.extend_from_slice(args);
    frame(&body)
}

/// The message of the error a raw reply carries, or `None` for a
/// successful reply (`Response::Ok` is variant 0; `Response::Err`, 2).
fn reply_error(s: &mut UnixStream) -> Option<String> {
    let body = read_frame(s).expect("a reply");
    match body[0] {
        0 => None,
        _ => Some(String::from_utf8_lossy(&body).into_owned()),
    }
}

/// A frame whose body is `before`, `blob` and `after`, with its prefix
/// saying that `blob` travels out of line at offset `at` of the body.
fn blob_frame(before: &[u8], blob: &[u8], after: &[u8], at: u32) -> Vec<u8> {
    let len = (before.len() + blob.len() + after.len()) as u32 | 1 << 31;
    let mut f = len.to_le_bytes().to_vec();
    f.extend_from_slice(&at.to_le_bytes());
    f.extend_from_slice(&(blob.len() as u32).to_le_bytes());
    f.extend_from_slice(before);
    f.extend_from_slice(blob);
    f.extend_from_slice(after);
    f
}

/// Sends `bad` on a connection of its own, reads until the manager hangs
/// up, and checks that a proper client is still served at once.
fn closes_only_its_connection(mgr: &Manager, key: &[u8], bad: &[u8]) {
    let mut s = authenticated(mgr, key);
    // The manager may hang up before all of it is written.
    let _ = s.write_all(bad);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    served_promptly(mgr);
}

fn served_promptly(mgr: &Manager) {
    let started = Instant::now();
    let c = Client::connect(mgr.address(), mgr.auth_key()).unwrap();
    let v = c.value(41i64).unwrap();
    assert_eq!(v.fetch_add(1).unwrap(), 41);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a proper client waited {:?}",
        started.elapsed()
    );
}

#[test]
fn bad_frames_after_the_handshake_get_errors_and_the_manager_goes_on() {
    let key = b"hostile-test-key";
    let mgr = Manager::builder()
        .auth_key(AuthKey::from_bytes(key))
        .spawn_thread()
        .unwrap();
    let value = mgr.value(5i64).unwrap();
    // This manager's own count: other tests of this binary run beside it.
    let connections_before = mgr.stats().unwrap().connections;

    // An unknown object id, a method index out of range, arguments that do
    // not decode: each answered with an error, on a connection that goes on.
    let mut s = authenticated(&mgr, key);
    s.write_all(&call(1, 0xdead_beef, 0, &[])).unwrap();
    assert!(reply_error(&mut s).unwrap().contains("does not exist"));
    s.write_all(&call(2, 0, 999, &[])).unwrap();
    assert!(reply_error(&mut s).unwrap().contains("no control method"));
    s.write_all(&call(3, 0, 3, &[0xff, 0xff, 0xff])).unwrap();
    assert!(reply_error(&mut s).unwrap().contains("malformed"));
    s.write_all(&call(4, 0, 8, &[])).unwrap(); // ping
    assert_eq!(reply_error(&mut s), None, "the connection still works");

    // Garbage, a reply sent to the server, a truncated frame, an oversized
    // length: the connection is closed; nothing else is.
    let cases: Vec<Vec<u8>> = vec![
        frame(&[0xff; 64]),
        frame(&[0x00]),
        frame(&postcard::to_allocvec(&(0u8, 1u64.to_le_bytes())).unwrap()), // Response::Ok { seq: 1 }
        {
            let mut f = (100u32).to_le_bytes().to_vec();
            f.extend_from_slice(&[1, 2, 3]);
            f
        },
        u32::MAX.to_le_bytes().to_vec(),
    ];
    for bad in cases {
        closes_only_its_connection(&mgr, key, &bad);
    }
    assert_eq!(value.get().unwrap(), 5);
    assert!(
        eventually(Duration::from_secs(5), || mgr.stats().unwrap().connections
            <= connections_before + 1),
        "the bad connections were not closed"
    );
}

#[test]
fn byte_strings_out_of_line_that_lie_are_refused_and_the_manager_goes_on() {
    let key = b"hostile-blob-key";
    let mgr = Manager::builder()
        .auth_key(AuthKey::from_bytes(key))
        .spawn_thread()
        .unwrap();
    let blob = vec![1u8; 100_000];
    // A ping (control method 8) takes no argument: a byte string beside it
    // is an error for that call, and the connection goes on.
    let header = call_header(1, 0, 8);
    let len_prefix = postcard::to_allocvec(&blob.len()).unwrap();
    let mut before = header.clone();
    before.extend_from_slice(&len_prefix);
    let mut s = authenticated(&mgr, key);
    s.write_all(&blob_frame(&before, &blob, &[], before.len() as u32))
        .unwrap();
    assert!(reply_error(&mut s)
        .unwrap()
        .contains("not where an argument takes one"));
    s.write_all(&call(2, 0, 8, &[])).unwrap();
    assert_eq!(reply_error(&mut s), None, "the connection still works");

    // Inside the header, past the frame, empty, or announced and never
    // sent: the connection is closed; nothing else is.
    let cases = vec![
        blob_frame(&before, &blob, &[], 1),
        blob_frame(&before, &blob, &[], u32::MAX - 4),
        blob_frame(&before, &[], &[], before.len() as u32),
        blob_frame(&before, &blob, &[], before.len() as u32)[..5000].to_vec(),
    ];
    for bad in cases {
        closes_only_its_connection(&mgr, key, &bad);
    }
}

#[test]
fn wrong_keys_and_silent_peers_at_once_do_not_starve_a_real_client() {
    let mgr = Manager::builder()
        .handshake_timeout(Duration::from_secs(3))
        .spawn_thread()
        .unwrap();
    let path = mgr.address().local_path().unwrap().to_owned();
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(UnixStream::connect(&path).unwrap());
    }
    let wrong = std::thread::spawn({
        let address = mgr.address().clone();
        move || {
            for _ in 0..200 {
                let r = Client::connect(&address, &AuthKey::from_bytes(b"nope"));
                assert!(matches!(r, Err(Error::AuthenticationFailed { .. })));
            }
        }
    });
    served_promptly(&mgr);
    wrong.join().unwrap();
    served_promptly(&mgr);
    drop(silent);
}

#[test]
fn a_silent_peer_is_dropped_after_the_handshake_deadline() {
    let mgr = Manager::builder()
        .handshake_timeout(Duration::from_millis(300))
        .spawn_thread()
        .unwrap();
    let mut s = UnixStream::connect(mgr.address().local_path().unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    // The manager closes it: read returns 0 well before our own 10 s timeout.
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Entry point of the child processes this file starts; a no-op otherwise.
#[test]
fn child_role() {
    let Some(role) = role() else { return };
    assert_eq!(role, "big-upload");
    let key = std::env::var("KEY").unwrap();
    let path = std::env::var("SOCKET").unwrap();
    let mut s = UnixStream::connect(path).unwrap();
    // Authenticate by hand, then start a 64 MiB frame and stall half-way.
    handshake(&mut s, key.as_bytes());
    let len: u32 = 64 * 1024 * 1024 - 64;
    s.write_all(&len.to_le_bytes()).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..32 {
        s.write_all(&chunk).unwrap();
    }
    println!("uploading");
    loop {
        std::thread::park();
    }
}

#[test]
fn a_client_killed_during_a_large_upload_frees_the_partial_buffer() {
    let key = "upload-key";
    let mgr = Manager::builder()
        .auth_key(AuthKey::from_bytes(key))
        .start()
        .unwrap();
    let pid = mgr.process_id().unwrap();
    let rss = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    let before = rss();
    let mut child = spawn_role(
        "child_role",
        "big-upload",
        &[
            ("KEY", key.to_owned()),
            (
                "SOCKET",
                mgr.address().local_path().unwrap().display().to_string(),
            ),
        ],
    );
    assert_eq!(
        common::read_marked(&mut child, "uploading").as_deref(),
        Some("")
    );
    sigkill(child.id());
    let _ = child.wait();
    assert!(
        eventually(Duration::from_secs(10), || rss() < before + 16 * 1024),
        "the manager kept the partial upload: {} kB, was {before} kB",
        rss()
    );
    let v = mgr.value(1u8).unwrap();
    assert_eq!(v.get().unwrap(), 1);
}

#[test]
fn connection_and_object_limits_give_clear_errors_and_recover() {
    let mgr = Manager::builder()
        .max_connections(3)
        .max_objects_per_session(3)
        .spawn_thread()
        .unwrap();
    mgr.ping().unwrap(); // the manager's own client: one connection, calls included
    let other = Client::connect(mgr.address(), mgr.auth_key()).unwrap();
    other.ping().unwrap();
    let _third = Client::connect(mgr.address(), mgr.auth_key()).unwrap();
    match Client::connect(mgr.address(), mgr.auth_key()) {
        Err(Error::LimitReached(msg)) => assert!(msg.contains("at most 3"), "{msg}"),
        other => panic!("expected LimitReached, got {other:?}"),
    }
    drop(other);
    assert!(eventually(Duration::from_secs(5), || Client::connect(
        mgr.address(),
        mgr.auth_key()
    )
    .is_ok()));

    let held: Vec<_> = (0..3).map(|i| mgr.value(i).unwrap()).collect();
    match mgr.value(99) {
        Err(Error::LimitReached(msg)) => assert!(msg.contains("at most 3 objects"), "{msg}"),
        other => panic!("expected LimitReached, got {other:?}"),
    }
    drop(held);
    assert_eq!(mgr.value(7).unwrap().get().unwrap(), 7);
}

#[test]
fn a_client_reconnects_to_a_restarted_manager_with_a_new_session() {
    let address: manager::Address = format!("local:reconnect-{}.sock", std::process::id())
        .parse()
        .unwrap();
    let key = AuthKey::from_bytes(b"reconnect");
    let first = Manager::builder()
        .address(address.clone())
        .auth_key(key.clone())
        .spawn_thread()
        .unwrap();
    let client = Client::connect(&address, &key).unwrap();
    let old = client.value(1u32).unwrap();
    first.shutdown().unwrap();
    // At once, not after a timeout.
    let started = Instant::now();
    assert!(matches!(old.get(), Err(Error::ConnectionLost(_))));
    assert!(started.elapsed() < Duration::from_secs(2));

    let second = Manager::builder()
        .address(address.clone())
        .auth_key(key)
        .spawn_thread()
        .unwrap();
    // The next call reconnects; objects of the old manager are gone.
    client.ping().unwrap();
    assert!(matches!(old.get(), Err(Error::NoSuchObject(_))));
    let fresh = client.value(2u32).unwrap();
    assert_eq!(fresh.get().unwrap(), 2);
    drop((fresh, old));
    second.shutdown().unwrap();
}

#[test]
fn connections_past_the_handshake_cap_are_closed_at_once() {
    let mgr = Manager::builder()
        .max_handshakes(4)
        .handshake_timeout(Duration::from_secs(20))
        .spawn_thread()
        .unwrap();
    let path = mgr.address().local_path().unwrap().to_owned();
    let mut silent: Vec<UnixStream> = (0..10)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    // Four hold a handshake slot for the (long) deadline; the rest are closed
    // before a byte is read, long before that deadline.
    let started = Instant::now();
    let mut closed = 0;
    for s in &mut silent {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        if matches!(s.read(&mut [0u8; 1]), Ok(0)) {
            closed += 1;
        }
    }
    assert!(closed >= 6, "only {closed} of 10 were closed");
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(silent);
    // Once the silent peers leave, a proper client is served.
    assert!(eventually(Duration::from_secs(5), || Client::connect(
        mgr.address(),
        mgr.auth_key()
    )
    .is_ok()));
}

/// The object id a token names (`mgr1.` and the hex of its postcard encoding:
/// address, object, fingerprint, hand-off).
fn object_id(token: &str) -> u64 {
    let hex = token.strip_prefix("mgr1.").expect("a token");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let (_address, object, _fp, _handoff): (String, u64, u64, u64) =
        postcard::from_bytes(&bytes).unwrap();
    object
}

#[test]
fn an_item_whose_reply_cannot_be_delivered_goes_back_where_it_was() {
    let key = AuthKey::random();
    let mgr = Manager::builder().auth_key(key.clone()).start().unwrap();
    let held = mgr.lock().unwrap();
    held.acquire().unwrap();
    let q = mgr.queue::<u32>(0).unwrap();
    q.put(7).unwrap();
    let list = mgr.list::<u32>().unwrap();
    list.extend([1, 2, 3]).unwrap();
    let lock_id = object_id(&held.to_token().unwrap());
    // (object, method, arguments): queue get, list pop, list remove(0).
    let takes = [
        (object_id(&q.to_token().unwrap()), 3, vec![]),
        (object_id(&list.to_token().unwrap()), 1, vec![]),
        (object_id(&list.to_token().unwrap()), 5, vec![0]),
    ];
    for (object, method, args) in takes {
        let mut s = authenticated(&mgr, key.as_bytes());
        // A call that blocks, then the take, then the caller leaves: the
        // take runs after the blocked call notices, and its reply has no
        // one to go to.
        let mut pipeline = call(1, lock_id, 0, &[]);
        pipeline.extend(call(2, object, method, &args));
        s.write_all(&pipeline).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    }
    assert_eq!(q.len().unwrap(), 1);
    assert_eq!(q.try_get().unwrap(), Some(7));
    assert_eq!(list.to_vec().unwrap(), [1, 2, 3]);
}
