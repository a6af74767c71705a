//! Locking helpers shared by every layer.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`. Our critical sections never panic half-way through an
/// update, so a poisoned lock still guards consistent data.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
