//! A joinable queue worked by consumer processes that are SIGKILLed and
//! replaced while they work: every item is processed at least once, none is
//! lost, and `join()` returns (DESIGN §4: items a connection took and did
//! not mark done go back to the front of the queue when it ends abnormally).

mod common;

use std::collections::BTreeSet;
use std::process::Child;
use std::time::Duration;

use common::{bounded, eventually, read_marked, role, sigkill, spawn_role};
use manager::{AuthKey, JoinableQueueProxy, ListProxy, Manager, Proxy};

const ITEMS: u32 = 2_000;
const CONSUMERS: usize = 4;
/// Consumers killed while they work; then the last ones finish it.
const KILLS: usize = 12;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set for child roles"))
}

/// Entry point of the consumer processes; a no-op otherwise.
#[test]
fn child_role() {
    let Some(role) = role() else { return };
    assert_eq!(role, "consume");
    let key = AuthKey::from_hex(&env("KEY")).unwrap();
    let jobs = JoinableQueueProxy::<u32>::from_token(&env("JOBS"), &key).unwrap();
    let done = ListProxy::<u32>::from_token(&env("DONE"), &key).unwrap();
    println!("consumer=ready");
    loop {
        let Some(job) = jobs.get_timeout(Duration::from_secs(30)).unwrap() else {
            return;
        };
        println!("got={job}");
        done.push(job).unwrap();
        // Work takes a moment, so kills land between get and task_done.
        std::thread::sleep(Duration::from_millis(1));
        jobs.task_done().unwrap();
    }
}

fn consumer(mgr: &Manager, jobs: &str, done: &str) -> Child {
    let env = [
        ("KEY", mgr.auth_key().to_hex()),
        ("JOBS", jobs.to_owned()),
        ("DONE", done.to_owned()),
    ];
    let mut child = spawn_role("child_role", "consume", &env);
    assert_eq!(
        read_marked(&mut child, "consumer=").as_deref(),
        Some("ready")
    );
    child
}

#[test]
fn killed_consumers_lose_no_item_and_join_returns() {
    bounded(|| {
        let mgr = Manager::builder().start().unwrap();
        let base = mgr.stats().unwrap().objects;
        let jobs = mgr.joinable_queue::<u32>(0).unwrap();
        let done = mgr.list::<u32>().unwrap();
        // Tokens are redeemed once per consumer: publish-like, they last.
        let (jt, dt) = (jobs.to_token().unwrap(), done.to_token().unwrap());
        mgr.publish("jobs", &jobs).unwrap();
        mgr.publish("done", &done).unwrap();

        let mut consumers: Vec<Child> = (0..CONSUMERS).map(|_| consumer(&mgr, &jt, &dt)).collect();
        // Each round puts a batch and kills a consumer the moment it says it
        // took an item: between its `get` and its `task_done`.
        let batch = ITEMS / KILLS as u32;
        for round in 0..KILLS {
            let first = round as u32 * batch;
            let last = if round + 1 == KILLS {
                ITEMS
            } else {
                first + batch
            };
            jobs.extend_from(first..last);
            let mut victim = consumers.swap_remove(round % consumers.len());
            assert!(read_marked(&mut victim, "got=").is_some());
            sigkill(victim.id());
            let _ = victim.wait();
            consumers.push(consumer(&mgr, &jt, &dt));
        }
        assert!(
            jobs.join_timeout(Duration::from_secs(40)).unwrap(),
            "join() did not return"
        );
        for mut c in consumers {
            sigkill(c.id());
            let _ = c.wait();
        }

        let processed: BTreeSet<u32> = done.to_vec().unwrap().into_iter().collect();
        let missing: Vec<u32> = (0..ITEMS).filter(|i| !processed.contains(i)).collect();
        assert!(missing.is_empty(), "lost items: {missing:?}");
        assert_eq!(jobs.len().unwrap(), 0);
        assert_eq!(jobs.unfinished().unwrap(), 0);
        mgr.unpublish("jobs").unwrap();
        mgr.unpublish("done").unwrap();
        drop((jobs, done));
        // The last consumers were killed: their ends are settled asynchronously.
        assert!(eventually(Duration::from_secs(10), || {
            mgr.stats().unwrap().objects == base
        }));
    });
}

trait ExtendFrom {
    fn extend_from(&self, items: impl Iterator<Item = u32>);
}

impl ExtendFrom for JoinableQueueProxy<u32> {
    /// Puts every item, pipelined.
    fn extend_from(&self, items: impl Iterator<Item = u32>) {
        let sent: Vec<_> = items.map(|i| self.deferred().put(i).unwrap()).collect();
        for p in sent {
            p.wait().unwrap();
        }
    }
}
