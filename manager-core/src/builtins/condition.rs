//! `Condition` (Python's `threading.Condition` through a manager), with its
//! own reentrant lock owned per client thread.

use std::collections::{HashSet, VecDeque};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::builtins::{create, deadline, no_such_method, plain_proxy, Builtin};
use crate::client::Client;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::proxy::Handle;
use crate::server::lock;
use crate::wire::codec::{Decoder, Encoder};

#[derive(Default)]
struct State {
    owner: Option<u64>,
    count: u32,
    next_ticket: u64,
    /// Waiters in arrival order, by ticket.
    waiting: VecDeque<u64>,
    /// Tickets notified and not yet woken.
    notified: HashSet<u64>,
}

pub(crate) struct ConditionObject {
    state: Mutex<State>,
    changed: Condvar,
}

mod m {
    pub(super) const ACQUIRE: u32 = 0;
    pub(super) const RELEASE: u32 = 1;
    pub(super) const WAIT: u32 = 2;
    pub(super) const WAIT_TIMEOUT: u32 = 3;
    pub(super) const NOTIFY: u32 = 4;
    pub(super) const NOTIFY_ALL: u32 = 5;
}

fn not_held(what: &str) -> Error {
    Error::NotHeld(format!(
        "{what} needs the condition's lock, and this client thread does not hold it"
    ))
}

impl ConditionObject {
    /// Waits until this connection can own the lock, then takes it `count` times.
    fn take(
        &self,
        ctx: &Context,
        mut s: std::sync::MutexGuard<'_, State>,
        conn: u64,
        count: u32,
    ) -> Result<()> {
        if s.owner != Some(conn) {
            s = ctx
                .wait_until(s, &self.changed, None, |s| s.owner.is_none())?
                .0;
            s.owner = Some(conn);
            s.count = 0;
        }
        s.count += count;
        Ok(())
    }

    fn wait(&self, ctx: &Context, conn: u64, until: Option<std::time::Instant>) -> Result<bool> {
        let mut s = lock(&self.state);
        if s.owner != Some(conn) {
            return Err(not_held("wait()"));
        }
        // Release every level of the lock, queue up, and be woken by notify.
        let saved = std::mem::take(&mut s.count);
        s.owner = None;
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        s.waiting.push_back(ticket);
        self.changed.notify_all();
        let waited = ctx.wait_until(s, &self.changed, until, |s| s.notified.contains(&ticket));
        let (mut s, notified) = match waited {
            Ok(r) => r,
            Err(e) => {
                let mut s = lock(&self.state);
                s.waiting.retain(|t| *t != ticket);
                s.notified.remove(&ticket);
                return Err(e);
            }
        };
        s.notified.remove(&ticket);
        s.waiting.retain(|t| *t != ticket);
        // Re-acquire at the same level, even after a timeout, as Python does.
        self.take(ctx, s, conn, saved)?;
        Ok(notified)
    }
}

impl Builtin for ConditionObject {
    const NAME: &'static str = "manager::Condition";
    const METHODS: &'static [&'static str] = &[
        "acquire",
        "release",
        "wait",
        "wait_timeout",
        "notify",
        "notify_all",
    ];

    fn construct(_ctx: &Context, _args: &mut Decoder<'_>) -> Result<Self> {
        Ok(ConditionObject {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
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
            m::ACQUIRE => {
                args.finish()?;
                self.take(ctx, lock(&self.state), conn, 1)
            }
            m::RELEASE => {
                args.finish()?;
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
            m::WAIT => {
                args.finish()?;
                self.wait(ctx, conn, None).map(drop)
            }
            m::WAIT_TIMEOUT => {
                let until = deadline(args.take::<Duration>()?);
                args.finish()?;
                let notified = self.wait(ctx, conn, until)?;
                out.put(&notified)
            }
            m::NOTIFY | m::NOTIFY_ALL => {
                args.finish()?;
                let mut s = lock(&self.state);
                if s.owner != Some(conn) {
                    return Err(not_held("notify()"));
                }
                let n = if method == m::NOTIFY { 1 } else { usize::MAX };
                for _ in 0..n {
                    let Some(t) = s.waiting.pop_front() else {
                        break;
                    };
                    s.notified.insert(t);
                }
                drop(s);
                self.changed.notify_all();
                Ok(())
            }
            _ => Err(no_such_method::<Self>(method)),
        }
    }

    fn disconnected(&self, conn: u64) {
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
/// assert!(!c.wait_timeout(Duration::from_millis(10))?); // nobody notifies
/// c.notify_all()?;
/// c.release()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ConditionProxy {
    handle: Handle,
}

plain_proxy!(ConditionProxy, ConditionObject);

impl ConditionProxy {
    /// Acquires the condition's lock; the owner may acquire it again
    /// (Python: `cond.acquire()`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn acquire(&self) -> Result<()> {
        self.handle.call(m::ACQUIRE, |_| Ok(()))
    }

    /// Releases one level of the lock (Python: `cond.release()`).
    ///
    /// # Errors
    /// `Error::NotHeld` if this client thread does not hold it.
    pub fn release(&self) -> Result<()> {
        self.handle.call(m::RELEASE, |_| Ok(()))
    }

    /// Releases the lock, waits to be notified, and re-acquires it
    /// (Python: `cond.wait()`).
    ///
    /// # Errors
    /// `Error::NotHeld` if this client thread does not hold the lock.
    pub fn wait(&self) -> Result<()> {
        self.handle.call(m::WAIT, |_| Ok(()))
    }

    /// Like [`ConditionProxy::wait`], for at most `timeout`; whether it was
    /// notified (Python: `cond.wait(t)`). The lock is re-acquired either way.
    ///
    /// # Errors
    /// `Error::NotHeld` if this client thread does not hold the lock.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.handle.call(m::WAIT_TIMEOUT, |a| a.put(&timeout))
    }

    /// Wakes the longest waiter (Python: `cond.notify()`).
    ///
    /// # Errors
    /// `Error::NotHeld` if this client thread does not hold the lock.
    pub fn notify(&self) -> Result<()> {
        self.handle.call(m::NOTIFY, |_| Ok(()))
    }

    /// Wakes every waiter (Python: `cond.notify_all()`).
    ///
    /// # Errors
    /// `Error::NotHeld` if this client thread does not hold the lock.
    pub fn notify_all(&self) -> Result<()> {
        self.handle.call(m::NOTIFY_ALL, |_| Ok(()))
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
        let handle = create::<ConditionObject>(self, |_| Ok(()))?;
        Ok(<ConditionProxy as crate::Proxy>::__from_handle(handle))
    }
}
