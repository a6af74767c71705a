//! `Namespace`: named values of any types (Python's `manager.Namespace()`).

use std::sync::RwLock;

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::builtins::{
    create, no_such_method, plain_proxy, read, write, write_option, Builtin, Elem, Stored,
};
use crate::client::Client;
use crate::context::Context;
use crate::error::Result;
use crate::proxy::Handle;
use crate::wire::codec::{Decoder, Encoder};

pub(crate) struct NamespaceObject {
    values: RwLock<IndexMap<String, Stored>>,
}

mod m {
    pub(super) const GET: u32 = 0;
    pub(super) const SET: u32 = 1;
    pub(super) const REMOVE: u32 = 2;
    pub(super) const NAMES: u32 = 3;
}

impl Builtin for NamespaceObject {
    const NAME: &'static str = "manager::Namespace";
    const METHODS: &'static [&'static str] = &["get", "set", "remove", "names"];

    fn construct(_ctx: &Context, _args: &mut Decoder<'_>) -> Result<Self> {
        Ok(NamespaceObject {
            values: RwLock::new(IndexMap::new()),
        })
    }

    fn call(
        &self,
        ctx: &Context,
        method: u32,
        args: &mut Decoder<'_>,
        out: &mut Encoder<'_>,
    ) -> Result<()> {
        let values = &self.values;
        match method {
            m::GET => {
                let name: String = args.take()?;
                args.finish()?;
                write_option(out, read(values).get(&name));
                Ok(())
            }
            m::SET => {
                let name: String = args.take()?;
                let e: Elem = args.take()?;
                args.finish()?;
                let s = Stored::keep(ctx, e);
                let old = write(values).insert(name, s);
                drop(old);
                Ok(())
            }
            m::REMOVE => {
                let name: String = args.take()?;
                args.finish()?;
                let old = write(values).shift_remove(&name);
                out.put(&old.is_some())
            }
            m::NAMES => {
                args.finish()?;
                let values = read(values);
                let names: Vec<&String> = values.keys().collect();
                out.put(&names)
            }
            _ => Err(no_such_method::<Self>(method)),
        }
    }
}

/// Proxy to a namespace (Python's `manager.Namespace()`), from
/// [`Client::namespace`]: named values, each of its own type.
///
/// ```
/// # fn main() -> manager::Result<()> {
/// let mgr = manager::Manager::builder().spawn_thread()?;
/// let ns = mgr.namespace()?;
/// ns.set("epoch", 3u32)?;
/// ns.set("name", "run-7")?;
/// assert_eq!(ns.get::<u32>("epoch")?, Some(3));
/// assert_eq!(ns.get::<String>("name")?.as_deref(), Some("run-7"));
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

impl NamespaceProxy {
    /// The value named `name`, decoded as a `T` (Python: `ns.name`).
    ///
    /// # Errors
    /// `Error::Protocol` if the value is not a `T` (as far as its encoding
    /// tells: postcard does not record types, so a value of another type
    /// with the same shape decodes).
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        self.handle.call(m::GET, |a| a.put(name))
    }

    /// Sets the value named `name` (Python: `ns.name = x`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn set<T: Serialize>(&self, name: &str, value: T) -> Result<()> {
        let e = Elem::for_handle(&self.handle, &value)?;
        self.handle.call(m::SET, |a| {
            a.put(name)?;
            a.put(&e)
        })
    }

    /// Removes `name`; whether it was there (Python: `del ns.name`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn remove(&self, name: &str) -> Result<bool> {
        self.handle.call(m::REMOVE, |a| a.put(name))
    }

    /// The names, in the order they were first set (Python: `vars(ns)`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn names(&self) -> Result<Vec<String>> {
        self.handle.call(m::NAMES, |_| Ok(()))
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
        let handle = create::<NamespaceObject>(self, |_| Ok(()))?;
        Ok(<NamespaceProxy as crate::Proxy>::__from_handle(handle))
    }
}
