//! The classic worker pool, with the built-in shared types: worker processes
//! take jobs from a shared `JoinableQueue`, write each result into a shared
//! dict, and count the jobs done in a shared `Value` guarded by a shared
//! `Lock`. The parent waits with `join()` until every job is done.
//!
//! ```text
//! cargo run --example worker_pool
//! ```
//!
//! `benches/python/worker_pool.py` is the same program with Python's
//! `multiprocessing` manager.

use std::process::Command;
use std::time::Instant;

use manager::{AuthKey, DictProxy, JoinableQueueProxy, LockProxy, Manager, Proxy, ValueProxy};

const WORKERS: usize = 4;
const JOBS: u64 = 2_000;
const KEY_VAR: &str = "WORKER_POOL_KEY";

/// A job: count the primes up to `n`. `None` tells a worker to stop.
type Job = Option<u64>;
/// A result: which worker did it, and the count.
type Done = (usize, u64);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, me, jobs, results, lock, counter] = args.as_slice() {
        if role == "worker" {
            return worker(me.parse()?, jobs, results, lock, counter);
        }
    }

    let started = Instant::now();
    // The manager runs as its own OS process and exits with this one.
    let mgr = Manager::builder().start()?;
    let jobs = mgr.joinable_queue::<Job>(64)?;
    let results = mgr.dict::<u64, Done>()?;
    let lock = mgr.lock()?;
    let counter = mgr.value(0u64)?;

    // Each worker gets the proxies as tokens and the key through its environment.
    let mut children = Vec::new();
    for me in 0..WORKERS {
        children.push(
            Command::new(std::env::current_exe()?)
                .arg("worker")
                .arg(me.to_string())
                .arg(jobs.to_token()?)
                .arg(results.to_token()?)
                .arg(lock.to_token()?)
                .arg(counter.to_token()?)
                .env(KEY_VAR, mgr.auth_key().to_hex())
                .spawn()?,
        );
    }

    for n in 1..=JOBS {
        jobs.put(Some(n))?; // waits while the queue is full
    }
    jobs.join()?; // returns once every job is marked done
    let elapsed = started.elapsed();
    for _ in 0..WORKERS {
        jobs.put(None)?;
    }
    for mut child in children {
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("a worker failed: {status}").into());
        }
    }

    let mut per_worker = [0u64; WORKERS];
    let mut wrong = 0;
    for (n, (who, primes)) in results.items()? {
        if primes != count_primes(n) {
            wrong += 1;
        }
        if let Some(count) = per_worker.get_mut(who) {
            *count += 1;
        }
    }
    for (who, count) in per_worker.iter().enumerate() {
        println!("worker {who} did {count} jobs");
    }
    println!(
        "primes up to {JOBS}: {:?}",
        results.get(&JOBS)?.map(|(_, primes)| primes)
    );
    let done = counter.get()?;
    println!(
        "{done} jobs counted, {} results, {wrong} wrong, in {:.0?}",
        results.len()?,
        elapsed
    );
    drop((jobs, results, lock, counter));
    mgr.shutdown()?;
    if done != JOBS || per_worker.iter().sum::<u64>() != JOBS || wrong != 0 {
        return Err("the pool lost, repeated or miscomputed a job".into());
    }
    Ok(())
}

/// A worker process: takes jobs until told to stop.
fn worker(
    me: usize,
    jobs: &str,
    results: &str,
    lock: &str,
    counter: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let key = AuthKey::from_hex(&std::env::var(KEY_VAR)?)?;
    let jobs = JoinableQueueProxy::<Job>::from_token(jobs, &key)?;
    let results = DictProxy::<u64, Done>::from_token(results, &key)?;
    let lock = LockProxy::from_token(lock, &key)?;
    let counter = ValueProxy::<u64>::from_token(counter, &key)?;
    while let Some(n) = jobs.get()? {
        results.insert(n, (me, count_primes(n)))?;
        {
            // A read-modify-write that only the lock makes safe.
            let _held = lock.lock()?;
            counter.set(counter.get()? + 1)?;
        }
        jobs.task_done()?;
    }
    jobs.task_done()?; // the stop signal
    Ok(())
}

/// The number of primes in `2..=n`, the slow way: a job worth sending.
fn count_primes(n: u64) -> u64 {
    (2..=n)
        .filter(|&k| (2..).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count() as u64
}
