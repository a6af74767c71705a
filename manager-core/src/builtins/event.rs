//! `Event` (Python's `threading.Event` through a manager), on the wait
//! core: a `set` grants every waiter, so a remote `wait` parks as a record
//! in the event and holds no thread.

use std::sync::Mutex;
use std::time::Duration;

use crate::builtins::wait::{wait_turn, Wait, Waiters};
use crate::builtins::{
    async_twin, create, create_async, methods, plain_proxy, proxy_methods, Builtin,
};
use crate::client::Client;
use crate::context::Context;
use crate::error::Result;
use crate::proxy::Handle;
use crate::sync::lock;
use crate::wire::codec::{Decoder, Encoder};

struct State {
    set: bool,
    /// The callers in `wait`; a `set` grants all of them.
    waiters: Waiters,
}

pub(crate) struct EventObject {
    state: Mutex<State>,
}

methods! {
    /// An event's methods, by wire id.
    enum EventMethod -> EventCall {
        0 Set => set "(&self)",
        1 Clear => clear "(&self)",
        2 IsSet => is_set "(&self) -> bool",
        3 Wait => wait "(&self)",
        4 WaitTimeout(Wait) => wait_timeout "(&self, timeout: Duration) -> bool",
    }
}

impl Builtin for EventObject {
    const NAME: &'static str = "manager::Event";
    type Methods = EventMethod;

    fn construct(_ctx: &Context, _args: &mut Decoder<'_>) -> Result<Self> {
        Ok(EventObject {
            state: Mutex::new(State {
                set: false,
                waiters: Waiters::default(),
            }),
        })
    }

    fn call(&self, ctx: &Context, call: EventCall, out: &mut Encoder<'_>) -> Result<()> {
        match call {
            EventCall::Set => {
                let mut s = lock(&self.state);
                s.set = true;
                while s.waiters.hand_off(()).is_ok() {}
                Ok(())
            }
            EventCall::Clear => {
                lock(&self.state).set = false;
                Ok(())
            }
            EventCall::IsSet => out.put(&lock(&self.state).set),
            EventCall::Wait => self.wait(ctx, Wait::Forever).map(drop),
            EventCall::WaitTimeout(wait) => out.put(&self.wait(ctx, wait)?),
        }
    }
}

impl EventObject {
    /// Waits as `wait` allows for the flag to be set; whether it was (as
    /// in Python, a waiter that a `set` woke says so even if a `clear`
    /// came before it ran).
    fn wait(&self, ctx: &Context, wait: Wait) -> Result<bool> {
        let s = lock(&self.state);
        // Run again after parking, the call's place is among the waiters.
        if s.set && !ctx.is_resuming() {
            return Ok(true);
        }
        // A grant is no scarce thing: one its caller cannot take is dropped.
        let (_s, woken) = wait_turn(ctx, &self.state, s, wait, |s| &mut s.waiters, |_, ()| {})?;
        Ok(woken.is_some())
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

async_twin!(
    /// The async face of [`EventProxy`] (DESIGN §2a): the same methods, each
    /// an `async fn` returning the same result; the same object as a
    /// `EventProxy` converted with `into()`, both ways.
    AsyncEventProxy of EventProxy, EventObject
);

proxy_methods! {
    impl[] EventProxy / AsyncEventProxy;

    /// Sets the flag and wakes every waiter (Python: `event.set()`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn set(&self) -> () = |h| { h.call(EventMethod::Set as u32, |_| Ok(())) }

    /// Clears the flag (Python: `event.clear()`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn clear(&self) -> () = |h| { h.call(EventMethod::Clear as u32, |_| Ok(())) }

    /// Whether the flag is set (Python: `event.is_set()`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn is_set(&self) -> bool = |h| { h.call(EventMethod::IsSet as u32, |_| Ok(())) }

    /// Waits until the flag is set (Python: `event.wait()`).
    ///
    /// # Errors
    /// Connection errors.
    pub [wait] fn wait(&self) -> () = |h| { h.call(EventMethod::Wait as u32, |_| Ok(())) }

    /// Waits at most `timeout`; whether the flag is set (Python: `event.wait(t)`).
    ///
    /// # Errors
    /// Connection errors.
    pub [wait] fn wait_timeout(&self, timeout: Duration) -> bool = |h| { h.call(EventMethod::WaitTimeout as u32, |a| a.put(&timeout)) }
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

impl Client {
    /// [`Client::event`] through the async face (DESIGN §2a).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn event_async(&self) -> Result<AsyncEventProxy> {
        create_async::<AsyncEventProxy>(self, |_| Ok(())).await
    }
}
