//! `#[shared]` methods and constructors that borrow their arguments (`&str`,
//! `&[T]`, `&T`): the proxy takes the same borrowed types and the manager
//! lends the method what it decoded, on a manager thread and in a manager
//! process, called directly and deferred.

mod common;

use common::bounded;
use manager::{shared, Manager, Pending, Result};
use serde::{Deserialize, Serialize};

/// A value the test passes by reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub name: String,
    pub count: u32,
}

/// An inventory whose methods borrow what they are given.
#[shared]
pub struct Inventory {
    label: String,
    items: Vec<Item>,
    tags: Vec<u32>,
    bytes: usize,
}

#[shared]
impl Inventory {
    /// An empty inventory called `label`: a borrowing constructor.
    pub fn new(label: &str) -> Self {
        Inventory {
            label: label.to_owned(),
            items: Vec::new(),
            tags: Vec::new(),
            bytes: 0,
        }
    }

    /// The label.
    pub fn label(&self) -> String {
        self.label.clone()
    }

    /// `&str`: renames it and returns the old label.
    pub fn rename(&mut self, label: &str) -> String {
        std::mem::replace(&mut self.label, label.to_owned())
    }

    /// `&[u32]`: adds every tag and returns how many there are.
    pub fn tag(&mut self, tags: &[u32]) -> usize {
        self.tags.extend_from_slice(tags);
        self.tags.len()
    }

    /// The tags.
    pub fn tags(&self) -> Vec<u32> {
        self.tags.clone()
    }

    /// `&T` for a user's type: keeps a copy of `item`.
    pub fn add(&mut self, item: &Item) -> usize {
        self.items.push(item.clone());
        self.items.len()
    }

    /// `&[T]` for a user's type: the count of each named item.
    pub fn counts(&self, names: &[String]) -> Vec<Option<u32>> {
        names
            .iter()
            .map(|n| self.items.iter().find(|i| &i.name == n).map(|i| i.count))
            .collect()
    }

    /// Borrowed and owned arguments mixed: raises `name`'s count by `by`
    /// if it is at least `at_least`.
    pub fn restock(&mut self, name: &str, by: u32, at_least: &u32) -> Option<u32> {
        let item = self.items.iter_mut().find(|i| i.name == name)?;
        if item.count >= *at_least {
            item.count += by;
        }
        Some(item.count)
    }

    /// `&[u8]`: bytes, which travel as a `Vec<u8>` does.
    pub fn store(&mut self, data: &[u8]) -> usize {
        self.bytes += data.len();
        data.iter().map(|&b| usize::from(b)).sum()
    }

    /// A borrowed `Self`: merges `other`'s items into this one.
    pub fn merge(&mut self, other: &Self) -> usize {
        self.items.extend(other.items.iter().cloned());
        self.items.len()
    }

    /// The items.
    pub fn items(&self) -> Vec<Item> {
        self.items.clone()
    }
}

// `Inventory` goes by reference to `merge`, so it is serde itself.
impl Serialize for Inventory {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.label, &self.items).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Inventory {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (label, items) = <(String, Vec<Item>)>::deserialize(d)?;
        Ok(Inventory {
            label,
            items,
            tags: Vec::new(),
            bytes: 0,
        })
    }
}

fn widget(count: u32) -> Item {
    Item {
        name: "widget".to_owned(),
        count,
    }
}

/// Every borrowing method through `inv`, called and waited for.
fn call_each(inv: &InventoryProxy) -> Result<()> {
    assert_eq!(inv.label()?, "stock");
    assert_eq!(inv.rename("shelf")?, "stock");
    assert_eq!(inv.label()?, "shelf");

    assert_eq!(inv.tag(&[1, 2, 3])?, 3);
    assert_eq!(inv.tag(&[])?, 3);
    let more = vec![4, 5];
    assert_eq!(inv.tag(&more)?, 5);
    assert_eq!(inv.tags()?, [1, 2, 3, 4, 5]);

    let item = widget(2);
    assert_eq!(inv.add(&item)?, 1);
    assert_eq!(
        inv.counts(&["widget".to_owned(), "gadget".to_owned()])?,
        [Some(2), None]
    );
    assert_eq!(inv.restock("widget", 10, &1)?, Some(12));
    assert_eq!(inv.restock("widget", 10, &100)?, Some(12));
    assert_eq!(inv.restock("gadget", 1, &0)?, None);

    // Short bytes go inline, long ones out of line: both arrive whole.
    assert_eq!(inv.store(&[1, 2, 3])?, 6);
    let long = vec![1u8; 200 * 1024];
    assert_eq!(inv.store(&long)?, long.len());
    assert_eq!(inv.store(&long[..10])?, 10);

    let other = Inventory {
        label: "other".to_owned(),
        items: vec![widget(7)],
        tags: Vec::new(),
        bytes: 0,
    };
    assert_eq!(inv.merge(&other)?, 2);
    assert_eq!(inv.items()?, [widget(12), widget(7)]);
    Ok(())
}

/// The same methods through the deferred view: sent in order, waited for
/// after.
fn call_each_deferred(inv: &InventoryProxy) -> Result<()> {
    let d = inv.deferred();
    let name = String::from("crate");
    let renamed: Pending<String> = d.rename(&name)?;
    let tagged = d.tag(&[7, 8])?;
    let added = d.add(&widget(1))?;
    let restocked = d.restock(&name[..0], 1, &0)?;
    let counts = d.counts(&["widget".to_owned()])?;
    let stored = d.store(&vec![2u8; 100 * 1024])?;
    // A dropped reply is discarded; its call still ran.
    drop(d.rename("bin")?);
    assert_eq!(renamed.wait()?, "stock");
    assert_eq!(tagged.wait()?, 2);
    assert_eq!(added.wait()?, 1);
    assert_eq!(restocked.wait()?, None);
    assert_eq!(counts.wait()?, [Some(1)]);
    assert_eq!(stored.wait()?, 2 * 100 * 1024);
    assert_eq!(inv.label()?, "bin");
    Ok(())
}

#[test]
fn borrowed_arguments_reach_a_manager_thread() {
    bounded(|| {
        let mgr = Manager::builder()
            .register::<Inventory>()
            .spawn_thread()
            .unwrap();
        call_each(&InventoryProxy::new(&mgr, "stock").unwrap()).unwrap();
        call_each_deferred(&InventoryProxy::new(&mgr, "stock").unwrap()).unwrap();
    });
}

#[test]
fn borrowed_arguments_reach_a_manager_process() {
    bounded(|| {
        let mgr = Manager::builder().register::<Inventory>().start().unwrap();
        call_each(&InventoryProxy::new(&mgr, "stock").unwrap()).unwrap();
        call_each_deferred(&InventoryProxy::new(&mgr, "stock").unwrap()).unwrap();
        let base = mgr.stats().unwrap().objects;
        let label = String::from("temporary");
        drop(InventoryProxy::new(&mgr, &label).unwrap());
        assert_eq!(mgr.stats().unwrap().objects, base);
    });
}

#[test]
fn proxies_take_the_methods_borrowed_types() {
    let _: fn(&manager::Client, &str) -> Result<InventoryProxy> = InventoryProxy::new;
    let _: fn(&InventoryProxy, &str) -> Result<String> = InventoryProxy::rename;
    let _: fn(&InventoryProxy, &[u32]) -> Result<usize> = InventoryProxy::tag;
    let _: fn(&InventoryProxy, &Item) -> Result<usize> = InventoryProxy::add;
    let _: fn(&InventoryProxy, &str, u32, &u32) -> Result<Option<u32>> = InventoryProxy::restock;
    let _: fn(&InventoryProxy, &[u8]) -> Result<usize> = InventoryProxy::store;
    let _: fn(&InventoryProxy, &Inventory) -> Result<usize> = InventoryProxy::merge;
    let _ = |d: InventoryProxyDeferred<'_>| -> Result<Pending<usize>> { d.tag(&[1]) };
}
