//! Built-in queues with Python's semantics, across threads and processes.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{bounded, read_marked, role, sigkill, spawn_role, wait_ok};
use manager::{AuthKey, Error, JoinableQueueProxy, ListProxy, Manager, Proxy, QueueProxy};

const SHORT: Duration = Duration::from_millis(20);
const LONG: Duration = Duration::from_secs(20);

#[test]
fn queue_is_fifo_bounded_and_has_python_variants() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let q = mgr.queue::<String>(2).unwrap();
        assert!(q.is_empty().unwrap());
        q.put("a".into()).unwrap();
        assert!(q.try_put("b".into()).unwrap());
        assert!(q.is_full().unwrap());
        assert!(!q.try_put("c".into()).unwrap());
        assert!(!q.put_timeout("c".into(), SHORT).unwrap(), "full: dropped");
        assert_eq!(q.len().unwrap(), 2);
        assert_eq!(q.get().unwrap(), "a");
        assert_eq!(q.try_get().unwrap().as_deref(), Some("b"));
        assert_eq!(q.try_get().unwrap(), None);
        assert_eq!(q.get_timeout(SHORT).unwrap(), None);
        let unbounded = mgr.queue::<u32>(0).unwrap();
        for i in 0..1000 {
            assert!(unbounded.try_put(i).unwrap());
        }
        assert!(!unbounded.is_full().unwrap());
        assert_eq!(unbounded.len().unwrap(), 1000);
        for i in 0..1000 {
            assert_eq!(unbounded.try_get().unwrap(), Some(i), "first in, first out");
        }
    });
}

#[test]
fn a_blocked_put_waits_for_room_and_blocks_only_its_caller() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let q = mgr.queue::<u32>(1).unwrap();
        q.put(1).unwrap();
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || q.put_timeout(2, LONG).unwrap())
        };
        // Whether or not the producer waits in the manager yet, this client is served.
        assert_eq!(q.len().unwrap(), 1);
        assert!(q.is_full().unwrap());
        assert_eq!(q.get_timeout(LONG).unwrap(), Some(1));
        assert!(
            producer.join().unwrap(),
            "the put went through once there was room"
        );
        assert_eq!(q.get_timeout(LONG).unwrap(), Some(2));
    });
}

#[test]
fn a_blocked_get_is_woken_by_a_put_from_another_client() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let q = mgr.queue::<u32>(0).unwrap();
        let consumer = {
            let q = q.clone();
            std::thread::spawn(move || q.get_timeout(LONG).unwrap())
        };
        mgr.publish("jobs", &q).unwrap();
        let other = manager::Client::connect(mgr.address(), mgr.auth_key()).unwrap();
        let q2: QueueProxy<u32> = other.lookup("jobs").unwrap();
        q2.put(42).unwrap();
        assert_eq!(consumer.join().unwrap(), Some(42));
    });
}

#[test]
fn joinable_queue_join_waits_for_every_task_done() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let q = mgr.joinable_queue::<u32>(2).unwrap();
        q.join().unwrap(); // nothing put: returns at once
        assert!(matches!(q.task_done(), Err(Error::TaskDoneTooOften)));
        q.put(1).unwrap();
        q.put(2).unwrap();
        assert!(q.is_full().unwrap());
        assert!(!q.try_put(3).unwrap());
        assert_eq!(q.try_get().unwrap(), Some(1));
        assert_eq!(q.get_timeout(LONG).unwrap(), Some(2));
        // Empty, but two tasks are not done: join waits for them, not for the queue.
        let joined = mgr.event().unwrap();
        let joiner = {
            let (q, joined) = (q.clone(), joined.clone());
            std::thread::spawn(move || {
                q.join().unwrap();
                joined.set().unwrap();
            })
        };
        q.task_done().unwrap();
        assert!(!joined.wait_timeout(SHORT).unwrap(), "one task is not done");
        q.task_done().unwrap();
        assert!(joined.wait_timeout(LONG).unwrap());
        joiner.join().unwrap();
        assert!(matches!(q.task_done(), Err(Error::TaskDoneTooOften)));
    });
}

const PRODUCERS: u8 = 2;
const PER_PRODUCER: u32 = 5000;
const DONE: (u8, u32) = (u8::MAX, 0);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set for child roles"))
}

/// Entry point of the child processes this file starts; a no-op otherwise.
#[test]
fn child_role() {
    let Some(role) = role() else { return };
    let key = AuthKey::from_hex(&env("KEY")).unwrap();
    let q = QueueProxy::<(u8, u32)>::from_token(&env("QUEUE"), &key).unwrap();
    match role.as_str() {
        "producer" => {
            let me: u8 = env("ME").parse().unwrap();
            for seq in 0..PER_PRODUCER {
                q.put((me, seq)).unwrap();
            }
        }
        "consumer" => {
            let out = ListProxy::<Vec<(u8, u32)>>::from_token(&env("OUT"), &key).unwrap();
            let mut got = Vec::new();
            loop {
                let item = q.get_timeout(LONG).unwrap().expect("items keep coming");
                if item == DONE {
                    break;
                }
                got.push(item);
            }
            out.push(got).unwrap();
        }
        "blocked-getter" => {
            println!("getting=now");
            let item = q.get_timeout(LONG);
            unreachable!("the test kills this process first, not {item:?}");
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn ten_thousand_items_through_a_bounded_queue_between_processes() {
    bounded(|| {
        let mgr = Manager::builder().start().unwrap();
        let q = mgr.queue::<(u8, u32)>(64).unwrap();
        let out = mgr.list::<Vec<(u8, u32)>>().unwrap();
        let key = mgr.auth_key().to_hex();
        let env = |extra: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
            let mut e = vec![
                ("KEY", key.clone()),
                ("QUEUE", q.to_token().unwrap()),
                ("OUT", out.to_token().unwrap()),
            ];
            e.extend(extra.iter().cloned());
            e
        };
        let mut consumers: Vec<_> = (0..2)
            .map(|_| spawn_role("child_role", "consumer", &env(&[])))
            .collect();
        let mut producers: Vec<_> = (0..PRODUCERS)
            .map(|me| spawn_role("child_role", "producer", &env(&[("ME", me.to_string())])))
            .collect();
        for p in &mut producers {
            assert!(wait_ok(p, Duration::from_secs(120)), "a producer failed");
        }
        for _ in &consumers {
            assert!(q.put_timeout(DONE, LONG).unwrap());
        }
        for c in &mut consumers {
            assert!(wait_ok(c, Duration::from_secs(120)), "a consumer failed");
        }
        let received = out.to_vec().unwrap();
        assert_eq!(received.len(), 2);
        let mut all = BTreeSet::new();
        for stream in &received {
            // Order is kept per producer within what each consumer saw.
            for me in 0..PRODUCERS {
                let seqs: Vec<u32> = stream.iter().filter(|i| i.0 == me).map(|i| i.1).collect();
                assert!(
                    seqs.windows(2).all(|w| w[0] < w[1]),
                    "producer {me} reordered"
                );
            }
            for item in stream {
                assert!(all.insert(*item), "{item:?} delivered twice");
            }
        }
        assert_eq!(
            all.len(),
            PRODUCERS as usize * PER_PRODUCER as usize,
            "items lost"
        );
        assert!(q.is_empty().unwrap());
    });
}

#[test]
fn a_joinable_queue_proxy_round_trips_through_a_token() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let q = mgr.joinable_queue::<u8>(0).unwrap();
        let again =
            JoinableQueueProxy::<u8>::from_token(&q.to_token().unwrap(), mgr.auth_key()).unwrap();
        again.put(1).unwrap();
        assert_eq!(q.get().unwrap(), 1);
        q.task_done().unwrap();
        again.join().unwrap();
    });
}

#[test]
fn a_killed_consumer_blocked_in_get_takes_nothing() {
    bounded(|| {
        let mgr = Manager::builder().start().unwrap();
        let q = mgr.queue::<(u8, u32)>(0).unwrap();
        let mut child = spawn_role(
            "child_role",
            "blocked-getter",
            &[
                ("KEY", mgr.auth_key().to_hex()),
                ("QUEUE", q.to_token().unwrap()),
            ],
        );
        assert_eq!(read_marked(&mut child, "getting=").as_deref(), Some("now"));
        sigkill(child.id());
        let _ = child.wait();
        // The dead consumer's get is cancelled; the item goes to a living one.
        q.put((1, 2)).unwrap();
        assert_eq!(q.get_timeout(LONG).unwrap(), Some((1, 2)));
        assert!(q.is_empty().unwrap());
    });
}
