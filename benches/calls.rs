//! The benchmark suite: the raw-socket floor and our calls, measured in one
//! run, with every operation's ratio to that run's floor printed at the end.
//!
//! ```sh
//! cargo bench --bench calls                     # unpinned: 1, 2 and 4 clients
//! taskset -c 0 cargo bench --bench calls        # pinned: the 1-client targets
//! benches/run.sh                                # both, plus Python, plus the README table
//! ```
//!
//! Groups (filter with `cargo bench --bench calls -- NAME`), each over a
//! Unix domain socket (`uds`) and TCP loopback (`tcp`):
//! - `floor-uds`, `floor-tcp`: a 16-byte length-prefixed ping-pong with a
//!   server process, its 64-deep pipelined form, and an 8 MiB message;
//! - `ours-uds`, `ours-tcp`: calls through proxies to a manager started with
//!   `Manager::builder().register::<Counter>().start()`;
//! - `clients-uds`, `clients-tcp`: 2 and 4 client processes, aggregate, for
//!   the floor and for the small call (skipped when pinned to one CPU).
//!
//! See `benches/README.md` for what each number means.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use manager::{AuthKey, Manager, Proxy};

use common::counter::{AsyncCounterProxy, Counter, CounterProxy};
use common::floor::{FloorClient, FloorServer, BIG, DEPTH};
use common::pool::Pool;
use common::report::{self, Goal, Measure, Row, Target};
use common::{Op, Transport, FLOOR_ADDR};

/// A multi-client worker's proxy, as a token, and the manager's key.
const TOKEN_ENV: &str = "MANAGER_BENCH_TOKEN";
const KEY_ENV: &str = "MANAGER_BENCH_KEY";
/// Entries of the dict-memory row.
const DICT_ENTRIES: usize = 100_000;

fn main() {
    common::run_child_role(ours_worker);
    let pinned = common::pinned();
    let condition = if pinned { "pinned" } else { "unpinned" };
    let mut c = Criterion::default()
        .sample_size(10)
        .nresamples(10_000)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    let args: Vec<String> = std::env::args().collect();
    let measuring =
        args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test" || a == "--list");
    if pinned {
        println!("pinned to one CPU: 1-client rows only (multi-client rows need both CPUs)");
    }

    let mut rows = Vec::new();
    for t in Transport::ALL {
        let floor = FloorServer::start(t);
        floor_benches(&mut c, t, &floor);
        let mgr = start_manager(t, false);
        ours_benches(&mut c, t, &mgr);
        if t == Transport::Tcp {
            let sealed = start_manager(t, true);
            noise_benches(&mut c, &mgr, &sealed);
        }
        if !pinned {
            clients_benches(&mut c, t, &floor, &mgr);
        }
        rows.extend(rows_for(t));
    }
    if measuring {
        rows.push(Row {
            transport: Transport::Uds,
            op: "dict_memory",
            label: format!("dict of {DICT_ENTRIES} String->i64: server memory"),
            calls: 0,
            measure: Measure::BytesPerEntry(dict_memory()),
            target: Target::new(Goal::MaxBytesPerEntry(60.0)),
        });
    }
    c.final_summary();
    if measuring {
        report::summarize(condition, &rows);
    }
}

/// A criterion group that also records its samples for the summary.
struct Group<'a> {
    g: BenchmarkGroup<'a, WallTime>,
    name: String,
}

impl<'a> Group<'a> {
    fn new(c: &'a mut Criterion, name: String) -> Group<'a> {
        Group {
            g: c.benchmark_group(&name),
            name,
        }
    }

    fn key(&self, id: &str) -> String {
        format!("{}/{id}", self.name)
    }

    /// Benches `op`, one operation of `calls` calls, timed in a loop.
    fn op(&mut self, id: &str, calls: u64, mut op: impl FnMut()) {
        let key = self.key(id);
        self.g.throughput(Throughput::Elements(calls));
        self.g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    op();
                }
                let e = t.elapsed();
                report::record(&key, iters, e);
                e
            })
        });
    }

    /// Benches `op`, which moves `bytes` bytes, timing each operation alone
    /// so that `prepare` (say, the argument's clone) is not counted.
    fn op_bytes<T>(
        &mut self,
        id: &str,
        bytes: u64,
        mut prepare: impl FnMut() -> T,
        mut op: impl FnMut(T),
    ) {
        let key = self.key(id);
        self.g.throughput(Throughput::Bytes(bytes));
        self.g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let x = prepare();
                    let t = Instant::now();
                    op(x);
                    total += t.elapsed();
                }
                report::record(&key, iters, total);
                total
            })
        });
    }

    /// Benches client processes started by `start`. Every sample gets
    /// processes of its own: where the scheduler puts the server's threads
    /// relative to their clients decides between fast and slow on two
    /// vCPUs, and stays put for the life of the processes, so the median of
    /// fresh placements is the typical figure. Start-up is not timed.
    fn clients(&mut self, id: &str, start: impl Fn() -> Pool) {
        let key = self.key(id);
        self.g.throughput(Throughput::Elements(1));
        self.g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let mut pool = start();
                let e = pool.run(iters);
                report::record(&key, iters, e);
                e
            })
        });
    }

    fn finish(self) {
        self.g.finish();
    }
}

fn floor_benches(c: &mut Criterion, t: Transport, floor: &FloorServer) {
    let mut client = FloorClient::connect(&floor.addr);
    for _ in 0..1000 {
        client.ping();
    }
    let mut g = Group::new(c, format!("floor-{}", t.name()));
    g.op("pingpong", 1, || client.ping());
    g.op("pipelined64", DEPTH as u64, || client.pipeline());
    g.op_bytes("8MiB", BIG as u64, || (), |()| client.big());
    g.finish();
}

/// A manager process on `t`; on TCP, `encrypted` (`tcp:`) or not
/// (`tcp-plain:`, what the plain TCP rows and Python's managers use).
fn start_manager(t: Transport, encrypted: bool) -> Manager {
    let b = Manager::builder().register::<Counter>();
    let b = match t {
        Transport::Uds => b,
        Transport::Tcp if encrypted => b.address("tcp:127.0.0.1:0".parse().expect("an address")),
        Transport::Tcp => b.address("tcp-plain:127.0.0.1:0".parse().expect("an address")),
    };
    b.start().expect("start a manager process")
}

fn ours_benches(c: &mut Criterion, t: Transport, mgr: &Manager) {
    let counter = CounterProxy::new(mgr, 0).expect("create a Counter");
    let dict = mgr.dict::<String, i64>().expect("create a dict");
    let value = mgr.value(0i64).expect("create a value");
    let lock = mgr.lock().expect("create a lock");
    let queue = mgr.queue::<i64>(0).expect("create a queue");
    for _ in 0..1000 {
        counter.get().expect("get");
    }
    let key = String::from("key");
    let mut g = Group::new(c, format!("ours-{}", t.name()));
    g.op("get", 1, || {
        black_box(counter.get().expect("get"));
    });
    g.op("incr", 1, || {
        black_box(counter.incr(1).expect("incr"));
    });
    g.op("dict_insert_get", 2, || {
        dict.insert(key.clone(), 1).expect("insert");
        black_box(dict.get(&key).expect("get"));
    });
    g.op("value_fetch_add", 1, || {
        black_box(value.fetch_add(1).expect("fetch_add"));
    });
    g.op("lock_acquire_release", 2, || {
        lock.acquire().expect("acquire");
        lock.release().expect("release");
    });
    g.op("queue_put_get", 2, || {
        queue.put(1).expect("put");
        black_box(queue.get().expect("get"));
    });
    g.op("create_drop_list", 1, || {
        drop(mgr.list::<i64>().expect("create a list"));
    });
    g.op("create_drop_counter", 1, || {
        drop(CounterProxy::new(mgr, 0).expect("create a Counter"));
    });
    pipeline_and_big_argument(&mut g, &counter, "");
    async_benches(&mut g, mgr);
    g.finish();
}

/// The async face (DESIGN §2a) on a current-thread tokio runtime: one call
/// awaited at a time, and a thousand in flight at once (`join_all`).
fn async_benches(g: &mut Group<'_>, mgr: &Manager) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        println!("no tokio runtime here: async rows skipped");
        return;
    };
    let (_client, counter) = rt.block_on(async {
        let client = manager::Client::connect_async(mgr.address(), mgr.auth_key())
            .await
            .expect("connect_async");
        let counter = AsyncCounterProxy::new(&client, 0)
            .await
            .expect("create a Counter");
        for _ in 0..1000 {
            counter.get().await.expect("get");
        }
        (client, counter)
    });
    // Awaited one after another in a task, as a service awaits them: one
    // `block_on` per batch, not per call.
    g.op("async_get", ASYNC_SEQUENTIAL as u64, || {
        rt.block_on(async {
            for _ in 0..ASYNC_SEQUENTIAL {
                black_box(counter.get().await.expect("get"));
            }
        });
    });
    g.op("async_join1000_incr", ASYNC_FLIGHT as u64, || {
        let all = rt.block_on(futures::future::join_all(
            (0..ASYNC_FLIGHT).map(|_| counter.incr(1)),
        ));
        black_box(all);
    });
}

/// Async calls in flight at once in the `async_join1000_incr` row.
const ASYNC_FLIGHT: usize = 1000;
/// Async calls awaited one after another per `block_on` in `async_get`.
const ASYNC_SEQUENTIAL: usize = 16;

/// The 64-deep pipeline and the 8 MiB argument through `counter`, as
/// `{prefix}deferred64_incr` and `{prefix}arg_8MiB`.
fn pipeline_and_big_argument(g: &mut Group<'_>, counter: &CounterProxy, prefix: &str) {
    let mut pending = Vec::with_capacity(DEPTH);
    g.op(&format!("{prefix}deferred64_incr"), DEPTH as u64, || {
        for _ in 0..DEPTH {
            pending.push(counter.deferred().incr(1).expect("send incr"));
        }
        for p in pending.drain(..) {
            black_box(p.wait().expect("incr's reply"));
        }
    });
    // The argument is the caller's to give: its clone is not counted.
    let data = vec![7u8; BIG];
    g.op_bytes(
        &format!("{prefix}arg_8MiB"),
        BIG as u64,
        || data.clone(),
        |v| {
            black_box(counter.size(v).expect("size"));
        },
    );
}

/// Encrypted TCP beside plain TCP: the small call, the pipeline, the large
/// argument, and a whole short connection (connect, handshake, one call,
/// goodbye) for both.
fn noise_benches(c: &mut Criterion, plain: &Manager, sealed: &Manager) {
    let counter = CounterProxy::new(sealed, 0).expect("create a Counter");
    for _ in 0..1000 {
        counter.get().expect("get");
    }
    let mut g = Group::new(c, "ours-tcp".to_owned());
    g.op("noise_get", 1, || {
        black_box(counter.get().expect("get"));
    });
    pipeline_and_big_argument(&mut g, &counter, "noise_");
    for (id, mgr) in [("handshake", plain), ("noise_handshake", sealed)] {
        let (address, key) = (mgr.address().clone(), mgr.auth_key().clone());
        g.op(id, 1, || {
            let client = manager::Client::connect(&address, &key).expect("connect");
            client.ping().expect("ping");
        });
    }
    g.finish();
}

fn clients_benches(c: &mut Criterion, t: Transport, floor: &FloorServer, mgr: &Manager) {
    let counter = CounterProxy::new(mgr, 0).expect("create a Counter");
    let token = counter
        .to_token()
        .expect("a token for the client processes");
    let key = mgr.auth_key().to_hex();
    let mut g = Group::new(c, format!("clients-{}", t.name()));
    // More samples: each is a fresh placement of processes and threads.
    g.g.sample_size(15).measurement_time(Duration::from_secs(2));
    for n in [2, 4] {
        g.clients(&format!("floor_{n}clients"), || {
            Pool::start(n, "floor", &[(FLOOR_ADDR, &floor.addr)])
        });
        g.clients(&format!("get_{n}clients"), || {
            Pool::start(n, "get", &[(TOKEN_ENV, &token), (KEY_ENV, &key)])
        });
    }
    g.finish();
}

/// The operation of a client process of ours (see `common::pool`).
fn ours_worker(target: &str) -> Op {
    let token = std::env::var(TOKEN_ENV).expect("a client process has a token");
    let key = std::env::var(KEY_ENV).expect("a client process has a key");
    let key = AuthKey::from_hex(&key).expect("a hex key");
    let c = CounterProxy::from_token(&token, &key).expect("redeem the counter's token");
    match target {
        "get" => Box::new(move || {
            black_box(c.get().expect("get"));
        }),
        other => panic!("bench: unknown client target {other:?}"),
    }
}

/// Server memory per entry of a dict of `DICT_ENTRIES` short `String` keys,
/// above the same manager holding the empty dict (resident set size).
fn dict_memory() -> Option<f64> {
    let mgr = Manager::builder().start().ok()?;
    let pid = mgr.process_id()?;
    let d = mgr.dict::<String, i64>().ok()?;
    // Small batches, so the connection's frame buffers stay at their usual
    // size and what grows is the dict.
    const BATCH: usize = 500;
    d.update((0..BATCH).map(|i| (format!("warm{i}"), 0))).ok()?;
    d.clear().ok()?;
    let before = rss_bytes(pid)?;
    for start in (0..DICT_ENTRIES).step_by(BATCH) {
        d.update((start..start + BATCH).map(|i| (format!("key{i}"), i as i64)))
            .ok()?;
    }
    let after = rss_bytes(pid)?;
    assert_eq!(d.len().ok()?, DICT_ENTRIES);
    Some(after.saturating_sub(before) as f64 / DICT_ENTRIES as f64)
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The summary's rows for transport `t`, in the order of the README table.
fn rows_for(t: Transport) -> Vec<Row> {
    let n = t.name();
    let floor_key = |id: &str| format!("floor-{n}/{id}");
    let ours =
        |op: &'static str, label: &str, calls: u64, floor: Option<(&str, f64)>, target| Row {
            transport: t,
            op,
            label: label.to_owned(),
            calls,
            measure: Measure::Timed {
                key: format!("ours-{n}/{op}"),
                floor: floor.map(|(id, mult)| (floor_key(id), mult)),
            },
            target,
        };
    let plain = |op: &'static str, key: String, label: String, calls: u64, floor, target| Row {
        transport: t,
        op,
        label,
        calls,
        measure: Measure::Timed { key, floor },
        target,
    };
    let one = Some(("pingpong", 1.0));
    let two = Some(("pingpong", 2.0));
    let mut rows = vec![
        plain(
            "floor_pingpong",
            floor_key("pingpong"),
            "floor: 16 B ping-pong".into(),
            1,
            None,
            Target::NONE,
        ),
        plain(
            "floor_pipelined64",
            floor_key("pipelined64"),
            "floor: 64-deep pipelined 16 B".into(),
            DEPTH as u64,
            None,
            Target::NONE,
        ),
        plain(
            "floor_8MiB",
            floor_key("8MiB"),
            "floor: 8 MiB message".into(),
            1,
            None,
            Target::NONE,
        ),
        ours(
            "get",
            "get(): small &self call",
            1,
            one,
            Target::new(Goal::TimeRatio(1.05)).pinned(),
        ),
        ours("incr", "incr(1): &mut self call", 1, one, Target::NONE),
        ours(
            "dict_insert_get",
            "DictProxy<String,i64> insert+get",
            2,
            two,
            Target::NONE,
        ),
        ours(
            "value_fetch_add",
            "ValueProxy<i64>::fetch_add",
            1,
            one,
            Target::NONE,
        ),
        ours(
            "lock_acquire_release",
            "lock acquire+release",
            2,
            two,
            Target::NONE,
        ),
        ours("queue_put_get", "queue put+get", 2, two, Target::NONE),
        ours(
            "create_drop_list",
            "list create+drop",
            1,
            one,
            Target::new(Goal::MinRate(50_000.0)).pinned(),
        ),
        ours(
            "create_drop_counter",
            "Counter::new create+drop",
            1,
            one,
            Target::new(Goal::MinRate(50_000.0)).pinned(),
        ),
        ours(
            "deferred64_incr",
            "64-deep deferred incr",
            DEPTH as u64,
            Some(("pipelined64", 1.0)),
            Target::new(Goal::MinRate(6_700_000.0)).pinned(),
        ),
        ours(
            "arg_8MiB",
            "8 MiB Vec<u8> argument",
            1,
            Some(("8MiB", 1.0)),
            Target::new(Goal::TimeRatio(1.5)),
        ),
        ours(
            "async_get",
            "16 async get() awaited in turn, current-thread tokio",
            ASYNC_SEQUENTIAL as u64,
            Some(("pingpong", ASYNC_SEQUENTIAL as f64)),
            Target::new(Goal::TimeRatio(1.5)).pinned(),
        ),
        ours(
            "async_join1000_incr",
            "1,000 async incr in flight (join_all)",
            ASYNC_FLIGHT as u64,
            None,
            Target::new(Goal::MinRate(2_000_000.0)).pinned(),
        ),
    ];
    if t == Transport::Tcp {
        rows.extend([
            ours(
                "noise_get",
                "encrypted: get()",
                1,
                one,
                Target::new(Goal::TimeRatio(1.3)).pinned(),
            ),
            ours(
                "noise_deferred64_incr",
                "encrypted: 64-deep deferred incr",
                DEPTH as u64,
                Some(("pipelined64", 1.0)),
                Target::new(Goal::MinRate(2_000_000.0)).pinned(),
            ),
            ours(
                "noise_arg_8MiB",
                "encrypted: 8 MiB Vec<u8> argument",
                1,
                Some(("8MiB", 1.0)),
                Target::new(Goal::TimeRatio(3.0)),
            ),
            ours(
                "handshake",
                "plain: connect+handshake+call+close",
                1,
                None,
                Target::NONE,
            ),
            ours(
                "noise_handshake",
                "encrypted: connect+handshake+call+close",
                1,
                None,
                Target::NONE,
            ),
        ]);
    }
    for clients in [2, 4] {
        let floor = format!("clients-{n}/floor_{clients}clients");
        rows.push(plain(
            if clients == 2 {
                "floor_2clients"
            } else {
                "floor_4clients"
            },
            floor.clone(),
            format!("floor: {clients} client processes, aggregate"),
            1,
            None,
            Target::NONE,
        ));
        rows.push(plain(
            if clients == 2 {
                "get_2clients"
            } else {
                "get_4clients"
            },
            format!("clients-{n}/get_{clients}clients"),
            format!("get(), {clients} client processes, aggregate"),
            1,
            Some((floor, 1.0)),
            Target::new(Goal::ThroughputShare(1.0)),
        ));
    }
    rows
}
