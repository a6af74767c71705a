//! A `Client` used from one thread holds one connection to its manager
//! (issue 13): the one it opened at connect carries the calls of the first
//! thread that calls. Other threads open their own, and close them when
//! they end.

mod common;

use std::thread;
use std::time::Duration;

use common::{bounded, eventually};
use manager::{Client, Error, Manager, ValueProxy};

const LONG: Duration = Duration::from_secs(30);

fn connections(client: &Client) -> u64 {
    client.stats().unwrap().connections
}

#[test]
fn a_client_that_calls_from_one_thread_holds_one_connection() {
    bounded(|| {
        let mgr = Manager::builder()
            .address("tcp:127.0.0.1:0".parse().unwrap())
            .spawn_thread()
            .unwrap();
        let base = connections(&mgr);
        let client = Client::connect(mgr.address(), mgr.auth_key()).unwrap();
        assert_eq!(connections(&mgr), base + 1, "connect opens one");
        let q = client.queue::<u32>(0).unwrap();
        q.put(1).unwrap();
        assert_eq!(q.get().unwrap(), 1);
        assert_eq!(connections(&client), base + 1, "calls use the same one");
        // Another thread calling opens its own, and closes it as it ends.
        let q2 = q.clone();
        let seen = thread::spawn(move || {
            q2.put(2).unwrap();
            q2.len().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(seen, 1);
        assert!(eventually(LONG, || connections(&client) == base + 1));
        assert_eq!(q.get().unwrap(), 2);
        drop((q, client));
        assert!(eventually(LONG, || connections(&mgr) == base));
    });
}

#[test]
fn a_client_admitted_at_the_limit_can_call() {
    bounded(|| {
        let mgr = Manager::builder()
            .address("tcp:127.0.0.1:0".parse().unwrap())
            .max_connections(2)
            .spawn_thread()
            .unwrap();
        mgr.ping().unwrap();
        let client = Client::connect(mgr.address(), mgr.auth_key()).unwrap();
        // Its first call needs no second connection, so it is not refused.
        let v = client.value(5u32).unwrap();
        assert_eq!(v.get().unwrap(), 5);
        match Client::connect(mgr.address(), mgr.auth_key()) {
            Err(Error::LimitReached(_)) => {}
            other => panic!("expected LimitReached past the limit, got {other:?}"),
        }
        // A second thread of a full manager's client is refused cleanly.
        let v2 = v.clone();
        let r = thread::spawn(move || v2.get()).join().unwrap();
        assert!(matches!(r, Err(Error::LimitReached(_))), "{r:?}");
        assert_eq!(v.get().unwrap(), 5, "the first thread goes on");
    });
}

#[test]
fn a_call_made_while_decoding_a_reply_on_the_shared_connection_still_works() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let client = Client::connect(mgr.address(), mgr.auth_key()).unwrap();
        // A list of proxies: decoding the reply binds proxies, which may
        // call the manager while the reply is being read.
        let inner = client.value(7i64).unwrap();
        let outer = client.list::<ValueProxy<i64>>().unwrap();
        outer.push(inner.clone()).unwrap();
        let back = outer.get(0).unwrap().expect("the list holds one");
        assert_eq!(back.get().unwrap(), 7);
        drop((back, inner));
        outer.clear().unwrap();
        assert_eq!(outer.len().unwrap(), 0);
    });
}
