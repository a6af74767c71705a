//! Every performance target of the project as a ratio to the raw-socket
//! floor measured in the same run: `cargo bench --bench ratios`.
//!
//! One client's numbers are taken with this process (and the processes it
//! starts) pinned to CPU 0: on a 2-vCPU machine an unpinned round trip is
//! dominated by waking the idle CPU. Multi-client numbers are unpinned.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use manager::{shared, AuthKey, Manager, Proxy};

#[shared]
pub struct Counter {
    value: i64,
}

#[shared]
impl Counter {
    /// At zero.
    pub fn new() -> Self {
        Counter { value: 0 }
    }
    /// The value.
    pub fn get(&self) -> i64 {
        self.value
    }
    /// Adds `by`.
    pub fn incr(&mut self, by: i64) -> i64 {
        self.value += by;
        self.value
    }
    /// The length of `data`.
    pub fn size(&self, data: Vec<u8>) -> usize {
        data.len()
    }
}

const ROLE: &str = "RATIOS_ROLE";
const N: usize = 50_000;
/// Calls per client process in the multi-client rows: long enough that
/// start-up and scheduling noise wash out.
const N_MULTI: usize = 200_000;
const MSG: usize = 16;
const BIG: usize = 8 << 20;

fn role(role: &str, args: &[&str]) -> Child {
    Command::new(std::env::current_exe().expect("the bench has a path"))
        .env(ROLE, role)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("the bench can start itself")
}

fn pin(cpus: &[usize]) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity
    // only read and write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn listen() -> (UnixListener, String) {
    let path = format!(
        "/tmp/ratios-{}-{}.sock",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    let _ = std::fs::remove_file(&path);
    (UnixListener::bind(&path).expect("bind"), path)
}

/// Raw length-prefixed ping-pong with `clients` echo processes: µs per
/// round trip for one client, aggregate round trips per second for more.
fn floor(clients: usize, depth: usize, n: usize) -> f64 {
    let (l, path) = listen();
    let kids: Vec<_> = (0..clients).map(|_| role("echo", &[&path])).collect();
    let socks: Vec<UnixStream> = (0..clients)
        .map(|_| l.accept().expect("accept").0)
        .collect();
    let mut frame = (MSG as u32).to_le_bytes().to_vec();
    frame.extend([7u8; MSG]);
    let batch: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * depth)
        .collect();
    let t = Instant::now();
    std::thread::scope(|s| {
        for mut so in socks.iter() {
            let batch = &batch;
            s.spawn(move || {
                let mut back = vec![0u8; batch.len()];
                for _ in 0..n / depth {
                    so.write_all(batch).expect("write");
                    so.read_exact(&mut back).expect("read");
                }
            });
        }
    });
    let secs = t.elapsed().as_secs_f64();
    drop(socks);
    for mut k in kids {
        let _ = k.wait();
    }
    let _ = std::fs::remove_file(&path);
    (clients * (n / depth) * depth) as f64 / secs
}

/// The raw time to send `BIG` bytes and get 8 back, in ms.
fn floor_big() -> f64 {
    let (l, path) = listen();
    let mut kid = role("sink", &[&path]);
    let (mut so, _) = l.accept().expect("accept");
    let data = vec![7u8; BIG];
    let t = Instant::now();
    for _ in 0..20 {
        so.write_all(&(BIG as u32).to_le_bytes()).expect("write");
        so.write_all(&data).expect("write");
        so.read_exact(&mut [0u8; 8]).expect("read");
    }
    let ms = t.elapsed().as_secs_f64() * 1e3 / 20.0;
    drop(so);
    let _ = kid.wait();
    let _ = std::fs::remove_file(&path);
    ms
}

fn rate(n: usize, f: impl FnMut()) -> f64 {
    let mut f = f;
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Python's calls (or operations) per second for each workload, from
/// `benches/python/ratios.py` run in this same run; empty without
/// python3.
fn python() -> HashMap<String, f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python/ratios.py");
    let out = Command::new("python3")
        .arg(script)
        .stderr(Stdio::inherit())
        .output();
    match out {
        Ok(o) if o.status.success() => serde_json::from_slice(&o.stdout).unwrap_or_default(),
        _ => {
            eprintln!("python3 is not available: skipping the Python column");
            HashMap::new()
        }
    }
}

/// One table row; `ours_rate` and Python's are per second (higher is better).
#[allow(clippy::too_many_arguments)]
fn row(
    what: &str,
    ours: String,
    floor: String,
    ratio: String,
    ours_rate: Option<f64>,
    py: &HashMap<String, f64>,
    py_key: &str,
    target: &str,
) {
    let (py_col, speedup) = match (py.get(py_key), ours_rate) {
        (Some(p), Some(o)) => (format!("{:.1}k/s", p / 1e3), format!("{:.0}×", o / p)),
        (Some(p), None) => (format!("{p:.1} ms"), "—".into()),
        _ => ("—".into(), "—".into()),
    };
    println!("| {what} | {ours} | {floor} | {ratio} | {py_col} | {speedup} | {target} |");
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("echo") => return echo(),
        Ok("sink") => return sink(),
        Ok("client") => return client(),
        _ => {}
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; there are no tests here.
    }
    let py = python();
    println!(
        "| workload | ours | floor | ratio to floor | Python | speed-up | target |\n\
         | --- | --- | --- | --- | --- | --- | --- |"
    );
    let us = |x: f64| format!("{x:.2} µs");
    let per_s = |x: f64| format!("{:.0}k/s", x / 1e3);
    let ratio = |x: f64| format!("{x:.2}×");
    let none = || "—".to_owned();

    pin(&[0]);
    let floor_rt = 1e6 / floor(1, 1, N);
    let floor_64 = floor(1, 64, N);
    let mgr = Manager::builder()
        .register::<Counter>()
        .start()
        .expect("manager");
    let c = CounterProxy::new(&mgr).expect("counter");
    for _ in 0..2000 {
        c.get().expect("get");
    }
    let get = rate(N, || {
        std::hint::black_box(c.get().expect("get"));
    });
    let t = 1e6 / get;
    row(
        "small `&self` call, 1 client, pinned",
        us(t),
        us(floor_rt),
        ratio(t / floor_rt),
        Some(get),
        &py,
        "small call",
        "≤ 1.3×",
    );
    let incr = rate(N, || {
        std::hint::black_box(c.incr(1).expect("incr"));
    });
    let t = 1e6 / incr;
    row(
        "`&mut self` call, 1 client, pinned",
        us(t),
        us(floor_rt),
        ratio(t / floor_rt),
        Some(incr),
        &py,
        "mut call",
        "—",
    );
    let d = mgr.dict::<String, i64>().expect("dict");
    let key = String::from("key");
    let dict = 2.0
        * rate(N / 2, || {
            d.insert(key.clone(), 1).expect("insert");
            std::hint::black_box(d.get(&key).expect("get"));
        });
    row(
        "`DictProxy<String, i64>` insert+get (calls), pinned",
        per_s(dict),
        none(),
        none(),
        Some(dict),
        &py,
        "dict insert+get",
        "—",
    );
    let v = mgr.value(0i64).expect("value");
    let add = rate(N, || {
        std::hint::black_box(v.fetch_add(1).expect("fetch_add"));
    });
    row(
        "`ValueProxy<i64>::fetch_add`, pinned (Python: get, set)",
        per_s(add),
        none(),
        none(),
        Some(add),
        &py,
        "value fetch_add",
        "—",
    );
    let lock = mgr.lock().expect("lock");
    let locks = 2.0
        * rate(N / 2, || {
            lock.acquire().expect("acquire");
            lock.release().expect("release");
        });
    row(
        "lock acquire+release (calls), pinned",
        per_s(locks),
        none(),
        none(),
        Some(locks),
        &py,
        "lock acquire+release",
        "—",
    );
    let q = mgr.queue::<i64>(0).expect("queue");
    let queue = 2.0
        * rate(N / 2, || {
            q.put(1).expect("put");
            std::hint::black_box(q.get().expect("get"));
        });
    row(
        "queue put+get (calls), pinned",
        per_s(queue),
        none(),
        none(),
        Some(queue),
        &py,
        "queue put+get",
        "—",
    );
    let mut pending = Vec::with_capacity(64);
    let deferred = 64.0
        * rate(N / 64, || {
            for _ in 0..64 {
                pending.push(c.deferred().incr(1).expect("send"));
            }
            for p in pending.drain(..) {
                p.wait().expect("reply");
            }
        });
    row(
        "64-deep deferred `incr`, pinned (Python: plain calls)",
        format!("{:.2}M/s", deferred / 1e6),
        format!("{:.2}M/s", floor_64 / 1e6),
        ratio(deferred / floor_64),
        Some(deferred),
        &py,
        "mut call",
        "≥ 2M/s",
    );
    let created = rate(10_000, || drop(mgr.value(0i64).expect("create")));
    row(
        "proxy create + drop, pinned",
        per_s(created),
        none(),
        none(),
        Some(created),
        &py,
        "create+drop",
        "≥ 50k/s",
    );
    let data = vec![7u8; BIG];
    let big = 1e3 / rate(20, || assert_eq!(c.size(data.clone()).expect("size"), BIG));
    let floor_ms = floor_big();
    row(
        "8 MiB `Vec<u8>` argument, pinned",
        format!("{big:.2} ms"),
        format!("{floor_ms:.2} ms"),
        ratio(big / floor_ms),
        None,
        &py,
        "8 MiB argument ms",
        "≤ 1.5×",
    );
    drop((c, d, v, lock, q, mgr));

    pin(&[0, 1]);
    for clients in [2, 4] {
        let f = floor(clients, 1, N_MULTI);
        let mgr = Manager::builder()
            .register::<Counter>()
            .start()
            .expect("manager");
        let c = CounterProxy::new(&mgr).expect("counter");
        let (token, key) = (c.to_token().expect("token"), mgr.auth_key().to_hex());
        let t = Instant::now();
        let kids: Vec<_> = (0..clients)
            .map(|_| role("client", &[&token, &key]))
            .collect();
        for mut k in kids {
            let _ = k.wait();
        }
        let ours = (clients * N_MULTI) as f64 / t.elapsed().as_secs_f64();
        row(
            &format!("small call, {clients} client processes"),
            per_s(ours),
            per_s(f),
            ratio(ours / f),
            Some(ours),
            &py,
            &format!("{clients} clients"),
            "≥ 0.7×",
        );
    }
}

fn echo() {
    let path = std::env::args().nth(1).expect("a socket path");
    let mut s = UnixStream::connect(path).expect("connect");
    // Whatever arrives goes straight back in one write: the floor of a
    // pipeline is as cheap as the kernel makes it.
    let mut buf = [0u8; 64 * 1024];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 || s.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

fn sink() {
    let path = std::env::args().nth(1).expect("a socket path");
    let mut s = UnixStream::connect(path).expect("connect");
    let mut len = [0u8; 4];
    let mut buf = vec![0u8; BIG];
    while s.read_exact(&mut len).is_ok() {
        let n = (u32::from_le_bytes(len) as usize).min(BIG);
        if s.read_exact(&mut buf[..n]).is_err() || s.write_all(&[0u8; 8]).is_err() {
            break;
        }
    }
}

/// One client process of the multi-client rows: `N_MULTI` small calls. Its
/// start-up (exec, connect, handshake) is counted against it.
fn client() {
    let mut args = std::env::args().skip(1);
    let (token, key) = (args.next().expect("token"), args.next().expect("key"));
    let key = AuthKey::from_hex(&key).expect("key");
    let c = CounterProxy::from_token(&token, &key).expect("proxy");
    for _ in 0..N_MULTI {
        c.get().expect("get");
    }
}
