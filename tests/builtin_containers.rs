//! Built-in containers with Python's semantics: list, dict, value, namespace.

mod common;

use common::bounded;
use manager::{Error, Manager};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Point {
    x: i32,
    label: String,
}

fn p(x: i32) -> Point {
    Point {
        x,
        label: format!("p{x}"),
    }
}

#[test]
fn list_follows_python_list_semantics() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let l = mgr.list::<Point>().unwrap();
        assert!(l.is_empty().unwrap());
        assert_eq!(l.pop().unwrap(), None);
        l.push(p(1)).unwrap();
        l.push(p(3)).unwrap();
        l.insert(1, p(2)).unwrap();
        l.insert(3, p(4)).unwrap(); // insert(len) appends
        assert_eq!(l.to_vec().unwrap(), vec![p(1), p(2), p(3), p(4)]);
        assert_eq!(l.get(2).unwrap(), Some(p(3)));
        assert_eq!(l.get(4).unwrap(), None);
        l.set(0, p(10)).unwrap();
        assert_eq!(l.remove(1).unwrap(), p(2));
        assert_eq!(l.pop().unwrap(), Some(p(4)));
        assert_eq!(l.len().unwrap(), 2);
        l.extend([p(5), p(6)]).unwrap();
        assert_eq!(
            l.to_vec().unwrap().iter().map(|q| q.x).collect::<Vec<_>>(),
            [10, 3, 5, 6]
        );
        for (r, index, len) in [
            (l.set(4, p(0)), 4, 4),
            (l.insert(5, p(0)), 5, 4),
            (l.remove(9).map(drop), 9, 4),
        ] {
            match r {
                Err(Error::IndexOutOfRange { index: i, len: n }) => {
                    assert_eq!((i, n), (index, len))
                }
                other => panic!("expected IndexOutOfRange, got {other:?}"),
            }
        }
        l.clear().unwrap();
        assert!(l.is_empty().unwrap());
    });
}

#[test]
fn dict_keeps_insertion_order_like_python() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let d = mgr.dict::<String, Point>().unwrap();
        assert_eq!(d.insert("b".into(), p(2)).unwrap(), None);
        assert_eq!(d.insert("a".into(), p(1)).unwrap(), None);
        assert_eq!(d.insert("c".into(), p(3)).unwrap(), None);
        // Replacing keeps the key's place.
        assert_eq!(d.insert("b".into(), p(20)).unwrap(), Some(p(2)));
        assert_eq!(d.keys().unwrap(), ["b", "a", "c"]);
        assert_eq!(d.remove(&"a".into()).unwrap(), Some(p(1)));
        assert_eq!(d.remove(&"a".into()).unwrap(), None);
        d.update([("d".to_owned(), p(4)), ("b".to_owned(), p(21))])
            .unwrap();
        assert_eq!(d.keys().unwrap(), ["b", "c", "d"]);
        assert_eq!(
            d.values().unwrap().iter().map(|q| q.x).collect::<Vec<_>>(),
            [21, 3, 4]
        );
        assert_eq!(d.items().unwrap()[0], ("b".to_owned(), p(21)));
        assert_eq!(d.get(&"c".into()).unwrap(), Some(p(3)));
        assert_eq!(d.get(&"zz".into()).unwrap(), None);
        assert!(d.contains_key(&"d".into()).unwrap());
        assert!(!d.contains_key(&"a".into()).unwrap());
        assert_eq!(d.len().unwrap(), 3);
        d.clear().unwrap();
        assert!(d.is_empty().unwrap());
    });
}

#[test]
fn values_swap_exchange_and_add_like_atomics() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let v = mgr.value(5i32).unwrap();
        assert_eq!(v.fetch_add(3).unwrap(), 5);
        assert_eq!(v.swap(1).unwrap(), 8);
        assert_eq!(v.compare_exchange(1, 2).unwrap(), Ok(1));
        assert_eq!(v.compare_exchange(1, 3).unwrap(), Err(2));
        let big = mgr.value(u64::MAX).unwrap();
        assert_eq!(big.fetch_add(2).unwrap(), u64::MAX);
        assert_eq!(big.get().unwrap(), 1, "wraps");
        let s = mgr.value(p(1)).unwrap();
        assert_eq!(s.compare_exchange(p(1), p(2)).unwrap(), Ok(p(1)));
        s.set(p(9)).unwrap();
        assert_eq!(s.get().unwrap(), p(9));
    });
}

#[test]
fn namespace_holds_named_values_of_any_type() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let ns = mgr.namespace().unwrap();
        ns.set("point", p(1)).unwrap();
        ns.set("count", 7u64).unwrap();
        ns.set("name", "x").unwrap();
        assert_eq!(ns.get::<Point>("point").unwrap(), Some(p(1)));
        assert_eq!(ns.get::<u64>("count").unwrap(), Some(7));
        assert_eq!(ns.get::<u64>("missing").unwrap(), None);
        assert_eq!(ns.get::<String>("name").unwrap().as_deref(), Some("x"));
        assert_eq!(ns.names().unwrap(), ["point", "count", "name"]);
        assert!(ns.remove("count").unwrap());
        assert!(!ns.remove("count").unwrap());
        assert_eq!(ns.names().unwrap(), ["point", "name"]);
        // Setting a name again keeps its place.
        ns.set("point", p(2)).unwrap();
        assert_eq!(ns.names().unwrap(), ["point", "name"]);
        assert_eq!(ns.get::<Point>("point").unwrap(), Some(p(2)));
    });
}

#[test]
fn a_namespace_value_read_as_another_type_is_a_protocol_error() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let ns = mgr.namespace().unwrap();
        ns.set("point", p(1)).unwrap();
        ns.set("word", String::from("abc")).unwrap();
        ns.set("empty", String::new()).unwrap();
        ns.set("zero", 0i64).unwrap();
        // Bytes that would not decode, and bytes that would: both refused.
        assert!(matches!(ns.get::<u64>("point"), Err(Error::Protocol(_))));
        assert!(matches!(ns.get::<i64>("word"), Err(Error::Protocol(_))));
        assert!(matches!(ns.get::<i64>("empty"), Err(Error::Protocol(_))));
        assert!(matches!(ns.get::<String>("zero"), Err(Error::Protocol(_))));
        assert!(matches!(ns.get::<u64>("zero"), Err(Error::Protocol(_))));
        assert!(matches!(ns.get::<bool>("zero"), Err(Error::Protocol(_))));
        // The values are still there for the right type.
        assert_eq!(ns.get::<i64>("zero").unwrap(), Some(0));
        assert_eq!(ns.get::<String>("empty").unwrap().as_deref(), Some(""));
    });
}

#[test]
fn list_indices_past_the_end() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let l = mgr.list::<u8>().unwrap();
        assert_eq!(l.get(0).unwrap(), None);
        assert!(matches!(
            l.remove(0),
            Err(Error::IndexOutOfRange { index: 0, len: 0 })
        ));
        assert!(matches!(
            l.set(0, 1),
            Err(Error::IndexOutOfRange { index: 0, len: 0 })
        ));
        l.insert(0, 1).unwrap(); // insert(len) appends, also when empty
        assert!(matches!(
            l.insert(2, 9),
            Err(Error::IndexOutOfRange { index: 2, len: 1 })
        ));
        assert!(matches!(l.get(usize::MAX), Ok(None)));
        assert!(matches!(
            l.remove(usize::MAX),
            Err(Error::IndexOutOfRange {
                index: usize::MAX,
                len: 1
            })
        ));
        assert_eq!(l.to_vec().unwrap(), [1]);
    });
}

#[test]
fn dict_keys_of_any_serde_type_compare_by_value() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let d = mgr.dict::<(String, Option<u8>), Vec<u32>>().unwrap();
        let k = |s: &str, n| (s.to_owned(), n);
        d.insert(k("a", None), vec![1]).unwrap();
        d.insert(k("a", Some(0)), vec![2]).unwrap();
        assert_eq!(d.get(&k("a", None)).unwrap(), Some(vec![1]));
        assert_eq!(d.get(&k("a", Some(0))).unwrap(), Some(vec![2]));
        assert_eq!(d.insert(k("a", None), vec![3]).unwrap(), Some(vec![1]));
        assert_eq!(d.len().unwrap(), 2);
        assert_eq!(
            d.items().unwrap(),
            [(k("a", None), vec![3]), (k("a", Some(0)), vec![2])]
        );
    });
}

#[test]
fn proxies_stored_in_containers_live_until_removed() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let base = mgr.stats().unwrap().objects;
        let l = mgr.list::<manager::ValueProxy<i64>>().unwrap();
        let d = mgr.dict::<String, manager::ValueProxy<i64>>().unwrap();
        let q = mgr.queue::<manager::ValueProxy<i64>>(0).unwrap();
        let ns = mgr.namespace().unwrap();
        let containers = base + 4;
        l.push(mgr.value(1).unwrap()).unwrap();
        l.extend([mgr.value(2).unwrap()]).unwrap();
        d.insert("three".into(), mgr.value(3).unwrap()).unwrap();
        d.update([("four".to_owned(), mgr.value(4).unwrap())])
            .unwrap();
        q.put(mgr.value(5).unwrap()).unwrap();
        ns.set("six", mgr.value(6i64).unwrap()).unwrap();
        // Our proxies are gone; the containers keep their objects.
        assert_eq!(mgr.stats().unwrap().objects, containers + 6);
        assert_eq!(l.get(1).unwrap().unwrap().get().unwrap(), 2);
        assert_eq!(
            d.get(&"four".into())
                .unwrap()
                .unwrap()
                .fetch_add(1)
                .unwrap(),
            4
        );
        assert_eq!(
            ns.get::<manager::ValueProxy<i64>>("six")
                .unwrap()
                .unwrap()
                .get()
                .unwrap(),
            6
        );
        assert_eq!(mgr.stats().unwrap().objects, containers + 6);
        // Taken out, an object lives while its proxy does.
        let two = l.remove(1).unwrap();
        let five = q.try_get().unwrap().unwrap();
        assert_eq!(mgr.stats().unwrap().objects, containers + 6);
        assert_eq!((two.get().unwrap(), five.get().unwrap()), (2, 5));
        drop((two, five));
        assert_eq!(mgr.stats().unwrap().objects, containers + 4);
        l.clear().unwrap();
        assert!(d.remove(&"three".into()).unwrap().is_some());
        assert!(ns.remove("six").unwrap());
        assert_eq!(mgr.stats().unwrap().objects, containers + 1);
        drop(d);
        assert_eq!(mgr.stats().unwrap().objects, base + 3);
        drop((l, q, ns));
        assert_eq!(mgr.stats().unwrap().objects, base);
    });
}

#[test]
fn containers_need_no_registration_and_show_in_stats() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let base = mgr.stats().unwrap();
        let l = mgr.list::<Vec<Point>>().unwrap();
        let d = mgr.dict::<(u8, u8), Option<Point>>().unwrap();
        l.push(vec![p(1), p(2)]).unwrap();
        d.insert((1, 2), None).unwrap();
        let stats = mgr.stats().unwrap();
        assert_eq!(stats.objects, base.objects + 2);
        assert_eq!(stats.objects_by_type.get("manager::List"), Some(&1));
        assert_eq!(stats.objects_by_type.get("manager::Dict"), Some(&1));
        drop((l, d));
        assert_eq!(mgr.stats().unwrap().objects, base.objects);
    });
}

#[test]
fn dict_entries_of_every_size_round_trip() {
    // Short entries live inline in the manager and longer ones apart: the
    // sizes around that boundary, mixed in one dict, replaced and removed.
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let d = mgr.dict::<String, String>().unwrap();
        let pair = |k: usize, v: usize| ("k".repeat(k), "v".repeat(v));
        let sizes: Vec<(usize, usize)> =
            (0..28).flat_map(|k| (0..28).map(move |v| (k, v))).collect();
        for &(k, v) in &sizes {
            let (key, value) = pair(k, v);
            // The same key with every value length: the last one stays.
            d.insert(key, value).unwrap();
        }
        assert_eq!(d.len().unwrap(), 28);
        for k in 0..28 {
            let (key, value) = pair(k, 27);
            assert_eq!(d.get(&key).unwrap(), Some(value));
            // Replacing a long value with a short one and back.
            assert_eq!(
                d.insert(key.clone(), String::new()).unwrap(),
                Some("v".repeat(27))
            );
            assert_eq!(
                d.insert(key.clone(), "v".repeat(k)).unwrap(),
                Some(String::new())
            );
        }
        for k in (0..28).step_by(2) {
            assert_eq!(d.remove(&"k".repeat(k)).unwrap(), Some("v".repeat(k)));
        }
        let items = d.items().unwrap();
        let expected: Vec<_> = (1..28).step_by(2).map(|k| pair(k, k)).collect();
        assert_eq!(items, expected, "insertion order survives removals");
    });
}

#[test]
fn list_elements_of_every_size_round_trip() {
    // Short elements live in place in the manager and longer ones apart:
    // the sizes around that boundary, pushed, replaced and read back.
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let l = mgr.list::<String>().unwrap();
        let all: Vec<String> = (0..40).map(|n| "x".repeat(n)).collect();
        l.extend(all.clone()).unwrap();
        assert_eq!(l.to_vec().unwrap(), all);
        for n in 0..40 {
            let longer = "y".repeat(40 - n);
            l.set(n, longer.clone()).unwrap();
            assert_eq!(l.get(n).unwrap(), Some(longer));
        }
        let v = mgr.value(String::new()).unwrap();
        let mut previous = String::new();
        for n in [0, 21, 22, 23, 100, 3] {
            let next = "z".repeat(n);
            assert_eq!(v.swap(next.clone()).unwrap(), previous);
            previous = next;
        }
        assert_eq!(v.get().unwrap(), previous);
    });
}
