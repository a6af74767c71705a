//! `deferred()` on the built-in proxies: pipelined calls whose replies are
//! taken later, in any order, against a manager process and a manager
//! thread.

mod common;

use std::time::Duration;

use common::bounded;
use manager::{Error, Manager};

/// Every built-in, pipelined, on `mgr`.
fn pipelines_on(mgr: &Manager) {
    // A thousand inserts in flight; replies taken last-first.
    let d = mgr.dict::<String, u32>().unwrap();
    let sent: Vec<_> = (0..1000)
        .map(|i| d.deferred().insert(format!("k{i}"), i).unwrap())
        .collect();
    let len = d.deferred().len().unwrap();
    for p in sent.into_iter().rev() {
        assert_eq!(p.wait().unwrap(), None, "every key was new");
    }
    assert_eq!(len.wait().unwrap(), 1000, "calls run in the order sent");
    let again = d.deferred().insert("k7".into(), 70).unwrap();
    let got = d.deferred().get(&"k7".into()).unwrap();
    assert_eq!(
        got.wait().unwrap(),
        Some(70),
        "taken before the earlier reply"
    );
    assert_eq!(again.wait().unwrap(), Some(7));

    // An error travels in its own reply; the calls around it are unharmed.
    let l = mgr.list::<u64>().unwrap();
    let pushes: Vec<_> = (0..100).map(|i| l.deferred().push(i).unwrap()).collect();
    let bad = l.deferred().remove(100).unwrap();
    let last = l.deferred().remove(99).unwrap();
    assert!(matches!(
        bad.wait(),
        Err(Error::IndexOutOfRange {
            index: 100,
            len: 100
        })
    ));
    assert_eq!(last.wait().unwrap(), 99);
    for p in pushes {
        p.wait().unwrap();
    }
    assert_eq!(l.to_vec().unwrap(), (0..99).collect::<Vec<_>>());

    // A dropped Pending discards its reply; the call still runs.
    drop(l.deferred().push(7).unwrap());
    assert_eq!(l.len().unwrap(), 100);

    // Integers, with fetch_add's own bound.
    let v = mgr.value(0i64).unwrap();
    let adds: Vec<_> = (0..64)
        .map(|_| v.deferred().fetch_add(1).unwrap())
        .collect();
    let olds: Vec<i64> = adds.into_iter().map(|p| p.wait().unwrap()).collect();
    assert_eq!(olds, (0..64).collect::<Vec<_>>());
    assert_eq!(v.deferred().swap(-1).unwrap().wait().unwrap(), 64);

    // A queue: puts then gets in one pipeline.
    let q = mgr.queue::<String>(0).unwrap();
    let puts: Vec<_> = (0..10)
        .map(|i| q.deferred().put(i.to_string()).unwrap())
        .collect();
    let gets: Vec<_> = (0..10).map(|_| q.deferred().get().unwrap()).collect();
    let got: Vec<String> = gets.into_iter().map(|p| p.wait().unwrap()).collect();
    assert_eq!(got, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    for p in puts {
        p.wait().unwrap();
    }
    let jq = mgr.joinable_queue::<u8>(0).unwrap();
    jq.put(1).unwrap();
    jq.get().unwrap();
    let done = jq.deferred().task_done().unwrap();
    let too_often = jq.deferred().task_done().unwrap();
    done.wait().unwrap();
    assert!(matches!(too_often.wait(), Err(Error::TaskDoneTooOften)));

    // Synchronization objects: the lock is held by this thread in between.
    let lock = mgr.lock().unwrap();
    let acquired = lock.deferred().acquire().unwrap();
    let busy = lock.deferred().try_acquire().unwrap();
    let released = lock.deferred().release().unwrap();
    acquired.wait().unwrap();
    assert!(!busy.wait().unwrap(), "held by the acquire sent before it");
    released.wait().unwrap();
    assert!(lock.try_acquire().unwrap());
    lock.release().unwrap();
    let sem = mgr.semaphore(2).unwrap();
    let takes: Vec<_> = (0..3)
        .map(|_| sem.deferred().try_acquire().unwrap())
        .collect();
    let took: Vec<bool> = takes.into_iter().map(|p| p.wait().unwrap()).collect();
    assert_eq!(took, [true, true, false]);
    let ev = mgr.event().unwrap();
    let set = ev.deferred().set().unwrap();
    let waited = ev.deferred().wait_timeout(Duration::from_secs(10)).unwrap();
    assert!(waited.wait().unwrap());
    set.wait().unwrap();
    let b = mgr.barrier(1).unwrap();
    assert_eq!(b.deferred().wait().unwrap().wait().unwrap(), 0);
    assert_eq!(b.deferred().parties().unwrap().wait().unwrap(), 1);
    let c = mgr.condition().unwrap();
    let held = c.deferred().acquire().unwrap();
    let notified = c.deferred().notify_all().unwrap();
    let freed = c.deferred().release().unwrap();
    held.wait().unwrap();
    notified.wait().unwrap();
    freed.wait().unwrap();
    let ns = mgr.namespace().unwrap();
    let set = ns.deferred().set("epoch", 3u32).unwrap();
    let names = ns.deferred().names().unwrap();
    set.wait().unwrap();
    assert_eq!(names.wait().unwrap(), ["epoch"]);
    assert_eq!(ns.get::<u32>("epoch").unwrap(), Some(3));
}

#[test]
fn built_in_proxies_pipeline_against_a_manager_process() {
    bounded(|| {
        let mgr = Manager::builder().start().unwrap();
        pipelines_on(&mgr);
    });
}

#[test]
fn built_in_proxies_pipeline_against_a_manager_thread() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        pipelines_on(&mgr);
    });
}

#[test]
fn a_deferred_call_fails_fast_once_its_manager_is_gone() {
    bounded(|| {
        let mgr = Manager::builder().start().unwrap();
        let l = mgr.list::<u8>().unwrap();
        let before = l.deferred().push(1).unwrap();
        before.wait().unwrap();
        let pid = mgr.process_id().unwrap();
        common::sigkill(pid);
        assert!(common::eventually(Duration::from_secs(10), || {
            common::process_gone(pid)
        }));
        // Either sending or waiting reports the loss; nothing hangs.
        let outcome = l.deferred().push(2).and_then(|p| p.wait());
        assert!(
            matches!(outcome, Err(Error::ConnectionLost(_))),
            "{outcome:?}"
        );
    });
}
