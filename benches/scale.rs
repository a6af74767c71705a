//! The scale probe of issue 13: what idle peers and blocked waiters cost
//! the manager, read from `/proc` (threads, resident memory, CPU time).
//!
//! ```text
//! cargo bench --bench scale                     # 10,000 idle clients, 1,000 + 1,000 waiters
//! cargo bench --bench scale -- --idle 2000 --waiters 500
//! cargo bench --bench scale -- --churn-only --objects 20000
//! ```
//!
//! The manager runs in a child process (this binary again, with
//! `MANAGER_SCALE_ROLE=serve`), over encrypted TCP, as a fleet would reach
//! it. Rows:
//! - **idle clients**: `--idle` clients connect and call once each, then
//!   stay idle; the manager's threads, its resident memory per client, and
//!   the CPU it uses in 5 s of idleness.
//! - **blocked waiters**: `--waiters` threads wait in `queue.get()` and as
//!   many in `lock.acquire()`, each with a client (a connection) of its
//!   own; the manager's threads and CPU over 5 s of waiting; then the
//!   puts and releases, and how long after the last one the last waiter had
//!   its reply.
//! - **disconnect churn** (`--objects`, default 100,000): clients that
//!   connect, make one object call (`lookup` the published queue, `len`)
//!   and are dropped, as fast as one thread can for 2 s, with no extra
//!   objects alive; then `--objects` objects are created and kept alive
//!   (half locks, which track their holders' connections, half values),
//!   and the churn is measured again, with the ratio of the two rates;
//!   then 1,000 clients connect and call once each, are dropped at once,
//!   and the wall time until the manager's connections and sessions
//!   (`Client::stats`) are back where they were.
//!   `--churn-only` skips the first two rows.
//!
//! Python's managers are a thread per connection (`SyncManager` serving
//! 10,000 idle clients runs 10,000 threads); no Python row is measured
//! here yet; the issue behind the churn row measured Python at 614
//! connect+call+drop per second, unaffected by 100,000 objects alive.

use std::time::{Duration, Instant};

use manager::{Address, AuthKey, Client, LockProxy, Manager, QueueProxy, ValueProxy};

const ROLE: &str = "MANAGER_SCALE_ROLE";
const KEY: &str = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";

fn key() -> AuthKey {
    AuthKey::from_hex(KEY).expect("a valid key")
}

/// Field `name` of `/proc/PID/status`, as a number (kB for memory).
fn status(pid: u32, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) process `pid` has used.
fn cpu(pid: u32) -> Duration {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name, which may hold spaces.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// Waits up to 20 s for process `pid`'s pool to shrink back to `rest`
/// threads (followers idle for 10 s leave); the threads it has then.
fn settled_threads(pid: u32, rest: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(pid, "Threads:") > rest && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    status(pid, "Threads:")
}

/// The share of one CPU process `pid` uses over `span`.
fn cpu_share(pid: u32, span: Duration) -> f64 {
    let before = cpu(pid);
    std::thread::sleep(span);
    (cpu(pid) - before).as_secs_f64() / span.as_secs_f64()
}

fn raise_fd_limit() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointers to an rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
    l.rlim_cur
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn serve() {
    let r = Manager::builder()
        .address("tcp:127.0.0.1:0".parse().expect("an address"))
        .auth_key(key())
        .serve_with(|client| {
            client.publish("q", &client.queue::<u32>(0)?)?;
            client.publish("l", &client.lock()?)?;
            println!("address={}", client.address());
            Ok(())
        });
    if let Err(e) = r {
        eprintln!("scale: the manager failed: {e}");
        std::process::exit(1);
    }
}

/// Starts the manager process; it and its address.
fn start_manager() -> (std::process::Child, Address) {
    use std::io::{BufRead, BufReader};
    let exe = std::env::current_exe().expect("the bench binary has a path");
    let mut child = std::process::Command::new(exe)
        .env(ROLE, "serve")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the manager process starts");
    let out = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(out).lines();
    let address = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(a) = line.strip_prefix("address=") {
                    break a.parse().expect("the manager's address");
                }
            }
            _ => panic!("the manager process ended before it listened"),
        }
    };
    // Keep reading (and dropping) its output, so it never blocks on a pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, address)
}

/// Idle clients: connect `idle`, a call each, then the manager's threads,
/// memory and CPU while they idle.
fn idle_clients(address: &Address, pid: u32, idle: usize, (threads0, rss0): (u64, u64)) {
    let t = Instant::now();
    let mut clients = Vec::with_capacity(idle);
    for i in 0..idle {
        match Client::connect(address, &key()).and_then(|c| c.ping().map(|()| c)) {
            Ok(c) => clients.push(c),
            Err(e) => {
                eprintln!("scale: client {i} failed: {e}");
                break;
            }
        }
    }
    let connected = clients.len();
    let took = t.elapsed();
    let busy = status(pid, "Threads:");
    let threads1 = settled_threads(pid, threads0);
    let rss1 = status(pid, "VmRSS:");
    let share = cpu_share(pid, Duration::from_secs(5));
    let per = (rss1.saturating_sub(rss0) * 1024) / connected.max(1) as u64;
    println!(
        "idle clients\t{connected} connected in {:.1} s\tmanager threads {busy} at the end of the burst, {threads1} once the pool settled\tRSS {} B/client\tCPU {:.2}% of one over 5 s\ttargets: threads <= 4, <= 20000 B/client",
        took.as_secs_f64(),
        per,
        share * 100.0
    );
}

/// Blocked waiters: `waiters` in `get` and as many in `acquire`, each on a
/// connection of its own; the manager's threads and CPU while they wait,
/// then how soon they all have their reply.
fn blocked_waiters(probe: &Client, address: &Address, pid: u32, waiters: usize, threads0: u64) {
    let q: QueueProxy<u32> = probe.lookup("q").expect("the queue");
    let l: LockProxy = probe.lookup("l").expect("the lock");
    l.acquire().expect("the lock");
    let (done, replies) = std::sync::mpsc::channel::<Instant>();
    let mut handles = Vec::new();
    for i in 0..2 * waiters {
        let (address, done) = (address.clone(), done.clone());
        handles.push(std::thread::spawn(move || {
            let Ok(c) = Client::connect(&address, &key()) else {
                return;
            };
            if i % 2 == 0 {
                let q: QueueProxy<u32> = c.lookup("q").expect("the queue");
                if q.get().is_ok() {
                    let _ = done.send(Instant::now());
                }
            } else {
                let l: LockProxy = c.lookup("l").expect("the lock");
                if l.acquire().is_ok() {
                    let _ = done.send(Instant::now());
                    let _ = l.release();
                }
            }
        }));
    }
    drop(done);
    let deadline = Instant::now() + Duration::from_secs(120);
    while probe.stats().map(|s| s.blocked_calls).unwrap_or(0) < 2 * waiters as u64
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let blocked = probe.stats().map(|s| s.blocked_calls).unwrap_or(0);
    let busy = status(pid, "Threads:");
    let threads2 = settled_threads(pid, threads0);
    let share = cpu_share(pid, Duration::from_secs(5));
    println!(
        "blocked waiters\t{blocked} blocked ({waiters} get + {waiters} acquire)\tmanager threads {busy} as they arrived, {threads2} once the pool settled\tCPU {:.2}% of one over 5 s while they wait\ttarget: <= 1%",
        share * 100.0
    );
    for i in 0..waiters as u32 {
        q.put(i).expect("put");
    }
    let last_put = Instant::now();
    l.release().expect("release"); // each acquirer releases for the next
    let mut last = last_put;
    let mut got = 0;
    while let Ok(at) = replies.recv_timeout(Duration::from_secs(30)) {
        got += 1;
        last = last.max(at);
        if got == 2 * waiters {
            break;
        }
    }
    println!(
        "wake-ups\t{got} of {} waiters had their reply, the last {:.0} ms after the last put (lock waiters woken in turn, each releasing for the next)\ttarget: within 1 s",
        2 * waiters,
        (last - last_put).as_secs_f64() * 1000.0
    );
    for h in handles {
        let _ = h.join();
    }
}

/// A client that has made one real object call: `lookup` of the published
/// queue, then its `len`.
fn connect_and_call(address: &Address) -> manager::Result<Client> {
    let c = Client::connect(address, &key())?;
    let q: QueueProxy<u32> = c.lookup("q")?;
    q.len()?;
    drop(q);
    Ok(c)
}

/// Connect, one call, drop, back to back on this thread for about `span`:
/// how many per second, and how many failed.
fn churn_rate(address: &Address, span: Duration) -> (f64, u64) {
    let (mut done, mut failed) = (0u64, 0u64);
    let t = Instant::now();
    while t.elapsed() < span {
        match connect_and_call(address) {
            Ok(c) => {
                drop(c);
                done += 1;
            }
            Err(e) => {
                if failed == 0 {
                    eprintln!("scale: a churn client failed: {e}");
                }
                failed += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    (done as f64 / t.elapsed().as_secs_f64(), failed)
}

/// The manager's open connections and sessions, as `probe` sees them.
fn open(probe: &Client) -> (u64, u64) {
    probe
        .stats()
        .map(|s| (s.connections, s.sessions))
        .unwrap_or((u64::MAX, u64::MAX))
}

/// Waits up to `limit` for the manager's connections and sessions to fall
/// back to `base`; how long that took from `since`, or `None`.
fn settled(probe: &Client, base: (u64, u64), since: Instant, limit: Duration) -> Option<Duration> {
    loop {
        let (c, s) = open(probe);
        if c <= base.0 && s <= base.1 {
            return Some(since.elapsed());
        }
        if since.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// What keeps the churn row's objects alive: their proxies.
struct Held {
    locks: Vec<LockProxy>,
    values: Vec<ValueProxy<u64>>,
}

/// Creates `n` objects, half locks and half values, from `threads` clients
/// of their own, plain calls each; their proxies.
fn create_objects(address: &Address, n: usize, threads: usize) -> Held {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let address = address.clone();
            // Thread `t` makes objects t, t + threads, ...: even ones locks.
            let mine: Vec<usize> = (t..n).step_by(threads).collect();
            std::thread::spawn(move || {
                let c = Client::connect(&address, &key()).expect("connect");
                let mut held = Held {
                    locks: Vec::new(),
                    values: Vec::new(),
                };
                for i in mine {
                    if i % 2 == 0 {
                        held.locks.push(c.lock().expect("a lock"));
                    } else {
                        held.values.push(c.value(0u64).expect("a value"));
                    }
                }
                held
            })
        })
        .collect();
    let mut all = Held {
        locks: Vec::with_capacity(n / 2 + 1),
        values: Vec::with_capacity(n / 2 + 1),
    };
    for h in handles {
        let mut held = h.join().expect("a creating thread");
        all.locks.append(&mut held.locks);
        all.values.append(&mut held.values);
    }
    all
}

/// Disconnect churn: connect+call+drop per second without and with
/// `objects` objects alive, and 1,000 disconnects at once.
/// `rest` is the manager's connections and sessions before any row ran:
/// the clients of the rows before are let go first.
fn disconnect_churn(
    probe: &Client,
    address: &Address,
    objects: usize,
    disconnects: usize,
    rest: (u64, u64),
) {
    const SPAN: Duration = Duration::from_secs(2);
    const SETTLE: Duration = Duration::from_secs(30);
    if settled(probe, rest, Instant::now(), SETTLE).is_none() {
        eprintln!("scale: the earlier rows' clients had not settled after {SETTLE:?}");
    }
    let base = open(probe);
    let (rate0, failed0) = churn_rate(address, SPAN);
    println!(
        "disconnect churn\t{rate0:.0} connect+call+drop/s with no extra objects alive, over {} s on one thread ({failed0} failed)",
        SPAN.as_secs()
    );
    if settled(probe, base, Instant::now(), SETTLE).is_none() {
        eprintln!("scale: the churned connections had not settled after {SETTLE:?}");
    }

    let objects0 = probe.stats().map(|s| s.objects).unwrap_or(0);
    const CREATORS: usize = 4;
    let t = Instant::now();
    let held = create_objects(address, objects, CREATORS);
    let took = t.elapsed();
    let alive = probe.stats().map(|s| s.objects).unwrap_or(0);
    println!(
        "objects\t{} locks + {} values created in {:.1} s from {CREATORS} clients (plain calls)\tmanager objects {objects0} before, {alive} after",
        held.locks.len(),
        held.values.len(),
        took.as_secs_f64()
    );
    // The creating clients stay connected (their proxies hold them).
    let base = open(probe);

    let (rate1, failed1) = churn_rate(address, SPAN);
    println!(
        "disconnect churn, {objects} objects\t{rate1:.0} connect+call+drop/s with {objects} objects alive ({failed1} failed), {rate0:.0}/s without: {:.2}x\ttarget: rate with N objects >= 0.9x the rate without",
        rate1 / rate0.max(f64::MIN_POSITIVE)
    );
    if settled(probe, base, Instant::now(), SETTLE).is_none() {
        eprintln!("scale: the churned connections had not settled after {SETTLE:?}");
    }

    let t = Instant::now();
    let mut clients = Vec::with_capacity(disconnects);
    for i in 0..disconnects {
        match connect_and_call(address) {
            Ok(c) => clients.push(c),
            Err(e) => {
                eprintln!("scale: client {i} of the disconnects failed: {e}");
                break;
            }
        }
    }
    let connected = clients.len();
    let took = t.elapsed();
    let t = Instant::now();
    drop(clients);
    let dropped = t.elapsed();
    let settle = settled(probe, base, t, SETTLE);
    println!(
        "disconnects, {objects} objects\t{connected} clients (connected and called in {:.1} s) dropped at once: the drops took {:.0} ms here, the manager's connections and sessions were back to {} and {} {}\ttarget: 1,000 disconnects settle within 0.5 s",
        took.as_secs_f64(),
        dropped.as_secs_f64() * 1000.0,
        base.0,
        base.1,
        match settle {
            Some(d) => format!("{:.0} ms after the first drop", d.as_secs_f64() * 1000.0),
            None => format!("NOT within {} s", SETTLE.as_secs()),
        }
    );
    drop(held);
}

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("serve") {
        return serve();
    }
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` lists and runs nothing here
    }
    let churn_only = std::env::args().any(|a| a == "--churn-only");
    let limit = raise_fd_limit();
    // Each client here is a descriptor in this process and one there.
    let idle = arg("--idle", 10_000).min(limit.saturating_sub(200) as usize);
    let waiters = arg("--waiters", 1_000).min(limit.saturating_sub(200) as usize / 2);
    let objects = arg("--objects", 100_000);
    let disconnects = 1_000.min(limit.saturating_sub(200) as usize);
    let (mut child, address) = start_manager();
    let pid = child.id();
    let probe = Client::connect(&address, &key()).expect("connect");
    probe.ping().expect("ping");
    std::thread::sleep(Duration::from_millis(500));
    let (rss0, threads0) = (status(pid, "VmRSS:"), status(pid, "Threads:"));
    let rest = open(&probe);
    println!("== scale probe (manager pid {pid}, encrypted TCP, 2 vCPUs); manager at rest: {threads0} threads, {rss0} kB");

    if !churn_only {
        idle_clients(&address, pid, idle, (threads0, rss0));
        blocked_waiters(&probe, &address, pid, waiters, threads0);
    }
    disconnect_churn(&probe, &address, objects, disconnects, rest);
    let _ = child.kill();
    let _ = child.wait();
}
