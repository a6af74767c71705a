//! TCP connections are encrypted and tamper-proof: a relay between a client
//! and a TCP manager records both directions and can flip, duplicate or
//! replay what passes, as a machine on the path could.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use common::eventually;
use manager::{shared, Address, AuthKey, Client, Error, Manager};

/// Distinctive text that must never be seen on the wire.
const SECRET: &str = "correct-horse-battery-staple-7f3a91";

#[shared]
pub struct Vault {
    text: String,
    count: u64,
}

#[shared]
impl Vault {
    pub fn new(text: String) -> Self {
        Vault { text, count: 0 }
    }
    pub fn store(&mut self, text: String) {
        self.text = text;
    }
    pub fn load(&self) -> String {
        self.text.clone()
    }
    pub fn incr(&mut self) -> u64 {
        self.count += 1;
        self.count
    }
    pub fn echo(&self, bytes: Vec<u8>) -> Vec<u8> {
        bytes
    }
}

/// What the relay does to the next record a client sends.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Tamper {
    Pass,
    Flip,
    Duplicate,
}

#[derive(Default)]
struct Shared {
    /// Client → manager and manager → client, of every connection.
    up: Vec<u8>,
    down: Vec<u8>,
    /// Client → manager of each connection, in order.
    connections: Vec<Vec<u8>>,
    next: Option<Tamper>,
}

/// A man in the middle: accepts clients and relays each to the manager.
struct Relay {
    address: Address,
    state: Arc<Mutex<Shared>>,
    /// The relay's own socket file, for a local socket.
    socket_file: Option<std::path::PathBuf>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(f) = &self.socket_file {
            let _ = std::fs::remove_file(f);
        }
    }
}

impl Relay {
    /// Relays to `target`; `records` says whether what a client sends after
    /// its two handshake frames is encrypted records (and can be tampered
    /// with one at a time).
    fn start(target: &Address, records: bool) -> Relay {
        let state = Arc::new(Mutex::new(Shared::default()));
        let shared = Arc::clone(&state);
        if let Some(path) = target.local_path() {
            let path = path.to_owned();
            let mine = path.with_extension(format!("relay-{}", std::process::id()));
            let _ = std::fs::remove_file(&mine);
            let listener = UnixListener::bind(&mine).unwrap();
            let address = format!("local:{}", mine.display()).parse().unwrap();
            relay_all(
                std::iter::from_fn(move || Some(listener.accept().map(|(s, _)| s))),
                move || UnixStream::connect(&path),
                shared,
                records,
            );
            return Relay {
                address,
                state,
                socket_file: Some(mine),
            };
        }
        let target = target.to_string();
        let (scheme, hostport) = target.split_once(':').unwrap();
        let hostport = hostport.to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let address = format!("{scheme}:127.0.0.1:{port}").parse().unwrap();
        relay_all(
            std::iter::from_fn(move || Some(listener.accept().map(|(s, _)| s))),
            move || TcpStream::connect(&hostport),
            shared,
            records,
        );
        Relay {
            address,
            state,
            socket_file: None,
        }
    }

    fn arm(&self, tamper: Tamper) {
        self.state.lock().unwrap().next = Some(tamper);
    }

    fn recorded(&self) -> (Vec<u8>, Vec<u8>) {
        let s = self.state.lock().unwrap();
        (s.up.clone(), s.down.clone())
    }
}

/// A connected stream the relay can copy: TCP, or a local socket.
trait Duplex: Read + Write + Send + Sized + 'static {
    fn clone_stream(&self) -> Self;
    fn close(&self);
}

impl Duplex for TcpStream {
    fn clone_stream(&self) -> Self {
        self.try_clone().unwrap()
    }
    fn close(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

impl Duplex for UnixStream {
    fn clone_stream(&self) -> Self {
        self.try_clone().unwrap()
    }
    fn close(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

/// Relays each accepted client to a fresh connection to the manager.
fn relay_all<S: Duplex>(
    clients: impl Iterator<Item = std::io::Result<S>> + Send + 'static,
    connect: impl Fn() -> std::io::Result<S> + Send + 'static,
    shared: Arc<Mutex<Shared>>,
    records: bool,
) {
    thread::spawn(move || {
        for client in clients {
            let (Ok(client), Ok(server)) = (client, connect()) else {
                return;
            };
            let index = {
                let mut s = shared.lock().unwrap();
                s.connections.push(Vec::new());
                s.connections.len() - 1
            };
            let (c2, s2) = (client.clone_stream(), server.clone_stream());
            let down = Arc::clone(&shared);
            thread::spawn(move || copy_down(s2, c2, &down));
            let up = Arc::clone(&shared);
            thread::spawn(move || copy_up(client, server, &up, index, records));
        }
    });
}

fn copy_down<S: Duplex>(mut from: S, mut to: S, shared: &Mutex<Shared>) {
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        shared.lock().unwrap().down.extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    to.close();
}

fn copy_up<S: Duplex>(mut from: S, mut to: S, shared: &Mutex<Shared>, index: usize, records: bool) {
    let forward = |bytes: &[u8], to: &mut S| {
        let mut s = shared.lock().unwrap();
        s.up.extend_from_slice(bytes);
        s.connections[index].extend_from_slice(bytes);
        drop(s);
        to.write_all(bytes)
    };
    let read_exact = |from: &mut S, n: usize| -> Option<Vec<u8>> {
        let mut v = vec![0u8; n];
        from.read_exact(&mut v).ok().map(|()| v)
    };
    // The hello and the first handshake message: u32 little-endian frames.
    for _ in 0..2 {
        let Some(len) = read_exact(&mut from, 4) else {
            return;
        };
        let n = u32::from_le_bytes(len.clone().try_into().unwrap()) as usize;
        let Some(body) = read_exact(&mut from, n.min(1 << 20)) else {
            return;
        };
        if forward(&[len, body].concat(), &mut to).is_err() {
            return;
        }
    }
    loop {
        let chunk = if records {
            // A record: a u16 big-endian length, then that many bytes.
            let Some(len) = read_exact(&mut from, 2) else {
                break;
            };
            let Some(body) =
                read_exact(&mut from, usize::from(u16::from_be_bytes([len[0], len[1]])))
            else {
                break;
            };
            [len, body].concat()
        } else {
            let mut buf = vec![0u8; 1 << 16];
            match from.read(&mut buf) {
                Ok(n @ 1..) => buf[..n].to_vec(),
                _ => break,
            }
        };
        let tamper = shared.lock().unwrap().next.take().unwrap_or(Tamper::Pass);
        let sent = match tamper {
            Tamper::Pass => forward(&chunk, &mut to),
            Tamper::Flip => {
                let mut bad = chunk.clone();
                let at = bad.len() / 2;
                bad[at] ^= 0x01;
                forward(&bad, &mut to)
            }
            Tamper::Duplicate => forward(&chunk, &mut to).and_then(|()| forward(&chunk, &mut to)),
        };
        if sent.is_err() {
            break;
        }
    }
    to.close();
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A log sink, installed once for this test binary.
fn log() -> &'static Mutex<Vec<u8>> {
    static LOG: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let sink: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        struct W(&'static Mutex<Vec<u8>>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        tracing_subscriber::fmt()
            .with_writer(move || W(sink))
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .init();
        sink
    })
}

fn manager(address: &str, key: &AuthKey) -> Manager {
    log();
    Manager::builder()
        .address(address.parse().unwrap())
        .auth_key(key.clone())
        .register::<Vault>()
        .spawn_thread()
        .unwrap()
}

/// The vault `name` of `mgr`, reached through `client`.
fn vault(mgr: &Manager, client: &Client, name: &str, text: &str) -> VaultProxy {
    let v = VaultProxy::new(mgr, text.to_owned()).unwrap();
    mgr.publish(name, &v).unwrap();
    client.lookup(name).unwrap()
}

/// A manager at `address` with a fresh key, a relay in front of it, and a
/// client connected through the relay.
fn relayed(address: &str, records: bool) -> (AuthKey, Manager, Relay, Client) {
    let key = AuthKey::random();
    let mgr = manager(address, &key);
    let relay = Relay::start(mgr.address(), records);
    let via = Client::connect(&relay.address, &key).unwrap();
    (key, mgr, relay, via)
}

#[test]
fn nothing_readable_crosses_the_wire_and_big_values_arrive_intact() {
    let (_key, mgr, relay, via) = relayed("tcp:127.0.0.1:0", true);
    let v = vault(&mgr, &via, "vault", "start");
    v.store(SECRET.to_owned()).unwrap();
    assert_eq!(v.load().unwrap(), SECRET);
    let pattern: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(v.echo(pattern.clone()).unwrap(), pattern);
    for i in 1..=1000 {
        assert_eq!(v.incr().unwrap(), i);
    }
    let big: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 253) as u8).collect();
    assert_eq!(v.echo(big.clone()).unwrap(), big, "8 MiB, byte for byte");

    let (up, down) = relay.recorded();
    assert!(
        up.len() > 8 << 20 && down.len() > 8 << 20,
        "all of it passed the relay"
    );
    for (name, dir) in [("up", &up), ("down", &down)] {
        assert!(
            !contains(dir, SECRET.as_bytes()),
            "{name}: the argument is readable"
        );
        assert!(
            !contains(dir, &pattern[1000..1032]),
            "{name}: the byte string is readable"
        );
        // Five bytes or more: a four-byte word turns up by chance in
        // 8 MiB of ciphertext about once in 500 runs.
        for word in ["Vault", "store", "vault"] {
            assert!(
                !contains(dir, word.as_bytes()),
                "{name}: {word:?} is readable"
            );
        }
    }
}

#[test]
fn the_relay_reads_a_plain_connection_so_the_test_above_can_fail() {
    let (_key, mgr, relay, via) = relayed("tcp-plain:127.0.0.1:0", false);
    let v = vault(&mgr, &via, "vault", "start");
    v.store(SECRET.to_owned()).unwrap();
    assert_eq!(v.load().unwrap(), SECRET);
    let (up, down) = relay.recorded();
    assert!(contains(&up, SECRET.as_bytes()) && contains(&down, SECRET.as_bytes()));
}

#[test]
fn a_flipped_byte_fails_the_call_changes_nothing_and_others_are_served() {
    let (key, mgr, relay, via) = relayed("tcp:127.0.0.1:0", true);
    let v = vault(&mgr, &via, "vault", "original");
    assert_eq!(v.load().unwrap(), "original");
    relay.arm(Tamper::Flip);
    let r = v.store("altered".to_owned());
    assert!(
        matches!(r, Err(Error::ConnectionLost(_) | Error::Protocol(_))),
        "a tampered call must fail: {r:?}"
    );
    let direct: VaultProxy = mgr.lookup("vault").unwrap();
    assert_eq!(direct.load().unwrap(), "original", "nothing was applied");
    // Everyone else is served, through the relay too.
    let other = Client::connect(&relay.address, &key).unwrap();
    let again: VaultProxy = other.lookup("vault").unwrap();
    assert_eq!(again.load().unwrap(), "original");
    assert!(
        eventually(Duration::from_secs(10), || {
            String::from_utf8_lossy(&log().lock().unwrap())
                .lines()
                .any(|l| {
                    l.contains("WARN")
                        && l.contains("failed authentication")
                        && l.contains("127.0.0.1:")
                })
        }),
        "a warning names the peer"
    );
}

#[test]
fn a_duplicated_record_does_not_run_the_method_twice() {
    let (_key, mgr, relay, via) = relayed("tcp:127.0.0.1:0", true);
    let v = vault(&mgr, &via, "counter", "");
    let open = mgr.stats().unwrap().connections;
    relay.arm(Tamper::Duplicate);
    let _ = v.incr();
    // The duplicate has been read once the manager closed that connection.
    assert!(eventually(Duration::from_secs(10), || mgr
        .stats()
        .unwrap()
        .connections
        < open));
    let direct: VaultProxy = mgr.lookup("counter").unwrap();
    assert_eq!(
        direct.incr().unwrap(),
        2,
        "incr ran once, then once more here"
    );
}

#[test]
fn a_recorded_connection_replayed_is_refused_and_applies_nothing() {
    let key = AuthKey::random();
    let mgr = manager("tcp:127.0.0.1:0", &key);
    let relay = Relay::start(mgr.address(), true);
    let direct = VaultProxy::new(&mgr, String::new()).unwrap();
    mgr.publish("counter", &direct).unwrap();
    {
        let via = Client::connect(&relay.address, &key).unwrap();
        let v: VaultProxy = via.lookup("counter").unwrap();
        assert_eq!(v.incr().unwrap(), 1);
        assert_eq!(v.incr().unwrap(), 2);
    }
    let recorded = relay.state.lock().unwrap().connections.clone();
    assert!(
        recorded.iter().any(|c| c.len() > 200),
        "the calls were recorded"
    );
    for conn in recorded {
        let (host, port) = {
            let a = mgr.address().to_string();
            let (_, hp) = a.split_once(':').unwrap();
            let (h, p) = hp.rsplit_once(':').unwrap();
            (h.to_owned(), p.parse::<u16>().unwrap())
        };
        let mut s = TcpStream::connect((host.as_str(), port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(&conn);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest); // the manager hangs up
    }
    assert_eq!(direct.incr().unwrap(), 3, "no replayed incr ran");
}

#[test]
fn wrong_keys_and_mismatched_encryption_are_clear_errors() {
    let key = AuthKey::random();
    let mgr = manager("tcp:127.0.0.1:0", &key);
    let r = Client::connect(mgr.address(), &AuthKey::from_bytes(b"guess"));
    assert!(matches!(r, Err(Error::AuthenticationFailed(_))), "{r:?}");

    let plain: Address = mgr
        .address()
        .to_string()
        .replace("tcp:", "tcp-plain:")
        .parse()
        .unwrap();
    let e = Client::connect(&plain, &key).unwrap_err();
    assert!(e.to_string().contains("encrypts its connections"), "{e}");

    let unencrypted = manager("tcp-plain:127.0.0.1:0", &key);
    let encrypted: Address = unencrypted
        .address()
        .to_string()
        .replace("tcp-plain:", "tcp:")
        .parse()
        .unwrap();
    let e = Client::connect(&encrypted, &key).unwrap_err();
    assert!(e.to_string().contains("does not encrypt"), "{e}");
    // Each still serves a client that asks for what it offers.
    let served = Client::connect(unencrypted.address(), &key).unwrap();
    assert!(served.stats().unwrap().sessions >= 1);
}

#[test]
fn a_client_of_an_older_version_reads_a_version_error() {
    let key = AuthKey::random();
    let mgr = manager("tcp:127.0.0.1:0", &key);
    let a = mgr.address().to_string();
    let mut s = TcpStream::connect(a.strip_prefix("tcp:").unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Version 3's hello: magic, version, a nonce.
    let hello = postcard::to_allocvec(&(*b"manager\0", 3u32, [5u8; 32])).unwrap();
    let mut f = (hello.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&hello);
    s.write_all(&f).unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let text = String::from_utf8_lossy(&reply);
    assert_eq!(reply[4], 1, "Refuse, at the index version 3 reads");
    assert!(text.contains("protocol version 6"), "{text}");
}

/// A manager on a local socket with `encrypt_local`, through a relay.
fn local_relayed(encrypt: bool) -> (Manager, Relay, Client) {
    log();
    let key = AuthKey::random();
    let mgr = Manager::builder()
        .auth_key(key.clone())
        .encrypt_local(encrypt)
        .register::<Vault>()
        .spawn_thread()
        .unwrap();
    // A plain byte copy: it reads what passes whichever way it is sent.
    let relay = Relay::start(mgr.address(), false);
    let via = Client::connect(&relay.address, &key).unwrap();
    (mgr, relay, via)
}

#[test]
fn local_sockets_are_encrypted_when_the_builder_asks() {
    let (mgr, relay, via) = local_relayed(true);
    let v = vault(&mgr, &via, "vault", "start");
    v.store(SECRET.to_owned()).unwrap();
    assert_eq!(v.load().unwrap(), SECRET);
    let big = vec![9u8; 3 << 20];
    assert_eq!(v.echo(big.clone()).unwrap(), big);
    let (up, down) = relay.recorded();
    assert!(up.len() > 3 << 20, "the calls passed the relay");
    assert!(!contains(&up, SECRET.as_bytes()) && !contains(&down, SECRET.as_bytes()));

    // And by default they are not: the same relay reads them.
    let (mgr, relay, via) = local_relayed(false);
    let v = vault(&mgr, &via, "vault", "start");
    v.store(SECRET.to_owned()).unwrap();
    assert!(contains(&relay.recorded().0, SECRET.as_bytes()));
}

#[test]
fn an_unencrypted_manager_off_loopback_warns_at_start() {
    let key = AuthKey::random();
    let _mgr = manager("tcp-plain:0.0.0.0:0", &key);
    let logged = String::from_utf8_lossy(&log().lock().unwrap()).into_owned();
    assert!(
        logged
            .lines()
            .any(|l| l.contains("WARN") && l.contains("does not encrypt") && l.contains("0.0.0.0")),
        "{logged}"
    );
}

#[test]
fn garbage_and_huge_prefixes_over_tcp_close_only_their_connection() {
    let key = AuthKey::random();
    let mgr = manager("tcp:127.0.0.1:0", &key);
    let target = mgr.address().to_string();
    let hostport = target.strip_prefix("tcp:").unwrap();
    let cases: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        u32::MAX.to_le_bytes().to_vec(),
        [&(1u32 << 20).to_le_bytes()[..], &[0u8; 4096]].concat(),
        vec![0xff; 10_000],
    ];
    for bad in cases {
        let mut s = TcpStream::connect(hostport).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(&bad);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest); // the manager hangs up
        assert!(rest.len() < 1024, "nothing but a short refusal");
        let c = Client::connect(mgr.address(), &key).unwrap();
        assert_eq!(c.value(3u8).unwrap().get().unwrap(), 3, "others are served");
    }
}
