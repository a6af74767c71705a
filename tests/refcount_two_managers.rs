//! Two managers in one program: proxies of each stored in the other's
//! containers and objects, passed to and returned from its methods, and
//! handed over by token, with both managers' live-object counts exact;
//! and a proxy that arrives from the other manager acting for the thread
//! that received it. (One manager's reference counting is modelled in
//! `refcount_model.rs`.)

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{bounded, eventually, read_marked, role, spawn_role, wait_ok};
use manager::{
    shared, Address, AuthKey, Client, Error, ListProxy, Manager, Proxy, RLockProxy, ValueProxy,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

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
    /// Keeps the cell that `token` names, redeeming it here with `key_hex`.
    pub fn redeem(&mut self, token: String, key_hex: String) -> manager::Result<()> {
        let key = AuthKey::from_hex(&key_hex)?;
        self.held = Some(CellProxy::from_token(&token, &key)?);
        Ok(())
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

#[test]
fn a_proxy_received_from_the_other_manager_acts_for_the_receiving_thread() {
    bounded(|| {
        // A is in this process, but this thread is not inside it: a proxy
        // to A that reaches it from B, or from a token, calls A through
        // this thread's own connection, as it would if A ran elsewhere.
        let a = on_thread();
        let b = on_thread();
        let lock = a.rlock().unwrap();
        let slot = b.value(Some(lock.clone())).unwrap();
        let from_b: RLockProxy = slot.get().unwrap().expect("the slot holds the lock");
        from_b.acquire().unwrap();
        lock.release()
            .expect("the owner is this thread, whichever proxy took the lock");
        let redeemed = RLockProxy::from_token(&lock.to_token().unwrap(), a.auth_key()).unwrap();
        redeemed.acquire().unwrap();
        lock.release().expect("the same for a redeemed token");
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

// The model: random steps over two managers, 0 and 1, with the live-object
// counts of both checked after every step.

/// A cell: the manager it lives in, and its name.
type Ref = (usize, u32);

#[derive(Debug, Clone)]
enum Op {
    /// A new cell in manager `m`, held by the test.
    Create(usize),
    Clone(usize),
    Drop(usize),
    /// Drops the newest proxy: often one just taken out of somewhere.
    DropNewest,
    /// Proxy `i` into value slot `s` (slot `s` lives in manager `s % 2`).
    Store(usize, usize),
    /// Slot `s`'s proxy back to the test (a reply carries it).
    Take(usize),
    Clear(usize),
    /// Proxy `i` onto the end of manager `m`'s list.
    Push(usize, usize),
    Pop(usize),
    ClearList(usize),
    /// Proxy `i` passed to manager `m`'s holder, which keeps it in a field.
    Hold(usize, usize),
    /// The holder of manager `m` gives its field back (moved into the reply).
    TakeHeld(usize),
    /// The holder of manager `m` drops its field.
    DropHeld(usize),
    /// The holder of manager `m` calls its kept proxy.
    AskHeld(usize),
    /// Proxy `i` published as name `n` in its own manager.
    Publish(usize, usize),
    Unpublish(usize, usize),
    Lookup(usize, usize),
    /// Proxy `i` to a token, the proxy dropped, the token redeemed here.
    TokenHandover(usize),
    /// Proxy `i` to a token that manager `m`'s holder redeems and keeps.
    TokenToHolder(usize, usize),
}

const SLOTS: usize = 4;
const NAMES: usize = 2;

fn op() -> impl Strategy<Value = Op> {
    let m = 0..2usize;
    let p = 0..8usize;
    prop_oneof![
        3 => m.clone().prop_map(Op::Create),
        1 => p.clone().prop_map(Op::Clone),
        3 => p.clone().prop_map(Op::Drop),
        2 => Just(Op::DropNewest),
        3 => (p.clone(), 0..SLOTS).prop_map(|(i, s)| Op::Store(i, s)),
        2 => (0..SLOTS).prop_map(Op::Take),
        1 => (0..SLOTS).prop_map(Op::Clear),
        3 => (p.clone(), m.clone()).prop_map(|(i, m)| Op::Push(i, m)),
        2 => m.clone().prop_map(Op::Pop),
        1 => m.clone().prop_map(Op::ClearList),
        3 => (p.clone(), m.clone()).prop_map(|(i, m)| Op::Hold(i, m)),
        2 => m.clone().prop_map(Op::TakeHeld),
        1 => m.clone().prop_map(Op::DropHeld),
        1 => m.clone().prop_map(Op::AskHeld),
        1 => (p.clone(), 0..NAMES).prop_map(|(i, n)| Op::Publish(i, n)),
        1 => (m.clone(), 0..NAMES).prop_map(|(m, n)| Op::Unpublish(m, n)),
        1 => (m.clone(), 0..NAMES).prop_map(|(m, n)| Op::Lookup(m, n)),
        1 => p.clone().prop_map(Op::TokenHandover),
        1 => (p, m).prop_map(|(i, m)| Op::TokenToHolder(i, m)),
    ]
}

/// Where the two managers run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Setup {
    /// Both on threads of this process.
    Threads,
    /// Manager 0 on a thread, manager 1 its own process.
    ThreadAndProcess,
}

/// What must be alive: every cell that a proxy of the test, a slot, a
/// list, a holder's field or a name refers to.
#[derive(Default)]
struct Model {
    proxies: Vec<Ref>,
    slots: [Option<Ref>; SLOTS],
    lists: [Vec<Ref>; 2],
    held: [Option<Ref>; 2],
    names: [BTreeMap<usize, Ref>; 2],
    /// Cells a manager sent to the test in a reply, with when: that
    /// manager may keep them for the hand-off time after it let them go.
    sent: Vec<(Ref, Instant)>,
}

impl Model {
    fn alive(&self, m: usize) -> BTreeSet<u32> {
        let all = self
            .proxies
            .iter()
            .chain(self.slots.iter().flatten())
            .chain(self.lists.iter().flatten())
            .chain(self.held.iter().flatten())
            .chain(self.names.iter().flat_map(|n| n.values()));
        all.filter(|r| r.0 == m).map(|r| r.1).collect()
    }

    /// Records that manager `from` sent `cell` to the test in a reply.
    fn sent_by(&mut self, from: usize, cell: Ref) {
        if cell.0 != from {
            self.sent.push((cell, Instant::now()));
        }
    }

    /// Whether a hand-off hold may be all that keeps one of manager `m`'s
    /// cells alive now: then its count may be above the model's for a while.
    fn may_be_held(&mut self, m: usize, alive: &BTreeSet<u32>) -> bool {
        // Generous: past this the hold is certainly gone, however slowly
        // the manager's sweeper runs; before it, the check waits instead.
        let horizon = HANDOFF + Duration::from_secs(5);
        self.sent.retain(|(_, at)| at.elapsed() < horizon);
        self.sent
            .iter()
            .any(|((owner, id), _)| *owner == m && !alive.contains(id))
    }
}

fn start(setup: Setup) -> [Manager; 2] {
    let first = on_thread();
    // Started second, so that its process learns the first one's key.
    let second = match setup {
        Setup::Threads => on_thread(),
        Setup::ThreadAndProcess => builder().start().expect("a manager process starts"),
    };
    [first, second]
}

/// Runs `ops` against two managers and the model.
fn run_model(setup: Setup, ops: &[Op]) -> Result<(), TestCaseError> {
    let mgrs = start(setup);
    let slots: Vec<ValueProxy<Option<CellProxy>>> = (0..SLOTS)
        .map(|s| mgrs[s % 2].value(None).unwrap())
        .collect();
    let lists: Vec<ListProxy<CellProxy>> = mgrs.iter().map(|m| m.list().unwrap()).collect();
    let holders: Vec<HolderProxy> = mgrs.iter().map(|m| HolderProxy::new(m).unwrap()).collect();
    let base = [objects(&mgrs[0]), objects(&mgrs[1])];
    let mut proxies: Vec<CellProxy> = Vec::new();
    let mut model = Model::default();
    let mut next = 0u32;
    let name = |n: usize| format!("name-{n}");
    let key = |m: usize| mgrs[m].auth_key().to_hex();
    for op in ops {
        let pick = |i: usize, n: usize| (n > 0).then(|| i % n);
        match *op {
            Op::Create(m) => {
                proxies.push(CellProxy::new(&mgrs[m], next).unwrap());
                model.proxies.push((m, next));
                next += 1;
            }
            Op::Clone(i) => {
                if let Some(i) = pick(i, proxies.len()) {
                    proxies.push(proxies[i].clone());
                    model.proxies.push(model.proxies[i]);
                }
            }
            Op::Drop(i) => {
                if let Some(i) = pick(i, proxies.len()) {
                    proxies.swap_remove(i);
                    model.proxies.swap_remove(i);
                }
            }
            Op::DropNewest => {
                proxies.pop();
                model.proxies.pop();
            }
            Op::Store(i, s) => {
                if let Some(i) = pick(i, proxies.len()) {
                    slots[s].set(Some(proxies[i].clone())).unwrap();
                    model.slots[s] = Some(model.proxies[i]);
                }
            }
            Op::Take(s) => {
                let taken = slots[s].swap(None).unwrap();
                let expected = model.slots[s].take();
                prop_assert_eq!(taken.is_some(), expected.is_some());
                if let (Some(c), Some(cell)) = (taken, expected) {
                    model.sent_by(s % 2, cell);
                    prop_assert_eq!(c.id().unwrap(), cell.1, "the taken cell is alive");
                    proxies.push(c);
                    model.proxies.push(cell);
                }
            }
            Op::Clear(s) => {
                slots[s].set(None).unwrap();
                model.slots[s] = None;
            }
            Op::Push(i, m) => {
                if let Some(i) = pick(i, proxies.len()) {
                    lists[m].push(proxies[i].clone()).unwrap();
                    model.lists[m].push(model.proxies[i]);
                }
            }
            Op::Pop(m) => {
                let popped = lists[m].pop().unwrap();
                let expected = model.lists[m].pop();
                prop_assert_eq!(popped.is_some(), expected.is_some());
                if let (Some(c), Some(cell)) = (popped, expected) {
                    model.sent_by(m, cell);
                    prop_assert_eq!(c.id().unwrap(), cell.1, "the popped cell is alive");
                    proxies.push(c);
                    model.proxies.push(cell);
                }
            }
            Op::ClearList(m) => {
                lists[m].clear().unwrap();
                model.lists[m].clear();
            }
            Op::Hold(i, m) => {
                if let Some(i) = pick(i, proxies.len()) {
                    holders[m].hold(Some(proxies[i].clone())).unwrap();
                    model.held[m] = Some(model.proxies[i]);
                }
            }
            Op::TakeHeld(m) => {
                let taken = holders[m].take().unwrap();
                let expected = model.held[m].take();
                prop_assert_eq!(taken.is_some(), expected.is_some());
                if let (Some(c), Some(cell)) = (taken, expected) {
                    model.sent_by(m, cell);
                    prop_assert_eq!(c.id().unwrap(), cell.1, "the returned cell is alive");
                    proxies.push(c);
                    model.proxies.push(cell);
                }
            }
            Op::DropHeld(m) => {
                holders[m].hold(None).unwrap();
                model.held[m] = None;
            }
            Op::AskHeld(m) => {
                let asked = holders[m].held_id().unwrap();
                prop_assert_eq!(asked.ok(), Some(model.held[m].map(|c| c.1)));
            }
            Op::Publish(i, n) => {
                if let Some(i) = pick(i, proxies.len()) {
                    let cell = model.proxies[i];
                    mgrs[cell.0].publish(&name(n), &proxies[i]).unwrap();
                    model.names[cell.0].insert(n, cell);
                }
            }
            Op::Unpublish(m, n) => {
                let r = mgrs[m].unpublish(&name(n));
                prop_assert_eq!(r.is_ok(), model.names[m].remove(&n).is_some());
            }
            Op::Lookup(m, n) => match model.names[m].get(&n).copied() {
                Some(cell) => {
                    let c: CellProxy = mgrs[m].lookup(&name(n)).unwrap();
                    prop_assert_eq!(c.id().unwrap(), cell.1);
                    proxies.push(c);
                    model.proxies.push(cell);
                }
                None => {
                    let missing = mgrs[m].lookup::<CellProxy>(&name(n));
                    prop_assert!(matches!(missing, Err(Error::NoSuchName(_))));
                }
            },
            Op::TokenHandover(i) => {
                if let Some(i) = pick(i, proxies.len()) {
                    let token = proxies[i].to_token().unwrap();
                    // The token alone holds the cell between these lines.
                    proxies.swap_remove(i);
                    let cell = model.proxies.swap_remove(i);
                    let again = CellProxy::from_token(&token, mgrs[cell.0].auth_key()).unwrap();
                    prop_assert_eq!(again.id().unwrap(), cell.1);
                    proxies.push(again);
                    model.proxies.push(cell);
                }
            }
            Op::TokenToHolder(i, m) => {
                if let Some(i) = pick(i, proxies.len()) {
                    let cell = model.proxies[i];
                    let token = proxies[i].to_token().unwrap();
                    holders[m].redeem(token, key(cell.0)).unwrap().unwrap();
                    model.held[m] = Some(cell);
                }
            }
        }
        for m in 0..2 {
            let alive = model.alive(m);
            let expected = base[m] + alive.len() as u64;
            // In one process every release is done when its call returns;
            // a manager process releases on its own connections, a little later.
            let exact_now = setup == Setup::Threads && !model.may_be_held(m, &alive);
            if exact_now {
                prop_assert_eq!(objects(&mgrs[m]), expected, "manager {} after {:?}", m, op);
            } else {
                prop_assert!(
                    settles_at(&mgrs[m], expected),
                    "manager {} after {:?}: {} objects, the model says {}",
                    m,
                    op,
                    objects(&mgrs[m]),
                    expected
                );
            }
        }
    }
    drop(proxies);
    for s in &slots {
        s.set(None).unwrap();
    }
    for (m, names) in model.names.iter().enumerate() {
        for n in names.keys() {
            mgrs[m].unpublish(&name(*n)).unwrap();
        }
    }
    for l in &lists {
        l.clear().unwrap();
    }
    for h in &holders {
        h.hold(None).unwrap();
    }
    for m in 0..2 {
        prop_assert!(
            settles_at(&mgrs[m], base[m]),
            "manager {} back to its baseline",
            m
        );
    }
    Ok(())
}

/// Runs the model for `ops` with a time limit, so that a hang fails the case.
fn bounded_model(setup: Setup, ops: Vec<Op>) {
    bounded(move || {
        if let Err(e) = run_model(setup, &ops) {
            panic!("{e}");
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn two_managers_on_threads_match_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        bounded_model(Setup::Threads, ops);
    }

    #[test]
    fn a_thread_and_a_process_match_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        bounded_model(Setup::ThreadAndProcess, ops);
    }
}
