//! `Semaphore` and `BoundedSemaphore` (Python's `threading` ones through a
//! manager). Permits are counted per connection, so a client that dies gives
//! back the permits it took; one that ends normally leaves them taken.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::builtins::{
    builtin_object, create, no_such_method, plain_proxy, proxy_methods, take_deadline, take_usize,
    Builtin,
};
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

mod m {
    pub(super) const ACQUIRE: u32 = 0;
    pub(super) const TRY_ACQUIRE: u32 = 1;
    pub(super) const ACQUIRE_TIMEOUT: u32 = 2;
    pub(super) const RELEASE: u32 = 3;
}

impl Builtin for SemaphoreObject {
    const NAME: &'static str = "manager::Semaphore";
    const METHODS: &'static [&'static str] =
        &["acquire", "try_acquire", "acquire_timeout", "release"];

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
}

builtin_object!(SemaphoreObject, disconnected);

impl SemaphoreObject {
    fn dispatch(
        &self,
        ctx: &Context,
        method: u32,
        args: &mut Decoder<'_>,
        out: &mut Encoder<'_>,
    ) -> Result<()> {
        match method {
            m::ACQUIRE => {
                args.finish()?;
                self.acquire(ctx, true, None).map(drop)
            }
            m::TRY_ACQUIRE => {
                args.finish()?;
                out.put(&self.acquire(ctx, false, None)?)
            }
            m::ACQUIRE_TIMEOUT => {
                let deadline = take_deadline(args)?;
                args.finish()?;
                out.put(&self.acquire(ctx, true, deadline)?)
            }
            m::RELEASE => {
                args.finish()?;
                self.release(ctx.connection_id())
            }
            _ => Err(no_such_method::<Self>(method)),
        }
    }

    /// Takes a permit for the calling connection, waiting until `deadline`
    /// (`None`: forever) unless `wait` is false.
    fn acquire(&self, ctx: &Context, wait: bool, deadline: Option<Instant>) -> Result<bool> {
        let s = lock(&self.state);
        let (mut s, free) = if wait {
            match ctx.wait_until(s, &self.released, deadline, |s| s.value > 0) {
                Ok(r) => r,
                Err(e) => {
                    // Pass on a wake-up this caller may have taken.
                    self.released.notify_one();
                    return Err(e);
                }
            }
        } else {
            let free = s.value > 0;
            (s, free)
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
    pub fn acquire(&self) -> () = |h| { h.call(m::ACQUIRE, |_| Ok(())) }

    /// Takes a permit if one is free now (Python: `sem.acquire(blocking=False)`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn try_acquire(&self) -> bool = |h| { h.call(m::TRY_ACQUIRE, |_| Ok(())) }

    /// Takes a permit, waiting at most `timeout` (Python: `sem.acquire(timeout=t)`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool = |h| { h.call(m::ACQUIRE_TIMEOUT, |a| a.put(&timeout)) }

    /// Gives a permit back (Python: `sem.release()`).
    ///
    /// # Errors
    /// `Error::NotHeld` for a bounded semaphore already at its initial value.
    pub fn release(&self) -> () = |h| { h.call(m::RELEASE, |_| Ok(())) }
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
