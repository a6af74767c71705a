//! Reference counting against a model: random sequences of create, clone,
//! drop, store in a container / take out, publish / unpublish and token
//! round trips, with `stats().objects` checked against the model after
//! every step. (Process crashes and real child processes are covered by
//! `tests/proxies.rs`.)

use std::collections::{BTreeMap, BTreeSet};

use manager::{shared, Manager, Proxy, ValueProxy};
use proptest::prelude::*;

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

#[derive(Debug, Clone)]
enum Op {
    Create,
    Clone(usize),
    Drop(usize),
    Store(usize, usize),
    Take(usize),
    Clear(usize),
    Publish(usize, usize),
    Unpublish(usize),
    Lookup(usize),
    TokenRoundTrip(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Create),
        2 => (0..8usize).prop_map(Op::Clone),
        3 => (0..8usize).prop_map(Op::Drop),
        2 => (0..8usize, 0..SLOTS).prop_map(|(p, s)| Op::Store(p, s)),
        1 => (0..SLOTS).prop_map(Op::Take),
        1 => (0..SLOTS).prop_map(Op::Clear),
        1 => (0..8usize, 0..NAMES).prop_map(|(p, n)| Op::Publish(p, n)),
        1 => (0..NAMES).prop_map(Op::Unpublish),
        1 => (0..NAMES).prop_map(Op::Lookup),
        1 => (0..8usize).prop_map(Op::TokenRoundTrip),
    ]
}

const SLOTS: usize = 3;
const NAMES: usize = 2;

/// What must be alive: every cell some proxy, slot or name refers to.
#[derive(Default)]
struct Model {
    /// The cell each local proxy refers to.
    proxies: Vec<u32>,
    slots: [Option<u32>; SLOTS],
    names: BTreeMap<usize, u32>,
}

impl Model {
    fn alive(&self) -> u64 {
        let mut live = BTreeSet::new();
        live.extend(self.proxies.iter().copied());
        live.extend(self.slots.iter().flatten().copied());
        live.extend(self.names.values().copied());
        live.len() as u64
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn live_objects_match_the_model_after_every_step(ops in proptest::collection::vec(op(), 1..40)) {
        let mgr = Manager::builder().register::<Cell>().spawn_thread().unwrap();
        let slots: Vec<ValueProxy<Option<CellProxy>>> =
            (0..SLOTS).map(|_| mgr.value(None).unwrap()).collect();
        let base = mgr.stats().unwrap().objects;
        let mut proxies: Vec<CellProxy> = Vec::new();
        let mut model = Model::default();
        let mut next = 0u32;
        for op in ops {
            let pick = |i: usize, n: usize| (n > 0).then(|| i % n);
            match op {
                Op::Create => {
                    proxies.push(CellProxy::new(&mgr, next).unwrap());
                    model.proxies.push(next);
                    next += 1;
                }
                Op::Clone(i) => if let Some(i) = pick(i, proxies.len()) {
                    proxies.push(proxies[i].clone());
                    model.proxies.push(model.proxies[i]);
                },
                Op::Drop(i) => if let Some(i) = pick(i, proxies.len()) {
                    proxies.swap_remove(i);
                    model.proxies.swap_remove(i);
                },
                Op::Store(i, s) => if let Some(i) = pick(i, proxies.len()) {
                    slots[s].set(Some(proxies[i].clone())).unwrap();
                    model.slots[s] = Some(model.proxies[i]);
                },
                Op::Take(s) => {
                    let taken = slots[s].swap(None).unwrap();
                    prop_assert_eq!(taken.as_ref().map(|c| c.id().unwrap()), model.slots[s]);
                    if let Some(c) = taken {
                        proxies.push(c);
                        model.proxies.push(model.slots[s].take().unwrap());
                    }
                }
                Op::Clear(s) => {
                    slots[s].set(None).unwrap();
                    model.slots[s] = None;
                }
                Op::Publish(i, n) => if let Some(i) = pick(i, proxies.len()) {
                    mgr.publish(&format!("name-{n}"), &proxies[i]).unwrap();
                    model.names.insert(n, model.proxies[i]);
                },
                Op::Unpublish(n) => {
                    let r = mgr.unpublish(&format!("name-{n}"));
                    prop_assert_eq!(r.is_ok(), model.names.remove(&n).is_some());
                }
                Op::Lookup(n) => match model.names.get(&n) {
                    Some(&id) => {
                        let c: CellProxy = mgr.lookup(&format!("name-{n}")).unwrap();
                        prop_assert_eq!(c.id().unwrap(), id);
                        proxies.push(c);
                        model.proxies.push(id);
                    }
                    None => {
                        let missing = mgr.lookup::<CellProxy>(&format!("name-{}", n));
                        prop_assert!(missing.is_err());
                    }
                },
                Op::TokenRoundTrip(i) => if let Some(i) = pick(i, proxies.len()) {
                    let token = proxies[i].to_token().unwrap();
                    let again = CellProxy::from_token(&token, mgr.auth_key()).unwrap();
                    prop_assert_eq!(again.id().unwrap(), model.proxies[i]);
                    proxies.push(again);
                    model.proxies.push(model.proxies[i]);
                },
            }
            prop_assert_eq!(mgr.stats().unwrap().objects, base + model.alive());
        }
        drop(proxies);
        for s in &slots {
            s.set(None).unwrap();
        }
        for n in model.names.keys() {
            mgr.unpublish(&format!("name-{n}")).unwrap();
        }
        prop_assert_eq!(mgr.stats().unwrap().objects, base);
    }
}
