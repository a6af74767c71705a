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

use std::cell::RefCell;

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

struct Scope {
    caps: Vec<Cap>,
    /// For a reply being encoded in a manager: the receiving session takes
    /// its reference the moment a proxy to this manager's object is
    /// serialized, while the proxy (and so the object) is certainly alive.
    eager: Option<Eager>,
}

struct Eager {
    /// The manager encoding the reply; valid while the scope is open (see
    /// [`capturing_reply`]).
    state: *const ServerState,
    session: u64,
    taken: Vec<(u64, u64)>,
}

/// Objects with a reference already held for `client`'s session.
struct Adopt {
    client: Client,
    pool: Vec<(u64, u64)>,
}

thread_local! {
    static CAPTURE: RefCell<Vec<Scope>> = const { RefCell::new(Vec::new()) };
    static ADOPT: RefCell<Vec<Adopt>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f`, returning what it returned and the objects serialized inside
/// it. They stop here: bytes encoded inside `f` (an element, a call) carry
/// their own list, and the message `f` may itself be part of does not
/// embed them.
pub(crate) fn capturing<T>(f: impl FnOnce() -> T) -> (T, Vec<Cap>) {
    let _ = CAPTURE.try_with(|c| {
        c.borrow_mut().push(Scope {
            caps: Vec::new(),
            eager: None,
        })
    });
    let out = f();
    let caps = CAPTURE
        .try_with(|c| c.borrow_mut().pop().map(|scope| scope.caps))
        .ok()
        .flatten()
        .unwrap_or_default();
    (out, caps)
}

/// Runs `f` encoding a reply of `state` for `session`: returns what `f`
/// returned, the (object, fingerprint) pairs `session` now holds a
/// reference to, and the serialized proxies of other managers.
pub(crate) fn capturing_reply<T>(
    state: &ServerState,
    session: u64,
    f: impl FnOnce() -> T,
) -> (T, Vec<(u64, u64)>, Vec<Cap>) {
    /// Closes the scope however `f` ends, so that its pointer to `state`
    /// never outlives the borrow.
    struct Close;
    impl Drop for Close {
        fn drop(&mut self) {
            let _ = CAPTURE.try_with(|c| c.borrow_mut().pop());
        }
    }
    let opened = CAPTURE
        .try_with(|c| {
            c.borrow_mut().push(Scope {
                caps: Vec::new(),
                eager: Some(Eager {
                    state,
                    session,
                    taken: Vec::new(),
                }),
            })
        })
        .is_ok();
    let close = opened.then_some(Close);
    let out = f();
    let scope = CAPTURE.try_with(|c| c.borrow_mut().pop()).ok().flatten();
    if let Some(close) = close {
        std::mem::forget(close);
    }
    match scope {
        Some(Scope {
            caps,
            eager: Some(e),
            ..
        }) => (out, e.taken, caps),
        _ => (out, Vec::new(), Vec::new()),
    }
}

/// Records that `cap` was serialized (called by a proxy's `Serialize`).
pub(crate) fn note(cap: Cap) {
    let _ = CAPTURE.try_with(|c| {
        if let Ok(mut stack) = c.try_borrow_mut() {
            if let Some(scope) = stack.last_mut() {
                if let Some(e) = &mut scope.eager {
                    // SAFETY: the scope is open, so `capturing_reply`,
                    // which borrows the state, has not returned.
                    let state = unsafe { &*e.state };
                    if cap.address == state.address {
                        // An object already gone is left out: its proxy will
                        // report NoSuchObject when used.
                        if let Ok(fp) = state.table.add_session_ref_any(e.session, cap.object) {
                            e.taken.push((cap.object, fp));
                        }
                        return;
                    }
                }
                scope.caps.push(cap);
            }
        }
    });
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
    CAPTURE
        .try_with(|c| {
            c.try_borrow()
                .map(|s| s.iter().any(|scope| scope.eager.is_some()))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

/// Whether this thread is decoding a message from a manager.
pub(crate) fn is_decoding() -> bool {
    ADOPT
        .try_with(|a| a.try_borrow().map(|s| !s.is_empty()).unwrap_or(false))
        .unwrap_or(false)
}
