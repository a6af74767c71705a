//! `Dict`: a shared map in insertion order (Python's `manager.dict()`).

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use indexmap::IndexSet;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::builtins::{
    async_twin, builtin_proxy, create, create_async, methods, proxy_methods, read, write,
    write_option_with, Builtin, Elem, ElemBuf, Stored,
};
use crate::caps::capturing;
use crate::client::Client;
use crate::context::Context;
use crate::error::Result;
use crate::proxy::Handle;
use crate::wire::codec::{to_vec, Decoder, Encoder};

/// A key and its value, compared and hashed by the key's encoding (equal
/// values encode equally).
///
/// A dict of many small entries is the common case, so a short pair that
/// embeds no proxy lives inline, in the set's own table: 24 bytes and no
/// allocation. Any other pair takes one allocation.
enum Entry {
    Inline {
        key_len: u8,
        len: u8,
        bytes: [u8; INLINE],
    },
    Boxed(Box<(Stored, Stored)>),
}

/// The most bytes of key and value together that an entry keeps inline.
const INLINE: usize = 21;

const _: () = assert!(std::mem::size_of::<Entry>() == 24);

impl Entry {
    fn new(ctx: &Context, key: Elem, value: Elem) -> Entry {
        let len = key.bytes().len() + value.bytes().len();
        if len <= INLINE && !key.embeds_proxies() && !value.embeds_proxies() {
            let mut bytes = [0; INLINE];
            bytes[..key.bytes().len()].copy_from_slice(key.bytes());
            bytes[key.bytes().len()..len].copy_from_slice(value.bytes());
            // Both lengths are at most INLINE, which fits in a u8.
            return Entry::Inline {
                key_len: key.bytes().len() as u8,
                len: len as u8,
                bytes,
            };
        }
        Entry::Boxed(Box::new((Stored::keep(ctx, key), Stored::keep(ctx, value))))
    }

    fn key(&self) -> &[u8] {
        match self {
            Entry::Inline { key_len, bytes, .. } => &bytes[..usize::from(*key_len)],
            Entry::Boxed(b) => b.0.bytes(),
        }
    }

    /// Writes the key as (part of) a result; see [`Stored::write`].
    fn write_key(&self, out: &mut Encoder<'_>) {
        match self {
            Entry::Inline { .. } => out.put_raw(self.key()),
            Entry::Boxed(b) => b.0.write(out),
        }
    }

    /// Writes the value as (part of) a result; see [`Stored::write`].
    fn write_value(&self, out: &mut Encoder<'_>) {
        match self {
            Entry::Inline {
                key_len,
                len,
                bytes,
            } => out.put_raw(&bytes[usize::from(*key_len)..usize::from(*len)]),
            Entry::Boxed(b) => b.1.write(out),
        }
    }
}

impl Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Entry {}

/// Lookups by a key's encoding.
impl Borrow<[u8]> for Entry {
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}

pub(crate) struct DictObject {
    /// Shared with the put-back of an entry whose `remove` reply could not
    /// be delivered.
    map: Arc<RwLock<IndexSet<Entry>>>,
}

methods! {
    /// A dict's methods, by wire id.
    enum DictMethod -> DictCall {
        0 Insert(Elem, Elem) => insert "(&self, key: K, value: V) -> Option<V>",
        1 Get(ElemBuf) => get "(&self, key: &K) -> Option<V>",
        2 Remove(ElemBuf) => remove "(&self, key: &K) -> Option<V>",
        3 ContainsKey(ElemBuf) => contains_key "(&self, key: &K) -> bool",
        4 Len => len "(&self) -> usize",
        5 IsEmpty => is_empty "(&self) -> bool",
        6 Keys => keys "(&self) -> Vec<K>",
        7 Values => values "(&self) -> Vec<V>",
        8 Items => items "(&self) -> Vec<(K, V)>",
        9 Clear => clear "(&self)",
        10 Update(Vec<(Elem, Elem)>) => update
            "(&self, pairs: impl IntoIterator<Item = (K, V)>)",
    }
}

impl Builtin for DictObject {
    const NAME: &'static str = "manager::Dict";
    const ELEMENTS: usize = 2;
    type Methods = DictMethod;

    fn construct(_ctx: &Context, _args: &mut Decoder<'_>) -> Result<Self> {
        Ok(DictObject {
            map: Arc::default(),
        })
    }

    fn call(&self, ctx: &Context, call: DictCall, out: &mut Encoder<'_>) -> Result<()> {
        let map = &self.map;
        match call {
            DictCall::Insert(k, v) => {
                let entry = Entry::new(ctx, k, v);
                // The position stays the first insertion's, as in Python.
                // The key is replaced too, by one that encodes the same.
                let (_, old) = write(map).replace_full(entry);
                write_option_with(out, old.as_ref(), Entry::write_value);
                Ok(())
            }
            DictCall::Get(k) => {
                write_option_with(out, read(map).get(&k[..]), Entry::write_value);
                Ok(())
            }
            DictCall::Remove(k) => {
                let old = write(map).shift_take(&k[..]);
                write_option_with(out, old.as_ref(), Entry::write_value);
                if let Some(entry) = old {
                    let map = Arc::clone(map);
                    ctx.on_undelivered(move || {
                        // Unless the key was given a new value meanwhile.
                        write(&map).insert(entry);
                    });
                }
                Ok(())
            }
            DictCall::ContainsKey(k) => out.put(&read(map).contains(&k[..])),
            DictCall::Len => out.put(&read(map).len()),
            DictCall::IsEmpty => out.put(&read(map).is_empty()),
            DictCall::Keys => {
                let map = read(map);
                out.put(&map.len())?;
                map.iter().for_each(|e| e.write_key(out));
                Ok(())
            }
            DictCall::Values => {
                let map = read(map);
                out.put(&map.len())?;
                map.iter().for_each(|e| e.write_value(out));
                Ok(())
            }
            DictCall::Items => {
                let map = read(map);
                out.put(&map.len())?;
                for e in map.iter() {
                    e.write_key(out);
                    e.write_value(out);
                }
                Ok(())
            }
            DictCall::Clear => {
                let old = std::mem::take(&mut *write(map));
                drop(old);
                Ok(())
            }
            DictCall::Update(pairs) => {
                let kept: Vec<_> = pairs
                    .into_iter()
                    .map(|(k, v)| Entry::new(ctx, k, v))
                    .collect();
                let old: Vec<_> = {
                    let mut map = write(map);
                    kept.into_iter()
                        .filter_map(|e| map.replace_full(e).1)
                        .collect()
                };
                drop(old);
                Ok(())
            }
        }
    }
}

/// Proxy to a shared map (Python's `manager.dict()`), from [`Client::dict`].
///
/// Keys are compared by their encoding, and iteration follows insertion
/// order, as in Python's `dict`.
///
/// ```
/// # fn main() -> manager::Result<()> {
/// let mgr = manager::Manager::builder().spawn_thread()?;
/// let ages = mgr.dict::<String, u32>()?;
/// assert_eq!(ages.insert("ada".into(), 36)?, None);
/// assert_eq!(ages.insert("ada".into(), 37)?, Some(36));
/// ages.update([("grace".to_owned(), 85)])?;
/// assert_eq!(ages.get(&"grace".into())?, Some(85));
/// assert!(ages.contains_key(&"ada".into())?);
/// assert_eq!(ages.keys()?, ["ada", "grace"]);
/// assert_eq!(ages.remove(&"ada".into())?, Some(37));
/// assert_eq!(ages.items()?, [("grace".to_owned(), 85)]);
/// # Ok(()) }
/// ```
pub struct DictProxy<K, V> {
    handle: Handle,
    _marker: PhantomData<fn() -> (K, V)>,
}

builtin_proxy!(DictProxy<K, V>, DictObject);

async_twin!(
    /// The async face of [`DictProxy`] (DESIGN §2a): the same methods, each
    /// an `async fn` returning the same result; the same object as a
    /// `DictProxy` converted with `into()`, both ways.
    AsyncDictProxy<K, V> of DictProxy, DictObject
);

proxy_methods! {
    impl[K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned] DictProxy<K, V> / AsyncDictProxy;

    /// Sets `key` to `value` and returns the previous value (Python: `d[k] = v`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn insert(&self, key: K, value: V) -> Option<V> = |h| {
        let k = h.elem(&key)?;
        let v = h.elem(&value)?;
        h.call(DictMethod::Insert as u32, |a| {
            a.put(&k)?;
            a.put(&v)
        })
    }

    /// The value of `key` (Python: `d.get(k)`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn get(&self, key: &K) -> Option<V> = |h| {
        let k = lookup_key(key)?;
        h.call(DictMethod::Get as u32, |a| a.put(&k))
    }

    /// Removes `key` and returns its value (Python: `d.pop(k, None)`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn remove(&self, key: &K) -> Option<V> = |h| {
        let k = lookup_key(key)?;
        h.call(DictMethod::Remove as u32, |a| a.put(&k))
    }

    /// Whether `key` is present (Python: `k in d`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn contains_key(&self, key: &K) -> bool = |h| {
        let k = lookup_key(key)?;
        h.call(DictMethod::ContainsKey as u32, |a| a.put(&k))
    }

    /// The number of entries (Python: `len(d)`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn len(&self) -> usize = |h| { h.call(DictMethod::Len as u32, |_| Ok(())) }

    /// Whether there are no entries (Python: `not d`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn is_empty(&self) -> bool = |h| { h.call(DictMethod::IsEmpty as u32, |_| Ok(())) }

    /// The keys in insertion order (Python: `list(d.keys())`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn keys(&self) -> Vec<K> = |h| { h.call(DictMethod::Keys as u32, |_| Ok(())) }

    /// The values in insertion order (Python: `list(d.values())`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn values(&self) -> Vec<V> = |h| { h.call(DictMethod::Values as u32, |_| Ok(())) }

    /// The entries in insertion order (Python: `list(d.items())`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn items(&self) -> Vec<(K, V)> = |h| { h.call(DictMethod::Items as u32, |_| Ok(())) }

    /// Removes every entry (Python: `d.clear()`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn clear(&self) -> () = |h| { h.call(DictMethod::Clear as u32, |_| Ok(())) }

    /// Sets every pair, in one call (Python: `d.update(pairs)`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn update(&self, pairs: impl IntoIterator<Item = (K, V)>) -> () = |h| {
        // The pairs (and any proxies in them) live until the manager holds
        // them: a proxy dropped sooner could free its object on the way.
        let pairs: Vec<(K, V)> = pairs.into_iter().collect();
        let es = pairs
            .iter()
            .map(|(k, v)| {
                Ok((
                    h.elem(k)?,
                    h.elem(v)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        h.call(DictMethod::Update as u32, |a| a.put(&es))
    }
}

/// A key to look up: its bytes only. A lookup holds no reference to the
/// proxies a key may embed, so they are kept out of any capture.
fn lookup_key<K: Serialize>(key: &K) -> Result<ElemBuf> {
    capturing(|| to_vec(key)).0.map(ElemBuf::from)
}

impl Client {
    /// A new, empty shared map (Python: `manager.dict()`).
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().spawn_thread()?;
    /// let d = mgr.dict::<u8, String>()?;
    /// d.insert(1, "one".into())?;
    /// assert_eq!(d.len()?, 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Connection errors.
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>>
    where
        K: Serialize + DeserializeOwned + Send + Sync + 'static,
        V: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        create::<DictProxy<K, V>>(self, |_| Ok(()))
    }
}

impl Client {
    /// [`Client::dict`] through the async face (DESIGN §2a).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn dict_async<K, V>(&self) -> Result<AsyncDictProxy<K, V>>
    where
        K: Serialize + DeserializeOwned + Send + Sync + 'static,
        V: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        create_async::<AsyncDictProxy<K, V>>(self, |_| Ok(())).await
    }
}
