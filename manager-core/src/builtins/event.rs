//! `Event` (Python's `threading.Event` through a manager).

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::builtins::{
    builtin_object, create, no_such_method, plain_proxy, proxy_methods, take_deadline, Builtin,
};
use crate::client::Client;
use crate::context::Context;
use crate::error::Result;
use crate::proxy::Handle;
use crate::server::lock;
use crate::wire::codec::{Decoder, Encoder};

pub(crate) struct EventObject {
    set: Mutex<bool>,
    changed: Condvar,
}

mod m {
    pub(super) const SET: u32 = 0;
    pub(super) const CLEAR: u32 = 1;
    pub(super) const IS_SET: u32 = 2;
    pub(super) const WAIT: u32 = 3;
    pub(super) const WAIT_TIMEOUT: u32 = 4;
}

impl Builtin for EventObject {
    const NAME: &'static str = "manager::Event";
    const METHODS: &'static [&'static str] = &["set", "clear", "is_set", "wait", "wait_timeout"];

    fn construct(_ctx: &Context, _args: &mut Decoder<'_>) -> Result<Self> {
        Ok(EventObject {
            set: Mutex::new(false),
            changed: Condvar::new(),
        })
    }
}

builtin_object!(EventObject);

impl EventObject {
    fn dispatch(
        &self,
        ctx: &Context,
        method: u32,
        args: &mut Decoder<'_>,
        out: &mut Encoder<'_>,
    ) -> Result<()> {
        match method {
            m::SET => {
                args.finish()?;
                *lock(&self.set) = true;
                self.changed.notify_all();
                Ok(())
            }
            m::CLEAR => {
                args.finish()?;
                *lock(&self.set) = false;
                Ok(())
            }
            m::IS_SET => {
                args.finish()?;
                out.put(&*lock(&self.set))
            }
            m::WAIT => {
                args.finish()?;
                let (set, _) = ctx.wait_until(lock(&self.set), &self.changed, None, |s| *s)?;
                drop(set);
                Ok(())
            }
            m::WAIT_TIMEOUT => {
                let deadline = take_deadline(args)?;
                args.finish()?;
                let (guard, set) =
                    ctx.wait_until(lock(&self.set), &self.changed, deadline, |s| *s)?;
                drop(guard);
                out.put(&set)
            }
            _ => Err(no_such_method::<Self>(method)),
        }
    }
}

/// Proxy to an event (Python's `threading.Event` through a manager), from
/// [`Client::event`].
///
/// ```
/// use std::time::Duration;
/// # fn main() -> manager::Result<()> {
/// let mgr = manager::Manager::builder().spawn_thread()?;
/// let e = mgr.event()?;
/// assert!(!e.wait_timeout(Duration::from_millis(10))?);
/// e.set()?;
/// e.wait()?;
/// assert!(e.is_set()?);
/// e.clear()?;
/// assert!(!e.is_set()?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EventProxy {
    handle: Handle,
}

plain_proxy!(EventProxy, EventObject);

proxy_methods! {
    impl[] EventProxy;

    /// Sets the flag and wakes every waiter (Python: `event.set()`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn set(&self) -> () = |h| { h.call(m::SET, |_| Ok(())) }

    /// Clears the flag (Python: `event.clear()`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn clear(&self) -> () = |h| { h.call(m::CLEAR, |_| Ok(())) }

    /// Whether the flag is set (Python: `event.is_set()`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn is_set(&self) -> bool = |h| { h.call(m::IS_SET, |_| Ok(())) }

    /// Waits until the flag is set (Python: `event.wait()`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn wait(&self) -> () = |h| { h.call(m::WAIT, |_| Ok(())) }

    /// Waits at most `timeout`; whether the flag is set (Python: `event.wait(t)`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn wait_timeout(&self, timeout: Duration) -> bool = |h| { h.call(m::WAIT_TIMEOUT, |a| a.put(&timeout)) }
}

impl Client {
    /// A new, cleared event (Python: `manager.Event()`).
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().spawn_thread()?;
    /// let ready = mgr.event()?;
    /// ready.set()?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Connection errors.
    pub fn event(&self) -> Result<EventProxy> {
        create::<EventProxy>(self, |_| Ok(()))
    }
}
