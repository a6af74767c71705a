//! `Namespace`: named values of any types (Python's `manager.Namespace()`).
//!
//! Each value is kept with the *shape* of the type it was set as (a hash of
//! the serde calls its `Serialize` made), so that reading it as another type
//! is an `Error::Protocol` even where its bytes would happen to decode.

use std::fmt;
use std::marker::PhantomData;
use std::sync::RwLock;

use indexmap::IndexMap;
use serde::de::{self, DeserializeOwned, Visitor};
use serde::{ser, Deserialize, Deserializer, Serialize};

use crate::builtins::{
    async_twin, create, create_async, methods, plain_proxy, proxy_methods, read, write, Builtin,
    Elem, Stored,
};
use crate::caps::capturing;
use crate::client::Client;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::proxy::Handle;
use crate::wire::codec::{take_exactly, Decoder, Encoder, Undecodable};

/// A value and the shape of the type it was set as.
struct Entry {
    shape: u64,
    value: Stored,
}

pub(crate) struct NamespaceObject {
    values: RwLock<IndexMap<String, Entry>>,
}

methods! {
    /// A namespace's methods, by wire id.
    enum NamespaceMethod -> NamespaceCall {
        0 Get(String) => get "<T>(&self, name: &str) -> Option<T>",
        1 Set(String, u64, Elem) => set "<T>(&self, name: &str, value: T)",
        2 Remove(String) => remove "(&self, name: &str) -> bool",
        3 Names => names "(&self) -> Vec<String>",
    }
}

impl Builtin for NamespaceObject {
    const NAME: &'static str = "manager::Namespace";
    type Methods = NamespaceMethod;

    fn construct(_ctx: &Context, _args: &mut Decoder<'_>) -> Result<Self> {
        Ok(NamespaceObject {
            values: RwLock::new(IndexMap::new()),
        })
    }

    fn call(&self, ctx: &Context, call: NamespaceCall, out: &mut Encoder<'_>) -> Result<()> {
        let values = &self.values;
        match call {
            NamespaceCall::Get(name) => {
                // `Option<(u64, T)>`, the value as a byte string: the proxy
                // decodes it, and can say which value is not a `T`.
                match read(values).get(&name) {
                    None => out.put_raw(&[0]),
                    Some(entry) => {
                        out.put_raw(&[1]);
                        out.put(&entry.shape)?;
                        entry.value.write_bytes(out)?;
                    }
                }
                Ok(())
            }
            NamespaceCall::Set(name, shape, value) => {
                let entry = Entry {
                    shape,
                    value: Stored::keep(ctx, value),
                };
                // Python keeps an attribute's place when it is set again.
                let old = write(values).insert(name, entry);
                drop(old);
                Ok(())
            }
            NamespaceCall::Remove(name) => {
                let old = write(values).shift_remove(&name);
                out.put(&old.is_some())
            }
            NamespaceCall::Names => {
                let values = read(values);
                out.put(&values.len())?;
                for name in values.keys() {
                    out.put(name)?;
                }
                Ok(())
            }
        }
    }
}

/// Proxy to a namespace (Python's `manager.Namespace()`), from
/// [`Client::namespace`]: named values, each of its own type.
///
/// Read a value as the type it was set as (or one that serializes the same
/// way, like `String` for a `&str`); reading it as another type is
/// `Error::Protocol`.
///
/// ```
/// # fn main() -> manager::Result<()> {
/// let mgr = manager::Manager::builder().spawn_thread()?;
/// let ns = mgr.namespace()?;
/// ns.set("epoch", 3u32)?;
/// ns.set("name", "run-7")?;
/// assert_eq!(ns.get::<u32>("epoch")?, Some(3));
/// assert_eq!(ns.get::<String>("name")?.as_deref(), Some("run-7"));
/// assert!(matches!(ns.get::<i64>("name"), Err(manager::Error::Protocol(_))));
/// assert_eq!(ns.names()?, ["epoch", "name"]);
/// assert!(ns.remove("epoch")?);
/// assert_eq!(ns.get::<u32>("epoch")?, None);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct NamespaceProxy {
    handle: Handle,
}

plain_proxy!(NamespaceProxy, NamespaceObject);

async_twin!(
    /// The async face of [`NamespaceProxy`] (DESIGN §2a): the same methods, each
    /// an `async fn` returning the same result; the same object as a
    /// `NamespaceProxy` converted with `into()`, both ways.
    AsyncNamespaceProxy of NamespaceProxy, NamespaceObject
);

proxy_methods! {
    impl[] NamespaceProxy / AsyncNamespaceProxy;

    /// Sets the value named `name`, of any type (Python: `ns.name = x`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn set[T: Serialize](&self, name: &str, value: T) -> () = |h| {
        let shape = shape(&value)?;
        let e = h.elem(&value)?;
        h.call(NamespaceMethod::Set as u32, |a| {
            a.put(name)?;
            a.put(&shape)?;
            a.put(&e)
        })
    }

    /// Removes `name`; whether it was there (Python: `del ns.name`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn remove(&self, name: &str) -> bool = |h| { h.call(NamespaceMethod::Remove as u32, |a| a.put(name)) }

    /// The names, in the order they were first set (Python: `vars(ns).keys()`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn names(&self) -> Vec<String> = |h| { h.call(NamespaceMethod::Names as u32, |_| Ok(())) }
}

impl NamespaceProxy {
    /// The value named `name`, `None` if there is none (Python: `ns.name`,
    /// or `getattr(ns, name, None)`).
    ///
    /// # Errors
    /// `Error::Protocol` if the value was set as another type than `T` (the
    /// message names the value and `T`); connection errors. (No deferred
    /// form: the type check runs on the reply.)
    pub fn get<T: Serialize + DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let got = self
            .handle
            .call(NamespaceMethod::Get as u32, |a| a.put(name))?;
        checked(name, got)
    }
}

impl AsyncNamespaceProxy {
    /// [`NamespaceProxy::get`] through the async face.
    ///
    /// # Errors
    /// As [`NamespaceProxy::get`].
    pub async fn get<T: Serialize + DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let got = self
            .handle
            .call_async(NamespaceMethod::Get as u32, |a| a.put(name))
            .await?;
        checked(name, got)
    }
}

/// The value a `get` of `name` returned, if it is one of type `T`.
fn checked<T: Serialize>(name: &str, got: Option<(u64, Value<T>)>) -> Result<Option<T>> {
    let Some((stored, Value(value))) = got else {
        return Ok(None);
    };
    let value = value.map_err(|why| another_type::<T>(name, Some(why)))?;
    if shape(&value)? != stored {
        return Err(another_type::<T>(name, None));
    }
    Ok(Some(value))
}

#[cold]
fn another_type<T>(name: &str, undecodable: Option<Undecodable>) -> Error {
    let t = std::any::type_name::<T>();
    Error::Protocol(match undecodable {
        None => format!("namespace value {name:?} was set as another type than `{t}`"),
        Some(why) => format!(
            "namespace value {name:?} was set as another type than `{t}`: it does not \
             decode as one ({why})"
        ),
    })
}

/// A value in a namespace reply: decoded as a `T` while the reply is (so
/// the proxies in it take the references the reply brought), or why it is
/// not one.
struct Value<T>(std::result::Result<T, Undecodable>);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Bytes<T>(PhantomData<T>);

        impl<T: DeserializeOwned> Visitor<'_> for Bytes<T> {
            type Value = Value<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an encoded namespace value")
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> std::result::Result<Value<T>, E> {
                Ok(Value(take_exactly(v)))
            }
        }

        d.deserialize_bytes(Bytes(PhantomData))
    }
}

impl Client {
    /// A new, empty namespace (Python: `manager.Namespace()`).
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().spawn_thread()?;
    /// let ns = mgr.namespace()?;
    /// assert!(ns.names()?.is_empty());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Connection errors.
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        create::<NamespaceProxy>(self, |_| Ok(()))
    }
}

impl Client {
    /// [`Client::namespace`] through the async face (DESIGN §2a).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn namespace_async(&self) -> Result<AsyncNamespaceProxy> {
        create_async::<AsyncNamespaceProxy>(self, |_| Ok(())).await
    }
}

/// The shape of `value`'s type: FNV-1a over the serde data-model calls its
/// `Serialize` makes (kinds, type, field and variant names, one entry per
/// element), not the data.
/// A value decoded as the type it was encoded from serializes with the shape
/// it had; decoded as another type, with another one.
fn shape<T: Serialize + ?Sized>(value: &T) -> Result<u64> {
    let mut s = Shape(FNV_OFFSET);
    // Proxies in the value note their objects as they serialize: this is not
    // a message, so keep them out of any enclosing capture.
    let (r, _) = capturing(|| value.serialize(&mut s));
    r.map_err(|e| Error::Protocol(format!("cannot encode a namespace value: {e}")))?;
    Ok(s.0)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

struct Shape(u64);

impl Shape {
    fn token(&mut self, t: &str) {
        for b in t.bytes().chain([0xff]) {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }
}

#[derive(Debug)]
struct ShapeError(String);

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ShapeError {}

impl ser::Error for ShapeError {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        ShapeError(msg.to_string())
    }
}

type Done = std::result::Result<(), ShapeError>;

macro_rules! scalars {
    ($($method:ident($t:ty)),*) => {$(
        fn $method(self, _: $t) -> Done {
            self.token(stringify!($t));
            Ok(())
        }
    )*};
}

impl ser::Serializer for &mut Shape {
    type Ok = ();
    type Error = ShapeError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    scalars!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8])
    );

    fn serialize_none(self) -> Done {
        self.token("none");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Done {
        self.token("some");
        value.serialize(self)
    }
    fn serialize_unit(self) -> Done {
        self.token("unit");
        Ok(())
    }
    fn serialize_unit_struct(self, name: &'static str) -> Done {
        self.token("unit_struct");
        self.token(name);
        Ok(())
    }
    fn serialize_unit_variant(self, name: &'static str, _: u32, variant: &'static str) -> Done {
        self.token("unit_variant");
        self.token(name);
        self.token(variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Done {
        self.token("newtype_struct");
        self.token(name);
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Done {
        self.token("newtype_variant");
        self.token(name);
        self.token(variant);
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> std::result::Result<Self, ShapeError> {
        self.token("seq");
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> std::result::Result<Self, ShapeError> {
        self.token("tuple");
        Ok(self)
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        _: usize,
    ) -> std::result::Result<Self, ShapeError> {
        self.token("tuple_struct");
        self.token(name);
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> std::result::Result<Self, ShapeError> {
        self.token("tuple_variant");
        self.token(name);
        self.token(variant);
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> std::result::Result<Self, ShapeError> {
        self.token("map");
        Ok(self)
    }
    fn serialize_struct(
        self,
        name: &'static str,
        _: usize,
    ) -> std::result::Result<Self, ShapeError> {
        self.token("struct");
        self.token(name);
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> std::result::Result<Self, ShapeError> {
        self.token("struct_variant");
        self.token(name);
        self.token(variant);
        Ok(self)
    }
    // As postcard, so that types that serialize differently for people
    // (addresses, timestamps) take the same path here as on the wire.
    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The compound serializers: each element in turn, then an end marker.
macro_rules! compound {
    ($($trait:ident { $($method:ident $(($key:ident))?),* }),*) => {$(
        impl ser::$trait for &mut Shape {
            type Ok = ();
            type Error = ShapeError;
            $(
                fn $method<T: Serialize + ?Sized>(
                    &mut self,
                    $($key: &'static str,)?
                    value: &T,
                ) -> Done {
                    $(self.token($key);)?
                    value.serialize(&mut **self)
                }
            )*
            fn end(self) -> Done {
                self.token("end");
                Ok(())
            }
        }
    )*};
}

compound!(
    SerializeSeq { serialize_element },
    SerializeTuple { serialize_element },
    SerializeTupleStruct { serialize_field },
    SerializeTupleVariant { serialize_field },
    SerializeMap { serialize_key, serialize_value },
    SerializeStruct { serialize_field(key) },
    SerializeStructVariant { serialize_field(key) }
);

#[cfg(test)]
mod tests {
    use super::shape;
    use serde::Serialize;

    #[derive(Serialize)]
    struct A {
        x: i64,
    }

    #[derive(Serialize)]
    struct B {
        x: i64,
    }

    #[test]
    fn shapes_tell_types_apart_but_not_values() {
        let s = |v: &dyn Erased| v.shape();
        assert_eq!(s(&"abc"), s(&String::from("")));
        // Elements count: a value and its decoded copy have as many.
        assert_eq!(s(&vec![1i64, 2]), s(&[5i64, 6].as_slice()));
        assert_eq!(s(&A { x: 1 }), s(&A { x: 2 }));
        assert_ne!(s(&A { x: 1 }), s(&B { x: 1 }));
        assert_ne!(s(&""), s(&0i64));
        assert_ne!(s(&0i64), s(&0u64));
        assert_ne!(s(&Some(1u8)), s(&1u8));
        assert_ne!(s(&(1u8, 2u8)), s(&vec![1u8, 2]));
    }

    /// `shape` for values of different types in one table.
    trait Erased {
        fn shape(&self) -> u64;
    }

    impl<T: Serialize> Erased for T {
        fn shape(&self) -> u64 {
            shape(self).unwrap()
        }
    }
}
