//! Stopping a serving manager on SIGINT or SIGTERM, cleanly: the signal is
//! read by a thread (signal-hook's self-pipe), which then stops the manager
//! the way `shutdown_manager()` does, so calls in progress still get their
//! replies.

use std::thread::JoinHandle;

use signal_hook::iterator::{Handle, Signals};

use crate::error::Result;

/// The signals a dedicated server stops on.
pub(crate) const STOP: &[i32] = &[signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];

/// Runs `stop` on the first of `signals`, until dropped.
pub(crate) struct OnSignal {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl OnSignal {
    pub(crate) fn new(signals: &[i32], stop: impl FnOnce() + Send + 'static) -> Result<OnSignal> {
        let mut incoming = Signals::new(signals)?;
        let handle = incoming.handle();
        let thread = std::thread::Builder::new()
            .name("manager-signals".into())
            .spawn(move || {
                if let Some(signal) = incoming.forever().next() {
                    tracing::info!(signal, "stopping the manager on a signal");
                    stop();
                }
            })?;
        Ok(OnSignal {
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for OnSignal {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
