//! A tokio program and a blocking worker process sharing objects through a
//! manager: the service's tasks count hits on a `#[shared]` counter and
//! submit jobs to a queue through the async face; a worker process takes
//! the jobs through the blocking face and sends back results.
//!
//! ```text
//! cargo run --example async_service
//! ```

use std::process::Command;

use futures::future::join_all;
use manager::{shared, AuthKey, Client, Manager, Proxy, QueueProxy};

/// Hits, counted in the manager.
#[shared]
pub struct Hits {
    n: u64,
}

#[shared]
impl Hits {
    /// No hits yet.
    pub fn new() -> Self {
        Hits { n: 0 }
    }

    /// Adds `k` hits; the new total.
    pub fn add(&mut self, k: u64) -> u64 {
        self.n += k;
        self.n
    }

    /// The total so far.
    pub fn total(&self) -> u64 {
        self.n
    }
}

const TASKS: u64 = 8;
const JOBS_PER_TASK: u64 = 25;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, jobs, results, hits, key] = args.as_slice() {
        if role == "worker" {
            return worker(jobs, results, hits, key);
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(service())
}

/// The async side: tasks on a tokio runtime.
async fn service() -> Result<(), Box<dyn std::error::Error>> {
    // The manager runs as its own OS process and exits with this one.
    let mgr = Manager::builder().register::<Hits>().start()?;
    let client = Client::connect_async(mgr.address(), mgr.auth_key()).await?;
    let hits = AsyncHitsProxy::new(&client).await?;
    let jobs = client.queue_async::<Option<u64>>(0).await?;
    let results = client.queue_async::<(u64, u64)>(0).await?;

    // A worker process, given the objects as tokens (`to_token` blocks
    // briefly: a call to the manager).
    let mut worker = Command::new(std::env::current_exe()?)
        .args([
            "worker",
            &jobs.to_token()?,
            &results.to_token()?,
            &hits.to_token()?,
            &mgr.auth_key().to_hex(),
        ])
        .spawn()?;

    // Tasks submit jobs and count a hit for each, all on one connection.
    let tasks = (0..TASKS).map(|t| {
        let (jobs, hits) = (jobs.clone(), hits.clone());
        tokio::spawn(async move {
            for i in 0..JOBS_PER_TASK {
                jobs.put(Some(t * JOBS_PER_TASK + i)).await?;
                hits.add(1).await?;
            }
            Ok::<(), manager::Error>(())
        })
    });
    for done in join_all(tasks).await {
        done??;
    }

    // The results come back while the tasks' own hits are counted: a `get`
    // that waits holds up no other call.
    let mut sum = 0;
    for _ in 0..TASKS * JOBS_PER_TASK {
        let (n, square) = results.get().await?;
        assert_eq!(square, n * n);
        sum += square;
    }
    jobs.put(None).await?; // no more jobs
    let status = tokio::task::spawn_blocking(move || worker.wait()).await??;
    assert!(status.success(), "the worker failed");

    let total = hits.total().await?;
    println!("{} jobs done, sum of squares {sum}", TASKS * JOBS_PER_TASK);
    println!("{total} hits: {TASKS} tasks and the worker, counted exactly");
    assert_eq!(total, 2 * TASKS * JOBS_PER_TASK);
    Ok(())
}

/// The blocking side: a plain loop in another process.
fn worker(
    jobs: &str,
    results: &str,
    hits: &str,
    key: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let key = AuthKey::from_hex(key)?;
    let jobs = QueueProxy::<Option<u64>>::from_token(jobs, &key)?;
    let results = QueueProxy::<(u64, u64)>::from_token(results, &key)?;
    let hits = HitsProxy::from_token(hits, &key)?;
    while let Some(n) = jobs.get()? {
        results.put((n, n * n))?;
        hits.add(1)?;
    }
    Ok(())
}
