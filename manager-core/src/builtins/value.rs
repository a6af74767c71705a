//! `Value`: one shared value (Python's `manager.Value`), with atomics-style
//! `swap`, `compare_exchange` and, for integers, `fetch_add`.

use std::marker::PhantomData;
use std::sync::RwLock;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::builtins::{
    async_twin, builtin_proxy, create, create_async, decode, methods, proxy_methods, read, write,
    Builtin, Elem, Stored,
};
use crate::client::Client;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::proxy::Handle;
use crate::wire::codec::{Decoder, Encoder};

pub(crate) struct ValueObject {
    value: RwLock<Stored>,
}

methods! {
    /// A value's methods, by wire id.
    enum ValueMethod -> ValueCall<'a> {
        0 Get => get "(&self) -> T",
        1 Set(Elem) => set "(&self, value: T)",
        2 Swap(Elem) => swap "(&self, value: T) -> T",
        3 CompareExchange(Elem, Elem) => compare_exchange
            "(&self, current: T, new: T) -> Result<T, T>",
        4 FetchAdd(u8, &'a [u8]) => fetch_add "(&self, delta: T) -> T",
    }
}

impl Builtin for ValueObject {
    const NAME: &'static str = "manager::Value";
    const ELEMENTS: usize = 1;
    type Methods = ValueMethod;

    fn construct(ctx: &Context, args: &mut Decoder<'_>) -> Result<Self> {
        let value: Elem = args.take()?;
        Ok(ValueObject {
            value: RwLock::new(Stored::keep(ctx, value)),
        })
    }

    fn call(&self, ctx: &Context, call: ValueCall<'_>, out: &mut Encoder<'_>) -> Result<()> {
        let value = &self.value;
        match call {
            ValueCall::Get => {
                read(value).write(out);
                Ok(())
            }
            ValueCall::Set(new) => {
                let new = Stored::keep(ctx, new);
                let old = std::mem::replace(&mut *write(value), new);
                drop(old);
                Ok(())
            }
            ValueCall::Swap(new) => {
                let new = Stored::keep(ctx, new);
                let old = std::mem::replace(&mut *write(value), new);
                old.write(out);
                Ok(())
            }
            ValueCall::CompareExchange(current, new) => {
                let mut v = write(value);
                // Equal encodings are equal values: postcard is deterministic.
                if v.bytes() == current.bytes() {
                    let old = std::mem::replace(&mut *v, Stored::keep(ctx, new));
                    out.put_raw(&[0]); // Ok(previous)
                    old.write(out);
                } else {
                    out.put_raw(&[1]); // Err(actual)
                    v.write(out);
                }
                Ok(())
            }
            ValueCall::FetchAdd(kind, delta) => {
                let mut v = write(value);
                let mut sum = [0u8; 24];
                let next = add_encoded(kind, v.bytes(), delta, &mut sum)?;
                let old = std::mem::replace(&mut *v, Stored::plain(next));
                old.write(out);
                Ok(())
            }
        }
    }
}

/// `a + b` for two encoded integers of kind `kind`, wrapping like the
/// atomics' `fetch_add`, encoded into `out` (an integer's encoding fits in
/// 24 bytes: no allocation).
fn add_encoded<'o>(kind: u8, a: &[u8], b: &[u8], out: &'o mut [u8; 24]) -> Result<&'o [u8]> {
    macro_rules! kinds {
        ($($k:literal => $t:ty),*) => {
            match kind {
                $($k => Ok(&*postcard::to_slice(
                    &decode::<$t>(a)?.wrapping_add(decode::<$t>(b)?),
                    out,
                )?),)*
                _ => Err(Error::Protocol(format!("fetch_add of unknown integer kind {kind}"))),
            }
        };
    }
    kinds!(0 => i8, 1 => i16, 2 => i32, 3 => i64, 4 => i128, 5 => isize,
           6 => u8, 7 => u16, 8 => u32, 9 => u64, 10 => u128, 11 => usize)
}

/// Integer types whose shared values support [`ValueProxy::fetch_add`].
pub trait FetchAdd: sealed::Sealed {
    #[doc(hidden)]
    const KIND: u8;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! fetch_add_kinds {
    ($($t:ty => $k:literal),*) => {$(
        impl sealed::Sealed for $t {}
        impl FetchAdd for $t { const KIND: u8 = $k; }
    )*};
}
fetch_add_kinds!(i8 => 0, i16 => 1, i32 => 2, i64 => 3, i128 => 4, isize => 5,
                 u8 => 6, u16 => 7, u32 => 8, u64 => 9, u128 => 10, usize => 11);

/// Proxy to a shared value (Python's `manager.Value`), from [`Client::value`].
///
/// ```
/// # fn main() -> manager::Result<()> {
/// let mgr = manager::Manager::builder().spawn_thread()?;
/// let hits = mgr.value(0u64)?;
/// assert_eq!(hits.fetch_add(5)?, 0);
/// assert_eq!(hits.compare_exchange(5, 7)?, Ok(5));
/// assert_eq!(hits.compare_exchange(5, 9)?, Err(7));
/// assert_eq!(hits.get()?, 7);
/// # Ok(()) }
/// ```
pub struct ValueProxy<T> {
    handle: Handle,
    _marker: PhantomData<fn() -> T>,
}

builtin_proxy!(ValueProxy<T>, ValueObject);

async_twin!(
    /// The async face of [`ValueProxy`] (DESIGN §2a): the same methods, each
    /// an `async fn` returning the same result; the same object as a
    /// `ValueProxy` converted with `into()`, both ways.
    AsyncValueProxy<T> of ValueProxy, ValueObject
);

proxy_methods! {
    impl[T: Serialize + DeserializeOwned] ValueProxy<T> / AsyncValueProxy;

    /// The value (Python: `value.value`).
    ///
    /// # Errors
    /// Connection errors; `Error::Protocol` if the value is not a `T`.
    pub fn get(&self) -> T = |h| { h.call(ValueMethod::Get as u32, |_| Ok(())) }

    /// Replaces the value (Python: `value.value = x`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn set(&self, value: T) -> () = |h| {
        let e = h.elem(&value)?;
        h.call(ValueMethod::Set as u32, |a| a.put(&e))
    }

    /// Replaces the value and returns the previous one.
    ///
    /// # Errors
    /// Connection errors.
    pub fn swap(&self, value: T) -> T = |h| {
        let e = h.elem(&value)?;
        h.call(ValueMethod::Swap as u32, |a| a.put(&e))
    }

    /// Stores `new` if the value is `current`: `Ok(previous)` on success,
    /// `Err(actual)` otherwise, like the standard atomics.
    ///
    /// # Errors
    /// Connection errors.
    pub fn compare_exchange(&self, current: T, new: T) -> std::result::Result<T, T> = |h| {
        let c = h.elem(&current)?;
        let n = h.elem(&new)?;
        h.call(ValueMethod::CompareExchange as u32, |a| {
            a.put(&c)?;
            a.put(&n)
        })
    }
}

proxy_methods! {
    more impl[T: Serialize + DeserializeOwned + FetchAdd] ValueProxy<T> / AsyncValueProxy;

    /// Adds `delta` (wrapping) and returns the previous value.
    ///
    /// # Errors
    /// Connection errors; `Error::Protocol` if the stored value is not a `T`.
    pub fn fetch_add(&self, delta: T) -> T = |h| {
        // An integer's encoding fits on the stack: no allocation per call.
        let mut tmp = [0u8; 24];
        let d = postcard::to_slice(&delta, &mut tmp)?;
        h.call(ValueMethod::FetchAdd as u32, |a| {
            a.put(&T::KIND)?;
            a.put(serde_bytes::Bytes::new(d))
        })
    }
}

impl Client {
    /// A new shared value holding `initial` (Python: `manager.Value`).
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().spawn_thread()?;
    /// let name = mgr.value(String::from("ada"))?;
    /// assert_eq!(name.swap("grace".into())?, "ada");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Connection errors.
    pub fn value<T: Serialize + DeserializeOwned + Send + Sync + 'static>(
        &self,
        initial: T,
    ) -> Result<ValueProxy<T>> {
        let e = Elem::encode(self.address(), &initial)?;
        create::<ValueProxy<T>>(self, |a| a.put(&e))
    }
}

impl Client {
    /// [`Client::value`] through the async face (DESIGN §2a).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn value_async<T: Serialize + DeserializeOwned + Send + Sync + 'static>(
        &self,
        initial: T,
    ) -> Result<AsyncValueProxy<T>> {
        let e = Elem::encode(self.address(), &initial)?;
        create_async::<AsyncValueProxy<T>>(self, |a| a.put(&e)).await
    }
}

#[cfg(test)]
mod tests {
    use crate::{Error, Manager};

    #[test]
    fn values_swap_exchange_and_add_in_the_manager() {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let v = mgr.value(10i64).unwrap();
        assert_eq!(v.get().unwrap(), 10);
        v.set(11).unwrap();
        assert_eq!(v.swap(12).unwrap(), 11);
        assert_eq!(v.compare_exchange(12, 13).unwrap(), Ok(12));
        assert_eq!(v.compare_exchange(12, 14).unwrap(), Err(13));
        assert_eq!(v.fetch_add(-3).unwrap(), 13);
        assert_eq!(v.get().unwrap(), 10);
        let small = mgr.value(250u8).unwrap();
        assert_eq!(small.fetch_add(10).unwrap(), 250);
        assert_eq!(small.get().unwrap(), 4, "wraps like the atomics");
        let s = mgr.value(String::from("a")).unwrap();
        assert_eq!(s.swap("b".into()).unwrap(), "a");
        // Reading a value as another type is a protocol error, not garbage.
        let wrong: crate::ValueProxy<String> =
            crate::Proxy::__from_handle(crate::Proxy::__handle(&v).clone());
        assert!(matches!(wrong.get(), Err(Error::Protocol(_))));
    }

    #[test]
    fn dropped_proxies_free_their_objects() {
        let mgr = Manager::builder().spawn_thread().unwrap();
        let base = mgr.stats().unwrap().objects;
        let vs: Vec<_> = (0..10).map(|i| mgr.value(i).unwrap()).collect();
        assert_eq!(mgr.stats().unwrap().objects, base + 10);
        let copies = vs.clone();
        drop(vs);
        assert_eq!(mgr.stats().unwrap().objects, base + 10);
        drop(copies);
        assert_eq!(mgr.stats().unwrap().objects, base);
    }
}
