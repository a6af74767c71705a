//! Latency where users run it: one client's small call, unpinned (as a
//! program runs) and pinned (as the criterion suite's 1-client rows run),
//! with the manager's busy-polling on and off, the raw floor beside it, and
//! the CPU time client and server spend per call; then 4 client processes
//! on the machine's cores, aggregate.
//!
//! ```sh
//! cargo bench --bench latency                 # unpinned: 1 and 4 clients
//! taskset -c 0 cargo bench --bench latency    # pinned: 1 client
//! benches/run.sh                              # both, into the README's table
//! ```
//!
//! Every figure is the median of [`RUNS`] runs, each on fresh processes
//! (the scheduler's placement of a process's threads stays put for its
//! life and decides between fast and slow on two vCPUs), and the three
//! configurations take turns run by run, so that a change of the machine's
//! speed during the bench falls on all of them alike.
//!
//! CPU time is the kernel's own account of the time each thread ran
//! (`/proc/PID/task/TID/schedstat`, nanoseconds; what `getrusage` sums for a
//! process, readable for the server processes while they run), of the
//! client processes and the server process together, divided by the calls.

// The suite's shared helpers; this bench uses some of them.
#[allow(dead_code)]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use manager::{AuthKey, Client, Manager, ValueProxy};

use common::floor::{FloorClient, FloorServer};
use common::pool::Pool;
use common::report::median;
use common::{Op, Transport};

/// Runs per configuration; the median is reported.
const RUNS: usize = 9;
/// Calls one client makes in a run, after [`WARM_UP`] unmeasured ones.
const CALLS: u64 = 10_000;
const WARM_UP: u64 = 2_000;
/// Client processes of the aggregate rows, and the calls they make in a run.
const CLIENTS: usize = 4;
const CLIENT_CALLS: u64 = 40_000;
/// Runs of the aggregate rows.
const CLIENT_RUNS: usize = 5;

/// The TSV the rows are appended to, for `benches/run.sh`.
const TSV_ENV: &str = "MANAGER_BENCH_LATENCY_TSV";
/// What a client process needs: the manager's address and key, and whether
/// it busy-polls.
const ADDR_ENV: &str = "MANAGER_BENCH_ADDR";
const KEY_ENV: &str = "MANAGER_BENCH_KEY";
const SPIN_ENV: &str = "MANAGER_BENCH_SPIN";
/// The name the aggregate rows' value is published under.
const NAME: &str = "bench-value";

/// What a row measures.
#[derive(Clone, Copy)]
enum Config {
    /// The raw floor: a blocking 16-byte ping-pong.
    Floor,
    /// `get()` with busy-polling on (the default) or off, both sides.
    Ours { spin: bool },
}

impl Config {
    const ALL: [Config; 3] = [
        Config::Floor,
        Config::Ours { spin: true },
        Config::Ours { spin: false },
    ];

    fn name(self) -> &'static str {
        match self {
            Config::Floor => "floor",
            Config::Ours { spin: true } => "get",
            Config::Ours { spin: false } => "get_nospin",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Config::Floor => "floor: 16 B ping-pong",
            Config::Ours { spin: true } => "get(), busy-polling on (default)",
            Config::Ours { spin: false } => "get(), busy-polling off",
        }
    }
}

/// One run's figures.
#[derive(Clone, Copy)]
struct Sample {
    /// Wall time per call, in microseconds.
    us: f64,
    /// CPU time per call, client and server together, in microseconds.
    cpu_us: f64,
}

impl Sample {
    /// `calls` calls in `wall`, for `cpu` of CPU time.
    fn per_call(wall: Duration, cpu: Duration, calls: u64) -> Sample {
        Sample {
            us: wall.as_secs_f64() * 1e6 / calls as f64,
            cpu_us: cpu.as_secs_f64() * 1e6 / calls as f64,
        }
    }
}

fn main() {
    common::run_child_role(worker);
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test") {
        // `cargo test --benches` builds this; only `cargo bench` measures.
        return;
    }
    let pinned = common::pinned();
    let condition = if pinned { "pinned" } else { "unpinned" };
    println!("== latency ({condition}): median of {RUNS} runs of {CALLS} calls, fresh processes each run");
    let mut rows = Vec::new();
    for t in Transport::ALL {
        let mut samples: Vec<(Config, Vec<Sample>)> =
            Config::ALL.iter().map(|&c| (c, Vec::new())).collect();
        for run in 0..RUNS {
            for (config, got) in &mut samples {
                let s = one_client(t, *config);
                got.push(s);
                eprintln!(
                    "{} run {}/{RUNS}: {:<10} {:8.2} us, {:6.2} us CPU",
                    t.name(),
                    run + 1,
                    config.name(),
                    s.us,
                    s.cpu_us
                );
            }
        }
        for (config, got) in &samples {
            rows.push(row(condition, t, config.name(), config.label(), 1, got));
        }
        if !pinned {
            let mut got = [(true, Vec::new()), (false, Vec::new())];
            for _ in 0..CLIENT_RUNS {
                for (spin, g) in &mut got {
                    g.push(clients(t, *spin));
                }
            }
            for (spin, g) in &got {
                let (op, label) = if *spin {
                    ("get_4clients", "get(), 4 client processes, busy-polling on")
                } else {
                    (
                        "get_4clients_nospin",
                        "get(), 4 client processes, busy-polling off",
                    )
                };
                rows.push(row(condition, t, op, label, CLIENTS, g));
            }
        }
    }
    report(&rows);
}

/// A row: the medians of its samples.
struct Row {
    condition: &'static str,
    transport: Transport,
    op: &'static str,
    label: &'static str,
    clients: usize,
    us: f64,
    cpu_us: f64,
    spread: (f64, f64),
}

fn row(
    condition: &'static str,
    t: Transport,
    op: &'static str,
    label: &'static str,
    clients: usize,
    samples: &[Sample],
) -> Row {
    let mut us: Vec<f64> = samples.iter().map(|s| s.us).collect();
    let mut cpu: Vec<f64> = samples.iter().map(|s| s.cpu_us).collect();
    us.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    Row {
        condition,
        transport: t,
        op,
        label,
        clients,
        us: median(&us),
        cpu_us: median(&cpu),
        spread: (us[0], us[us.len() - 1]),
    }
}

/// Prints the rows, and appends them to [`TSV_ENV`] if set: condition,
/// socket, op, label, clients, us/call, calls/s, CPU us/call, fastest and
/// slowest run's us/call.
fn report(rows: &[Row]) {
    println!(
        "{:<8} {:<4} {:<44} {:>9} {:>10} {:>12} {:>17}",
        "cond", "sock", "operation", "us/call", "calls/s", "CPU us/call", "runs (min-max)"
    );
    let mut tsv = String::new();
    for r in rows {
        let rate = 1e6 / r.us;
        println!(
            "{:<8} {:<4} {:<44} {:>9.2} {:>10.0} {:>12.2} {:>8.2}-{:<8.2}",
            r.condition,
            r.transport.name(),
            r.label,
            r.us,
            rate,
            r.cpu_us,
            r.spread.0,
            r.spread.1
        );
        tsv.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{:.3}\t{:.0}\t{:.3}\t{:.3}\t{:.3}\n",
            r.condition,
            r.transport.name(),
            r.op,
            r.label,
            r.clients,
            r.us,
            rate,
            r.cpu_us,
            r.spread.0,
            r.spread.1
        ));
    }
    common::report::append_rows(TSV_ENV, &tsv);
}

/// One run of one client: fresh server process, warm-up, then [`CALLS`]
/// calls timed, with the CPU time of both processes.
fn one_client(t: Transport, config: Config) -> Sample {
    match config {
        Config::Floor => {
            let server = FloorServer::start(t);
            let mut c = FloorClient::connect(&server.addr);
            measure(&[std::process::id(), server.pid()], CALLS, || c.ping())
        }
        Config::Ours { spin } => {
            let mgr = start_manager(t, spin);
            mgr.set_busy_poll(spin);
            let value = mgr.value(0i64).expect("create a value");
            let pid = mgr.process_id().expect("a manager process");
            measure(&[std::process::id(), pid], CALLS, || {
                black_box(value.get().expect("get"));
            })
        }
    }
}

/// Times `calls` calls of `op` after a warm-up, with the CPU time of the
/// processes `pids` over them.
fn measure(pids: &[u32], calls: u64, mut op: impl FnMut()) -> Sample {
    for _ in 0..WARM_UP {
        op();
    }
    let cpu0 = cpu_time(pids);
    let t = Instant::now();
    for _ in 0..calls {
        op();
    }
    let wall = t.elapsed();
    Sample::per_call(wall, cpu_time(pids).saturating_sub(cpu0), calls)
}

/// One run of [`CLIENTS`] client processes left to the scheduler, on a
/// fresh manager: aggregate wall time per call, and the CPU time per call
/// of the clients and the manager together.
fn clients(t: Transport, spin: bool) -> Sample {
    let mgr = start_manager(t, spin);
    let value = mgr.value(0i64).expect("create a value");
    mgr.publish(NAME, &value).expect("publish the value");
    let key = mgr.auth_key().to_hex();
    let address = mgr.address().to_string();
    let spin_text = if spin { "1" } else { "0" };
    let env = [
        (ADDR_ENV, address.as_str()),
        (KEY_ENV, key.as_str()),
        (SPIN_ENV, spin_text),
    ];
    let mut pool = Pool::start_placed(CLIENTS, "get", &env, false);
    let mut pids = pool.pids();
    pids.push(mgr.process_id().expect("a manager process"));
    let cpu0 = cpu_time(&pids);
    let wall = pool.run(CLIENT_CALLS);
    Sample::per_call(wall, cpu_time(&pids).saturating_sub(cpu0), CLIENT_CALLS)
}

fn start_manager(t: Transport, spin: bool) -> Manager {
    let b = Manager::builder().busy_poll(spin);
    let b = match t {
        Transport::Uds => b,
        Transport::Tcp => b.address("tcp-plain:127.0.0.1:0".parse().expect("an address")),
    };
    b.start().expect("start a manager process")
}

/// A client process of the aggregate rows (see `common::pool`).
fn worker(target: &str) -> Op {
    assert_eq!(target, "get", "bench: unknown client target {target:?}");
    let address = std::env::var(ADDR_ENV).expect("a client process has an address");
    let key = std::env::var(KEY_ENV).expect("a client process has a key");
    let key = AuthKey::from_hex(&key).expect("a hex key");
    let client = Client::connect(&address.parse().expect("an address"), &key).expect("connect");
    client.set_busy_poll(std::env::var(SPIN_ENV).as_deref() != Ok("0"));
    let value: ValueProxy<i64> = client.lookup(NAME).expect("look the value up");
    Box::new(move || {
        black_box(value.get().expect("get"));
    })
}

/// The time the threads of processes `pids` have run, as the kernel counts
/// it. A thread that ended since is missing from a later count; the
/// processes measured here keep their threads for the whole run.
fn cpu_time(pids: &[u32]) -> Duration {
    let mut ns = 0u64;
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            ns += stat
                .split_whitespace()
                .next()
                .and_then(|x| x.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}
