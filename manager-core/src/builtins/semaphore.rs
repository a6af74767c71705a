//! `Semaphore` and `BoundedSemaphore` (Python's `threading` ones through a
//! manager). Permits are counted per connection, so a client that dies gives
//! back the permits it took; one that ends normally leaves them taken.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::builtins::wait::Wait;
use crate::builtins::{create, methods, plain_proxy, proxy_methods, take_usize, Builtin};
use crate::client::Client;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::proxy::Handle;
use crate::server::lock;
use crate::shared::End;
use crate::wire::codec::{Decoder, Encoder};

struct State {
    /// Free permits.
    value: usize,
    /// Permits taken and not given back, by the connection that took them.
    held: HashMap<u64, usize>,
}

pub(crate) struct SemaphoreObject {
    initial: usize,
    bounded: bool,
    state: Mutex<State>,
    released: Condvar,
}

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
        let initial = take_usize(args)?;
        let bounded: bool = args.take()?;
        Ok(SemaphoreObject {
            initial,
            bounded,
            state: Mutex::new(State {
                value: initial,
                held: HashMap::new(),
            }),
            released: Condvar::new(),
        })
    }

    fn call(&self, ctx: &Context, call: SemaphoreCall, out: &mut Encoder<'_>) -> Result<()> {
        match call {
            SemaphoreCall::Acquire => self.acquire(ctx, Wait::Forever).map(drop),
            SemaphoreCall::TryAcquire => out.put(&self.acquire(ctx, Wait::No)?),
            SemaphoreCall::AcquireTimeout(wait) => out.put(&self.acquire(ctx, wait)?),
            SemaphoreCall::Release => self.release(ctx.connection_id()),
        }
    }

    fn disconnected(&self, conn: u64, end: End) {
        self.release_all(conn, end)
    }
}

impl SemaphoreObject {
    /// Takes a permit for the calling connection, waiting as `wait` allows.
    fn acquire(&self, ctx: &Context, wait: Wait) -> Result<bool> {
        let s = lock(&self.state);
        let (mut s, free) = if let Wait::No = wait {
            let free = s.value > 0;
            (s, free)
        } else {
            match ctx.wait_until(s, &self.released, wait.deadline(), |s| s.value > 0) {
                Ok(r) => r,
                Err(e) => {
                    // Pass on a wake-up this caller may have taken.
                    self.released.notify_one();
                    return Err(e);
                }
            }
        };
        if free {
            s.value -= 1;
            *s.held.entry(ctx.connection_id()).or_insert(0) += 1;
        }
        Ok(free)
    }

    fn release(&self, conn: u64) -> Result<()> {
        let mut s = lock(&self.state);
        if self.bounded && s.value >= self.initial {
            return Err(Error::NotHeld(
                "a bounded semaphore released more times than it was acquired".into(),
            ));
        }
        s.value = s.value.saturating_add(1);
        // The permit comes back from the caller's own, or, released on
        // another's behalf (allowed, as in Python), from someone else's: so
        // a connection that closes later gives back only what is still out.
        let from = if s.held.contains_key(&conn) {
            Some(conn)
        } else {
            s.held.keys().next().copied()
        };
        if let Some(from) = from {
            if let Some(n) = s.held.get_mut(&from) {
                *n -= 1;
                if *n == 0 {
                    s.held.remove(&from);
                }
            }
        }
        drop(s);
        self.released.notify_one();
        Ok(())
    }

    /// Connection `conn` ended. After an abnormal end the permits it still
    /// holds come back; after a normal one they stay taken, as in Python
    /// (an acquire consumes a permit: that is how a semaphore carries a
    /// signal from one process to another).
    fn release_all(&self, conn: u64, end: End) {
        let mut s = lock(&self.state);
        let held = s.held.remove(&conn);
        if end == End::Normal {
            return;
        }
        if let Some(n) = held {
            s.value = s.value.saturating_add(n);
            if self.bounded {
                s.value = s.value.min(self.initial);
            }
            drop(s);
            self.released.notify_all();
        }
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

proxy_methods! {
    impl[] SemaphoreProxy;

    /// Takes a permit, waiting for one (Python: `sem.acquire()`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn acquire(&self) -> () = |h| { h.call(SemaphoreMethod::Acquire as u32, |_| Ok(())) }

    /// Takes a permit if one is free now (Python: `sem.acquire(blocking=False)`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn try_acquire(&self) -> bool = |h| { h.call(SemaphoreMethod::TryAcquire as u32, |_| Ok(())) }

    /// Takes a permit, waiting at most `timeout` (Python: `sem.acquire(timeout=t)`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool = |h| { h.call(SemaphoreMethod::AcquireTimeout as u32, |a| a.put(&timeout)) }

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
