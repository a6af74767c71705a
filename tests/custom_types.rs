//! A user's own `#[shared]` type served by a manager, called from threads and
//! from other processes.

mod common;

use std::time::Duration;

use common::{read_marked, role, spawn_role, wait_ok};
use manager::{shared, Address, AuthKey, Client, Context, Error, Manager, Proxy, Shared};

/// The counter of DESIGN §2.
#[shared]
pub struct Counter {
    value: i64,
}

#[shared]
impl Counter {
    /// A counter starting at `start`.
    pub fn new(start: i64) -> Self {
        Counter { value: start }
    }

    /// A counter starting at zero.
    pub fn zero() -> Counter {
        Counter { value: 0 }
    }

    /// Adds `by` and returns the new value.
    pub fn incr(&mut self, by: i64) -> i64 {
        self.value += by;
        self.value
    }

    /// The value.
    pub fn get(&self) -> i64 {
        self.value
    }

    /// The value divided by `d`, or why not.
    pub fn checked_div(&self, d: i64) -> Result<i64, String> {
        self.value
            .checked_div(d)
            .ok_or_else(|| format!("cannot divide {} by {d}", self.value))
    }

    /// Which connection called.
    pub fn caller(&self, ctx: &Context, echo: String) -> (u64, String) {
        (ctx.connection_id(), echo)
    }

    /// Resets to zero.
    pub fn reset(&mut self) {
        self.reset_inner();
    }

    fn reset_inner(&mut self) {
        self.value = 0;
    }
}

/// A type the test managers do not register.
#[shared]
#[derive(Default)]
pub struct Stranger;

#[shared]
impl Stranger {
    /// A stranger.
    pub fn new() -> Self {
        Stranger
    }
    /// Nothing.
    pub fn hello(&self) {}
}

const PER_WORKER: i64 = 300;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set for child roles"))
}

/// Entry point of the child processes this file starts; a no-op otherwise.
#[test]
fn child_role() {
    let Some(role) = role() else { return };
    let key = AuthKey::from_hex(&env("KEY")).unwrap();
    match role.as_str() {
        "increment-by-token" => {
            let c = CounterProxy::from_token(&env("TOKEN"), &key).unwrap();
            for _ in 0..PER_WORKER {
                c.incr(1).unwrap();
            }
        }
        "increment-by-lookup" => {
            let address: Address = env("ADDRESS").parse().unwrap();
            let client = Client::connect(&address, &key).unwrap();
            let c: CounterProxy = client.lookup("the-counter").unwrap();
            let after = c.incr(1000).unwrap();
            println!("after={after}");
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn threads_and_processes_update_one_object_exactly() {
    let mgr = Manager::builder().register::<Counter>().start().unwrap();
    let counter = CounterProxy::new(&mgr, 0).unwrap();
    let key = mgr.auth_key().to_hex();
    let mut children: Vec<_> = (0..2)
        .map(|_| {
            spawn_role(
                "child_role",
                "increment-by-token",
                &[("KEY", key.clone()), ("TOKEN", counter.to_token().unwrap())],
            )
        })
        .collect();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let c = counter.clone();
            s.spawn(move || {
                for _ in 0..PER_WORKER {
                    c.incr(1).unwrap();
                }
            });
        }
    });
    for child in &mut children {
        assert!(
            wait_ok(child, Duration::from_secs(60)),
            "a child process failed"
        );
    }
    assert_eq!(counter.get().unwrap(), 6 * PER_WORKER);
}

#[test]
fn another_process_finds_a_published_object_by_name() {
    let mgr = Manager::builder()
        .register::<Counter>()
        .spawn_thread()
        .unwrap();
    let counter = CounterProxy::new(&mgr, 5).unwrap();
    mgr.publish("the-counter", &counter).unwrap();
    let mut child = spawn_role(
        "child_role",
        "increment-by-lookup",
        &[
            ("KEY", mgr.auth_key().to_hex()),
            ("ADDRESS", mgr.address().to_string()),
        ],
    );
    assert_eq!(read_marked(&mut child, "after=").as_deref(), Some("1005"));
    assert!(wait_ok(&mut child, Duration::from_secs(30)));
    assert_eq!(counter.get().unwrap(), 1005);
}

#[test]
fn methods_keep_their_signatures_results_and_context() {
    let mgr = Manager::builder()
        .register::<Counter>()
        .spawn_thread()
        .unwrap();
    let c = CounterProxy::new(&mgr, 10).unwrap();
    assert_eq!(c.checked_div(2).unwrap(), Ok(5));
    assert_eq!(
        c.checked_div(0).unwrap(),
        Err("cannot divide 10 by 0".to_owned())
    );
    let (conn, echo) = c.caller("hi".into()).unwrap();
    assert_eq!(echo, "hi");
    assert!(conn > 0);
    c.reset().unwrap();
    assert_eq!(c.get().unwrap(), 0);
    let z = CounterProxy::zero(&mgr).unwrap();
    assert_eq!(z.incr(3).unwrap(), 3);
    assert!(<Counter as Shared>::TYPE_NAME.ends_with("custom_types::Counter"));
}

#[test]
fn deferred_calls_run_in_order_and_replies_come_in_any_order() {
    let mgr = Manager::builder()
        .register::<Counter>()
        .spawn_thread()
        .unwrap();
    let c = CounterProxy::new(&mgr, 0).unwrap();
    let pending: Vec<_> = (0..100).map(|_| c.deferred().incr(1).unwrap()).collect();
    let dropped = c.deferred().incr(1000).unwrap();
    drop(dropped);
    let values: Vec<i64> = pending
        .into_iter()
        .rev()
        .map(|p| p.wait().unwrap())
        .collect();
    assert_eq!(values, (1..=100).rev().collect::<Vec<_>>());
    assert_eq!(c.get().unwrap(), 1100);
}

#[test]
fn constructing_an_unregistered_type_is_refused() {
    let mgr = Manager::builder()
        .register::<Counter>()
        .spawn_thread()
        .unwrap();
    match StrangerProxy::new(&mgr) {
        Err(Error::NotRegistered(msg)) => assert!(msg.contains("Stranger"), "{msg}"),
        other => panic!("expected NotRegistered, got {other:?}"),
    }
    // The manager goes on.
    assert_eq!(CounterProxy::new(&mgr, 1).unwrap().get().unwrap(), 1);
}

#[test]
fn names_keep_objects_alive_until_unpublished() {
    let mgr = Manager::builder()
        .register::<Counter>()
        .spawn_thread()
        .unwrap();
    let base = mgr.stats().unwrap().objects;
    let c = CounterProxy::new(&mgr, 7).unwrap();
    mgr.publish("seven", &c).unwrap();
    drop(c);
    let again: CounterProxy = mgr.lookup("seven").unwrap();
    assert_eq!(again.get().unwrap(), 7);
    mgr.publish("seven", &CounterProxy::new(&mgr, 8).unwrap())
        .unwrap();
    let replaced: CounterProxy = mgr.lookup("seven").unwrap();
    assert_eq!(replaced.get().unwrap(), 8);
    mgr.unpublish("seven").unwrap();
    assert!(matches!(
        mgr.unpublish("seven"),
        Err(Error::NoSuchName { .. })
    ));
    assert!(matches!(
        mgr.lookup::<CounterProxy>("seven"),
        Err(Error::NoSuchName { .. })
    ));
    drop((again, replaced));
    assert_eq!(mgr.stats().unwrap().objects, base);
    let by_type = mgr.stats().unwrap().objects_by_type;
    assert_eq!(by_type.get(<Counter as Shared>::TYPE_NAME), None);
}

#[test]
fn tcp_managers_report_their_real_port() {
    let mgr = Manager::builder()
        .register::<Counter>()
        .address("tcp:127.0.0.1:0".parse().unwrap())
        .spawn_thread()
        .unwrap();
    let shown = mgr.address().to_string();
    assert!(
        shown.starts_with("tcp:127.0.0.1:") && !shown.ends_with(":0"),
        "{shown}"
    );
    let client = Client::connect(mgr.address(), mgr.auth_key()).unwrap();
    let c = CounterProxy::new(&client, 41).unwrap();
    assert_eq!(c.incr(1).unwrap(), 42);
}

#[test]
fn local_socket_lives_in_a_private_directory() {
    use std::os::unix::fs::PermissionsExt;
    let mgr = Manager::builder().spawn_thread().unwrap();
    let path = mgr.address().local_path().unwrap().to_owned();
    let dir = path.parent().unwrap();
    let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dir.display());
    assert!(path.exists());
    mgr.shutdown().unwrap();
    assert!(!path.exists(), "the socket file is removed at shutdown");
}

#[test]
fn shutdown_returns_while_clients_are_connected_and_they_fail_cleanly() {
    let mgr = Manager::builder()
        .register::<Counter>()
        .spawn_thread()
        .unwrap();
    let other = Client::connect(mgr.address(), mgr.auth_key()).unwrap();
    let c = CounterProxy::new(&other, 1).unwrap();
    assert_eq!(c.get().unwrap(), 1);
    mgr.shutdown().unwrap();
    match c.get() {
        Err(Error::ConnectionLost { .. } | Error::ServerShutdown) => {}
        other => panic!("expected ConnectionLost, got {other:?}"),
    }
}
