//! The manager's server: an event loop over the listener and every
//! connection ([`reactor`]), the request loop of one connection
//! ([`connection`]), the object table with its reference counts and
//! sessions, and the control object.
//!
//! Calls of one connection run in order; a call blocked inside a method (a
//! queue's `get`) blocks only its own connection, which is the order a
//! client thread expects anyway.

pub(crate) mod connection;
pub(crate) mod control;
mod in_process;
mod reactor;
pub(crate) mod signals;
mod table;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::address::Address;
use crate::auth::AuthKey;
use crate::caps::{adopting, capturing_reply};
use crate::client::{Client, InProcess};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::proxy::Handle;
use crate::shared::TypeEntry;
use crate::sync::lock;
use crate::transport::Listener;
use crate::wire::codec::{Decoder, Encoder};
use crate::wire::message::{Join, CONTROL};

pub(crate) use table::{Recent, Table};

/// How long `shutdown` waits for calls still inside a method.
const DRAIN: Duration = Duration::from_secs(2);

/// A manager's settings.
#[derive(Clone, Debug)]
pub(crate) struct ServerConfig {
    pub(crate) address: Address,
    pub(crate) key: AuthKey,
    pub(crate) types: HashMap<&'static str, TypeEntry>,
    pub(crate) limits: Limits,
}

/// What a manager allows its peers: the bounds on memory, threads and time
/// that no client can push it past.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Limits {
    /// Largest message body accepted or sent.
    pub(crate) max_frame: usize,
    /// How long a new connection may take to authenticate.
    pub(crate) handshake_timeout: Duration,
    /// How long a token keeps its object alive if never redeemed.
    pub(crate) handoff_timeout: Duration,
    /// Authenticated connections open at once.
    pub(crate) max_connections: usize,
    /// Connections still in the handshake at once; more are closed at accept.
    pub(crate) max_handshakes: usize,
    /// Objects one session may have created and still hold.
    pub(crate) max_objects_per_session: usize,
    /// How long a TCP peer may stay silent (no reply to keepalive probes,
    /// no acknowledgement of data sent) before its connection counts as
    /// ended abnormally.
    pub(crate) dead_peer_timeout: Duration,
    /// Whether connections on a local socket are encrypted too.
    pub(crate) encrypt_local: bool,
    /// Whether the poller spins briefly before it blocks.
    pub(crate) busy_poll: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: crate::wire::frame::DEFAULT_MAX_FRAME,
            handshake_timeout: Duration::from_secs(5),
            handoff_timeout: Duration::from_secs(60),
            max_connections: 16_384,
            max_handshakes: 1024,
            max_objects_per_session: 1 << 24,
            dead_peer_timeout: crate::transport::DEAD_PEER_TIMEOUT,
            encrypt_local: false,
            busy_poll: true,
        }
    }
}

/// Everything the connection threads share.
pub(crate) struct ServerState {
    pub(crate) config: ServerConfig,
    /// The address clients use (with the real port of `tcp:HOST:0`).
    pub(crate) address: Address,
    pub(crate) table: Table,
    next_conn: AtomicU64,
    /// Connections still in the handshake.
    handshakes: AtomicUsize,
    pub(crate) calls: AtomicU64,
    /// Calls blocked in a wait now (`Context::wait_until`).
    pub(crate) blocked: AtomicU64,
    stopping: AtomicBool,
    /// Authenticated connections and their sessions: their number is what
    /// `max_connections` bounds, and a session's goodbye waits for its
    /// others to leave.
    live: Mutex<HashMap<u64, u64>>,
    /// The event loop, once it runs.
    reactor: OnceLock<Arc<reactor::Reactor>>,
    /// Notified whenever a connection leaves `live`.
    drained: Condvar,
    internal: Mutex<Option<Client>>,
    /// References to other managers' objects that a reply carried to a
    /// peer: kept for the hand-off time, so that the peer can bind first.
    grace: Mutex<Vec<(Instant, Handle)>>,
    /// This state itself, for the in-process client.
    me: std::sync::Weak<ServerState>,
}

/// One call as [`ServerState::call`] runs it: the object, the method, its
/// encoded arguments, and the objects they embed (see there).
pub(crate) struct Invocation<'a, 'c> {
    pub(crate) object: u64,
    pub(crate) method: u32,
    pub(crate) args: Decoder<'a>,
    pub(crate) arg_caps: Option<&'c [u64]>,
}

impl ServerState {
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Runs one call with its capabilities: the objects its arguments embed
    /// (`arg_caps`) are held for this manager's own session while the method
    /// decodes them, and each object its result embeds gets a reference for
    /// the caller's session, returned as (object, fingerprint) to adopt.
    ///
    /// `arg_caps` is `None` when the arguments embed no proxy, and a list
    /// (maybe empty) of this manager's objects when they embed some: then
    /// the method decodes in an adopt scope, where a proxy to another
    /// manager's object binds at once, while the caller still holds it.
    ///
    /// Also returned: the proxies to other managers' objects that the
    /// result embeds. The receiver binds them while decoding; until then
    /// the caller of this function must keep them, or the method's own
    /// reference (a field moved into the result, an element popped) could
    /// be the last one and go before the receiver has its own.
    #[inline]
    pub(crate) fn call(
        &self,
        ctx: &Context,
        call: Invocation<'_, '_>,
        out: &mut Encoder<'_>,
        recent: &mut Recent,
    ) -> Result<(crate::caps::ReplyCaps, Vec<Handle>)> {
        let Invocation {
            object,
            method,
            args,
            arg_caps,
        } = call;
        let session = ctx.session;
        let run = move || {
            capturing_reply(&ctx.server, session, || {
                self.dispatch(ctx, object, method, args, out, recent)
            })
        };
        let (result, taken, foreign) = if let Some(arg_caps) = arg_caps {
            let internal = self.internal_client()?;
            let own = internal.session();
            let pool = arg_caps
                .iter()
                .filter_map(|&id| {
                    self.table
                        .add_session_ref_any(own, id)
                        .ok()
                        .map(|fp| (id, fp))
                })
                .collect();
            let (r, left) = adopting(&internal, pool, run);
            for id in left {
                self.table.release(own, id);
            }
            r
        } else {
            run()
        };
        if let Err(e) = result {
            for (id, _) in taken {
                self.table.release(session, id);
            }
            return Err(e);
        }
        // A reply that names proxies to other managers still says so (with
        // an empty list): the caller binds those itself while decoding.
        let caps = if taken.is_empty() && foreign.is_empty() {
            None
        } else {
            Some(taken)
        };
        // Nearly every reply embeds no proxy of another manager.
        let foreign = if foreign.is_empty() {
            Vec::new()
        } else {
            foreign.into_iter().filter_map(|c| c.proxy).collect()
        };
        Ok((caps, foreign))
    }

    /// Runs one call, catching a panic in user code.
    #[inline]
    pub(crate) fn dispatch(
        &self,
        ctx: &Context,
        object: u64,
        method: u32,
        mut args: Decoder<'_>,
        out: &mut Encoder<'_>,
        recent: &mut Recent,
    ) -> Result<()> {
        if object == CONTROL {
            let names = || ("manager", control::method_name(method));
            return traced(object, names, || {
                catch(
                    || control::call(self, ctx, method, &mut args, out),
                    || {
                        (
                            "manager".to_owned(),
                            control::method_name(method).to_owned(),
                        )
                    },
                )
            });
        }
        let obj = self.table.get_recent(object, recent)?;
        if obj.tracks_connections() {
            ctx.touch(object);
        }
        let names = || (obj.type_name(), obj.method_name(method));
        traced(object, names, || {
            catch(
                || obj.call(ctx, method, &mut args, out),
                || {
                    (
                        obj.type_name().to_owned(),
                        obj.method_name(method).to_owned(),
                    )
                },
            )
        })
    }

    /// Begins shutdown: no new connections, and every open one stops
    /// reading. A call in progress finishes and its reply goes out; a
    /// blocked call is woken and answers `ServerShutdown`. `run` closes
    /// what is still open once the drain time is over.
    pub(crate) fn stop(&self) {
        if self.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::debug!(address = %self.address, "manager stopping");
        if let Some(r) = self.reactor.get() {
            r.stop();
        }
    }

    /// Decides whether the manager serves a client that proved the key:
    /// its encryption matches, a connection is free, its session exists.
    /// The connection counts from here on (`unregister` ends that), so a
    /// burst of clients cannot pass the limit together. Returns the
    /// session joined and whether the connection is encrypted.
    pub(crate) fn admit(&self, conn: u64, is_tcp: bool, join: &Join) -> Result<(u64, bool)> {
        let address = &self.address;
        let encrypted = if is_tcp {
            match (join.encrypt, address.is_encrypted()) {
                (true, false) => {
                    return Err(Error::Protocol(format!(
                        "the manager at {address} does not encrypt (it listens on a tcp-plain: \
                         address); connect to {address} to accept that"
                    )))
                }
                (false, true) => {
                    return Err(Error::Protocol(format!(
                        "the manager at {address} encrypts its connections; connect to \
                         {address}, or start the manager with a tcp-plain: address too"
                    )))
                }
                (_, ours) => ours,
            }
        } else {
            join.encrypt || self.config.limits.encrypt_local
        };
        let mut live = lock(&self.live);
        if self.is_stopping() {
            return Err(Error::ServerShutdown);
        }
        if live.len() >= self.config.limits.max_connections {
            return Err(Error::LimitReached(format!(
                "the manager serves at most {} connections at once",
                self.config.limits.max_connections
            )));
        }
        let session = match join.session {
            Some(id) => self.table.join_session(id).map(|()| id)?,
            None => self.table.open_session(),
        };
        live.insert(conn, session);
        Ok((session, encrypted))
    }

    pub(crate) fn unregister(&self, id: u64) {
        if lock(&self.live).remove(&id).is_some() {
            self.drained.notify_all();
        }
    }

    /// Waits, for at most `limit`, until `session` has no open connection
    /// but `conn`: its client said goodbye on `conn` for all of them, and
    /// the others are ending (each said goodbye too, or its thread is still
    /// inside a call and its socket closes when the client process exits).
    fn await_session(&self, session: u64, conn: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut live = lock(&self.live);
        while live.iter().any(|(&c, s)| *s == session && c != conn) {
            let now = Instant::now();
            if now >= deadline {
                tracing::debug!(
                    session = format_args!("{session:016x}"),
                    "a connection of a departing session is still open; not waiting for it"
                );
                return;
            }
            live = self
                .drained
                .wait_timeout(live, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// A connection begins its handshake, unless too many are in one.
    pub(super) fn begin_handshake(&self) -> bool {
        if self.handshakes.fetch_add(1, Ordering::AcqRel) >= self.config.limits.max_handshakes {
            self.handshakes.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// A connection finished its handshake, either way.
    pub(super) fn handshake_done(&self) {
        self.handshakes.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn new_connection_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn connection_count(&self) -> u64 {
        lock(&self.live).len() as u64
    }

    /// Waits until every connection thread has finished, for at most `limit`.
    fn drain(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut live = lock(&self.live);
        while !live.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(
                    remaining = live.len(),
                    "connections still inside a method at shutdown; not waiting for them"
                );
                drop(live);
                if let Some(r) = self.reactor.get() {
                    r.close_all();
                }
                return;
            }
            live = self
                .drained
                .wait_timeout(live, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Keeps `handles` (to other managers' objects) for the hand-off time.
    #[inline]
    pub(crate) fn keep_for_handoff(&self, handles: Vec<Handle>) {
        if !handles.is_empty() {
            self.keep_for_handoff_now(handles);
        }
    }

    fn keep_for_handoff_now(&self, handles: Vec<Handle>) {
        let until = Instant::now() + self.config.limits.handoff_timeout;
        lock(&self.grace).extend(handles.into_iter().map(|h| (until, h)));
    }

    /// Drops kept references whose time is up.
    pub(crate) fn expire(&self, now: Instant) {
        self.table.expire(now);
        let expired: Vec<_> = {
            let mut grace = lock(&self.grace);
            let (gone, keep) = std::mem::take(&mut *grace)
                .into_iter()
                .partition(|(until, _)| *until <= now);
            *grace = keep;
            gone
        };
        drop(expired);
    }

    /// A client of this manager for methods running inside it.
    pub(crate) fn internal_client(&self) -> Result<Client> {
        if self.is_stopping() {
            return Err(Error::ServerShutdown);
        }
        let me = self.me.upgrade().ok_or(Error::ServerShutdown)?;
        Ok(lock(&self.internal)
            .get_or_insert_with(|| Client::local(&(me as Arc<dyn InProcess>)))
            .clone())
    }
}

/// Runs a call; at `trace` level, logs it with its duration and outcome
/// (`MANAGER_LOG=trace`). Disabled, this costs one cached check.
#[inline]
fn traced<'n>(
    object: u64,
    names: impl FnOnce() -> (&'n str, &'n str),
    call: impl FnOnce() -> Result<()>,
) -> Result<()> {
    if !tracing::enabled!(tracing::Level::TRACE) {
        return call();
    }
    let started = Instant::now();
    let r = call();
    let elapsed = started.elapsed();
    let (type_name, method) = names();
    match &r {
        Ok(()) => tracing::trace!(object, type_name, method, ?elapsed, "call returned"),
        Err(e) => tracing::trace!(object, type_name, method, ?elapsed, error = %e, "call failed"),
    }
    r
}

/// Runs `f`, turning a panic into `Error::RemotePanic`.
#[inline]
fn catch(f: impl FnOnce() -> Result<()>, names: impl FnOnce() -> (String, String)) -> Result<()> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let message = if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_owned()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "a panic with a non-string payload".to_owned()
            };
            let (type_name, method) = names();
            tracing::warn!(%type_name, %method, %message, "method panicked");
            Err(Error::RemotePanic {
                type_name,
                method,
                message,
            })
        }
    }
}

impl ServerState {
    /// The state of a manager reachable at `address`.
    fn new(config: ServerConfig, address: Address, first_id: u64) -> Arc<ServerState> {
        Arc::new_cyclic(|me| ServerState {
            me: me.clone(),
            address,
            table: Table::new(first_id),
            next_conn: AtomicU64::new(1),
            handshakes: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            live: Mutex::new(HashMap::new()),
            reactor: OnceLock::new(),
            drained: Condvar::new(),
            internal: Mutex::new(None),
            grace: Mutex::new(Vec::new()),
            config,
        })
    }
}

/// A bound manager, not yet accepting.
pub(crate) struct Server {
    state: Arc<ServerState>,
    listener: Listener,
}

/// Feeds bytes to the manager's connection loop with no socket: the entry
/// point of the fuzz target and of the property tests on hostile input.
#[doc(hidden)]
pub struct FuzzHarness {
    state: Arc<ServerState>,
}

impl FuzzHarness {
    /// A manager that can construct the built-ins and `types`.
    pub fn new(types: &[TypeEntry]) -> FuzzHarness {
        let mut all = crate::shared::preregistered();
        for t in types {
            all.insert(t.name, *t);
        }
        let config = ServerConfig {
            address: Address::tcp("fuzz.invalid", 1),
            key: AuthKey::from_bytes(b"fuzz"),
            types: all,
            limits: Limits {
                max_frame: 1 << 16,
                ..Limits::default()
            },
        };
        let address = config.address.clone();
        FuzzHarness {
            // Predictable ids, so generated inputs can name the objects they made.
            state: ServerState::new(config, address, 1),
        }
    }

    /// Runs `input` as what an authenticated peer sent on one connection,
    /// and returns what the manager answered. Never panics, whatever the bytes.
    pub fn feed(&self, input: &[u8]) -> Vec<u8> {
        let session = self.state.table.open_session();
        let ctx = Context {
            server: Arc::clone(&self.state),
            session,
            conn: self.state.new_connection_id(),
            undo: Default::default(),
            caller: crate::context::Caller::Harness,
        };
        let output = Mutex::new(Vec::new());
        let mut reader = crate::wire::frame::FrameReader::new(self.state.config.limits.max_frame);
        reader.allow_blobs();
        let mut writer = crate::wire::frame::FrameWriter::new();
        let _ = connection::requests(
            &self.state,
            &ctx,
            &mut { input },
            &mut reader,
            &mut writer,
            &output,
            &mut None,
        );
        self.state
            .table
            .disconnected(ctx.conn, crate::shared::End::Abnormal, []);
        self.state.table.leave_session(session);
        output.into_inner().unwrap_or_else(PoisonError::into_inner)
    }

    /// Live objects: every session the harness opened has ended, so this
    /// is what leaked.
    pub fn live_objects(&self) -> u64 {
        self.state.table.object_count()
    }
}

impl Server {
    pub(crate) fn bind(config: ServerConfig) -> Result<Server> {
        crate::spawn::init_logging();
        reactor::raise_open_file_limit();
        let (listener, address) = Listener::bind(&config.address)?;
        if address.tcp_parts().is_some() && !address.is_encrypted() && !address.is_loopback() {
            tracing::warn!(
                %address,
                "this manager does not encrypt: anyone on the network path can read and \
                 alter its calls; use a tcp: address unless the network is trusted"
            );
        }
        let state = ServerState::new(config, address, crate::auth::random_u64() >> 20);
        crate::client::register_local(&(Arc::clone(&state) as Arc<dyn InProcess>));
        Ok(Server { state, listener })
    }

    pub(crate) fn state(&self) -> &Arc<ServerState> {
        &self.state
    }

    /// Serves until stopped, then closes every connection.
    pub(crate) fn run(self) {
        let Server { state, listener } = self;
        let reactor = match reactor::Reactor::new(listener, state.config.limits.busy_poll) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the event loop");
                return;
            }
        };
        let _ = state.reactor.set(Arc::clone(&reactor));
        if state.is_stopping() {
            reactor.stop();
        }
        tracing::debug!(address = %state.address, "manager serving");
        reactor.serve(&state);
        let internal = lock(&state.internal).take();
        drop(internal);
        let grace = std::mem::take(&mut *lock(&state.grace));
        drop(grace);
        state.drain(DRAIN);
        reactor.finish(DRAIN);
        state.table.clear();
        tracing::debug!("manager stopped");
    }
}

/// A manager running on a thread of this process.
pub(crate) struct ServerThread {
    state: Arc<ServerState>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    pub(crate) fn spawn(server: Server) -> Result<ServerThread> {
        let state = Arc::clone(server.state());
        let thread = std::thread::Builder::new()
            .name("manager-listener".into())
            .spawn(move || server.run())?;
        Ok(ServerThread {
            state,
            thread: Some(thread),
        })
    }

    pub(crate) fn stop(&mut self) {
        self.state.stop();
        self.join();
    }

    /// Waits until the manager has stopped (a client asked it to).
    pub(crate) fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop();
    }
}
