//! Two managers in one program: proxies of each stored in the other's
//! containers and objects, passed to and returned from its methods, and
//! handed over by token, with both managers' live-object counts exact.
//! (One manager's reference counting is modelled in `refcount_model.rs`.)

mod common;

use std::time::Duration;

use common::{bounded, eventually};
use manager::{shared, Client, Manager};

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
