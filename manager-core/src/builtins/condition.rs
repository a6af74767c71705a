//! `Condition` (Python's `threading.Condition` through a manager), with its
//! own reentrant lock owned per client thread, on the wait core: the lock
//! is an owned permit, and a notification a grant to the oldest waiter.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::builtins::lock::Held;
use crate::builtins::wait::{acquire, wait_turn, Permits, Policy, Wait, Waiters};
use crate::builtins::{
    async_twin, create, create_async, methods, plain_proxy, proxy_methods, Builtin,
};
use crate::client::Client;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::proxy::Handle;
use crate::shared::End;
use crate::sync::lock;
use crate::wire::codec::{Decoder, Encoder};

/// One mutex over both, so that `wait` puts the lock down and queues for a
/// notification at once: no `notify` falls in between.
struct State {
    lock: Permits,
    /// The callers in `wait`, to be notified oldest first.
    notices: Waiters,
    /// The parked `wait`s, by connection: the levels of the lock each put
    /// down, and once notified (or timed out), whether it was notified, as
    /// it waits for the lock back.
    waiting: HashMap<u64, Waiting>,
}

/// A parked condition `wait` between its runs.
struct Waiting {
    levels: u64,
    notified: Option<bool>,
}

pub(crate) struct ConditionObject {
    state: Mutex<State>,
}

methods! {
    /// A condition's methods, by wire id.
    enum ConditionMethod -> ConditionCall {
        0 Acquire => acquire "(&self)",
        1 Release => release "(&self)",
        2 Wait => wait "(&self)",
        3 WaitTimeout(Wait) => wait_timeout "(&self, timeout: Duration) -> bool",
        4 Notify => notify "(&self)",
        5 NotifyAll => notify_all "(&self)",
        6 TryAcquire => try_acquire "(&self) -> bool",
        7 AcquireTimeout(Wait) => acquire_timeout "(&self, timeout: Duration) -> bool",
    }
}

fn not_held(what: &str) -> Error {
    Error::NotHeld(format!(
        "{what} needs the condition's lock, and this client thread does not hold it"
    ))
}

impl Builtin for ConditionObject {
    const NAME: &'static str = "manager::Condition";
    type Methods = ConditionMethod;

    fn construct(_ctx: &Context, _args: &mut Decoder<'_>) -> Result<Self> {
        let state = State {
            lock: Permits::new(1, Some(1), Policy::Owned),
            notices: Waiters::default(),
            waiting: HashMap::new(),
        };
        Ok(ConditionObject {
            state: Mutex::new(state),
        })
    }

    fn call(&self, ctx: &Context, call: ConditionCall, out: &mut Encoder<'_>) -> Result<()> {
        let conn = ctx.connection_id();
        let state = &self.state;
        let acquire = |wait| acquire(ctx, state, lock(state), wait, 1, |s| &mut s.lock);
        match call {
            ConditionCall::Acquire => acquire(Wait::Forever).map(drop),
            ConditionCall::TryAcquire => out.put(&acquire(Wait::No)?.1),
            ConditionCall::AcquireTimeout(wait) => out.put(&acquire(wait)?.1),
            ConditionCall::Release => lock(state)
                .lock
                .release(conn)
                .map_err(|_| not_held("release()")),
            ConditionCall::Wait => self.wait(ctx, Wait::Forever).map(drop),
            ConditionCall::WaitTimeout(wait) => out.put(&self.wait(ctx, wait)?),
            ConditionCall::Notify => self.notify(conn, 1, "notify()"),
            ConditionCall::NotifyAll => self.notify(conn, usize::MAX, "notify_all()"),
        }
    }

    const TRACKS_CONNECTIONS: bool = true;

    /// Either end frees the lock (at any level): nobody else could.
    fn disconnected(&self, conn: u64, end: End) {
        let mut s = lock(&self.state);
        s.waiting.remove(&conn);
        s.lock.settle(conn, end)
    }
}

impl ConditionObject {
    /// Notifies the `n` oldest waiters, if `conn` holds the lock, as `what`
    /// needs.
    fn notify(&self, conn: u64, n: usize, what: &str) -> Result<()> {
        let mut s = lock(&self.state);
        if !s.lock.holds(conn) {
            return Err(not_held(what));
        }
        for _ in 0..n {
            if s.notices.hand_off(()).is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Puts down every level of the lock, waits to be notified (or for the
    /// deadline), and takes the lock back at the same level, as Python does
    /// even after a timeout. Whether it was notified.
    ///
    /// Two waits in a row: a call that parks in either is run again from
    /// its request, and finds where it was in [`State::waiting`].
    fn wait(&self, ctx: &Context, wait: Wait) -> Result<bool> {
        let conn = ctx.connection_id();
        let mut s = lock(&self.state);
        let resumed = if ctx.is_resuming() {
            s.waiting.get(&conn).map(|w| (w.levels, w.notified))
        } else {
            None
        };
        let (levels, notified) = match resumed {
            Some(at) => at,
            None => {
                let levels = s.lock.put_down(conn).ok_or_else(|| not_held("wait()"))?;
                s.waiting.insert(
                    conn,
                    Waiting {
                        levels,
                        notified: None,
                    },
                );
                (levels, None)
            }
        };
        let r = self.wait_steps(ctx, s, wait, conn, levels, notified);
        if !ctx.has_parked() {
            lock(&self.state).waiting.remove(&conn);
        }
        r
    }

    /// The two waits of [`ConditionObject::wait`], from where `notified`
    /// says the call is: for a notification (`None`), then for the lock.
    fn wait_steps(
        &self,
        ctx: &Context,
        s: std::sync::MutexGuard<'_, State>,
        wait: Wait,
        conn: u64,
        levels: u64,
        notified: Option<bool>,
    ) -> Result<bool> {
        let (mut s, notified) = match notified {
            Some(notified) => (s, notified),
            None => {
                // A notification this caller cannot act on goes to the next
                // waiter, or is lost, as one with nobody waiting is.
                let waited = wait_turn(
                    ctx,
                    &self.state,
                    s,
                    wait,
                    |s| &mut s.notices,
                    |s, ()| {
                        let _ = s.notices.hand_off(());
                    },
                );
                let (mut s, notice) = match waited {
                    Ok(w) => w,
                    // Withdrawn by its caller while the connection goes on
                    // (the async face's cancel): like asyncio's, the wait
                    // still takes its lock back before it ends, so that the
                    // owner's next call finds the lock as it left it.
                    Err(_)
                        if !ctx.has_parked()
                            && ctx.peer().is_some_and(|p| p.go_on_if_withdrawn()) =>
                    {
                        (lock(&self.state), None)
                    }
                    Err(e) => return Err(e),
                };
                if let Some(w) = s.waiting.get_mut(&conn) {
                    w.notified = Some(notice.is_some());
                }
                (s, notice.is_some())
            }
        };
        s = acquire(ctx, &self.state, s, Wait::Forever, levels, |s| &mut s.lock)?.0;
        drop(s);
        Ok(notified)
    }
}

/// Proxy to a condition variable with its own reentrant lock (Python's
/// `threading.Condition` through a manager), from [`Client::condition`].
///
/// `wait`, `notify` and `notify_all` need the lock: without it they are
/// `Error::NotHeld`, not a hang. If the owning client's connection closes,
/// the lock is released.
///
/// ```
/// use std::time::Duration;
/// # fn main() -> manager::Result<()> {
/// let mgr = manager::Manager::builder().spawn_thread()?;
/// let c = mgr.condition()?;
/// assert!(matches!(c.notify(), Err(manager::Error::NotHeld(_))));
/// c.acquire()?;
/// assert!(c.try_acquire()?); // the lock is reentrant
/// assert!(!c.wait_timeout(Duration::from_millis(10))?); // nobody notifies
/// c.notify_all()?;
/// c.release()?;
/// c.release()?; // the wait took both levels back
/// assert!(matches!(c.release(), Err(manager::Error::NotHeld(_))));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ConditionProxy {
    handle: Handle,
}

plain_proxy!(ConditionProxy, ConditionObject);

async_twin!(
    /// The async face of [`ConditionProxy`] (DESIGN §2a): the same methods, each
    /// an `async fn` returning the same result; the same object as a
    /// `ConditionProxy` converted with `into()`, both ways.
    AsyncConditionProxy of ConditionProxy, ConditionObject
);

proxy_methods! {
    impl[] ConditionProxy / AsyncConditionProxy;

    /// Acquires the condition's lock; the owner may acquire it again
    /// (Python: `cond.acquire()`).
    ///
    /// # Errors
    /// Connection errors.
    pub [owner] fn acquire(&self) -> () = |h| { h.call(ConditionMethod::Acquire as u32, |_| Ok(())) }

    /// Acquires the condition's lock if it is free now, or already this
    /// client thread's (Python: `cond.acquire(blocking=False)`).
    ///
    /// # Errors
    /// Connection errors.
    pub [owner] fn try_acquire(&self) -> bool = |h| { h.call(ConditionMethod::TryAcquire as u32, |_| Ok(())) }

    /// Acquires the condition's lock, waiting at most `timeout`
    /// (Python: `cond.acquire(timeout=t)`).
    ///
    /// # Errors
    /// Connection errors.
    pub [owner] fn acquire_timeout(&self, timeout: Duration) -> bool = |h| { h.call(ConditionMethod::AcquireTimeout as u32, |a| a.put(&timeout)) }

    /// Releases one level of the lock (Python: `cond.release()`).
    ///
    /// # Errors
    /// `Error::NotHeld` if this client thread does not hold it.
    pub [owner] fn release(&self) -> () = |h| { h.call(ConditionMethod::Release as u32, |_| Ok(())) }

    /// Releases the lock, waits to be notified, and re-acquires it
    /// (Python: `cond.wait()`).
    ///
    /// # Errors
    /// `Error::NotHeld` if this client thread does not hold the lock.
    pub [owner] fn wait(&self) -> () = |h| { h.call(ConditionMethod::Wait as u32, |_| Ok(())) }

    /// Like [`ConditionProxy::wait`], for at most `timeout`; whether it was
    /// notified (Python: `cond.wait(t)`). The lock is re-acquired either way.
    ///
    /// # Errors
    /// `Error::NotHeld` if this client thread does not hold the lock.
    pub [owner] fn wait_timeout(&self, timeout: Duration) -> bool = |h| { h.call(ConditionMethod::WaitTimeout as u32, |a| a.put(&timeout)) }

    /// Wakes the longest waiter (Python: `cond.notify()`).
    ///
    /// # Errors
    /// `Error::NotHeld` if this client thread does not hold the lock.
    pub [owner] fn notify(&self) -> () = |h| { h.call(ConditionMethod::Notify as u32, |_| Ok(())) }

    /// Wakes every waiter (Python: `cond.notify_all()`).
    ///
    /// # Errors
    /// `Error::NotHeld` if this client thread does not hold the lock.
    pub [owner] fn notify_all(&self) -> () = |h| { h.call(ConditionMethod::NotifyAll as u32, |_| Ok(())) }
}

impl AsyncConditionProxy {
    /// Acquires the condition's lock and returns a guard that waits and
    /// notifies as its owner, and releases when dropped, on any thread
    /// (Python: `async with cond:`). Each guard is an owner of its own, on
    /// a connection of its own, so one client's tasks wait and notify each
    /// other through their guards (the proxy's own `acquire`, `wait` and
    /// `notify` act for the client as one owner instead).
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().spawn_thread()?;
    /// let (address, key) = (mgr.address().clone(), mgr.auth_key().clone());
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// rt.block_on(async {
    ///     let client = manager::Client::connect_async(&address, &key).await?;
    ///     let cond = client.condition_async().await?;
    ///     let waiter = {
    ///         let cond = cond.clone();
    ///         tokio::spawn(async move {
    ///             let held = cond.lock().await?;
    ///             held.wait().await // puts the lock down until notified
    ///         })
    ///     };
    ///     while !waiter.is_finished() {
    ///         cond.lock().await?.notify().await?;
    ///         tokio::task::yield_now().await;
    ///     }
    ///     waiter.await.unwrap()
    /// })
    /// # }
    /// ```
    ///
    /// # Errors
    /// Connection errors.
    pub async fn lock(&self) -> Result<AsyncConditionGuard> {
        let held = Held::take(
            &self.handle,
            ConditionMethod::Acquire as u32,
            ConditionMethod::Release as u32,
        )
        .await?;
        Ok(AsyncConditionGuard { held })
    }
}

/// A condition's lock held through the async face, from
/// [`AsyncConditionProxy::lock`]: waits and notifies as the owner, and
/// releases when dropped, on any thread (`Send + 'static`).
///
/// A `wait` whose future is dropped before it is notified closes the
/// guard's connection (so nothing is granted to a waiter who left): the
/// lock goes back, and the guard holds nothing from then on.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct AsyncConditionGuard {
    held: Held,
}

impl AsyncConditionGuard {
    /// Puts the lock down, waits for a notification, takes the lock back
    /// (Python: `await cond.wait()`).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn wait(&self) -> Result<()> {
        self.held
            .call(ConditionMethod::Wait as u32, |_| Ok(()))
            .await
    }

    /// [`wait`](Self::wait) for at most `timeout`; whether it was notified.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.held
            .call(ConditionMethod::WaitTimeout as u32, |a| a.put(&timeout))
            .await
    }

    /// Wakes the longest waiter (Python: `cond.notify()`).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn notify(&self) -> Result<()> {
        // A notify never waits: dropped, it must not close the guard's
        // connection, which holds the lock.
        self.held
            .call(ConditionMethod::Notify as u32, |_| Ok(()))
            .quiet()
            .await
    }

    /// Wakes every waiter (Python: `cond.notify_all()`).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn notify_all(&self) -> Result<()> {
        // A notify never waits: dropped, it must not close the guard's
        // connection, which holds the lock.
        self.held
            .call(ConditionMethod::NotifyAll as u32, |_| Ok(()))
            .quiet()
            .await
    }
}

impl std::fmt::Debug for AsyncConditionGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AsyncConditionGuard({:?})", self.held.handle)
    }
}

impl Client {
    /// A new condition variable with its own reentrant lock (Python:
    /// `manager.Condition()`).
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().spawn_thread()?;
    /// let c = mgr.condition()?;
    /// c.acquire()?;
    /// c.release()?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Connection errors.
    pub fn condition(&self) -> Result<ConditionProxy> {
        create::<ConditionProxy>(self, |_| Ok(()))
    }
}

impl Client {
    /// [`Client::condition`] through the async face (DESIGN §2a).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn condition_async(&self) -> Result<AsyncConditionProxy> {
        create_async::<AsyncConditionProxy>(self, |_| Ok(())).await
    }
}
