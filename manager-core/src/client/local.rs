//! Calls into a manager of this process, without a socket: what
//! `Context::client` and proxies arriving inside the manager use.
//!
//! Each thread gets a connection id of its own per manager, so locks taken
//! in-process are owned per thread as they are over sockets, and settled
//! when the thread ends (normally unless a panic began on it).

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use crate::address::Address;
use crate::auth::AuthKey;
use crate::caps::{capturing, ReplyCaps};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::proxy::Handle;
use crate::shared::End;
use crate::wire::codec::Encoder;

/// A manager of this process, as its clients there call it directly: the
/// one door between the client and the server, which the server
/// implements. The client names nothing else of the server's.
pub(crate) trait InProcess: Send + Sync {
    /// The manager's address.
    fn address(&self) -> &Address;
    /// The manager's key.
    fn key(&self) -> &AuthKey;
    /// Whether the manager is stopping: calls fail with `ServerShutdown`.
    fn is_stopping(&self) -> bool;
    /// A new session, for a new in-process client.
    fn open_session(&self) -> u64;
    /// An in-process client ended: its session's references go.
    fn leave_session(&self, session: u64);
    /// Drops one of `session`'s references to `object`.
    fn release(&self, session: u64, object: u64);
    /// A connection id for a thread of this process.
    fn new_connection_id(&self) -> u64;
    /// A thread's connection `conn` ended as `end` (its thread ended).
    fn connection_ended(&self, conn: u64, end: End);
    /// The manager's own client, for code running inside it.
    fn internal_client(&self) -> Result<Client>;
    /// Runs `method` of `object` for thread connection `conn` of
    /// `session` on the encoded `args` (`arg_caps`: this manager's objects
    /// they embed, `None` if they embed no proxy), writing the result to
    /// `out`; the objects it embeds (referenced for `session`) and the
    /// proxies of other managers it embeds.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &self,
        conn: u64,
        session: u64,
        object: u64,
        method: u32,
        args: &[u8],
        arg_caps: Option<&[u64]>,
        out: &mut Vec<u8>,
    ) -> Result<(ReplyCaps, Vec<Handle>)>;
}

/// This thread's connection id with one manager.
struct LocalConn {
    state: Weak<dyn InProcess>,
    conn: u64,
}

impl Drop for LocalConn {
    fn drop(&mut self) {
        if let Some(state) = self.state.upgrade() {
            let end = if crate::client::ending_normally() {
                End::Normal
            } else {
                End::Abnormal
            };
            state.connection_ended(self.conn, end);
        }
    }
}

thread_local! {
    static CONNS: RefCell<Vec<LocalConn>> = const { RefCell::new(Vec::new()) };
}

fn conn_id(state: &Arc<dyn InProcess>) -> u64 {
    let found = CONNS.try_with(|conns| {
        let mut conns = conns.try_borrow_mut().ok()?;
        let me = Arc::as_ptr(state).cast::<()>();
        if let Some(c) = conns
            .iter()
            .find(|c| std::ptr::eq(c.state.as_ptr().cast::<()>(), me))
        {
            return Some(c.conn);
        }
        conns.retain(|c| c.state.strong_count() > 0);
        let conn = state.new_connection_id();
        conns.push(LocalConn {
            state: Arc::downgrade(state),
            conn,
        });
        Some(conn)
    });
    // During thread teardown: a one-off id, so ownership cannot be confused.
    found
        .ok()
        .flatten()
        .unwrap_or_else(|| state.new_connection_id())
}

/// Runs one call in this thread and returns its encoded result, with the
/// objects it embeds (already referenced for `session`) and the proxies of
/// other managers it embeds, to keep until it is decoded.
pub(crate) fn call(
    state: &Weak<dyn InProcess>,
    session: u64,
    object: u64,
    method: u32,
    args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
) -> Result<crate::caps::Reply> {
    let state = state.upgrade().ok_or(Error::ServerShutdown)?;
    if state.is_stopping() {
        return Err(Error::ServerShutdown);
    }
    let mut input = Vec::new();
    // The proxies the arguments embed, held (as the caller's own are)
    // until the call has run.
    let (encoded, embedded) = capturing(|| args(&mut Encoder::new(&mut input)));
    encoded?;
    // Any proxy in the arguments, this manager's or another's, makes the
    // callee decode them in an adopt scope (see `ServerState::call`).
    let own: Option<Vec<u64>> = (!embedded.is_empty()).then(|| {
        embedded
            .iter()
            .filter(|c| c.address == *state.address())
            .map(|c| c.object)
            .collect()
    });
    let conn = conn_id(&state);
    let mut out = Vec::new();
    let (caps, foreign) = state.call(
        conn,
        session,
        object,
        method,
        &input,
        own.as_deref(),
        &mut out,
    )?;
    drop(embedded);
    // The caller decodes `out` in this process; `foreign` lives until then.
    Ok((out, caps, foreign))
}
