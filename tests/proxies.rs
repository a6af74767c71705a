//! Proxies are values: passed as arguments, returned, stored in objects and
//! containers, sent to other processes, with exact reference counting.

mod common;

use std::time::Duration;

use common::{eventually, read_marked, role, sigkill, spawn_role};
use manager::{shared, Address, AuthKey, Client, Context, Error, Manager, Proxy, ValueProxy};

#[shared]
pub struct Counter {
    value: i64,
}

#[shared]
impl Counter {
    /// A counter at `start`.
    pub fn new(start: i64) -> Self {
        Counter { value: start }
    }
    /// Adds `by`.
    pub fn incr(&mut self, by: i64) -> i64 {
        self.value += by;
        self.value
    }
    /// The value.
    pub fn get(&self) -> i64 {
        self.value
    }
}

/// Holds counters, and makes them.
#[shared]
#[derive(Default)]
pub struct Holder {
    held: Vec<CounterProxy>,
}

#[shared]
impl Holder {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }
    /// Keeps `c`.
    pub fn hold(&mut self, c: CounterProxy) -> usize {
        self.held.push(c);
        self.held.len()
    }
    /// Gives one back.
    pub fn take(&mut self) -> Option<CounterProxy> {
        self.held.pop()
    }
    /// The sum of the held counters, read through their proxies, in-process.
    pub fn sum(&self) -> manager::Result<i64> {
        self.held.iter().map(|c| c.get()).sum()
    }
    /// Creates a counter in this manager and returns its proxy.
    pub fn make(&self, ctx: &Context, start: i64) -> manager::Result<CounterProxy> {
        CounterProxy::new(&ctx.client()?, start)
    }
    /// Forgets everything.
    pub fn clear(&mut self) {
        self.held.clear();
    }
}

/// A node that may point at another: for cycles.
#[shared]
#[derive(Default)]
pub struct Node {
    peer: Option<NodeProxy>,
}

#[shared]
impl Node {
    /// Alone.
    pub fn new() -> Self {
        Self::default()
    }
    /// Points at `peer`.
    pub fn set_peer(&mut self, peer: Option<NodeProxy>) {
        self.peer = peer;
    }
}

/// Same name as `Counter`'s proxy methods would suggest, another interface.
#[shared]
pub struct Impostor;

#[shared]
impl Impostor {
    /// One.
    pub fn new() -> Self {
        Impostor
    }
    /// Not `Counter::get`.
    pub fn get(&self) -> String {
        String::new()
    }
}

fn manager() -> Manager {
    Manager::builder()
        .register::<Counter>()
        .register::<Holder>()
        .register::<Node>()
        .register::<Impostor>()
        .handoff_timeout(Duration::from_millis(200))
        .spawn_thread()
        .unwrap()
}

fn objects(c: &Client) -> u64 {
    c.stats().unwrap().objects
}

#[test]
fn a_proxy_passed_to_a_method_and_stored_keeps_its_object_alive() {
    let mgr = manager();
    let base = objects(&mgr);
    let c = CounterProxy::new(&mgr, 5).unwrap();
    let h = HolderProxy::new(&mgr).unwrap();
    assert_eq!(h.hold(c.clone()).unwrap(), 1);
    drop(c);
    assert_eq!(objects(&mgr), base + 2, "the holder keeps the counter");
    assert_eq!(
        h.sum().unwrap().unwrap(),
        5,
        "the holder calls it in-process"
    );
    let back = h.take().unwrap().expect("one held");
    assert_eq!(back.incr(1).unwrap(), 6);
    drop(back);
    assert_eq!(objects(&mgr), base + 1);
    drop(h);
    assert_eq!(objects(&mgr), base);
}

#[test]
fn a_method_can_create_objects_and_return_their_proxies() {
    let mgr = manager();
    let base = objects(&mgr);
    let h = HolderProxy::new(&mgr).unwrap();
    let made = h.make(3).unwrap().unwrap();
    assert_eq!(made.incr(1).unwrap(), 4);
    assert_eq!(objects(&mgr), base + 2);
    drop(made);
    assert_eq!(objects(&mgr), base + 1);
    drop(h);
    assert_eq!(objects(&mgr), base);
}

#[test]
fn proxies_stored_in_a_shared_value_live_while_stored() {
    let mgr = manager();
    let base = objects(&mgr);
    let c = CounterProxy::new(&mgr, 1).unwrap();
    let v: ValueProxy<CounterProxy> = mgr.value(c.clone()).unwrap();
    drop(c);
    assert_eq!(objects(&mgr), base + 2);
    assert_eq!(v.get().unwrap().incr(1).unwrap(), 2);
    let old = v.swap(CounterProxy::new(&mgr, 10).unwrap()).unwrap();
    assert_eq!(old.get().unwrap(), 2, "the swapped-out proxy still works");
    drop(old);
    assert_eq!(objects(&mgr), base + 2, "value + the new counter");
    assert_eq!(v.get().unwrap().get().unwrap(), 10);
    drop(v);
    assert_eq!(objects(&mgr), base);
}

#[test]
fn the_same_object_in_two_containers_removed_from_one_stays_alive() {
    let mgr = manager();
    let base = objects(&mgr);
    let c = CounterProxy::new(&mgr, 7).unwrap();
    let first = mgr.value(Some(c.clone())).unwrap();
    let second = mgr.value(Some(c.clone())).unwrap();
    drop(c);
    first.set(None).unwrap();
    assert_eq!(objects(&mgr), base + 3);
    assert_eq!(second.get().unwrap().unwrap().get().unwrap(), 7);
    second.set(None).unwrap();
    assert_eq!(objects(&mgr), base + 2, "only the two values remain");
}

#[test]
fn a_proxy_to_manager_a_can_be_stored_on_manager_b() {
    let a = manager();
    let b = manager();
    let base_a = objects(&a);
    let c = CounterProxy::new(&a, 40).unwrap();
    let on_b: ValueProxy<CounterProxy> = b.value(c.clone()).unwrap();
    drop(c);
    assert_eq!(objects(&a), base_a + 1, "manager B holds A's counter");
    let back = on_b.get().unwrap();
    assert_eq!(back.incr(2).unwrap(), 42);
    drop(back);
    drop(on_b);
    assert!(
        eventually(Duration::from_secs(5), || objects(&a) == base_a),
        "A's counter was released after B let go"
    );
}

#[test]
fn a_proxy_of_another_interface_is_refused_not_miscalled() {
    let mgr = manager();
    let c = CounterProxy::new(&mgr, 1).unwrap();
    mgr.publish("counter", &c).unwrap();
    assert!(matches!(
        mgr.lookup::<ImpostorProxy>("counter"),
        Err(Error::InterfaceMismatch(_))
    ));
    let stored = mgr.value(c.clone()).unwrap();
    let wrong: ValueProxy<ImpostorProxy> = Proxy::__from_handle(stored.__handle().clone());
    let impostor = wrong.get().unwrap();
    assert!(matches!(impostor.get(), Err(Error::InterfaceMismatch(_))));
    assert!(matches!(
        ImpostorProxy::from_token(&c.to_token().unwrap(), mgr.auth_key()),
        Err(Error::InterfaceMismatch(_))
    ));
    mgr.unpublish("counter").unwrap();
}

#[test]
fn a_call_on_a_freed_object_is_no_such_object() {
    let mgr = manager();
    let c = CounterProxy::new(&mgr, 1).unwrap();
    let bytes = postcard::to_allocvec(&c).unwrap();
    drop(c);
    mgr.ping().unwrap(); // the release went first, on the same connection
    let stale: CounterProxy = postcard::from_bytes(&bytes).unwrap();
    assert!(matches!(stale.get(), Err(Error::NoSuchObject(_))));
}

/// Cycles are not collected: a manager counts references, it does not trace
/// them. The documented way out is to break the cycle while you still hold a
/// proxy into it; what is not broken lives until the manager stops.
#[test]
fn cycles_live_until_broken() {
    let mgr = manager();
    let base = objects(&mgr);
    let (n1, n2) = (NodeProxy::new(&mgr).unwrap(), NodeProxy::new(&mgr).unwrap());
    n1.set_peer(Some(n2.clone())).unwrap();
    n2.set_peer(Some(n1.clone())).unwrap();
    n1.set_peer(None).unwrap(); // broken
    drop((n1, n2));
    assert_eq!(objects(&mgr), base, "a broken cycle is freed");

    let (n1, n2) = (NodeProxy::new(&mgr).unwrap(), NodeProxy::new(&mgr).unwrap());
    n1.set_peer(Some(n2.clone())).unwrap();
    n2.set_peer(Some(n1.clone())).unwrap();
    drop((n1, n2));
    assert_eq!(
        objects(&mgr),
        base + 2,
        "an unbroken cycle is not collected"
    );
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set for child roles"))
}

/// Entry point of the child processes this file starts; a no-op otherwise.
#[test]
fn child_role() {
    let Some(role) = role() else { return };
    assert_eq!(role, "hold-100");
    let address: Address = env("ADDRESS").parse().unwrap();
    let client = Client::connect(&address, &AuthKey::from_hex(&env("KEY")).unwrap()).unwrap();
    let held: Vec<_> = (0..100)
        .map(|i| CounterProxy::new(&client, i).unwrap())
        .collect();
    println!("holding={}", held.len());
    loop {
        std::thread::park();
    }
}

#[test]
fn a_killed_process_holding_100_proxies_releases_them_all() {
    let mgr = Manager::builder().register::<Counter>().start().unwrap();
    let base = objects(&mgr);
    let mut child = spawn_role(
        "child_role",
        "hold-100",
        &[
            ("ADDRESS", mgr.address().to_string()),
            ("KEY", mgr.auth_key().to_hex()),
        ],
    );
    assert_eq!(read_marked(&mut child, "holding=").as_deref(), Some("100"));
    assert_eq!(objects(&mgr), base + 100);
    sigkill(child.id());
    let _ = child.wait();
    assert!(
        eventually(Duration::from_secs(10), || objects(&mgr) == base),
        "still {} objects",
        objects(&mgr)
    );
}

#[test]
fn a_started_manager_can_hold_proxies_to_a_manager_its_parent_knows() {
    let a = manager();
    let base_a = objects(&a);
    // B is its own process: it learns A's key from its parent at start.
    let b = Manager::builder().start().unwrap();
    let c = CounterProxy::new(&a, 1).unwrap();
    let on_b: ValueProxy<CounterProxy> = b.value(c.clone()).unwrap();
    drop(c);
    assert_eq!(objects(&a), base_a + 1, "B's process holds A's counter");
    assert_eq!(on_b.get().unwrap().incr(1).unwrap(), 2);
    drop(on_b);
    b.shutdown().unwrap();
    assert!(
        eventually(Duration::from_secs(10), || objects(&a) == base_a),
        "B's references went with B"
    );
}

#[test]
fn lists_of_proxies_and_lists_of_lists_work_and_count_exactly() {
    let mgr = manager();
    let base = objects(&mgr);
    let counters: manager::ListProxy<CounterProxy> = mgr.list().unwrap();
    counters.push(CounterProxy::new(&mgr, 1).unwrap()).unwrap();
    counters.push(CounterProxy::new(&mgr, 2).unwrap()).unwrap();
    let sum: i64 = counters
        .to_vec()
        .unwrap()
        .iter()
        .map(|c| c.get().unwrap())
        .sum();
    assert_eq!(sum, 3);

    let nested: manager::ListProxy<manager::ListProxy<i64>> = mgr.list().unwrap();
    for n in 0..3 {
        let inner = mgr.list::<i64>().unwrap();
        inner.extend(0..n).unwrap();
        nested.push(inner).unwrap();
    }
    let lens: Vec<usize> = nested
        .to_vec()
        .unwrap()
        .iter()
        .map(|l| l.len().unwrap())
        .collect();
    assert_eq!(lens, [0, 1, 2]);
    let last = nested.pop().unwrap().unwrap();
    last.push(9).unwrap();
    assert_eq!(last.to_vec().unwrap(), [0, 1, 9]);
    // 2 counters + their list, 2 inner lists left + the nested list + `last`.
    assert_eq!(objects(&mgr), base + 3 + 4);
    drop((counters, nested, last));
    assert_eq!(objects(&mgr), base);
}

#[test]
fn dropping_a_client_ends_its_session_while_threads_that_used_it_live_on() {
    let mgr = manager();
    let before = mgr.stats().unwrap();
    let other = Client::connect(mgr.address(), mgr.auth_key()).unwrap();
    // This thread calls first: its calls go on the client's own connection.
    other.ping().unwrap();
    let (used, wait_used) = std::sync::mpsc::channel();
    let (release, parked) = std::sync::mpsc::channel::<()>();
    // Another thread calls through the client (opening its own connection,
    // kept in that thread's storage) and stays alive after letting the
    // client go.
    let worker = std::thread::spawn({
        let other = other.clone();
        move || {
            other.ping().unwrap();
            drop(other);
            used.send(()).unwrap();
            let _ = parked.recv();
        }
    });
    wait_used.recv().unwrap();
    let during = mgr.stats().unwrap();
    assert_eq!(during.sessions, before.sessions + 1);
    assert_eq!(
        during.connections,
        before.connections + 2,
        "main + the thread's"
    );
    drop(other);
    assert!(
        eventually(Duration::from_secs(5), || {
            let s = mgr.stats().unwrap();
            s.sessions == before.sessions && s.connections == before.connections
        }),
        "the session and both its connections ended with the client, not the thread"
    );
    release.send(()).unwrap();
    worker.join().unwrap();
}
