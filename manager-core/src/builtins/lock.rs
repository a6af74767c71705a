//! `Lock` and `RLock` (Python's `threading.Lock` and `RLock` through a
//! manager). The owner is the calling connection: one client thread. When a
//! connection ends abnormally, the locks it holds are released and waiters
//! wake; after a normal end a plain Lock stays held, as in Python.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::builtins::wait::Wait;
use crate::builtins::{create, methods, plain_proxy, proxy_methods, Builtin};
use crate::client::Client;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::proxy::Handle;
use crate::server::lock as guard;
use crate::shared::End;
use crate::wire::codec::{Decoder, Encoder};

#[derive(Default)]
struct State {
    /// The connection that acquired it.
    holder: Option<u64>,
    /// Recursion level: 1 for a held `Lock`, 1 or more for a held `RLock`.
    count: u64,
}

/// A lock, reentrant or not.
struct Core {
    reentrant: bool,
    state: Mutex<State>,
    released: Condvar,
}

methods! {
    /// The methods of a lock and of an rlock, by wire id.
    enum LockMethod -> LockCall {
        0 Acquire => acquire "(&self)",
        1 TryAcquire => try_acquire "(&self) -> bool",
        2 AcquireTimeout(Wait) => acquire_timeout "(&self, timeout: Duration) -> bool",
        3 Release => release "(&self)",
    }
}

impl Core {
    fn new(reentrant: bool) -> Core {
        Core {
            reentrant,
            state: Mutex::new(State::default()),
            released: Condvar::new(),
        }
    }

    fn free_for(&self, s: &State, conn: u64) -> bool {
        s.holder.is_none() || (self.reentrant && s.holder == Some(conn))
    }

    /// Acquires for the calling connection, waiting as `wait` allows.
    fn acquire(&self, ctx: &Context, wait: Wait) -> Result<bool> {
        let conn = ctx.connection_id();
        let s = guard(&self.state);
        let (mut s, free) = if let Wait::No = wait {
            let free = self.free_for(&s, conn);
            (s, free)
        } else {
            match ctx.wait_until(s, &self.released, wait.deadline(), |s| {
                self.free_for(s, conn)
            }) {
                Ok(r) => r,
                Err(e) => {
                    // Pass on a wake-up this caller may have taken.
                    self.released.notify_one();
                    return Err(e);
                }
            }
        };
        if free {
            s.count = s
                .count
                .checked_add(1)
                .ok_or_else(|| Error::LimitReached("rlock recursion depth".into()))?;
            s.holder = Some(conn);
        }
        Ok(free)
    }

    fn release(&self, conn: u64) -> Result<()> {
        let mut s = guard(&self.state);
        match s.holder {
            None => return Err(Error::NotHeld("release of an unlocked lock".into())),
            Some(owner) if self.reentrant && owner != conn => {
                return Err(Error::NotHeld(
                    "release of an RLock held by another client thread".into(),
                ))
            }
            // A plain Lock may be released by anyone, as in Python.
            Some(_) => {}
        }
        s.count = s.count.saturating_sub(1);
        if !self.reentrant || s.count == 0 {
            s.holder = None;
            s.count = 0;
            drop(s);
            self.released.notify_one();
        }
        Ok(())
    }

    /// Runs a lock method.
    fn call(&self, ctx: &Context, call: LockCall, out: &mut Encoder<'_>) -> Result<()> {
        match call {
            LockCall::Acquire => self.acquire(ctx, Wait::Forever).map(drop),
            LockCall::TryAcquire => out.put(&self.acquire(ctx, Wait::No)?),
            LockCall::AcquireTimeout(wait) => out.put(&self.acquire(ctx, wait)?),
            LockCall::Release => self.release(ctx.connection_id()),
        }
    }

    /// Connection `conn` ended. An RLock it holds (at any level) is free
    /// again either way: nobody else could release it. A plain Lock stays
    /// held after a normal end, as in Python, where any client may release
    /// it; after an abnormal one it is freed.
    fn release_all(&self, conn: u64, end: End) {
        if !self.reentrant && end == End::Normal {
            return;
        }
        let mut s = guard(&self.state);
        if s.holder == Some(conn) {
            s.holder = None;
            s.count = 0;
            drop(s);
            self.released.notify_one();
        }
    }
}

pub(crate) struct LockObject(Core);
pub(crate) struct RLockObject(Core);

macro_rules! lock_object {
    ($obj:ident, $name:literal, $reentrant:literal) => {
        impl Builtin for $obj {
            const NAME: &'static str = $name;
            type Methods = LockMethod;

            fn construct(_ctx: &Context, _args: &mut Decoder<'_>) -> Result<Self> {
                Ok($obj(Core::new($reentrant)))
            }

            fn call(&self, ctx: &Context, call: LockCall, out: &mut Encoder<'_>) -> Result<()> {
                self.0.call(ctx, call, out)
            }

            fn disconnected(&self, conn: u64, end: End) {
                self.0.release_all(conn, end)
            }
        }
    };
}

lock_object!(LockObject, "manager::Lock", false);
lock_object!(RLockObject, "manager::RLock", true);

/// Holds a lock until dropped; from [`LockProxy::lock`] or [`RLockProxy::lock`]
/// (Python: `with lock:`).
///
/// ```
/// # fn main() -> manager::Result<()> {
/// let mgr = manager::Manager::builder().spawn_thread()?;
/// let lock = mgr.lock()?;
/// {
///     let _held = lock.lock()?;
///     assert!(!lock.try_acquire()?);
/// } // released here
/// assert!(lock.try_acquire()?);
/// # Ok(()) }
/// ```
///
/// A lock is owned by the client thread that acquired it, and the guard
/// releases it from that thread, so the guard is not `Send`:
///
/// ```compile_fail
/// # fn main() -> manager::Result<()> {
/// let mgr = manager::Manager::builder().spawn_thread()?;
/// let lock = mgr.lock()?;
/// let held = lock.lock()?;
/// std::thread::scope(|s| {
///     s.spawn(move || drop(held));
/// });
/// # Ok(()) }
/// ```
///
/// An error while releasing (the manager is gone) is logged, not reported:
/// a connection that failed ends abnormally, which releases the lock.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    handle: &'a Handle,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self
            .handle
            .call::<()>(LockMethod::Release as u32, |_| Ok(()))
        {
            tracing::debug!(error = %e, "releasing a lock guard failed");
        }
    }
}

impl std::fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LockGuard({:?})", self.handle)
    }
}

/// The methods both lock proxies have.
macro_rules! lock_proxy_methods {
    ($proxy:ident) => {
        proxy_methods! {
            impl[] $proxy;

            /// Acquires the lock, waiting as long as it takes (Python: `lock.acquire()`).
            ///
            /// # Errors
            /// Connection errors.
            pub fn acquire(&self) -> () = |h| { h.call(LockMethod::Acquire as u32, |_| Ok(())) }

            /// Acquires the lock if it is free now (Python: `lock.acquire(blocking=False)`).
            ///
            /// # Errors
            /// Connection errors.
            pub fn try_acquire(&self) -> bool = |h| { h.call(LockMethod::TryAcquire as u32, |_| Ok(())) }

            /// Acquires the lock, waiting at most `timeout` (Python: `lock.acquire(timeout=t)`).
            ///
            /// # Errors
            /// Connection errors.
            pub fn acquire_timeout(&self, timeout: Duration) -> bool = |h| {
                h.call(LockMethod::AcquireTimeout as u32, |a| a.put(&timeout))
            }

            /// Releases the lock (Python: `lock.release()`).
            ///
            /// # Errors
            /// `Error::NotHeld` if it is not held (by this client thread, for an RLock).
            pub fn release(&self) -> () = |h| { h.call(LockMethod::Release as u32, |_| Ok(())) }
        }

        impl $proxy {
            /// Acquires the lock and returns a guard that releases it when
            /// dropped (Python: `with lock:`). No deferred form: the guard
            /// is for the thread that waited.
            ///
            /// # Errors
            /// Connection errors.
            pub fn lock(&self) -> Result<LockGuard<'_>> {
                self.acquire()?;
                Ok(LockGuard {
                    handle: &self.handle,
                    _not_send: std::marker::PhantomData,
                })
            }
        }
    };
}

/// Proxy to a lock (Python's `threading.Lock` through a manager), from
/// [`Client::lock`]. The owner is the calling client thread; any client may
/// release it, as in Python. It is not reentrant: `acquire` from the thread
/// that holds it waits for someone to release it. If the owner's connection
/// ends abnormally (its process dies, a panic unwinds through its client),
/// the lock is released; after a normal end it stays held, as in Python,
/// and any client may release it.
///
/// ```
/// use std::time::Duration;
/// # fn main() -> manager::Result<()> {
/// let mgr = manager::Manager::builder().spawn_thread()?;
/// let l = mgr.lock()?;
/// {
///     let _held = l.lock()?;
///     assert!(!l.try_acquire()?);
/// }
/// assert!(l.acquire_timeout(Duration::from_millis(10))?);
/// l.release()?;
/// assert!(matches!(l.release(), Err(manager::Error::NotHeld(_))));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LockProxy {
    handle: Handle,
}

plain_proxy!(LockProxy, LockObject);

lock_proxy_methods!(LockProxy);

/// Proxy to a reentrant lock (Python's `threading.RLock` through a manager),
/// from [`Client::rlock`]: the owning client thread may acquire it again, and
/// must release it as many times; only the owner may release it.
///
/// ```
/// # fn main() -> manager::Result<()> {
/// let mgr = manager::Manager::builder().spawn_thread()?;
/// let r = mgr.rlock()?;
/// r.acquire()?;
/// r.acquire()?;
/// r.release()?;
/// r.release()?;
/// assert!(matches!(r.release(), Err(manager::Error::NotHeld(_))));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RLockProxy {
    handle: Handle,
}

plain_proxy!(RLockProxy, RLockObject);

lock_proxy_methods!(RLockProxy);

impl Client {
    /// A new lock (Python: `manager.Lock()`).
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().spawn_thread()?;
    /// let l = mgr.lock()?;
    /// let _g = l.lock()?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Connection errors.
    pub fn lock(&self) -> Result<LockProxy> {
        create::<LockProxy>(self, |_| Ok(()))
    }

    /// A new reentrant lock (Python: `manager.RLock()`).
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().spawn_thread()?;
    /// let r = mgr.rlock()?;
    /// let _outer = r.lock()?;
    /// let _inner = r.lock()?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Connection errors.
    pub fn rlock(&self) -> Result<RLockProxy> {
        create::<RLockProxy>(self, |_| Ok(()))
    }
}
