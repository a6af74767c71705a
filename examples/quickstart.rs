//! The front door: a custom shared type in a manager process, updated by two
//! worker processes that receive its proxy as a token.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::process::Command;

use manager::{shared, AuthKey, Manager, Proxy};

/// A running total that remembers who added what.
#[shared]
#[derive(Default)]
pub struct Tally {
    total: i64,
    by_worker: std::collections::BTreeMap<String, i64>,
}

#[shared]
impl Tally {
    /// An empty tally.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `amount` on behalf of `who`; returns the new total.
    pub fn add(&mut self, who: &str, amount: i64) -> i64 {
        self.total += amount;
        *self.by_worker.entry(who.to_owned()).or_default() += amount;
        self.total
    }

    /// The total so far.
    pub fn total(&self) -> i64 {
        self.total
    }

    /// What each worker added.
    pub fn by_worker(&self) -> Vec<(String, i64)> {
        self.by_worker.clone().into_iter().collect()
    }
}

const WORKERS: usize = 2;
const ADDS: i64 = 1000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, name, token] = args.as_slice() {
        if role == "worker" {
            return worker(name, token);
        }
    }

    // The manager runs as its own OS process and exits with this one.
    let mgr = Manager::builder().register::<Tally>().start()?;
    let tally = TallyProxy::new(&mgr)?;
    println!("manager listening at {}", mgr.address());

    // Each worker gets the proxy as a token and the key through its environment.
    let mut children = Vec::new();
    for i in 1..=WORKERS {
        children.push(
            Command::new(std::env::current_exe()?)
                .args(["worker", &format!("worker-{i}"), &tally.to_token()?])
                .env("QUICKSTART_KEY", mgr.auth_key().to_hex())
                .spawn()?,
        );
    }
    for mut child in children {
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("a worker failed: {status}").into());
        }
    }

    let expected = WORKERS as i64 * ADDS * (ADDS + 1) / 2;
    let total = tally.total()?;
    for (who, amount) in tally.by_worker()? {
        println!("{who} added {amount}");
    }
    println!("total = {total} (expected {expected})");
    drop(tally);
    mgr.shutdown()?;
    if total != expected {
        return Err("the total is wrong".into());
    }
    Ok(())
}

/// A worker process: adds 1..=ADDS through a proxy it received as a token.
fn worker(name: &str, token: &str) -> Result<(), Box<dyn std::error::Error>> {
    let key = AuthKey::from_hex(&std::env::var("QUICKSTART_KEY")?)?;
    let tally = TallyProxy::from_token(token, &key)?;
    for i in 1..=ADDS {
        tally.add(name, i)?;
    }
    Ok(())
}
