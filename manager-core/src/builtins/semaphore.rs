//! `Semaphore` and `BoundedSemaphore` (Python's `threading` ones through a
//! manager), on the wait core. Permits are counted per connection, so a
//! client that dies gives back the permits it took; one that ends normally
//! leaves them taken.

use std::sync::Mutex;
use std::time::Duration;

use crate::builtins::wait::{acquire, Permits, Policy, Wait};
use crate::builtins::{
    async_twin, create, create_async, methods, plain_proxy, proxy_methods, take_usize, Builtin,
};
use crate::client::Client;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::proxy::Handle;
use crate::shared::End;
use crate::sync::lock;
use crate::wire::codec::{Decoder, Encoder};

/// Counted permits; a bounded semaphore's never more free than at first.
pub(crate) struct SemaphoreObject(Mutex<Permits>);

methods! {
    /// A semaphore's methods, by wire id.
    enum SemaphoreMethod -> SemaphoreCall {
        0 Acquire => acquire "(&self)",
        1 TryAcquire => try_acquire "(&self) -> bool",
        2 AcquireTimeout(Wait) => acquire_timeout "(&self, timeout: Duration) -> bool",
        3 Release => release "(&self)",
    }
}

impl Builtin for SemaphoreObject {
    const NAME: &'static str = "manager::Semaphore";
    type Methods = SemaphoreMethod;

    fn construct(_ctx: &Context, args: &mut Decoder<'_>) -> Result<Self> {
        let initial = take_usize(args)? as u64;
        let bounded: bool = args.take()?;
        let permits = Permits::new(initial, bounded.then_some(initial), Policy::Counted);
        Ok(SemaphoreObject(Mutex::new(permits)))
    }

    fn call(&self, ctx: &Context, call: SemaphoreCall, out: &mut Encoder<'_>) -> Result<()> {
        let permits = &self.0;
        let acquire = |wait| acquire(ctx, permits, lock(permits), wait, 1, |p| p);
        match call {
            SemaphoreCall::Acquire => acquire(Wait::Forever).map(drop),
            SemaphoreCall::TryAcquire => out.put(&acquire(Wait::No)?.1),
            SemaphoreCall::AcquireTimeout(wait) => out.put(&acquire(wait)?.1),
            SemaphoreCall::Release => lock(permits).release(ctx.connection_id()).map_err(|_| {
                Error::NotHeld(
                    "a bounded semaphore released more times than it was acquired".into(),
                )
            }),
        }
    }

    const TRACKS_CONNECTIONS: bool = true;

    /// After an abnormal end the permits the connection still holds come
    /// back; after a normal one they stay taken, as in Python (an acquire
    /// consumes a permit: that is how a semaphore carries a signal from one
    /// process to another).
    fn disconnected(&self, conn: u64, end: End) {
        lock(&self.0).settle(conn, end)
    }
}

/// Proxy to a semaphore (Python's `threading.Semaphore` or
/// `BoundedSemaphore` through a manager), from [`Client::semaphore`] and
/// [`Client::bounded_semaphore`]. Permits a client thread took are given
/// back if its connection ends abnormally (its process crashed or was
/// killed); after a normal end they stay taken, as in Python.
///
/// ```
/// use std::time::Duration;
/// # fn main() -> manager::Result<()> {
/// let mgr = manager::Manager::builder().spawn_thread()?;
/// let s = mgr.bounded_semaphore(1)?;
/// s.acquire()?;
/// assert!(!s.try_acquire()?);
/// assert!(!s.acquire_timeout(Duration::from_millis(10))?);
/// s.release()?;
/// assert!(matches!(s.release(), Err(manager::Error::NotHeld(_))));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SemaphoreProxy {
    handle: Handle,
}

plain_proxy!(SemaphoreProxy, SemaphoreObject);

async_twin!(
    /// The async face of [`SemaphoreProxy`] (DESIGN §2a): the same methods, each
    /// an `async fn` returning the same result; the same object as a
    /// `SemaphoreProxy` converted with `into()`, both ways.
    AsyncSemaphoreProxy of SemaphoreProxy, SemaphoreObject
);

proxy_methods! {
    impl[] SemaphoreProxy / AsyncSemaphoreProxy;

    /// Takes a permit, waiting for one (Python: `sem.acquire()`).
    ///
    /// # Errors
    /// Connection errors.
    pub [wait] fn acquire(&self) -> () = |h| { h.call(SemaphoreMethod::Acquire as u32, |_| Ok(())) }

    /// Takes a permit if one is free now (Python: `sem.acquire(blocking=False)`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn try_acquire(&self) -> bool = |h| { h.call(SemaphoreMethod::TryAcquire as u32, |_| Ok(())) }

    /// Takes a permit, waiting at most `timeout` (Python: `sem.acquire(timeout=t)`).
    ///
    /// # Errors
    /// Connection errors.
    pub [wait] fn acquire_timeout(&self, timeout: Duration) -> bool = |h| { h.call(SemaphoreMethod::AcquireTimeout as u32, |a| a.put(&timeout)) }

    /// Gives a permit back (Python: `sem.release()`).
    ///
    /// # Errors
    /// `Error::NotHeld` for a bounded semaphore already at its initial value.
    pub fn release(&self) -> () = |h| { h.call(SemaphoreMethod::Release as u32, |_| Ok(())) }
}

impl Client {
    /// A new semaphore with `value` permits (Python: `manager.Semaphore(value)`).
    /// It may be released above `value`.
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().spawn_thread()?;
    /// let s = mgr.semaphore(0)?;
    /// s.release()?;
    /// assert!(s.try_acquire()?);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Connection errors.
    pub fn semaphore(&self, value: usize) -> Result<SemaphoreProxy> {
        self.new_semaphore(value, false)
    }

    /// A new bounded semaphore with `value` permits (Python:
    /// `manager.BoundedSemaphore(value)`): releasing above `value` is an error.
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().spawn_thread()?;
    /// let s = mgr.bounded_semaphore(2)?;
    /// assert!(s.release().is_err());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Connection errors.
    pub fn bounded_semaphore(&self, value: usize) -> Result<SemaphoreProxy> {
        self.new_semaphore(value, true)
    }

    fn new_semaphore(&self, value: usize, bounded: bool) -> Result<SemaphoreProxy> {
        create::<SemaphoreProxy>(self, |a| {
            a.put(&(value as u64))?;
            a.put(&bounded)
        })
    }
}

impl Client {
    /// [`Client::semaphore`] through the async face (DESIGN §2a).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn semaphore_async(&self, value: usize) -> Result<AsyncSemaphoreProxy> {
        self.new_semaphore_async(value, false).await
    }

    /// [`Client::bounded_semaphore`] through the async face (DESIGN §2a).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn bounded_semaphore_async(&self, value: usize) -> Result<AsyncSemaphoreProxy> {
        self.new_semaphore_async(value, true).await
    }

    async fn new_semaphore_async(
        &self,
        value: usize,
        bounded: bool,
    ) -> Result<AsyncSemaphoreProxy> {
        create_async::<AsyncSemaphoreProxy>(self, |a| {
            a.put(&(value as u64))?;
            a.put(&bounded)
        })
        .await
    }
}
