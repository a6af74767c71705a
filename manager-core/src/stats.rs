//! A snapshot of a manager's counters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a manager holds and has done, from [`Client::stats`](crate::Client::stats).
///
/// ```
/// # fn main() -> manager::Result<()> {
/// let mgr = manager::Manager::builder().spawn_thread()?;
/// let before = mgr.stats()?.objects;
/// let v = mgr.value(1i32)?;
/// assert_eq!(mgr.stats()?.objects, before + 1);
/// drop(v);
/// assert_eq!(mgr.stats()?.objects, before);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Live objects.
    pub objects: u64,
    /// Connections open now (authenticated ones).
    pub connections: u64,
    /// Calls served since the manager started. A connection's calls are
    /// added as each batch it sent is read through, so calls sent in the
    /// same pipeline as this `stats` call may not be counted yet.
    pub calls: u64,
    /// Live objects by type name.
    pub objects_by_type: BTreeMap<String, u64>,
    /// Client sessions alive now.
    pub sessions: u64,
    /// Names published now.
    pub names: u64,
    /// Calls blocked in the manager now, waiting for a lock, a permit, an
    /// item, a notification (`Context::wait_until`).
    pub blocked_calls: u64,
    /// Times the manager's poller spun for the next request before
    /// sleeping, since it started (busy-polling, see
    /// [`ManagerBuilder::busy_poll`](crate::ManagerBuilder::busy_poll)).
    pub busy_polls: u64,
    /// Of those, the spins that caught a request (or another event) before
    /// their time was up.
    pub busy_polls_caught: u64,
    /// The event loop's polls: one per CPU the manager may run on (its
    /// affinity mask when it started), at most eight. Each connection is
    /// watched by one of them, and each has a thread of its own leading
    /// it, so that clients on different polls are served side by side.
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().spawn_thread()?;
    /// let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    /// assert_eq!(mgr.stats()?.polls, cpus.min(8) as u64);
    /// # Ok(()) }
    /// ```
    pub polls: u64,
}
