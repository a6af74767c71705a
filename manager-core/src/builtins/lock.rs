//! `Lock` and `RLock` (Python's `threading.Lock` and `RLock` through a
//! manager): one permit each, on the wait core. The owner is the calling
//! connection: one client thread. When a connection ends abnormally, the
//! locks it holds are released and the longest waiter takes them; after a
//! normal end a plain Lock stays held, as in Python.

use std::sync::Mutex;
use std::time::Duration;

use crate::builtins::wait::{acquire, Permits, Policy, Refused, Wait};
use crate::builtins::{
    async_twin, create, create_async, methods, plain_proxy, proxy_methods, Builtin,
};
use crate::client::{Client, Lease, Route};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::proxy::Handle;
use crate::shared::End;
use crate::sync::lock;
use crate::wire::codec::{Decoder, Encoder};

methods! {
    /// The methods of a lock and of an rlock, by wire id.
    enum LockMethod -> LockCall {
        0 Acquire => acquire "(&self)",
        1 TryAcquire => try_acquire "(&self) -> bool",
        2 AcquireTimeout(Wait) => acquire_timeout "(&self, timeout: Duration) -> bool",
        3 Release => release "(&self)",
    }
}

/// A lock's one permit: counted for a `Lock` (anyone may release it, and a
/// normal end leaves it held), owned for an `RLock`.
pub(crate) struct LockObject(Mutex<Permits>);
/// See [`LockObject`].
pub(crate) struct RLockObject(Mutex<Permits>);

macro_rules! lock_object {
    ($obj:ident, $name:literal, $policy:expr) => {
        impl Builtin for $obj {
            const NAME: &'static str = $name;
            type Methods = LockMethod;

            fn construct(_ctx: &Context, _args: &mut Decoder<'_>) -> Result<Self> {
                Ok($obj(Mutex::new(Permits::new(1, Some(1), $policy))))
            }

            fn call(&self, ctx: &Context, call: LockCall, out: &mut Encoder<'_>) -> Result<()> {
                let permit = &self.0;
                let acquire = |wait| acquire(ctx, permit, lock(permit), wait, 1, |p| p);
                match call {
                    LockCall::Acquire => acquire(Wait::Forever).map(drop),
                    LockCall::TryAcquire => out.put(&acquire(Wait::No)?.1),
                    LockCall::AcquireTimeout(wait) => out.put(&acquire(wait)?.1),
                    LockCall::Release => {
                        let refused = lock(permit).release(ctx.connection_id()).err();
                        match refused {
                            None => Ok(()),
                            Some(Refused::NothingOut) => {
                                Err(Error::NotHeld("release of an unlocked lock".into()))
                            }
                            Some(Refused::HeldByAnother) => Err(Error::NotHeld(
                                "release of an RLock held by another client thread".into(),
                            )),
                        }
                    }
                }
            }

            const TRACKS_CONNECTIONS: bool = true;

            fn disconnected(&self, conn: u64, end: End) {
                lock(&self.0).settle(conn, end)
            }
        }
    };
}

lock_object!(LockObject, "manager::Lock", Policy::Counted);
lock_object!(RLockObject, "manager::RLock", Policy::Owned);

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

/// Holds a lock taken through the async face until dropped; from
/// [`AsyncLockProxy::lock`] or [`AsyncRLockProxy::lock`].
///
/// The guard owns the lock, not a thread: it is `Send + 'static`, and its
/// drop releases on any thread, without blocking. Each guard's lock is
/// taken on a connection of its own (DESIGN §2a), which counts as the
/// owner for the rules of DESIGN §4: if that connection ends abnormally
/// (the process dies), the lock is released.
///
/// ```
/// # fn main() -> manager::Result<()> {
/// let mgr = manager::Manager::builder().spawn_thread()?;
/// let (address, key) = (mgr.address().clone(), mgr.auth_key().clone());
/// futures::executor::block_on(async {
///     let client = manager::Client::connect_async(&address, &key).await?;
///     let lock = client.lock_async().await?;
///     let held = lock.lock().await?;
///     assert!(!lock.try_acquire().await?);
///     std::thread::spawn(move || drop(held)).join().ok(); // released there
///     let _again = lock.lock().await?;
///     Ok(())
/// })
/// # }
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct AsyncLockGuard {
    held: Held,
}

impl std::fmt::Debug for AsyncLockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AsyncLockGuard({:?})", self.held.handle)
    }
}

/// A lock (or a condition's lock) held through the async face, on the
/// connection leased to take it: the owner. Dropped, it releases there,
/// without waiting, and the connection goes back to its client's pool
/// behind the release.
pub(crate) struct Held {
    pub(crate) handle: Handle,
    lease: Lease,
    /// The object's release method.
    release: u32,
}

impl Held {
    /// Takes the lock behind `handle` with method `acquire` on a connection
    /// of its own. A future dropped while it waits closes that connection,
    /// so a lock granted meanwhile goes back at once.
    pub(crate) async fn take(handle: &Handle, acquire: u32, release: u32) -> Result<Held> {
        let client = handle.client()?.clone();
        let mut lease = client.lease().await?;
        let Some(link) = lease.link().cloned() else {
            return Err(Error::protocol("a lease without a connection"));
        };
        let acquired = handle
            .call_async_on::<()>(Route::On(link), acquire, |_| Ok(()))
            .await;
        if let Err(e) = acquired {
            lease.close();
            return Err(e);
        }
        Ok(Held {
            handle: handle.clone(),
            lease,
            release,
        })
    }

    /// Calls `method` as the owner, on the connection that holds the lock.
    pub(crate) fn call<R>(
        &self,
        method: u32,
        args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
    ) -> crate::client::AsyncCall<R> {
        match self.lease.link() {
            Some(link) => {
                self.handle
                    .call_async_on(Route::On(std::sync::Arc::clone(link)), method, args)
            }
            None => self.handle.call_async_on(Route::Main, method, args),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.lease.link().is_some() {
            // On the link that took it, before the link serves another.
            self.call::<()>(self.release, |_| Ok(())).detach();
        }
    }
}

impl AsyncLockGuard {
    /// Takes the lock (or rlock) behind `handle` for a new guard.
    async fn take(handle: &Handle) -> Result<AsyncLockGuard> {
        let held = Held::take(
            handle,
            LockMethod::Acquire as u32,
            LockMethod::Release as u32,
        )
        .await?;
        Ok(AsyncLockGuard { held })
    }
}

impl AsyncLockProxy {
    /// Acquires the lock and returns a guard that releases it when dropped,
    /// on any thread (Python: `async with lock:`).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn lock(&self) -> Result<AsyncLockGuard> {
        AsyncLockGuard::take(&self.handle).await
    }
}

impl AsyncRLockProxy {
    /// Acquires the rlock and returns a guard that releases it when
    /// dropped, on any thread. Each guard is an owner of its own: a second
    /// `lock()` waits for the first guard, even in the same task.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn lock(&self) -> Result<AsyncLockGuard> {
        AsyncLockGuard::take(&self.handle).await
    }
}

/// The methods both lock proxies have.
macro_rules! lock_proxy_methods {
    // `$wait`: how its waiting calls go, `$own`: its calls that act for
    // the owner (see `Via`).
    ($proxy:ident / $async:ident, $wait:ident, $own:ident) => {
        proxy_methods! {
            impl[] $proxy / $async;

            /// Acquires the lock, waiting as long as it takes (Python: `lock.acquire()`).
            ///
            /// # Errors
            /// Connection errors.
            pub [$wait] fn acquire(&self) -> () = |h| { h.call(LockMethod::Acquire as u32, |_| Ok(())) }

            /// Acquires the lock if it is free now (Python: `lock.acquire(blocking=False)`).
            ///
            /// # Errors
            /// Connection errors.
            pub [$own] fn try_acquire(&self) -> bool = |h| { h.call(LockMethod::TryAcquire as u32, |_| Ok(())) }

            /// Acquires the lock, waiting at most `timeout` (Python: `lock.acquire(timeout=t)`).
            ///
            /// # Errors
            /// Connection errors.
            pub [$wait] fn acquire_timeout(&self, timeout: Duration) -> bool = |h| {
                h.call(LockMethod::AcquireTimeout as u32, |a| a.put(&timeout))
            }

            /// Releases the lock (Python: `lock.release()`).
            ///
            /// # Errors
            /// `Error::NotHeld` if it is not held (by this client thread, for an RLock).
            pub [$own] fn release(&self) -> () = |h| { h.call(LockMethod::Release as u32, |_| Ok(())) }
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

async_twin!(
    /// The async face of [`LockProxy`] (DESIGN §2a): the same methods, each
    /// an `async fn` returning the same result; the same object as a
    /// `LockProxy` converted with `into()`, both ways.
    AsyncLockProxy of LockProxy, LockObject
);

lock_proxy_methods!(LockProxy / AsyncLockProxy, wait, main);

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

async_twin!(
    /// The async face of [`RLockProxy`] (DESIGN §2a): the same methods, each
    /// an `async fn` returning the same result; the same object as a
    /// `RLockProxy` converted with `into()`, both ways.
    AsyncRLockProxy of RLockProxy, RLockObject
);

lock_proxy_methods!(RLockProxy / AsyncRLockProxy, owner, owner);

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

impl Client {
    /// [`Client::lock`] through the async face (DESIGN §2a).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn lock_async(&self) -> Result<AsyncLockProxy> {
        create_async::<AsyncLockProxy>(self, |_| Ok(())).await
    }

    /// [`Client::rlock`] through the async face (DESIGN §2a).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn rlock_async(&self) -> Result<AsyncRLockProxy> {
        create_async::<AsyncRLockProxy>(self, |_| Ok(())).await
    }
}
