//! The built-in shared types, SyncManager's set: list, dict, value, queue,
//! joinable queue, lock, rlock, semaphore, condition, event, barrier,
//! namespace.
//!
//! Each is an [`Object`] served like any `#[shared]` type. Containers hold
//! their elements as encoded bytes, so `client.list::<MyStruct>()` needs
//! nothing registered: the typed proxy encodes and decodes on the client.
//! Elements travel as length-prefixed byte strings ([`Elem`]).

mod value;

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client::Client;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::proxy::Handle;
use crate::shared::{fingerprint, Object, TypeEntry};
use crate::wire::codec::{from_slice, to_vec, Decoder, Encoder};

pub use value::{FetchAdd, ValueProxy};

/// An element: its postcard encoding, travelling length-prefixed.
pub(crate) type ElemBuf = serde_bytes::ByteBuf;

/// A built-in type's identity and constructor.
pub(crate) trait Builtin: Object + Sized {
    /// Name on the wire and in stats.
    const NAME: &'static str;
    /// Method names by index; their order is the wire interface.
    const METHODS: &'static [&'static str];
    /// The interface fingerprint.
    const FINGERPRINT: u64 = fingerprint(Self::NAME, Self::METHODS);

    /// Builds the object from its constructor arguments.
    fn construct(ctx: &Context, args: &mut Decoder<'_>) -> Result<Self>;
}

fn construct<B: Builtin>(
    ctx: &Context,
    ctor: u32,
    args: &mut Decoder<'_>,
) -> Result<Box<dyn Object>> {
    if ctor != 0 {
        return Err(Error::Protocol(format!("{} has one constructor", B::NAME)));
    }
    let obj = B::construct(ctx, args)?;
    args.finish()?;
    Ok(Box::new(obj))
}

const fn entry<B: Builtin>() -> TypeEntry {
    TypeEntry {
        name: B::NAME,
        fingerprint: B::FINGERPRINT,
        construct: construct::<B>,
    }
}

/// The entries every manager can construct without registration.
pub(crate) fn builtin_entries() -> HashMap<&'static str, TypeEntry> {
    [entry::<value::ValueObject>()]
        .into_iter()
        .map(|e| (e.name, e))
        .collect()
}

/// The name of method `m` of `B`, for errors and logs.
pub(crate) fn method_name<B: Builtin>(m: u32) -> &'static str {
    usize::try_from(m)
        .ok()
        .and_then(|m| B::METHODS.get(m))
        .copied()
        .unwrap_or("<unknown method>")
}

/// The error for a method index `B` does not have.
pub(crate) fn no_such_method<B: Builtin>(m: u32) -> Error {
    Error::Protocol(format!("{} has no method number {m}", B::NAME))
}

/// Creates a built-in object and returns the handle of its first reference.
pub(crate) fn create<B: Builtin>(
    client: &Client,
    args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
) -> Result<Handle> {
    crate::proxy::create(client, B::NAME, B::FINGERPRINT, 0, args)
}

/// Encodes a value as an element.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<ElemBuf> {
    to_vec(value).map(ElemBuf::from)
}

/// Decodes an element.
pub(crate) fn decode<T: DeserializeOwned>(elem: &[u8]) -> Result<T> {
    from_slice(elem)
}

/// Implements the parts of [`Proxy`](crate::Proxy) and the serde traits that
/// every built-in proxy shares; `$obj` is its server-side object type.
macro_rules! builtin_proxy {
    ($proxy:ident < $($g:ident),* >, $obj:ty) => {
        impl<$($g: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static),*> crate::Proxy for $proxy<$($g),*> {
            const TYPE_NAME: &'static str = <$obj as crate::builtins::Builtin>::NAME;
            const FINGERPRINT: u64 = <$obj as crate::builtins::Builtin>::FINGERPRINT;
            fn __from_handle(handle: crate::proxy::Handle) -> Self {
                $proxy { handle, _marker: std::marker::PhantomData }
            }
            fn __handle(&self) -> &crate::proxy::Handle {
                &self.handle
            }
        }
        impl<$($g),*> Clone for $proxy<$($g),*> {
            fn clone(&self) -> Self {
                $proxy { handle: self.handle.clone(), _marker: std::marker::PhantomData }
            }
        }
        impl<$($g),*> std::fmt::Debug for $proxy<$($g),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({:?})", stringify!($proxy), self.handle)
            }
        }
        impl<$($g),*> serde::Serialize for $proxy<$($g),*> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.handle.serialize(s)
            }
        }
        impl<'de, $($g: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static),*> serde::Deserialize<'de> for $proxy<$($g),*> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                crate::proxy::deserialize_proxy::<Self, D>(d)
            }
        }
    };
}
pub(crate) use builtin_proxy;
