//! The per-call context a shared method can ask for.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::server::connection::Peer;
use crate::server::ServerState;
use crate::sync::lock;

/// A blocked call is woken when its caller hangs up or the manager stops;
/// it also looks this often, in case that wake-up crossed its going to
/// sleep.
const BACKSTOP: Duration = Duration::from_secs(1);

/// What a method running in the manager knows about its call.
///
/// A method whose first parameter after `self` is `ctx: &manager::Context`
/// receives it; the parameter is not part of the proxy's signature.
///
/// ```
/// use manager::{shared, Context};
///
/// #[shared]
/// pub struct Factory;
///
/// #[shared]
/// impl Factory {
///     pub fn new() -> Self { Factory }
///     /// Reports which connection called.
///     pub fn caller(&self, ctx: &Context) -> u64 { ctx.connection_id() }
/// }
/// ```
pub struct Context {
    pub(crate) server: Arc<ServerState>,
    pub(crate) session: u64,
    pub(crate) conn: u64,
    pub(crate) caller: Caller,
    /// What puts back the item this call's reply carries out of a
    /// container, if the reply cannot be delivered.
    pub(crate) undo: Undo,
}

/// A put-back registered by the call being run, checked after each call
/// with one relaxed load.
#[derive(Default)]
pub(crate) struct Undo {
    set: AtomicBool,
    put_back: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

/// Who is calling.
pub(crate) enum Caller {
    /// A connection: its replies on their way, and whether it hung up.
    Remote(Arc<Peer>),
    /// A call from this process.
    Local,
    /// The fuzzing harness: a call that would block fails instead.
    Harness,
}

impl Context {
    /// The id of the calling connection: one per client thread. Locks and
    /// permits are owned by a connection.
    pub fn connection_id(&self) -> u64 {
        self.conn
    }

    /// The id of the calling client session (all threads of one `Client`).
    pub fn session_id(&self) -> u64 {
        self.session
    }

    /// A `Client` of this manager, for methods that create objects or call
    /// other objects of the same manager.
    ///
    /// # Errors
    /// `Error::ServerShutdown` if the manager is shutting down, or the errors
    /// of [`Client::connect`].
    pub fn client(&self) -> Result<Client> {
        self.server.internal_client()
    }

    /// Whether the call should give up: its caller is gone or the manager is
    /// shutting down.
    pub fn is_cancelled(&self) -> bool {
        self.server.is_stopping() || self.peer_gone()
    }

    /// Registers `put_back`, which returns the item this call's reply
    /// carries out of a container (DESIGN §4), to run if the reply cannot be
    /// delivered because the caller is already gone. Only a remote caller
    /// can be gone; for any other, `put_back` is dropped at once.
    pub(crate) fn on_undelivered(&self, put_back: impl FnOnce() + Send + 'static) {
        if let Caller::Remote(_) = self.caller {
            *lock(&self.undo.put_back) = Some(Box::new(put_back));
            self.undo.set.store(true, Ordering::Relaxed);
        }
    }

    /// The put-back the call just run registered, if any.
    #[inline]
    pub(crate) fn take_undo(&self) -> Option<Box<dyn FnOnce() + Send>> {
        if !self.undo.set.load(Ordering::Relaxed) {
            return None;
        }
        self.undo.set.store(false, Ordering::Relaxed);
        lock(&self.undo.put_back).take()
    }

    /// The calling connection, for a remote caller.
    pub(crate) fn peer(&self) -> Option<&Arc<Peer>> {
        match &self.caller {
            Caller::Remote(peer) => Some(peer),
            _ => None,
        }
    }

    /// Notes that the calling connection called `object`, which tracks
    /// connections: it is told when the connection ends.
    pub(crate) fn touch(&self, object: u64) {
        match &self.caller {
            Caller::Remote(peer) => peer.touch(object),
            Caller::Local | Caller::Harness => self.server.table.touch(self.conn, object),
        }
    }

    /// Whether this run of the call has parked (it returns without a
    /// reply, and is run again when its wait is over).
    pub(crate) fn has_parked(&self) -> bool {
        self.peer().is_some_and(|p| p.has_parked())
    }

    /// Whether this run of the call resumes a wait it parked in.
    pub(crate) fn is_resuming(&self) -> bool {
        self.peer().is_some_and(|p| p.is_resuming())
    }

    pub(crate) fn peer_gone(&self) -> bool {
        matches!(&self.caller, Caller::Remote(peer) if peer.is_gone())
    }

    /// [`Context::peer_gone`], asking the socket itself if no hang-up was
    /// noticed yet (see `Peer::has_left`): before a waiter takes up a grant.
    pub(crate) fn peer_has_left(&self) -> bool {
        matches!(&self.caller, Caller::Remote(peer) if peer.has_left())
    }

    /// Writes the replies queued for the caller: before a call blocks, so
    /// no reply waits behind it.
    pub(crate) fn flush_replies(&self) -> Result<()> {
        match &self.caller {
            Caller::Remote(peer) => peer.write_all(),
            _ => Ok(()),
        }
    }

    /// Blocks on `condvar` until `ready` holds for the guarded state, the
    /// `deadline` passes (returning `false`), or the call is cancelled.
    ///
    /// This is how a `&self` method blocks without holding up other callers
    /// of the same object: keep the state behind your own `Mutex` and
    /// notify the `Condvar` when it changes.
    ///
    /// ```
    /// use std::sync::{Condvar, Mutex};
    /// use manager::{shared, Context};
    ///
    /// #[shared]
    /// pub struct Mailbox { slot: Mutex<Option<String>>, changed: Condvar }
    ///
    /// #[shared]
    /// impl Mailbox {
    ///     pub fn new() -> Self { Mailbox { slot: Mutex::new(None), changed: Condvar::new() } }
    ///     pub fn put(&self, s: String) {
    ///         *self.slot.lock().unwrap() = Some(s);
    ///         self.changed.notify_all();
    ///     }
    ///     /// Waits for a letter.
    ///     pub fn take(&self, ctx: &Context) -> manager::Result<String> {
    ///         let g = self.slot.lock().unwrap();
    ///         let (mut g, _) = ctx.wait_until(g, &self.changed, None, |s| s.is_some())?;
    ///         Ok(g.take().unwrap_or_default())
    ///     }
    /// }
    /// ```
    ///
    /// # Errors
    /// `Error::ConnectionLost` if the caller disconnected while waiting,
    /// `Error::ServerShutdown` if the manager is stopping.
    pub fn wait_until<'a, T>(
        &self,
        mut guard: MutexGuard<'a, T>,
        condvar: &Condvar,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&mut T) -> bool,
    ) -> Result<(MutexGuard<'a, T>, bool)> {
        let mut first = true;
        let mut _blocked = None;
        loop {
            if ready(&mut guard) {
                return Ok((guard, true));
            }
            if std::mem::take(&mut first) {
                if let Caller::Harness = self.caller {
                    return Err(Error::Timeout("the fuzzing harness does not block".into()));
                }
                // Replies held back must not wait behind this call.
                self.flush_replies()?;
                _blocked = Some(Blocked::new(&self.server.blocked));
            }
            let mut slice = BACKSTOP;
            if let Some(d) = deadline {
                let now = Instant::now();
                if now >= d {
                    return Ok((guard, false));
                }
                slice = slice.min(d - now);
            }
            let sleep = |guard| {
                condvar
                    .wait_timeout(guard, slice)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            };
            guard = match &self.caller {
                // A hang-up or the manager's stop wakes it.
                Caller::Remote(peer) => peer.waiting_on(condvar, || {
                    if peer.is_gone() || self.server.is_stopping() {
                        guard
                    } else {
                        sleep(guard)
                    }
                }),
                _ => sleep(guard),
            };
            if self.server.is_stopping() {
                return Err(Error::ServerShutdown);
            }
            if self.peer_gone() {
                return Err(caller_left());
            }
        }
    }
}

/// The error of a waiting call whose caller disconnected.
pub(crate) fn caller_left() -> Error {
    Error::ConnectionLost("the caller disconnected while waiting".into())
}

/// Counts a call as blocked while it lives (`Stats::blocked_calls`).
struct Blocked<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> Blocked<'a> {
    fn new(count: &'a std::sync::atomic::AtomicU64) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Blocked(count)
    }
}

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("connection", &self.conn)
            .field("session", &format_args!("{:016x}", self.session))
            .finish_non_exhaustive()
    }
}
