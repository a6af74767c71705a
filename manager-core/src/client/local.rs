//! Calls into a manager of this process, without a socket: what
//! `Context::client` and proxies arriving inside the manager use.
//!
//! Each thread gets a connection id of its own per manager, so locks taken
//! in-process are owned per thread as they are over sockets, and settled
//! when the thread ends (normally unless a panic began on it).

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use crate::caps::capturing;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::server::ServerState;
use crate::wire::codec::{Decoder, Encoder};

/// This thread's connection id with one manager.
struct LocalConn {
    state: Weak<ServerState>,
    conn: u64,
}

impl Drop for LocalConn {
    fn drop(&mut self) {
        if let Some(state) = self.state.upgrade() {
            let end = if crate::client::ending_normally() {
                crate::shared::End::Normal
            } else {
                crate::shared::End::Abnormal
            };
            state.table.disconnected(self.conn, end, []);
        }
    }
}

thread_local! {
    static CONNS: RefCell<Vec<LocalConn>> = const { RefCell::new(Vec::new()) };
}

fn conn_id(state: &Arc<ServerState>) -> u64 {
    let found = CONNS.try_with(|conns| {
        let mut conns = conns.try_borrow_mut().ok()?;
        if let Some(c) = conns
            .iter()
            .find(|c| std::ptr::eq(c.state.as_ptr(), Arc::as_ptr(state)))
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
    state: &Weak<ServerState>,
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
            .filter(|c| c.address == state.address)
            .map(|c| c.object)
            .collect()
    });
    let ctx = Context {
        conn: conn_id(&state),
        server: Arc::clone(&state),
        session,
        undo: Default::default(),
        caller: crate::context::Caller::Local,
    };
    state.calls.fetch_add(1, Ordering::Relaxed);
    let mut out = Vec::new();
    let (caps, foreign) = state.call(
        &ctx,
        object,
        method,
        Decoder::new(&input),
        own.as_deref(),
        &mut Encoder::new(&mut out),
    )?;
    drop(embedded);
    // The caller decodes `out` in this process; `foreign` lives until then.
    Ok((out, caps, foreign))
}
