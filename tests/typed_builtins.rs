//! Built-in proxies are typed by their element types too: a queue, list,
//! dict or value reached as another element type (by name, token, inside a
//! container, as an argument or a return value) is refused with
//! `Error::InterfaceMismatch` before any call reaches it, so nothing is
//! taken from it; the right type still works. Managers run as their own OS
//! process (`start`) and as a thread (`spawn_thread`).

mod common;

use common::bounded;
use manager::{
    shared, DictProxy, Error, ListProxy, Manager, NamespaceProxy, Proxy, QueueProxy, ValueProxy,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    id: u32,
    item: String,
}

fn order() -> Order {
    Order {
        id: 7,
        item: "bolts".into(),
    }
}

/// A user type, to be confused with a queue.
#[shared]
pub struct Inventory {
    count: u32,
}

#[shared]
impl Inventory {
    /// Empty.
    pub fn new() -> Self {
        Inventory { count: 0 }
    }
    /// How many.
    pub fn count(&self) -> u32 {
        self.count
    }
}

/// Hands queues around: takes them as arguments, returns them.
#[shared]
pub struct Depot {
    names: NamespaceProxy,
}

#[shared]
impl Depot {
    /// A depot whose queues are named in `names`.
    pub fn new(names: NamespaceProxy) -> Self {
        Depot { names }
    }
    /// The queue named `name`, as a queue of `u32`, whatever it holds: the
    /// namespace cannot tell proxies of different element types apart (they
    /// serialize alike), so this hands a wrong one back as it got it.
    pub fn queue(&self, name: String) -> manager::Result<Option<QueueProxy<u32>>> {
        self.names.get::<QueueProxy<u32>>(&name)
    }
    /// The length of `q`, read through it here in the manager.
    pub fn len_of(&self, q: QueueProxy<u32>) -> manager::Result<usize> {
        q.len()
    }
}

/// An even number: its `Deserialize` refuses what its `Serialize` writes
/// for an odd one, so a reply carrying one cannot be decoded.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(try_from = "u32")]
pub struct Even(u32);

impl TryFrom<u32> for Even {
    type Error = String;
    fn try_from(n: u32) -> Result<Self, String> {
        if n % 2 == 0 {
            Ok(Even(n))
        } else {
            Err(format!("{n} is odd"))
        }
    }
}

/// Answers with a number that does not decode.
#[shared]
pub struct Parity {}

#[shared]
impl Parity {
    /// A parity.
    pub fn new() -> Self {
        Parity {}
    }
    /// An "even" number that is odd.
    pub fn odd(&self) -> Even {
        Even(3)
    }
    /// `p.odd()`, called from here in the manager.
    pub fn odd_of(&self, p: ParityProxy) -> manager::Result<Even> {
        p.odd()
    }
}

fn start() -> Manager {
    Manager::builder()
        .register::<Inventory>()
        .register::<Depot>()
        .register::<Parity>()
        .start()
        .expect("the manager process starts")
}

fn thread() -> Manager {
    Manager::builder()
        .register::<Inventory>()
        .register::<Depot>()
        .register::<Parity>()
        .spawn_thread()
        .expect("the manager thread starts")
}

fn mismatch<T: std::fmt::Debug>(r: manager::Result<T>) -> String {
    match r {
        Err(Error::InterfaceMismatch(m)) => m,
        other => panic!("expected InterfaceMismatch, got {other:?}"),
    }
}

/// A queue of `i32` holding -1, published as "numbers".
fn numbers(mgr: &Manager) -> QueueProxy<i32> {
    let q = mgr.queue::<i32>(0).unwrap();
    q.put(-1).unwrap();
    mgr.publish("numbers", &q).unwrap();
    q
}

fn lookup_refuses_another_element_type(mgr: Manager) {
    let q = numbers(&mgr);
    let why = mismatch(mgr.lookup::<QueueProxy<u32>>("numbers"));
    assert!(
        why.contains("manager::Queue<i32>") && why.contains("manager::Queue<u32>"),
        "{why}"
    );
    assert!(why.contains("another element type"), "{why}");
    assert!(!why.contains("rebuild"), "not version skew: {why}");
    // Nothing was taken; the right type still works.
    let same: QueueProxy<i32> = mgr.lookup("numbers").unwrap();
    assert_eq!(same.len().unwrap(), 1);
    assert_eq!(same.get().unwrap(), -1);
    mgr.unpublish("numbers").unwrap();
    drop(q);
}

#[test]
fn lookup_refuses_another_element_type_in_a_manager_process() {
    bounded(|| lookup_refuses_another_element_type(start()));
}

#[test]
fn lookup_refuses_another_element_type_in_a_manager_thread() {
    bounded(|| lookup_refuses_another_element_type(thread()));
}

#[test]
fn a_queue_of_options_is_not_a_queue_of_orders() {
    bounded(|| {
        let mgr = start();
        let q = mgr.queue::<Option<Order>>(0).unwrap();
        q.put(Some(order())).unwrap();
        mgr.publish("orders", &q).unwrap();
        let why = mismatch(mgr.lookup::<QueueProxy<Order>>("orders"));
        assert!(
            why.contains("core::option::Option<typed_builtins::Order>"),
            "{why}"
        );
        assert_eq!(q.get().unwrap(), Some(order()), "the order is still queued");
        mgr.unpublish("orders").unwrap();
    });
}

#[test]
fn a_plainly_wrong_type_names_both_and_gives_no_rebuild_advice() {
    bounded(|| {
        let mgr = start();
        let q = numbers(&mgr);
        let why = mismatch(mgr.lookup::<InventoryProxy>("numbers"));
        assert!(why.contains("manager::Queue<i32>"), "{why}");
        assert!(why.contains("typed_builtins::Inventory"), "{why}");
        assert!(!why.contains("rebuild"), "{why}");
        assert!(!why.contains("element type"), "{why}");
        let inv = InventoryProxy::new(&mgr).unwrap();
        mgr.publish("inventory", &inv).unwrap();
        let why = mismatch(mgr.lookup::<QueueProxy<i32>>("inventory"));
        assert!(
            why.contains("typed_builtins::Inventory, not manager::Queue<i32>"),
            "{why}"
        );
        assert_eq!(q.len().unwrap(), 1);
        mgr.unpublish("numbers").unwrap();
        mgr.unpublish("inventory").unwrap();
    });
}

fn from_token_refuses_another_element_type(mgr: Manager) {
    let q = mgr.queue::<i32>(0).unwrap();
    q.put(-1).unwrap();
    let token = q.to_token().unwrap();
    drop(q);
    let why = mismatch(QueueProxy::<u32>::from_token(&token, mgr.auth_key()));
    assert!(why.contains("another element type"), "{why}");
    // The refused redemption left the token's hold: the right type redeems it.
    let q = QueueProxy::<i32>::from_token(&token, mgr.auth_key()).unwrap();
    assert_eq!(q.get().unwrap(), -1, "nothing was consumed");
}

#[test]
fn from_token_refuses_another_element_type_in_a_manager_process() {
    bounded(|| from_token_refuses_another_element_type(start()));
}

#[test]
fn from_token_refuses_another_element_type_in_a_manager_thread() {
    bounded(|| from_token_refuses_another_element_type(thread()));
}

#[test]
fn dicts_of_other_value_types_are_told_apart() {
    bounded(|| {
        let mgr = start();
        let d = mgr.dict::<String, i64>().unwrap();
        d.insert("x".into(), -5).unwrap();
        mgr.publish("d", &d).unwrap();
        let why = mismatch(mgr.lookup::<DictProxy<String, u64>>("d"));
        assert!(
            why.contains("manager::Dict<alloc::string::String, i64>")
                && why.contains("manager::Dict<alloc::string::String, u64>"),
            "{why}"
        );
        let same: DictProxy<String, i64> = mgr.lookup("d").unwrap();
        assert_eq!(same.get(&"x".into()).unwrap(), Some(-5));
        let v = mgr.value(3u8).unwrap();
        let token = v.to_token().unwrap();
        mismatch(ValueProxy::<i8>::from_token(&token, mgr.auth_key()));
        assert_eq!(
            ValueProxy::<u8>::from_token(&token, mgr.auth_key())
                .unwrap()
                .get()
                .unwrap(),
            3
        );
        mgr.unpublish("d").unwrap();
    });
}

fn a_proxy_in_a_list_element_is_checked(mgr: Manager) {
    let q = mgr.queue::<i32>(0).unwrap();
    q.put(-1).unwrap();
    let list = mgr.list::<QueueProxy<i32>>().unwrap();
    list.push(q.clone()).unwrap();
    // A list of another element type cannot be had honestly (its own
    // fingerprint refuses it); re-typing its handle stands in for a program
    // built from another definition of the element type.
    let wrong: ListProxy<QueueProxy<u32>> = Proxy::__from_handle(list.__handle().clone());
    let got = wrong.get(0).unwrap().expect("the element is there");
    let why = mismatch(got.get());
    assert!(why.contains("manager::Queue<i32>"), "{why}");
    mismatch(got.try_get());
    mismatch(got.deferred().len());
    assert_eq!(q.len().unwrap(), 1, "nothing was consumed");
    // The right type, from the same list, works.
    let right = list.get(0).unwrap().expect("the element is there");
    assert_eq!(right.get().unwrap(), -1);
}

#[test]
fn a_proxy_in_a_list_element_is_checked_in_a_manager_process() {
    bounded(|| a_proxy_in_a_list_element_is_checked(start()));
}

#[test]
fn a_proxy_in_a_list_element_is_checked_in_a_manager_thread() {
    bounded(|| a_proxy_in_a_list_element_is_checked(thread()));
}

fn a_proxy_returned_or_passed_is_checked(mgr: Manager) {
    let names = mgr.namespace().unwrap();
    let q = mgr.queue::<i32>(0).unwrap();
    q.put(-1).unwrap();
    names.set("numbers", &q).unwrap();
    let depot = DepotProxy::new(&mgr, names.clone()).unwrap();
    // Returned by a user method: refused before the call reaches the queue.
    let got = depot
        .queue("numbers".into())
        .unwrap()
        .unwrap()
        .expect("the name is set");
    let why = mismatch(got.get());
    assert!(why.contains("another element type"), "{why}");
    // Passed to a user method, which calls it in the manager: the method's
    // own call fails, and it returns that error.
    mismatch(depot.len_of(got).unwrap());
    // Straight out of the namespace, on this side.
    let direct = names.get::<QueueProxy<u32>>("numbers").unwrap().unwrap();
    mismatch(direct.try_get());
    assert_eq!(q.get().unwrap(), -1, "nothing was consumed");
    let fine = names.get::<QueueProxy<i32>>("numbers").unwrap().unwrap();
    assert_eq!(fine.len().unwrap(), 0);
}

#[test]
fn a_proxy_returned_or_passed_is_checked_in_a_manager_process() {
    bounded(|| a_proxy_returned_or_passed_is_checked(start()));
}

#[test]
fn a_proxy_returned_or_passed_is_checked_in_a_manager_thread() {
    bounded(|| a_proxy_returned_or_passed_is_checked(thread()));
}

#[test]
fn the_right_element_type_works_everywhere_and_nothing_leaks() {
    bounded(|| {
        let mgr = start();
        let base = mgr.stats().unwrap().objects;
        {
            let q = mgr.queue::<Order>(0).unwrap();
            q.put(order()).unwrap();
            let list = mgr.list::<QueueProxy<Order>>().unwrap();
            list.push(q.clone()).unwrap();
            mgr.publish("q", &q).unwrap();
            let by_name: QueueProxy<Order> = mgr.lookup("q").unwrap();
            let by_token =
                QueueProxy::<Order>::from_token(&q.to_token().unwrap(), mgr.auth_key()).unwrap();
            let from_list = list.pop().unwrap().unwrap();
            assert_eq!(by_name.len().unwrap(), 1);
            assert_eq!(by_token.len().unwrap(), 1);
            assert_eq!(from_list.get().unwrap(), order());
            mgr.unpublish("q").unwrap();
        }
        assert!(
            common::eventually(std::time::Duration::from_secs(5), || {
                mgr.stats().unwrap().objects == base
            }),
            "every object was freed"
        );
    });
}

fn protocol<T: std::fmt::Debug>(r: manager::Result<T>) -> String {
    match r {
        Err(Error::Protocol(m)) => m,
        other => panic!("expected Protocol, got {other:?}"),
    }
}

fn a_namespace_value_of_another_type_is_named(mgr: Manager) {
    let ns = mgr.namespace().unwrap();
    ns.set("count", 5u8).unwrap();
    let why = protocol(ns.get::<String>("count"));
    assert!(why.contains("namespace value \"count\""), "{why}");
    assert!(why.contains("`alloc::string::String`"), "{why}");
    assert!(!why.contains("trailing"), "{why}");
    // One whose bytes happen to decode is caught by its shape.
    let why = protocol(ns.get::<i8>("count"));
    assert!(why.contains("\"count\"") && why.contains("`i8`"), "{why}");
    assert_eq!(ns.get::<u8>("count").unwrap(), Some(5));
}

#[test]
fn a_namespace_value_of_another_type_is_named_in_a_manager_process() {
    bounded(|| a_namespace_value_of_another_type_is_named(start()));
}

#[test]
fn a_namespace_value_of_another_type_is_named_in_a_manager_thread() {
    bounded(|| a_namespace_value_of_another_type_is_named(thread()));
}

fn a_reply_that_does_not_decode_names_its_method_and_type(mgr: Manager) {
    let p = ParityProxy::new(&mgr).unwrap();
    let why = protocol(p.odd());
    assert!(
        why.starts_with("the reply of `odd` could not be decoded as `typed_builtins::Even`: "),
        "{why}"
    );
    assert!(!why.contains("arguments"), "{why}");
    let later = protocol(p.deferred().odd().unwrap().wait());
    assert_eq!(later, why, "the deferred reply says the same");
    // Called inside the manager, in-process: the same error, returned by
    // the outer method as its own.
    let inside = protocol(p.odd_of(p.clone()).unwrap());
    assert_eq!(inside, why);
}

#[test]
fn a_reply_that_does_not_decode_names_its_method_and_type_in_a_manager_process() {
    bounded(|| a_reply_that_does_not_decode_names_its_method_and_type(start()));
}

#[test]
fn a_reply_that_does_not_decode_names_its_method_and_type_in_a_manager_thread() {
    bounded(|| a_reply_that_does_not_decode_names_its_method_and_type(thread()));
}

/// What the fingerprint cannot see (a changed shape behind the same path,
/// stood in for by a re-typed handle) fails to decode, and says which reply
/// and which type, not "trailing bytes after the arguments".
#[test]
fn a_built_in_reply_that_does_not_decode_names_its_method_and_type() {
    bounded(|| {
        let mgr = start();
        let q = mgr.queue::<Option<Order>>(0).unwrap();
        q.put(Some(order())).unwrap();
        q.put(None).unwrap();
        let skewed: QueueProxy<Order> = Proxy::__from_handle(q.__handle().clone());
        let why = protocol(skewed.get());
        assert!(
            why.starts_with("the reply of `get` could not be decoded as `typed_builtins::Order`: "),
            "{why}"
        );
        let why = protocol(skewed.deferred().try_get().unwrap().wait());
        assert!(
            why.starts_with(
                "the reply of `try_get` could not be decoded as \
                 `core::option::Option<typed_builtins::Order>`: "
            ),
            "{why}"
        );
    });
}

/// A proxy to manager A's queue, stored on manager B, binds to A when it
/// arrives (it is not in B's reply's capabilities): A checks it then.
#[test]
fn a_proxy_to_another_manager_is_checked_by_that_manager() {
    bounded(|| {
        let a = start();
        let b = thread();
        let q = a.queue::<i32>(0).unwrap();
        q.put(-1).unwrap();
        let on_b = b.value(q.clone()).unwrap();
        // As in the list test: a re-typed handle stands in for a program
        // built from another definition.
        let wrong: ValueProxy<QueueProxy<u32>> = Proxy::__from_handle(on_b.__handle().clone());
        let got = wrong.get().unwrap();
        let why = mismatch(got.get());
        assert!(why.contains("manager::Queue<i32>"), "{why}");
        assert_eq!(
            on_b.get().unwrap().get().unwrap(),
            -1,
            "nothing was consumed"
        );
    });
}
