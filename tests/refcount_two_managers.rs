//! Two managers in one program: proxies of each stored in the other's
//! containers and objects, passed to and returned from its methods, and
//! handed over by token, with both managers' live-object counts exact.
//! (One manager's reference counting is modelled in `refcount_model.rs`.)

mod common;

use std::time::Duration;

use common::{bounded, eventually, read_marked, role, spawn_role, wait_ok};
use manager::{shared, Address, AuthKey, Client, Error, ListProxy, Manager, Proxy};

#[shared]
pub struct Cell {
    id: u32,
}

#[shared]
impl Cell {
    /// A cell named `id`.
    pub fn new(id: u32) -> Self {
        Cell { id }
    }
    /// Its name.
    pub fn id(&self) -> u32 {
        self.id
    }
}

/// Keeps one cell, of whichever manager, in a field.
#[shared]
#[derive(Default)]
pub struct Holder {
    held: Option<CellProxy>,
}

#[shared]
impl Holder {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }
    /// Keeps `cell` (dropping what it kept).
    pub fn hold(&mut self, cell: Option<CellProxy>) {
        self.held = cell;
    }
    /// Gives the cell back, keeping nothing.
    pub fn take(&mut self) -> Option<CellProxy> {
        self.held.take()
    }
    /// The kept cell's name, asked through the kept proxy.
    pub fn held_id(&self) -> manager::Result<Option<u32>> {
        self.held.as_ref().map(|c| c.id()).transpose()
    }
}

/// Long enough for a receiver to bind what a reply carried, short enough
/// for a test to wait it out.
const HANDOFF: Duration = Duration::from_millis(200);

/// How long an effect in another connection or process may take to show.
const SETTLE: Duration = Duration::from_secs(10);

fn builder() -> manager::ManagerBuilder {
    Manager::builder()
        .register::<Cell>()
        .register::<Holder>()
        .handoff_timeout(HANDOFF)
}

fn on_thread() -> Manager {
    builder()
        .spawn_thread()
        .expect("a manager starts on a thread")
}

fn objects(c: &Client) -> u64 {
    c.stats().expect("the manager answers stats").objects
}

/// Whether `mgr`'s live-object count reaches `n`: it may lag behind a step
/// by a release on another connection, or by a hand-off hold.
fn settles_at(mgr: &Client, n: u64) -> bool {
    eventually(SETTLE, || objects(mgr) == n)
}

#[test]
fn foreign_proxy_stored_in_field_stays_alive() {
    bounded(|| {
        let a = on_thread();
        let b = on_thread();
        let base_a = objects(&a);
        let holder = HolderProxy::new(&b).unwrap();
        // The caller's only proxy is a temporary, gone when `hold` returns.
        holder.hold(Some(CellProxy::new(&a, 7).unwrap())).unwrap();
        assert_eq!(objects(&a), base_a + 1, "B's field holds A's cell");
        assert_eq!(
            holder.held_id().unwrap().unwrap(),
            Some(7),
            "a later call through the stored proxy reaches the cell"
        );
        holder.hold(None).unwrap();
        assert!(settles_at(&a, base_a), "A's cell is freed with the field");
    });
}

#[test]
fn foreign_proxy_returned_from_a_field_reaches_the_caller() {
    bounded(|| {
        let a = on_thread();
        let b = on_thread();
        let base_a = objects(&a);
        let holder = HolderProxy::new(&b).unwrap();
        holder.hold(Some(CellProxy::new(&a, 8).unwrap())).unwrap();
        // `take` moves B's only proxy into the reply: B drops it as the
        // call ends, before the caller has decoded the reply.
        let back = holder.take().unwrap().expect("B held a cell");
        assert_eq!(back.id().unwrap(), 8, "the cell outlived the trip");
        assert_eq!(objects(&a), base_a + 1);
        drop(back);
        assert!(
            settles_at(&a, base_a),
            "the cell is freed once B's hand-off hold ends"
        );
    });
}

#[test]
fn foreign_proxy_in_container_is_freed_after_clear() {
    bounded(|| {
        // The default hand-off time (60 s): clear must not wait for it.
        let a = Manager::builder()
            .register::<Cell>()
            .spawn_thread()
            .unwrap();
        let b = Manager::builder().spawn_thread().unwrap();
        let base_a = objects(&a);
        let list = b.list::<CellProxy>().unwrap();
        let cell = CellProxy::new(&a, 1).unwrap();
        list.push(cell.clone()).unwrap();
        list.push(cell.clone()).unwrap();
        drop(cell);
        assert_eq!(objects(&a), base_a + 1, "B's list holds A's cell");
        list.clear().unwrap();
        // Clear sends the elements nowhere: nothing needs A's cell any more.
        assert!(settles_at(&a, base_a), "A's cell was freed after clear");

        // An element that leaves with a reply is kept until the receiver
        // has its own reference.
        let cell = CellProxy::new(&a, 2).unwrap();
        list.push(cell.clone()).unwrap();
        drop(cell);
        let popped = list.pop().unwrap().expect("one element");
        drop(list);
        assert_eq!(popped.id().unwrap(), 2, "the popped proxy holds its cell");
    });
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set for child roles"))
}

/// What using a proxy gave, in a word the parent can check.
fn outcome(r: manager::Result<u32>) -> String {
    match r {
        Err(Error::AuthenticationFailed(_)) => "auth".into(),
        Err(Error::NoSuchObject(_)) => "gone".into(),
        Err(e) => format!("error({e})"),
        Ok(id) => format!("called({id})"),
    }
}

/// Entry point of the child processes this file starts; a no-op otherwise.
#[test]
fn child_role() {
    let Some(role) = role() else { return };
    assert_eq!(role, "only-b");
    // This process knows B's key and nothing else.
    let address: Address = env("B_ADDRESS").parse().unwrap();
    let key = AuthKey::from_hex(&env("B_KEY")).unwrap();
    let b = Client::connect(&address, &key).unwrap();
    let list: ListProxy<CellProxy> = b.lookup("cells").unwrap();
    let holder: HolderProxy = b.lookup("holder").unwrap();
    let from_list = list.get(0).unwrap().expect("the list holds A's cell");
    let from_field = holder.take().unwrap().expect("the holder holds A's cell");
    let results = [
        outcome(from_list.id()),
        outcome(from_field.id()),
        // A second use asks again, and fails the same way.
        outcome(from_list.id()),
        outcome(CellProxy::from_token(&env("A_TOKEN"), &key).and_then(|c| c.id())),
    ];
    println!("outcomes={}", results.join(","));
}

#[test]
fn foreign_proxy_without_key_is_authentication_failed() {
    bounded(|| {
        let a = on_thread();
        let b = on_thread();
        let base_a = objects(&a);
        let cell = CellProxy::new(&a, 3).unwrap();
        let list = b.list::<CellProxy>().unwrap();
        list.push(cell.clone()).unwrap();
        let holder = HolderProxy::new(&b).unwrap();
        holder.hold(Some(cell.clone())).unwrap();
        b.publish("cells", &list).unwrap();
        b.publish("holder", &holder).unwrap();
        let token = cell.to_token().unwrap();
        drop(cell);
        // Redeemed here, so that the token's own hold is not what keeps
        // the cell alive below.
        drop(CellProxy::from_token(&token, a.auth_key()).unwrap());
        let calls_before = a.stats().unwrap().calls;

        let mut child = spawn_role(
            "child_role",
            "only-b",
            &[
                ("B_ADDRESS", b.address().to_string()),
                ("B_KEY", b.auth_key().to_hex()),
                ("A_TOKEN", token),
            ],
        );
        let outcomes = read_marked(&mut child, "outcomes=");
        assert!(wait_ok(&mut child, SETTLE), "the child role failed");
        assert_eq!(outcomes.as_deref(), Some("auth,auth,auth,auth"));
        assert_eq!(
            a.stats().unwrap().calls,
            calls_before + 1,
            "nothing but this stats call reached A"
        );
        assert_eq!(objects(&a), base_a + 1, "B's list still holds the cell");
        drop((list, holder));
        b.unpublish("cells").unwrap();
        b.unpublish("holder").unwrap();
        assert!(settles_at(&a, base_a), "the cell is freed after all");
    });
}
