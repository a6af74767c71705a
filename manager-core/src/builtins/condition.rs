//! `Condition` (Python's `threading.Condition` through a manager), with its
//! own reentrant lock owned per client thread.

use std::collections::{HashSet, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::builtins::wait::Wait;
use crate::builtins::{create, methods, plain_proxy, proxy_methods, Builtin};
use crate::client::Client;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::proxy::Handle;
use crate::server::lock;
use crate::shared::End;
use crate::wire::codec::{Decoder, Encoder};

#[derive(Default)]
struct State {
    /// The connection holding the condition's lock, and its recursion level.
    owner: Option<u64>,
    count: u64,
    next_ticket: u64,
    /// Tickets of the callers in `wait`, oldest first, not yet notified.
    waiting: VecDeque<u64>,
    /// Tickets notified whose callers have not woken yet.
    notified: HashSet<u64>,
}

impl State {
    /// Notifies the `n` oldest waiters.
    fn notify(&mut self, n: usize) {
        for _ in 0..n {
            let Some(ticket) = self.waiting.pop_front() else {
                break;
            };
            self.notified.insert(ticket);
        }
    }
}

pub(crate) struct ConditionObject {
    state: Mutex<State>,
    /// Notified whenever the lock is freed or a waiter is notified; every
    /// sleeper re-checks its own condition (conditions are not a hot path).
    changed: Condvar,
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
        Ok(ConditionObject {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        })
    }

    fn call(&self, ctx: &Context, call: ConditionCall, out: &mut Encoder<'_>) -> Result<()> {
        let conn = ctx.connection_id();
        let take = |wait| self.take(ctx, lock(&self.state), wait, 1);
        match call {
            ConditionCall::Acquire => take(Wait::Forever).map(drop),
            ConditionCall::TryAcquire => out.put(&take(Wait::No)?),
            ConditionCall::AcquireTimeout(wait) => out.put(&take(wait)?),
            ConditionCall::Release => {
                let mut s = lock(&self.state);
                if s.owner != Some(conn) {
                    return Err(not_held("release()"));
                }
                s.count -= 1;
                if s.count == 0 {
                    s.owner = None;
                    drop(s);
                    self.changed.notify_all();
                }
                Ok(())
            }
            ConditionCall::Wait => self.wait(ctx, Wait::Forever).map(drop),
            ConditionCall::WaitTimeout(wait) => out.put(&self.wait(ctx, wait)?),
            ConditionCall::Notify => self.notify(conn, 1, "notify()"),
            ConditionCall::NotifyAll => self.notify(conn, usize::MAX, "notify_all()"),
        }
    }

    fn disconnected(&self, conn: u64, end: End) {
        self.release_all(conn, end)
    }
}

impl ConditionObject {
    /// Notifies the `n` oldest waiters, if `conn` holds the lock, as `what` needs.
    fn notify(&self, conn: u64, n: usize, what: &str) -> Result<()> {
        let mut s = lock(&self.state);
        if s.owner != Some(conn) {
            return Err(not_held(what));
        }
        s.notify(n);
        drop(s);
        self.changed.notify_all();
        Ok(())
    }

    /// Takes the lock `levels` times for the calling connection, first
    /// waiting as `wait` allows for it to be free if another connection
    /// holds it. Whether it was taken.
    fn take(
        &self,
        ctx: &Context,
        s: MutexGuard<'_, State>,
        wait: Wait,
        levels: u64,
    ) -> Result<bool> {
        let conn = ctx.connection_id();
        let mut s = if s.owner == Some(conn) {
            s
        } else {
            let (mut s, free) = match wait {
                Wait::No => {
                    let free = s.owner.is_none();
                    (s, free)
                }
                _ => ctx.wait_until(s, &self.changed, wait.deadline(), |s| s.owner.is_none())?,
            };
            if !free {
                return Ok(false);
            }
            s.owner = Some(conn);
            s.count = 0;
            s
        };
        s.count = s
            .count
            .checked_add(levels)
            .ok_or_else(|| Error::LimitReached("condition lock recursion depth".into()))?;
        Ok(true)
    }

    /// Releases every level of the lock, waits to be notified (or for the
    /// deadline), and takes the lock back at the same level, as Python does
    /// even after a timeout. Whether it was notified.
    fn wait(&self, ctx: &Context, wait: Wait) -> Result<bool> {
        let mut s = lock(&self.state);
        if s.owner != Some(ctx.connection_id()) {
            return Err(not_held("wait()"));
        }
        let levels = std::mem::take(&mut s.count);
        s.owner = None;
        let ticket = s.next_ticket;
        s.next_ticket = s.next_ticket.wrapping_add(1);
        s.waiting.push_back(ticket);
        self.changed.notify_all();
        let (mut s, notified) = match ctx.wait_until(s, &self.changed, wait.deadline(), |s| {
            s.notified.contains(&ticket)
        }) {
            Ok(r) => r,
            Err(e) => {
                // The caller is gone: leave the queue, and hand a
                // notification it got but cannot act on to the next waiter.
                let mut s = lock(&self.state);
                s.waiting.retain(|t| *t != ticket);
                if s.notified.remove(&ticket) {
                    s.notify(1);
                    drop(s);
                    self.changed.notify_all();
                }
                return Err(e);
            }
        };
        s.notified.remove(&ticket);
        s.waiting.retain(|t| *t != ticket);
        self.take(ctx, s, Wait::Forever, levels)?;
        Ok(notified)
    }

    /// Connection `conn` ended, either way: if it holds the lock (at any
    /// level), the lock is free, since nobody else could release it.
    fn release_all(&self, conn: u64, _end: End) {
        let mut s = lock(&self.state);
        if s.owner == Some(conn) {
            s.owner = None;
            s.count = 0;
            drop(s);
            self.changed.notify_all();
        }
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

proxy_methods! {
    impl[] ConditionProxy;

    /// Acquires the condition's lock; the owner may acquire it again
    /// (Python: `cond.acquire()`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn acquire(&self) -> () = |h| { h.call(ConditionMethod::Acquire as u32, |_| Ok(())) }

    /// Acquires the condition's lock if it is free now, or already this
    /// client thread's (Python: `cond.acquire(blocking=False)`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn try_acquire(&self) -> bool = |h| { h.call(ConditionMethod::TryAcquire as u32, |_| Ok(())) }

    /// Acquires the condition's lock, waiting at most `timeout`
    /// (Python: `cond.acquire(timeout=t)`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool = |h| { h.call(ConditionMethod::AcquireTimeout as u32, |a| a.put(&timeout)) }

    /// Releases one level of the lock (Python: `cond.release()`).
    ///
    /// # Errors
    /// `Error::NotHeld` if this client thread does not hold it.
    pub fn release(&self) -> () = |h| { h.call(ConditionMethod::Release as u32, |_| Ok(())) }

    /// Releases the lock, waits to be notified, and re-acquires it
    /// (Python: `cond.wait()`).
    ///
    /// # Errors
    /// `Error::NotHeld` if this client thread does not hold the lock.
    pub fn wait(&self) -> () = |h| { h.call(ConditionMethod::Wait as u32, |_| Ok(())) }

    /// Like [`ConditionProxy::wait`], for at most `timeout`; whether it was
    /// notified (Python: `cond.wait(t)`). The lock is re-acquired either way.
    ///
    /// # Errors
    /// `Error::NotHeld` if this client thread does not hold the lock.
    pub fn wait_timeout(&self, timeout: Duration) -> bool = |h| { h.call(ConditionMethod::WaitTimeout as u32, |a| a.put(&timeout)) }

    /// Wakes the longest waiter (Python: `cond.notify()`).
    ///
    /// # Errors
    /// `Error::NotHeld` if this client thread does not hold the lock.
    pub fn notify(&self) -> () = |h| { h.call(ConditionMethod::Notify as u32, |_| Ok(())) }

    /// Wakes every waiter (Python: `cond.notify_all()`).
    ///
    /// # Errors
    /// `Error::NotHeld` if this client thread does not hold the lock.
    pub fn notify_all(&self) -> () = |h| { h.call(ConditionMethod::NotifyAll as u32, |_| Ok(())) }
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
