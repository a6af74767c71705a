//! The capability table: which objects a message's bytes embed, carried
//! beside the bytes rather than found by parsing them.
//!
//! Encoding a message opens a *capture* scope: every proxy serialized inside
//! it records its object there. The receiver of the message takes one
//! reference per captured object for the session that will hold the decoded
//! proxies *before* the bytes leave, and decoding opens an *adopt* scope in
//! which each deserialized proxy takes one of those references instead of
//! asking the manager for a new one. References nobody adopted are given
//! back. So an object can never be freed while a message naming it is in
//! flight, and the manager never parses user bytes to find references.
//!
//! A proxy to an object of *another* manager cannot travel that way: the
//! manager that reads the message has no say over that object. Its receiver
//! binds it (takes a reference of its own at the object's manager) while
//! decoding, and until then the sender keeps the proxy it serialized: a
//! caller holds its arguments until the reply, and a manager keeps what its
//! reply embeds until the receiver has decoded it (in-process) or for the
//! hand-off time (over a socket). The capture records the proxy itself for
//! this, and a message that embeds any says so even when its list of the
//! reader's own objects is empty, so that the reader decodes it in an adopt
//! scope.

use std::cell::{Cell, RefCell};

use crate::address::Address;
use crate::client::Client;
use crate::proxy::Handle;
use crate::server::ServerState;

/// The objects a reply embeds, each (object, fingerprint) with a reference
/// already taken for the receiving session; `None` when it embeds no proxy.
pub(crate) type ReplyCaps = Option<Vec<(u64, u64)>>;

/// An in-process call's encoded result, its capabilities, and the proxies
/// to other managers' objects it embeds, which must outlive its decoding:
/// the decoder binds them.
pub(crate) type Reply = (Vec<u8>, ReplyCaps, Vec<Handle>);

/// An object named by encoded bytes.
#[derive(Debug, Clone)]
pub(crate) struct Cap {
    pub(crate) address: Address,
    pub(crate) object: u64,
    /// The serialized proxy, when there is one: whoever sends the bytes
    /// keeps it until the receiver can hold the object itself.
    pub(crate) proxy: Option<Handle>,
}

/// The reply a manager of this process is encoding on this thread, opened
/// by [`capturing_reply`] on its stack frame: the receiving session takes
/// its reference the moment a proxy to this manager's object is serialized,
/// while the proxy (and so the object) is certainly alive.
///
/// A reply scope is a pointer in a thread-local cell, not an entry on the
/// capture stack: a call whose result embeds no proxy (nearly every call)
/// pays two stores for it.
struct ReplyScope {
    /// The manager encoding the reply.
    state: *const ServerState,
    session: u64,
    /// The innermost capture scope when the reply began: while another is
    /// innermost, it was opened inside the reply, and catches what is
    /// serialized there.
    capture: *const CaptureScope,
    taken: RefCell<Vec<(u64, u64)>>,
    /// Proxies to other managers' objects the reply embeds.
    foreign: RefCell<Vec<Cap>>,
    /// The reply scope this one is nested in (an in-process call made by a
    /// method), restored when this one closes.
    outer: *const ReplyScope,
}

/// Objects with a reference already held for `client`'s session.
struct Adopt {
    client: Client,
    pool: Vec<(u64, u64)>,
}

/// A [`capturing`] scope, on the frame of the call that opened it: the
/// objects serialized inside it. Like a reply scope, it is reached through
/// a thread-local pointer, so that encoding arguments that embed no proxy
/// (nearly every call) costs two stores and no allocation.
struct CaptureScope {
    caps: RefCell<Vec<Cap>>,
}

thread_local! {
    /// The innermost open [`capturing`] scope, or null.
    static CAPTURE: Cell<*const CaptureScope> = const { Cell::new(std::ptr::null()) };
    /// The innermost open reply scope, or null.
    static REPLY: Cell<*const ReplyScope> = const { Cell::new(std::ptr::null()) };
    static ADOPT: RefCell<Vec<Adopt>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f`, returning what it returned and the objects serialized inside
/// it. They stop here: bytes encoded inside `f` (an element, a call) carry
/// their own list, and the message `f` may itself be part of does not
/// embed them.
pub(crate) fn capturing<T>(f: impl FnOnce() -> T) -> (T, Vec<Cap>) {
    /// Restores the outer scope however `f` ends, so that the pointer to
    /// this one never outlives the frame.
    struct Close(*const CaptureScope);
    impl Drop for Close {
        fn drop(&mut self) {
            let _ = CAPTURE.try_with(|c| c.set(self.0));
        }
    }
    let scope = CaptureScope {
        caps: RefCell::new(Vec::new()),
    };
    let close = CAPTURE.try_with(|c| Close(c.replace(&scope))).ok();
    let out = f();
    drop(close);
    (out, scope.caps.into_inner())
}

/// Runs `f` encoding a reply of `state` for `session`: returns what `f`
/// returned, the (object, fingerprint) pairs `session` now holds a
/// reference to, and the serialized proxies of other managers.
pub(crate) fn capturing_reply<T>(
    state: &ServerState,
    session: u64,
    f: impl FnOnce() -> T,
) -> (T, Vec<(u64, u64)>, Vec<Cap>) {
    /// Closes the scope however `f` ends, so that the thread-local pointer
    /// to it (and through it to `state`) never outlives the frame.
    struct Close(*const ReplyScope);
    impl Drop for Close {
        fn drop(&mut self) {
            let _ = REPLY.try_with(|r| r.set(self.0));
        }
    }
    let scope = ReplyScope {
        state,
        session,
        capture: CAPTURE.try_with(Cell::get).unwrap_or(std::ptr::null()),
        taken: RefCell::new(Vec::new()),
        foreign: RefCell::new(Vec::new()),
        outer: REPLY.try_with(Cell::get).unwrap_or(std::ptr::null()),
    };
    let opened = REPLY.try_with(|r| r.set(&scope)).is_ok();
    let close = opened.then_some(Close(scope.outer));
    let out = f();
    drop(close);
    (out, scope.taken.into_inner(), scope.foreign.into_inner())
}

/// Records that `cap` was serialized (called by a proxy's `Serialize`).
pub(crate) fn note(cap: Cap) {
    let reply = REPLY.try_with(Cell::get).unwrap_or(std::ptr::null());
    let capture = CAPTURE.try_with(Cell::get).unwrap_or(std::ptr::null());
    // SAFETY: a non-null `REPLY` points at the scope of a
    // `capturing_reply` still running on this thread (its `Close`
    // restores the outer pointer before the frame goes), and that
    // scope's `state` is borrowed for as long; likewise a non-null
    // `CAPTURE` and `capturing`.
    let (reply, capture) = unsafe { (reply.as_ref(), capture.as_ref()) };
    let catch = |scope: &CaptureScope, cap| {
        if let Ok(mut caps) = scope.caps.try_borrow_mut() {
            caps.push(cap);
        }
    };
    match (reply, capture) {
        // A capture scope opened inside the reply catches it.
        (Some(r), Some(c)) if !std::ptr::eq(r.capture, c) => catch(c, cap),
        (Some(r), _) => {
            // SAFETY: see above.
            let state = unsafe { &*r.state };
            if cap.address == state.address {
                // An object already gone is left out: its proxy will
                // report NoSuchObject when used.
                if let Ok(fp) = state.table.add_session_ref_any(r.session, cap.object) {
                    r.taken.borrow_mut().push((cap.object, fp));
                }
            } else {
                r.foreign.borrow_mut().push(cap);
            }
        }
        (None, Some(c)) => catch(c, cap),
        (None, None) => {}
    }
}

/// Runs `f` with `pool` (object, fingerprint) adoptable by proxies decoded
/// for `client`; returns what `f` returned and the objects nobody adopted.
pub(crate) fn adopting<T>(
    client: &Client,
    pool: Vec<(u64, u64)>,
    f: impl FnOnce() -> T,
) -> (T, Vec<u64>) {
    let _ = ADOPT.try_with(|a| {
        a.borrow_mut().push(Adopt {
            client: client.clone(),
            pool,
        })
    });
    let out = f();
    let left = ADOPT
        .try_with(|a| a.borrow_mut().pop())
        .ok()
        .flatten()
        .map(|a| a.pool.into_iter().map(|(o, _)| o).collect())
        .unwrap_or_default();
    (out, left)
}

/// Takes the reference held for `object` at `address`, if the innermost
/// adopt scope has one: the client it belongs to and the object's fingerprint.
pub(crate) fn adopt(address: &Address, object: u64) -> Option<(Client, u64)> {
    ADOPT
        .try_with(|a| {
            let mut stack = a.try_borrow_mut().ok()?;
            let scope = stack.last_mut()?;
            if scope.client.address() != address {
                return None;
            }
            let i = scope.pool.iter().position(|(o, _)| *o == object)?;
            let (_, fingerprint) = scope.pool.swap_remove(i);
            Some((scope.client.clone(), fingerprint))
        })
        .ok()
        .flatten()
}

/// Whether this thread is running a call of a manager of this process (a
/// method, or the decoding of its arguments): the reply it will send is
/// being captured.
pub(crate) fn serving() -> bool {
    REPLY.try_with(|r| !r.get().is_null()).unwrap_or(false)
}

/// Whether this thread is decoding a message from a manager.
pub(crate) fn is_decoding() -> bool {
    ADOPT
        .try_with(|a| a.try_borrow().map(|s| !s.is_empty()).unwrap_or(false))
        .unwrap_or(false)
}
