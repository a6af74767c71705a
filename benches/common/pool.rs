//! Client processes for the multi-client rows.
//!
//! Each is this bench binary started again as a `worker`: it connects once,
//! warms up, says `ready`, and then for every number `n` it reads on stdin
//! performs `n` operations and answers `done`. The parent times a batch from
//! the first command to the last answer, so criterion sees the aggregate
//! time per call of all the processes together; connecting and process
//! start-up stay out of the measurement.

use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Op, ROLE};

/// What a worker does: `floor`, or a name its bench's `ours` hook knows.
pub const TARGET: &str = "MANAGER_BENCH_TARGET";

/// The CPU a client process pins itself to.
const CPU: &str = "MANAGER_BENCH_CPU";
/// Set, client processes are not pinned one per CPU but left to the scheduler.
pub const FLOAT_ENV: &str = "MANAGER_BENCH_FLOAT";

const WARM_UP: u64 = 200;

struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

/// Running client processes, stopped when dropped.
pub struct Pool {
    workers: Vec<Worker>,
}

impl Pool {
    /// Starts `n` client processes doing `target`, with `env` set, and waits
    /// until each has connected and warmed up.
    pub fn start(n: usize, target: &str, env: &[(&str, &str)]) -> Pool {
        Pool::start_placed(n, target, env, std::env::var_os(FLOAT_ENV).is_none())
    }

    /// [`Pool::start`], with the client processes pinned one per CPU (`pin`)
    /// or left to the scheduler.
    pub fn start_placed(n: usize, target: &str, env: &[(&str, &str)], pin: bool) -> Pool {
        let exe = std::env::current_exe().expect("the bench binary has a path");
        // Client i runs on the (i mod n)th allowed CPU, so two clients never
        // start out on one CPU with the other idle; the servers' threads float.
        let cpus = super::allowed_cpus();
        let pin = pin && !cpus.is_empty();
        let mut workers: Vec<Worker> = (0..n)
            .map(|i| {
                let mut cmd = Command::new(&exe);
                cmd.env(ROLE, "worker")
                    .env(TARGET, target)
                    .env(
                        CPU,
                        if pin {
                            cpus[i % cpus.len()].to_string()
                        } else {
                            String::new()
                        },
                    )
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit());
                for (k, v) in env {
                    cmd.env(k, v);
                }
                let mut child = cmd.spawn().expect("the bench binary can start itself");
                let stdin = child.stdin.take();
                let stdout = BufReader::new(child.stdout.take().expect("piped"));
                Worker {
                    child,
                    stdin,
                    stdout,
                }
            })
            .collect();
        for w in &mut workers {
            w.expect_line("ready");
        }
        Pool { workers }
    }

    /// The client processes' ids.
    #[allow(dead_code)] // Not every bench that shares this module asks.
    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().map(|w| w.child.id()).collect()
    }

    /// Has the processes perform `total` operations between them and returns
    /// the wall time from the first command to the last answer.
    pub fn run(&mut self, total: u64) -> Duration {
        let n = self.workers.len() as u64;
        let t = Instant::now();
        for (i, w) in self.workers.iter_mut().enumerate() {
            let share = total / n + u64::from((i as u64) < total % n);
            let stdin = w.stdin.as_mut().expect("a running worker has a stdin");
            writeln!(stdin, "{share}")
                .and_then(|()| stdin.flush())
                .expect("command a worker");
        }
        for w in &mut self.workers {
            w.expect_line("done");
        }
        t.elapsed()
    }
}

impl Worker {
    fn expect_line(&mut self, want: &str) {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read a worker's answer");
        assert_eq!(line.trim_end(), want, "a client process failed");
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for w in &mut self.workers {
            drop(w.stdin.take());
        }
        for w in &mut self.workers {
            let _ = w.child.wait();
        }
    }
}

/// A client process: connects, warms up, then obeys its stdin.
pub fn worker_main(ours: fn(&str) -> Op) -> i32 {
    let target = std::env::var(TARGET).unwrap_or_default();
    if let Some(cpu) = std::env::var(CPU).ok().and_then(|c| c.parse().ok()) {
        super::pin_to(cpu);
    }
    let mut op = if target == "floor" {
        super::floor::worker_op()
    } else {
        ours(&target)
    };
    for _ in 0..WARM_UP {
        op();
    }
    let mut out = io::stdout().lock();
    let say = |out: &mut io::StdoutLock<'_>, what: &str| {
        writeln!(out, "{what}").and_then(|()| out.flush()).is_ok()
    };
    if !say(&mut out, "ready") {
        return 1;
    }
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { return 1 };
        let Ok(n) = line.trim().parse::<u64>() else {
            eprintln!("bench worker: bad command {line:?}");
            return 2;
        };
        for _ in 0..n {
            op();
        }
        if !say(&mut out, "done") {
            return 1;
        }
    }
    0
}
