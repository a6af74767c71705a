//! The one error type of the crate, and its wire form.

use serde::{Deserialize, Serialize};

/// A specialized `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when talking to a manager.
///
/// Variants with data carry what a caller needs to react; the others carry a
/// message for people. Match those with `{ .. }`:
///
/// ```
/// use manager::Error;
///
/// fn explain(e: &Error) -> &'static str {
///     match e {
///         Error::AuthenticationFailed { .. } => "wrong key",
///         Error::IndexOutOfRange { index, len } if index >= len => "past the end",
///         Error::RemotePanic { .. } => "the method panicked in the manager",
///         _ => "something else",
///     }
/// }
/// # let _ = explain;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on this side: a socket could not be created, a file not read.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The connection to the manager closed or broke before the reply came.
    #[error("connection to the manager lost: {0}")]
    ConnectionLost(String),
    /// The peer does not know the authentication key (or does not prove it).
    #[error("authentication failed: {0}")]
    AuthenticationFailed(String),
    /// A frame or an encoded value was malformed, too large, or of the wrong shape.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The object does not exist (never did, or was freed).
    #[error("no such object: {0}")]
    NoSuchObject(String),
    /// No object is published under this name.
    #[error("no object is published under the name {0:?}")]
    NoSuchName(String),
    /// The proxy was built from another interface than the object's.
    #[error("interface mismatch: {0}")]
    InterfaceMismatch(String),
    /// The manager was not told to construct this type (`ManagerBuilder::register`).
    #[error("type not registered with this manager: {0}")]
    NotRegistered(String),
    /// A wait ran out of time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A barrier was broken, aborted or reset while waiting, or a wait on it timed out.
    #[error("the barrier is broken")]
    BrokenBarrier,
    /// A list index is past its end.
    #[error("index {index} out of range for length {len}")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The length of the list at the time.
        len: usize,
    },
    /// A lock, permit or condition was released or used by a caller that does not hold it.
    #[error("not held: {0}")]
    NotHeld(String),
    /// `task_done` was called more times than items were put.
    #[error("task_done() called more times than items were put")]
    TaskDoneTooOften,
    /// A method panicked inside the manager; the manager goes on serving.
    #[error("method {type_name}::{method} panicked in the manager: {message}")]
    RemotePanic {
        /// Full path of the object's type.
        type_name: String,
        /// The method that panicked.
        method: String,
        /// The panic message.
        message: String,
    },
    /// The manager is shutting down or has shut down.
    #[error("the manager is shutting down")]
    ServerShutdown,
    /// A limit of the manager was reached (connections, objects, frame size).
    #[error("limit reached: {0}")]
    LimitReached(String),
}

impl Error {
    pub(crate) fn protocol(msg: impl Into<String>) -> Self {
        Error::Protocol(msg.into())
    }

    pub(crate) fn lost(msg: impl std::fmt::Display) -> Self {
        Error::ConnectionLost(msg.to_string())
    }

    /// The form in which a server sends this error to a client.
    pub(crate) fn to_wire(&self) -> WireError {
        match self {
            Error::Io(e) => WireError::Io(e.to_string()),
            Error::ConnectionLost(m) => WireError::ConnectionLost(m.clone()),
            Error::AuthenticationFailed(m) => WireError::AuthenticationFailed(m.clone()),
            Error::Protocol(m) => WireError::Protocol(m.clone()),
            Error::NoSuchObject(m) => WireError::NoSuchObject(m.clone()),
            Error::NoSuchName(m) => WireError::NoSuchName(m.clone()),
            Error::InterfaceMismatch(m) => WireError::InterfaceMismatch(m.clone()),
            Error::NotRegistered(m) => WireError::NotRegistered(m.clone()),
            Error::Timeout(m) => WireError::Timeout(m.clone()),
            Error::BrokenBarrier => WireError::BrokenBarrier,
            Error::IndexOutOfRange { index, len } => WireError::IndexOutOfRange {
                index: *index as u64,
                len: *len as u64,
            },
            Error::NotHeld(m) => WireError::NotHeld(m.clone()),
            Error::TaskDoneTooOften => WireError::TaskDoneTooOften,
            Error::RemotePanic {
                type_name,
                method,
                message,
            } => WireError::RemotePanic {
                type_name: type_name.clone(),
                method: method.clone(),
                message: message.clone(),
            },
            Error::ServerShutdown => WireError::ServerShutdown,
            Error::LimitReached(m) => WireError::LimitReached(m.clone()),
        }
    }
}

/// An `Error` crosses the wire in a stable form of its own, so a shared method
/// may return `manager::Result<T>` (an error from a proxy it called, say).
impl Serialize for Error {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_wire().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Error {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        WireError::deserialize(d).map(Error::from)
    }
}

/// [`Error`] as it travels from server to client. Kept separate so the public
/// enum can hold non-serializable data (`std::io::Error`) and grow freely.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum WireError {
    Io(String),
    ConnectionLost(String),
    AuthenticationFailed(String),
    Protocol(String),
    NoSuchObject(String),
    NoSuchName(String),
    InterfaceMismatch(String),
    NotRegistered(String),
    Timeout(String),
    BrokenBarrier,
    IndexOutOfRange {
        index: u64,
        len: u64,
    },
    NotHeld(String),
    TaskDoneTooOften,
    RemotePanic {
        type_name: String,
        method: String,
        message: String,
    },
    ServerShutdown,
    LimitReached(String),
}

impl From<WireError> for Error {
    fn from(w: WireError) -> Self {
        match w {
            WireError::Io(m) => Error::Io(std::io::Error::other(m)),
            WireError::ConnectionLost(m) => Error::ConnectionLost(m),
            WireError::AuthenticationFailed(m) => Error::AuthenticationFailed(m),
            WireError::Protocol(m) => Error::Protocol(m),
            WireError::NoSuchObject(m) => Error::NoSuchObject(m),
            WireError::NoSuchName(m) => Error::NoSuchName(m),
            WireError::InterfaceMismatch(m) => Error::InterfaceMismatch(m),
            WireError::NotRegistered(m) => Error::NotRegistered(m),
            WireError::Timeout(m) => Error::Timeout(m),
            WireError::BrokenBarrier => Error::BrokenBarrier,
            WireError::IndexOutOfRange { index, len } => Error::IndexOutOfRange {
                index: usize::try_from(index).unwrap_or(usize::MAX),
                len: usize::try_from(len).unwrap_or(usize::MAX),
            },
            WireError::NotHeld(m) => Error::NotHeld(m),
            WireError::TaskDoneTooOften => Error::TaskDoneTooOften,
            WireError::RemotePanic {
                type_name,
                method,
                message,
            } => Error::RemotePanic {
                type_name,
                method,
                message,
            },
            WireError::ServerShutdown => Error::ServerShutdown,
            WireError::LimitReached(m) => Error::LimitReached(m),
        }
    }
}

impl From<postcard::Error> for Error {
    fn from(e: postcard::Error) -> Self {
        Error::Protocol(format!("cannot encode or decode a value: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_survives_the_wire() {
        let cases = vec![
            Error::IndexOutOfRange { index: 7, len: 3 },
            Error::RemotePanic {
                type_name: "a::B".into(),
                method: "m".into(),
                message: "boom".into(),
            },
            Error::NotHeld("lock".into()),
            Error::BrokenBarrier,
        ];
        for e in cases {
            let before = e.to_string();
            let bytes = postcard::to_allocvec(&e.to_wire()).unwrap();
            let back: WireError = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(Error::from(back).to_string(), before);
        }
    }
}
