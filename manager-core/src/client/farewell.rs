//! When a client ends normally, and the goodbyes said for it at process exit.
//!
//! DESIGN §4: a connection ends normally when its client says goodbye first,
//! which it does when its `Client` (and every proxy using it) is dropped, its
//! thread ends, or the process returns from `main` or calls `exit`; not while
//! a panic unwinds through it, and not from a thread on which a panic began.
//! Without a goodbye the manager undoes what the connection held.

use std::cell::Cell;
use std::sync::{Arc, Mutex, Once, Weak};

use crate::client::ClientInner;

thread_local! {
    /// Whether a panic began on this thread. Constant-initialized and
    /// without a destructor, so it can be read from other thread-local
    /// destructors while the thread ends.
    static PANICKED: Cell<bool> = const { Cell::new(false) };
}

/// Clients still alive, for the goodbyes said at process exit.
static LIVE: Mutex<Vec<Weak<ClientInner>>> = Mutex::new(Vec::new());

/// Whether a connection closed by this thread now ends normally.
pub(crate) fn ending_normally() -> bool {
    !std::thread::panicking() && !PANICKED.try_with(Cell::get).unwrap_or(false)
}

/// Records `client`, so that it says goodbye if the process exits while it
/// lives; on the first call, installs the panic hook and the exit handler.
pub(crate) fn register(client: &Arc<ClientInner>) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = PANICKED.try_with(|p| p.set(true));
            previous(info);
        }));
        // SAFETY: `at_exit` is an `extern "C" fn()` that never unwinds.
        unsafe {
            libc::atexit(at_exit);
        }
    });
    let mut live = crate::sync::lock(&LIVE);
    live.retain(|c| c.strong_count() > 0);
    live.push(Arc::downgrade(client));
}

/// Runs when the process returns from `main` or calls `exit` (after this
/// thread's own connections said goodbye in their thread-local
/// destructors): every client still alive says goodbye for its session.
extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(|| {
        if !ending_normally() {
            return;
        }
        // Another thread may hold the list while the process exits under it.
        let Ok(mut live) = LIVE.try_lock() else {
            return;
        };
        let clients: Vec<_> = live.drain(..).filter_map(|c| c.upgrade()).collect();
        drop(live);
        for c in clients {
            c.depart_at_exit();
        }
    });
}
