//! The async face of the built-ins (DESIGN §2a): under tokio's two
//! runtimes and a plain executor, many calls in flight on one connection,
//! blocked calls of one client that do not block each other, cancellation
//! that loses nothing, guards that release on any thread, and an async and
//! a blocking process sharing one object.

mod common;

use std::time::Duration;

use common::{bounded, eventually, read_marked, role, spawn_role, wait_ok};
use futures::future::join_all;
use manager::{
    AsyncQueueProxy, AsyncValueProxy, AuthKey, Client, Manager, Proxy, QueueProxy, ValueProxy,
};

/// For waits that must time out.
const SHORT: Duration = Duration::from_millis(50);
/// For waits that must succeed: a bound, so a bug fails instead of hanging.
const LONG: Duration = Duration::from_secs(20);

fn manager() -> Manager {
    Manager::builder().start().expect("a manager starts")
}

async fn connect(mgr: &Manager) -> Client {
    Client::connect_async(mgr.address(), mgr.auth_key())
        .await
        .expect("the manager takes async clients")
}

/// Every built-in answers through its async twin, as its blocking proxy does.
async fn built_ins_answer(client: &Client) {
    let v = client.value_async(5i64).await.unwrap();
    assert_eq!(v.get().await.unwrap(), 5);
    v.set(7).await.unwrap();
    assert_eq!(v.fetch_add(3).await.unwrap(), 7);
    assert_eq!(v.get().await.unwrap(), 10);

    let l = client.list_async::<String>().await.unwrap();
    l.push("a".into()).await.unwrap();
    l.extend(vec!["b".into(), "c".into()]).await.unwrap();
    assert_eq!(l.len().await.unwrap(), 3);
    assert_eq!(l.get(1).await.unwrap().as_deref(), Some("b"));

    let d = client.dict_async::<String, u32>().await.unwrap();
    d.insert("k".into(), 1).await.unwrap();
    assert_eq!(d.get(&"k".to_string()).await.unwrap(), Some(1));

    let q = client.queue_async::<u32>(0).await.unwrap();
    q.put(1).await.unwrap();
    assert!(q.try_put(2).await.unwrap());
    assert_eq!(q.get().await.unwrap(), 1);
    assert_eq!(q.get_timeout(LONG).await.unwrap(), Some(2));
    assert_eq!(q.get_timeout(SHORT).await.unwrap(), None);

    let e = client.event_async().await.unwrap();
    assert!(!e.wait_timeout(SHORT).await.unwrap());
    e.set().await.unwrap();
    e.wait().await.unwrap();

    let s = client.semaphore_async(1).await.unwrap();
    s.acquire().await.unwrap();
    assert!(!s.try_acquire().await.unwrap());
    s.release().await.unwrap();
    assert!(s.acquire_timeout(LONG).await.unwrap());

    let r = client.rlock_async().await.unwrap();
    r.acquire().await.unwrap();
    r.acquire().await.unwrap();
    r.release().await.unwrap();
    r.release().await.unwrap();

    let ns = client.namespace_async().await.unwrap();
    ns.set("x", &3u8).await.unwrap();
    assert_eq!(ns.get::<u8>("x").await.unwrap(), Some(3));

    let j = client.joinable_queue_async::<u8>(0).await.unwrap();
    j.put(1).await.unwrap();
    assert_eq!(j.get().await.unwrap(), 1);
    j.task_done().await.unwrap();
    j.join().await.unwrap();

    let b = client.barrier_async(1).await.unwrap();
    assert_eq!(b.wait().await.unwrap(), 0);

    let c = client.condition_async().await.unwrap();
    c.acquire().await.unwrap();
    assert!(!c.wait_timeout(SHORT).await.unwrap());
    c.release().await.unwrap();
}

#[tokio::test]
async fn built_ins_on_a_current_thread_runtime() {
    let mgr = manager();
    let client = connect(&mgr).await;
    built_ins_answer(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_ins_on_a_multi_thread_runtime() {
    let mgr = manager();
    let client = connect(&mgr).await;
    built_ins_answer(&client).await;
}

#[test]
fn built_ins_under_a_plain_executor() {
    bounded(|| {
        let mgr = manager();
        futures::executor::block_on(async {
            let client = connect(&mgr).await;
            built_ins_answer(&client).await;
        });
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_calls_in_flight_from_one_client() {
    let mgr = manager();
    let client = connect(&mgr).await;
    let v = client.value_async(0u64).await.unwrap();
    let connections = client.stats().unwrap().connections;
    let olds = join_all((0..1000).map(|_| v.fetch_add(1))).await;
    let mut olds: Vec<u64> = olds.into_iter().map(Result::unwrap).collect();
    olds.sort_unstable();
    // Each call saw its own value: all ran, once each.
    assert_eq!(olds, (0..1000).collect::<Vec<_>>());
    assert_eq!(v.get().await.unwrap(), 1000);
    // All of them on the one shared connection: none opened another.
    assert_eq!(client.stats().unwrap().connections, connections);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_are_send_and_proxies_cross_tasks() {
    fn assert_send<T: Send>(_: &T) {}
    let mgr = manager();
    let client = connect(&mgr).await;
    let v = client.value_async(0i64).await.unwrap();
    let call = v.fetch_add(1);
    assert_send(&call);
    assert_send(&client.queue_async::<u8>(0));
    call.await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let v = v.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    v.fetch_add(1).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(v.get().await.unwrap(), 401);
}

/// DESIGN §2a: three barrier waits from one client's tasks all arrive.
#[tokio::test]
async fn blocked_calls_of_one_client_do_not_block_each_other() {
    let mgr = manager();
    let client = connect(&mgr).await;
    let b = client.barrier_async(3).await.unwrap();
    let q = client.queue_async::<u8>(0).await.unwrap();
    let waits: Vec<_> = (0..3)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { b.wait().await })
        })
        .collect();
    // A get that waits holds up nothing either.
    let getter = {
        let q = q.clone();
        tokio::spawn(async move { q.get().await })
    };
    let mut indices: Vec<usize> = Vec::new();
    for w in waits {
        let arrived = tokio::time::timeout(LONG, w)
            .await
            .expect("every party arrives");
        indices.push(arrived.unwrap().unwrap());
    }
    indices.sort_unstable();
    assert_eq!(indices, [0, 1, 2]);
    q.put(9).await.unwrap();
    assert_eq!(getter.await.unwrap().unwrap(), 9);
}

/// Polls `call` until the manager holds it parked (one more blocked call
/// than `before`), then drops it.
async fn drop_once_parked<T>(
    client: &Client,
    before: u64,
    call: impl std::future::Future<Output = T>,
) {
    // The call is dropped as the select ends.
    tokio::select! {
        _ = call => panic!("the call was to wait"),
        seen = tokio::time::timeout(LONG, until_parked(client, before)) => {
            assert!(seen.is_ok(), "never parked")
        }
    }
}

/// Returns once the manager counts more blocked calls than `before`.
async fn until_parked(client: &Client, before: u64) {
    while client.stats().unwrap().blocked_calls <= before {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A `get` whose future is dropped while it waits takes nothing: the item
/// put afterwards stays in the queue.
#[tokio::test]
async fn a_dropped_get_takes_nothing() {
    let mgr = manager();
    let client = connect(&mgr).await;
    let q = client.queue_async::<String>(0).await.unwrap();
    let blocked_before = client.stats().unwrap().blocked_calls;
    drop_once_parked(&client, blocked_before, q.get()).await;
    // (A get left waiting on the connection the put then leases would
    // hold the put up for good.)
    let put = tokio::time::timeout(LONG, q.put("kept".into())).await;
    put.expect("the put is not held up").unwrap();
    assert_eq!(q.try_get().await.unwrap().as_deref(), Some("kept"));
    assert!(eventually(LONG, || client.stats().unwrap().blocked_calls
        == blocked_before));
    // The client goes on: more waits, on fresh connections.
    q.put("next".into()).await.unwrap();
    assert_eq!(q.get().await.unwrap(), "next");
}

/// A lock acquire dropped while it waits takes nothing either: the lock
/// goes to the next waiter.
#[tokio::test]
async fn a_dropped_acquire_takes_nothing() {
    let mgr = manager();
    let client = connect(&mgr).await;
    let lock = client.lock_async().await.unwrap();
    let held = lock.lock().await.unwrap();
    let before = client.stats().unwrap().blocked_calls;
    drop_once_parked(&client, before, lock.lock()).await;
    assert!(eventually(LONG, || client.stats().unwrap().blocked_calls == before));
    drop_once_parked(&client, before, lock.acquire()).await;
    drop(held);
    let again = tokio::time::timeout(LONG, lock.lock()).await;
    assert!(again.is_ok(), "the lock was free for the next taker");
}

/// A guard owns its lock, not a thread: dropped on another thread, it
/// releases there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_dropped_on_another_thread_releases() {
    let mgr = manager();
    let client = connect(&mgr).await;
    for lock in [
        client.lock_async().await.unwrap().lock().await,
        client.rlock_async().await.unwrap().lock().await,
    ] {
        let _ = lock.unwrap();
    }
    let lock = client.lock_async().await.unwrap();
    let guard = lock.lock().await.unwrap();
    assert!(!lock.try_acquire().await.unwrap());
    std::thread::spawn(move || drop(guard)).join().unwrap();
    assert!(lock.acquire_timeout(LONG).await.unwrap());
    lock.release().await.unwrap();

    // Two guards of one rlock exclude each other: each is an owner.
    let r = client.rlock_async().await.unwrap();
    let first = r.lock().await.unwrap();
    assert!(tokio::time::timeout(SHORT, r.lock()).await.is_err());
    tokio::task::spawn_blocking(move || drop(first))
        .await
        .unwrap();
    assert!(tokio::time::timeout(LONG, r.lock()).await.is_ok());
}

/// The two faces of one object: conversions keep the reference, tokens
/// and serde carry either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_faces_convert_both_ways() {
    let mgr = manager();
    let client = connect(&mgr).await;
    let a = client.queue_async::<u8>(0).await.unwrap();
    a.put(1).await.unwrap();
    let blocking: QueueProxy<u8> = a.clone().into();
    let token = a.to_token().unwrap();
    let key = mgr.auth_key().clone();
    let got = tokio::task::spawn_blocking(move || {
        let got = blocking.get().unwrap();
        // A token the async face made, redeemed by the blocking one.
        let same = QueueProxy::<u8>::from_token(&token, &key).unwrap();
        same.put(2).unwrap();
        got
    })
    .await
    .unwrap();
    assert_eq!(got, 1);
    let back: AsyncQueueProxy<u8> = QueueProxy::from(a.clone()).into();
    assert_eq!(back.get().await.unwrap(), 2);
}

/// A client made in a runtime that is gone carries on in the next one.
#[test]
fn a_client_outlives_the_runtime_it_was_made_in() {
    bounded(|| {
        let mgr = manager();
        let (client, v) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let client = connect(&mgr).await;
                let v = client.value_async(1u32).await.unwrap();
                (client, v)
            });
        let later = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        later.block_on(async {
            assert_eq!(v.fetch_add(1).await.unwrap(), 1);
            assert_eq!(v.get().await.unwrap(), 2);
        });
        drop(client);
    });
}

/// The child: the blocking face on a token, adding as the parent does.
#[test]
fn blocking_role() {
    let Some(role) = role() else { return };
    assert_eq!(role, "blocking-adder");
    let token = std::env::var("COUNTER_TOKEN").unwrap();
    let key = AuthKey::from_hex(&std::env::var("KEY").unwrap()).unwrap();
    let v = ValueProxy::<u64>::from_token(&token, &key).unwrap();
    println!("ready=1");
    for _ in 0..500 {
        v.fetch_add(1).unwrap();
    }
}

/// An async process and a blocking process share one object; the count
/// is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_and_a_blocking_process_share_one_object() {
    let mgr = manager();
    let client = connect(&mgr).await;
    let v: AsyncValueProxy<u64> = client.value_async(0).await.unwrap();
    let token = v.to_token().unwrap();
    let mut child = spawn_role(
        "blocking_role",
        "blocking-adder",
        &[("COUNTER_TOKEN", token), ("KEY", mgr.auth_key().to_hex())],
    );
    assert_eq!(read_marked(&mut child, "ready=").as_deref(), Some("1"));
    for _ in 0..10 {
        let adds = join_all((0..50).map(|_| v.fetch_add(1))).await;
        assert!(adds.iter().all(Result::is_ok));
    }
    let ok = tokio::task::spawn_blocking(move || wait_ok(&mut child, LONG))
        .await
        .unwrap();
    assert!(ok, "the blocking process finished its adds");
    assert_eq!(v.get().await.unwrap(), 1000);
}

/// Without a guard, the client as a whole owns an rlock, on one connection
/// that holds its other locks too: a wait dropped there is withdrawn (the
/// manager is told), and that connection and its holds go on.
#[tokio::test]
async fn a_dropped_owner_wait_is_withdrawn_and_holds_stay() {
    let mgr = manager();
    let client = connect(&mgr).await;
    let contested = client.rlock_async().await.unwrap();
    let kept = client.rlock_async().await.unwrap();
    kept.acquire().await.unwrap();
    let guard = contested.lock().await.unwrap();
    let before = client.stats().unwrap().blocked_calls;
    drop_once_parked(&client, before, contested.acquire()).await;
    // The owner's connection goes on: its next call is not held up, and
    // the rlock it holds is still its own.
    let released = tokio::time::timeout(LONG, kept.release()).await;
    released
        .expect("the owner connection is not held up")
        .unwrap();
    assert!(matches!(
        kept.release().await,
        Err(manager::Error::NotHeld(_))
    ));
    // The withdrawn wait took nothing: released, the rlock is free.
    drop(guard);
    let again = tokio::time::timeout(LONG, contested.lock()).await;
    assert!(again.is_ok(), "nobody took the rlock for a caller who left");
}

/// A condition wait withdrawn by its caller still takes its lock back
/// before it ends, as asyncio's `Condition.wait()` does when cancelled: the
/// owner's next call finds the lock held, and another client cannot take it.
#[tokio::test]
async fn a_dropped_condition_wait_takes_its_lock_back() {
    let mgr = manager();
    let client = connect(&mgr).await;
    let cond = client.condition_async().await.unwrap();
    cond.acquire().await.unwrap();
    let before = client.stats().unwrap().blocked_calls;
    drop_once_parked(&client, before, cond.wait()).await;
    // Needs the lock: it runs after the withdrawn wait took the lock back.
    tokio::time::timeout(LONG, cond.notify())
        .await
        .expect("the owner connection is not held up")
        .expect("the lock is held again after the withdrawn wait");
    client.publish("cond", &cond).unwrap();
    let other = connect(&mgr).await;
    let theirs: manager::AsyncConditionProxy = other.lookup("cond").unwrap();
    assert!(
        !theirs.try_acquire().await.unwrap(),
        "the lock is the owner's"
    );
    cond.release().await.unwrap();
    // Taken by another client while the wait waited: the withdrawn wait
    // waits for the lock (the owner's next call behind it) and takes it
    // once it is free.
    let before = client.stats().unwrap().blocked_calls;
    cond.acquire().await.unwrap();
    let waiting = {
        let cond = cond.clone();
        tokio::spawn(async move { cond.wait().await })
    };
    tokio::time::timeout(LONG, until_parked(&client, before))
        .await
        .expect("the wait parks");
    assert!(
        theirs.try_acquire().await.unwrap(),
        "the wait put the lock down"
    );
    waiting.abort();
    let _ = waiting.await;
    let notify = {
        let cond = cond.clone();
        tokio::spawn(async move { cond.notify().await })
    };
    theirs.release().await.unwrap();
    tokio::time::timeout(LONG, notify)
        .await
        .expect("the owner connection goes on once the lock is free")
        .unwrap()
        .expect("the withdrawn wait took the lock back");
    assert!(
        !theirs.try_acquire().await.unwrap(),
        "the lock is the owner's"
    );
    cond.release().await.unwrap();
    assert!(
        theirs.try_acquire().await.unwrap(),
        "released once, it is free"
    );
    theirs.release().await.unwrap();
}

/// Over encrypted TCP (the default for `tcp:`) and plain TCP, the async
/// face speaks the same records: a call, a thousand in flight, a wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_encrypted_and_plain_tcp() {
    for address in ["tcp:127.0.0.1:0", "tcp-plain:127.0.0.1:0"] {
        let mgr = Manager::builder()
            .address(address.parse().unwrap())
            .start()
            .unwrap();
        let client = connect(&mgr).await;
        let v = client.value_async(0u64).await.unwrap();
        let adds = join_all((0..1000).map(|_| v.fetch_add(1))).await;
        assert!(adds.into_iter().all(|r| r.is_ok()), "{address}");
        assert_eq!(v.get().await.unwrap(), 1000, "{address}");
        // A reply larger than a record.
        let big = client.value_async(vec![7u8; 200_000]).await.unwrap();
        assert_eq!(big.get().await.unwrap().len(), 200_000, "{address}");
        let q = client.queue_async::<u8>(0).await.unwrap();
        let getter = {
            let q = q.clone();
            tokio::spawn(async move { q.get().await })
        };
        q.put(3).await.unwrap();
        assert_eq!(getter.await.unwrap().unwrap(), 3, "{address}");
    }
}

/// The manager's own client (a manager in this process calls it without a
/// socket) has the async face too.
#[tokio::test]
async fn a_manager_in_this_process_serves_its_own_async_face() {
    let mgr = Manager::builder().spawn_thread().unwrap();
    let v = mgr.value_async(1i32).await.unwrap();
    assert_eq!(v.fetch_add(1).await.unwrap(), 1);
    let blocking: ValueProxy<i32> = v.into();
    assert_eq!(blocking.get().unwrap(), 2);
    let q = mgr.queue_async::<u8>(0).await.unwrap();
    q.put(1).await.unwrap();
    assert_eq!(q.get().await.unwrap(), 1);
}

/// A reply far larger than a socket's buffer arrives whole, read in
/// pieces as they come (the driver does not wait inside a frame).
#[tokio::test]
async fn a_large_reply_arrives_whole() {
    let mgr = manager();
    let client = connect(&mgr).await;
    let big: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let v = client.value_async(big.clone()).await.unwrap();
    for _ in 0..3 {
        assert!(v.get().await.unwrap() == big, "8 MiB, byte for byte");
    }
}

/// `connect_async` fails as `connect` does: a wrong key is refused, and
/// nothing listening is an I/O error; neither hangs.
#[tokio::test]
async fn connect_async_refuses_as_connect_does() {
    let mgr = manager();
    let wrong = Client::connect_async(mgr.address(), &AuthKey::random()).await;
    assert!(
        matches!(wrong, Err(manager::Error::AuthenticationFailed(_))),
        "{wrong:?}"
    );
    let nobody: manager::Address = "tcp-plain:127.0.0.1:1".parse().unwrap();
    let gone = Client::connect_async(&nobody, mgr.auth_key()).await;
    assert!(gone.is_err());
}

/// A condition shared by one client's tasks: each guard is an owner, so
/// one task waits while another takes the lock and notifies; a wait
/// dropped before its notice leaves the lock free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn condition_guards_of_one_client_wait_and_notify() {
    let mgr = manager();
    let client = connect(&mgr).await;
    let cond = client.condition_async().await.unwrap();
    let ready = client.value_async(false).await.unwrap();
    let waiter = {
        let (cond, ready) = (cond.clone(), ready.clone());
        tokio::spawn(async move {
            let held = cond.lock().await?;
            while !ready.get().await? {
                held.wait().await?;
            }
            manager::Result::<()>::Ok(())
        })
    };
    // The waiter's wait puts the lock down: this guard gets it.
    let held = tokio::time::timeout(LONG, cond.lock())
        .await
        .unwrap()
        .unwrap();
    ready.set(true).await.unwrap();
    held.notify_all().await.unwrap();
    drop(held);
    tokio::time::timeout(LONG, waiter)
        .await
        .expect("the waiter was notified")
        .unwrap()
        .unwrap();

    let before = client.stats().unwrap().blocked_calls;
    let held = cond.lock().await.unwrap();
    drop_once_parked(&client, before, held.wait()).await;
    drop(held);
    let again = tokio::time::timeout(LONG, cond.lock()).await;
    assert!(again.is_ok(), "the dropped wait left the lock free");
}

/// `publish`, `lookup` and `unpublish` (blocking, DESIGN §2a) work on a
/// client from `connect_async`, with async proxies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_work_with_async_proxies() {
    let mgr = manager();
    let client = connect(&mgr).await;
    let q = client.queue_async::<u8>(0).await.unwrap();
    q.put(5).await.unwrap();
    client.publish("jobs", &q).unwrap();
    let found: AsyncQueueProxy<u8> = client.lookup("jobs").unwrap();
    assert_eq!(found.get().await.unwrap(), 5);
    let blocking = mgr.lookup::<QueueProxy<u8>>("jobs").unwrap();
    assert_eq!(blocking.len().unwrap(), 0);
    client.unpublish("jobs").unwrap();
    assert!(matches!(
        client.lookup::<AsyncQueueProxy<u8>>("jobs"),
        Err(manager::Error::NoSuchName(_))
    ));
}
