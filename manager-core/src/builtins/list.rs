//! `List`: a shared vector (Python's `manager.list()`).

use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::builtins::{
    async_twin, builtin_proxy, create, create_async, methods, proxy_methods, read, write,
    write_option, write_seq, Builtin, Elem, Stored,
};
use crate::client::Client;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::proxy::Handle;
use crate::wire::codec::{Decoder, Encoder};

pub(crate) struct ListObject {
    /// Shared with the put-back of an element whose `pop` or `remove`
    /// reply could not be delivered.
    items: Arc<RwLock<Vec<Stored>>>,
}

methods! {
    /// A list's methods, by wire id.
    enum ListMethod -> ListCall {
        0 Push(Elem) => push "(&self, value: T)",
        1 Pop => pop "(&self) -> Option<T>",
        2 Get(usize) => get "(&self, index: usize) -> Option<T>",
        3 Set(usize, Elem) => set "(&self, index: usize, value: T)",
        4 Insert(usize, Elem) => insert "(&self, index: usize, value: T)",
        5 Remove(usize) => remove "(&self, index: usize) -> T",
        6 Len => len "(&self) -> usize",
        7 IsEmpty => is_empty "(&self) -> bool",
        8 Extend(Vec<Elem>) => extend "(&self, values: impl IntoIterator<Item = T>)",
        9 Clear => clear "(&self)",
        10 ToVec => to_vec "(&self) -> Vec<T>",
    }
}

fn out_of_range(index: usize, len: usize) -> Error {
    Error::IndexOutOfRange { index, len }
}

impl Builtin for ListObject {
    const NAME: &'static str = "manager::List";
    const ELEMENTS: usize = 1;
    type Methods = ListMethod;

    fn construct(_ctx: &Context, _args: &mut Decoder<'_>) -> Result<Self> {
        Ok(ListObject {
            items: Arc::default(),
        })
    }

    fn call(&self, ctx: &Context, call: ListCall, out: &mut Encoder<'_>) -> Result<()> {
        let items = &self.items;
        match call {
            ListCall::Push(e) => {
                let s = Stored::keep(ctx, e);
                write(items).push(s);
                Ok(())
            }
            ListCall::Pop => {
                let popped = write(items).pop();
                write_option(out, popped.as_ref());
                if let Some(item) = popped {
                    let items = Arc::clone(items);
                    ctx.on_undelivered(move || write(&items).push(item));
                }
                Ok(())
            }
            ListCall::Get(i) => {
                write_option(out, read(items).get(i));
                Ok(())
            }
            ListCall::Set(i, e) => {
                let s = Stored::keep(ctx, e);
                let mut v = write(items);
                let len = v.len();
                let slot = v.get_mut(i).ok_or_else(|| out_of_range(i, len))?;
                let old = std::mem::replace(slot, s);
                drop(v);
                drop(old);
                Ok(())
            }
            ListCall::Insert(i, e) => {
                let s = Stored::keep(ctx, e);
                let mut v = write(items);
                if i > v.len() {
                    return Err(out_of_range(i, v.len()));
                }
                v.insert(i, s);
                Ok(())
            }
            ListCall::Remove(i) => {
                let mut v = write(items);
                if i >= v.len() {
                    return Err(out_of_range(i, v.len()));
                }
                let removed = v.remove(i);
                drop(v);
                removed.write(out);
                let items = Arc::clone(items);
                ctx.on_undelivered(move || {
                    let mut v = write(&items);
                    let at = i.min(v.len());
                    v.insert(at, removed);
                });
                Ok(())
            }
            ListCall::Len => out.put(&read(items).len()),
            ListCall::IsEmpty => out.put(&read(items).is_empty()),
            ListCall::Extend(es) => {
                let kept: Vec<Stored> = es.into_iter().map(|e| Stored::keep(ctx, e)).collect();
                write(items).extend(kept);
                Ok(())
            }
            ListCall::Clear => {
                let old = std::mem::take(&mut *write(items));
                drop(old);
                Ok(())
            }
            ListCall::ToVec => write_seq(out, read(items).iter()),
        }
    }
}

/// Proxy to a shared list (Python's `manager.list()`), from [`Client::list`].
///
/// Elements are encoded with postcard on this side; the manager keeps their
/// bytes, so any serde type works without registering anything, including
/// other proxies (the list then keeps their objects alive).
///
/// ```
/// # fn main() -> manager::Result<()> {
/// let mgr = manager::Manager::builder().spawn_thread()?;
/// let l = mgr.list::<String>()?;
/// l.push("b".into())?;
/// l.insert(0, "a".into())?;
/// l.extend(["c".to_owned(), "d".to_owned()])?;
/// assert_eq!(l.to_vec()?, ["a", "b", "c", "d"]);
/// assert_eq!(l.remove(1)?, "b");
/// assert_eq!(l.pop()?, Some("d".to_owned()));
/// assert_eq!(l.len()?, 2);
/// assert!(matches!(l.set(9, "x".into()), Err(manager::Error::IndexOutOfRange { index: 9, len: 2 })));
/// # Ok(()) }
/// ```
pub struct ListProxy<T> {
    handle: Handle,
    _marker: PhantomData<fn() -> T>,
}

builtin_proxy!(ListProxy<T>, ListObject);

async_twin!(
    /// The async face of [`ListProxy`] (DESIGN §2a): the same methods, each
    /// an `async fn` returning the same result; the same object as a
    /// `ListProxy` converted with `into()`, both ways.
    AsyncListProxy<T> of ListProxy, ListObject
);

proxy_methods! {
    impl[T: Serialize + DeserializeOwned] ListProxy<T> / AsyncListProxy;

    /// Appends `value` (Python: `list.append(x)`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn push(&self, value: T) -> () = |h| {
        let e = h.elem(&value)?;
        h.call(ListMethod::Push as u32, |a| a.put(&e))
    }

    /// Removes and returns the last element, `None` if empty (Python: `list.pop()`).
    ///
    /// # Errors
    /// Connection errors; `Error::Protocol` if the element is not a `T`.
    pub fn pop(&self) -> Option<T> = |h| { h.call(ListMethod::Pop as u32, |_| Ok(())) }

    /// The element at `index`, `None` past the end (Python: `list[i]`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn get(&self, index: usize) -> Option<T> = |h| { h.call(ListMethod::Get as u32, |a| a.put(&(index as u64))) }

    /// Replaces the element at `index` (Python: `list[i] = x`).
    ///
    /// # Errors
    /// `Error::IndexOutOfRange` past the end.
    pub fn set(&self, index: usize, value: T) -> () = |h| {
        let e = h.elem(&value)?;
        h.call(ListMethod::Set as u32, |a| {
            a.put(&(index as u64))?;
            a.put(&e)
        })
    }

    /// Inserts `value` before `index`; `index == len` appends (Python: `list.insert(i, x)`).
    ///
    /// # Errors
    /// `Error::IndexOutOfRange` if `index > len`.
    pub fn insert(&self, index: usize, value: T) -> () = |h| {
        let e = h.elem(&value)?;
        h.call(ListMethod::Insert as u32, |a| {
            a.put(&(index as u64))?;
            a.put(&e)
        })
    }

    /// Removes and returns the element at `index` (Python: `list.pop(i)`).
    ///
    /// # Errors
    /// `Error::IndexOutOfRange` past the end.
    pub fn remove(&self, index: usize) -> T = |h| { h.call(ListMethod::Remove as u32, |a| a.put(&(index as u64))) }

    /// The number of elements (Python: `len(list)`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn len(&self) -> usize = |h| { h.call(ListMethod::Len as u32, |_| Ok(())) }

    /// Whether the list is empty (Python: `not list`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn is_empty(&self) -> bool = |h| { h.call(ListMethod::IsEmpty as u32, |_| Ok(())) }

    /// Appends every value, in one call (Python: `list.extend(xs)`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn extend(&self, values: impl IntoIterator<Item = T>) -> () = |h| {
        // The values (and any proxies in them) live until the manager holds
        // them: a proxy dropped sooner could free its object on the way.
        let values: Vec<T> = values.into_iter().collect();
        let es = values
            .iter()
            .map(|v| h.elem(v))
            .collect::<Result<Vec<_>>>()?;
        h.call(ListMethod::Extend as u32, |a| a.put(&es))
    }

    /// Removes every element (Python: `list.clear()`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn clear(&self) -> () = |h| { h.call(ListMethod::Clear as u32, |_| Ok(())) }

    /// A copy of every element (Python: `list[:]`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn to_vec(&self) -> Vec<T> = |h| { h.call(ListMethod::ToVec as u32, |_| Ok(())) }
}

impl Client {
    /// A new, empty shared list (Python: `manager.list()`).
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().spawn_thread()?;
    /// let squares = mgr.list::<u64>()?;
    /// squares.extend((1..=3).map(|i| i * i))?;
    /// assert_eq!(squares.to_vec()?, [1, 4, 9]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Connection errors.
    pub fn list<T: Serialize + DeserializeOwned + Send + Sync + 'static>(
        &self,
    ) -> Result<ListProxy<T>> {
        create::<ListProxy<T>>(self, |_| Ok(()))
    }
}

impl Client {
    /// [`Client::list`] through the async face (DESIGN §2a).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn list_async<T: Serialize + DeserializeOwned + Send + Sync + 'static>(
        &self,
    ) -> Result<AsyncListProxy<T>> {
        create_async::<AsyncListProxy<T>>(self, |_| Ok(())).await
    }
}
