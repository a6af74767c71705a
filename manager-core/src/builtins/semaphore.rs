//! `Semaphore` and `BoundedSemaphore` (Python's `threading` ones through a
//! manager). Permits are counted per connection, so a client that dies gives
//! back the permits it took.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::builtins::{create, deadline, no_such_method, plain_proxy, Builtin};
use crate::client::Client;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::proxy::Handle;
use crate::server::lock;
use crate::wire::codec::{Decoder, Encoder};

struct State {
    value: usize,
    /// Permits each connection took and has not given back.
    held: HashMap<u64, usize>,
}

pub(crate) struct SemaphoreObject {
    initial: usize,
    bounded: bool,
    state: Mutex<State>,
    released: Condvar,
}

mod m {
    pub(super) const ACQUIRE: u32 = 0;
    pub(super) const TRY_ACQUIRE: u32 = 1;
    pub(super) const ACQUIRE_TIMEOUT: u32 = 2;
    pub(super) const RELEASE: u32 = 3;
}

impl SemaphoreObject {
    fn give_back(&self, s: &mut State, n: usize) {
        s.value = s.value.saturating_add(n);
        if self.bounded {
            s.value = s.value.min(self.initial);
        }
    }
}

impl Builtin for SemaphoreObject {
    const NAME: &'static str = "manager::Semaphore";
    const METHODS: &'static [&'static str] =
        &["acquire", "try_acquire", "acquire_timeout", "release"];

    fn construct(_ctx: &Context, args: &mut Decoder<'_>) -> Result<Self> {
        let initial: u64 = args.take()?;
        let bounded: bool = args.take()?;
        let initial = usize::try_from(initial).unwrap_or(usize::MAX);
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

    fn call(
        &self,
        ctx: &Context,
        method: u32,
        args: &mut Decoder<'_>,
        out: &mut Encoder<'_>,
    ) -> Result<()> {
        let conn = ctx.connection_id();
        match method {
            m::ACQUIRE | m::TRY_ACQUIRE | m::ACQUIRE_TIMEOUT => {
                let until = match method {
                    m::ACQUIRE => Some(None),
                    m::ACQUIRE_TIMEOUT => Some(deadline(args.take::<Duration>()?)),
                    _ => None,
                };
                args.finish()?;
                let s = lock(&self.state);
                let (mut s, got) = match until {
                    None => {
                        let free = s.value > 0;
                        (s, free)
                    }
                    Some(until) => ctx.wait_until(s, &self.released, until, |s| s.value > 0)?,
                };
                if got {
                    s.value -= 1;
                    *s.held.entry(conn).or_insert(0) += 1;
                }
                if method != m::ACQUIRE {
                    out.put(&got)?;
                }
                Ok(())
            }
            m::RELEASE => {
                args.finish()?;
                let mut s = lock(&self.state);
                if self.bounded && s.value >= self.initial {
                    return Err(Error::NotHeld(
                        "a bounded semaphore released more times than it was acquired".into(),
                    ));
                }
                s.value += 1;
                if let Some(n) = s.held.get_mut(&conn) {
                    *n -= 1;
                    if *n == 0 {
                        s.held.remove(&conn);
                    }
                }
                drop(s);
                self.released.notify_all();
                Ok(())
            }
            _ => Err(no_such_method::<Self>(method)),
        }
    }

    fn disconnected(&self, conn: u64) {
        let mut s = lock(&self.state);
        if let Some(n) = s.held.remove(&conn) {
            self.give_back(&mut s, n);
            drop(s);
            self.released.notify_all();
        }
    }
}

/// Proxy to a semaphore (Python's `threading.Semaphore` or
/// `BoundedSemaphore` through a manager), from [`Client::semaphore`] and
/// [`Client::bounded_semaphore`]. Permits a client thread took are given
/// back if its connection closes.
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

impl SemaphoreProxy {
    /// Takes a permit, waiting for one (Python: `sem.acquire()`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn acquire(&self) -> Result<()> {
        self.handle.call(m::ACQUIRE, |_| Ok(()))
    }

    /// Takes a permit if one is free now (Python: `sem.acquire(blocking=False)`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn try_acquire(&self) -> Result<bool> {
        self.handle.call(m::TRY_ACQUIRE, |_| Ok(()))
    }

    /// Takes a permit, waiting at most `timeout` (Python: `sem.acquire(timeout=t)`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.handle.call(m::ACQUIRE_TIMEOUT, |a| a.put(&timeout))
    }

    /// Gives a permit back (Python: `sem.release()`).
    ///
    /// # Errors
    /// `Error::NotHeld` for a bounded semaphore already at its initial value.
    pub fn release(&self) -> Result<()> {
        self.handle.call(m::RELEASE, |_| Ok(()))
    }
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
        let handle = create::<SemaphoreObject>(self, |a| {
            a.put(&(value as u64))?;
            a.put(&bounded)
        })?;
        Ok(<SemaphoreProxy as crate::Proxy>::__from_handle(handle))
    }
}
