//! The messages of the protocol: the handshake, then calls and replies.
//!
//! After the handshake every frame body is a [`Request`] or [`Response`]
//! header followed by a payload of postcard values (arguments, a result, or
//! an encoded error).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, WireError};

/// Sent first by a client; names the protocol so a stray peer is refused early.
pub(crate) const MAGIC: [u8; 8] = *b"manager\0";
/// Bumped on any incompatible change to the messages below.
pub(crate) const PROTOCOL_VERSION: u32 = 6;

/// Client → server, in clear: the protocol, so that a stray peer or another
/// version is refused early. Laid out as every earlier version's hello, so
/// that a manager of any version reads the version and refuses it clearly.
/// Both sides take its encoding as the Noise prologue.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) magic: [u8; 8],
    pub(crate) version: u32,
    /// Zero; a nonce in versions before 4.
    pub(crate) reserved: [u8; 32],
}

/// Server → client, in clear: the second handshake message, or why the
/// client is refused before it proved the key (another version, the wrong
/// key). `Refuse` keeps the variant index it had in earlier versions.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Answer {
    Noise(serde_bytes::ByteBuf),
    Refuse(WireError),
}

/// Client → server, inside the first handshake message (after the hello,
/// a frame of its own): the session to join, and whether the connection is
/// to be encrypted.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Join {
    pub(crate) session: Option<u64>,
    pub(crate) encrypt: bool,
}

/// Server → client, inside the second handshake message: the connection's
/// identity and whether what follows is encrypted, or why the manager will
/// not serve it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Welcome {
    Accept {
        session: u64,
        connection: u64,
        max_frame: u64,
        encrypted: bool,
    },
    Refuse(WireError),
}

/// The object id of the manager itself: its methods create, find and release objects.
pub(crate) const CONTROL: u64 = 0;

/// Call numbers and object ids travel as eight little-endian bytes, not
/// as varints: an object id starts at a random point (44 bits, a 7-byte
/// varint) and a call number passes three bytes within the first 16,384
/// calls, so a fixed width is hardly longer, and it is one load or store
/// where a varint is a loop of seven (`wire/header.rs`). Since version 6.
mod fixed {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        v.to_le_bytes().serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        <[u8; 8]>::deserialize(d).map(u64::from_le_bytes)
    }
}

/// Client → server.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Call `method` of `object`; the payload holds the arguments.
    Call {
        #[serde(with = "fixed")]
        seq: u64,
        #[serde(with = "fixed")]
        object: u64,
        method: u32,
    },
    /// A call whose arguments embed proxies: the payload's last `caps_len`
    /// bytes list the ids of the manager's own objects among them
    /// (`Vec<u64>`, empty if all are other managers'), the rest is the
    /// arguments.
    CallCaps {
        #[serde(with = "fixed")]
        seq: u64,
        #[serde(with = "fixed")]
        object: u64,
        method: u32,
        caps_len: u32,
    },
    /// Drop one of this session's references to `object`. No reply.
    Release {
        #[serde(with = "fixed")]
        object: u64,
    },
    /// This connection ends normally (with `session`: every connection of
    /// this session does); nothing follows. The manager settles what the
    /// connection held and its references, then answers
    /// [`Response::Farewell`] and closes.
    Goodbye { session: bool },
    /// The caller of call `seq` left (an async call's future was dropped):
    /// if that call waits parked, it gives up now, before it takes anything
    /// (an item, a lock, a permit), and answers with an error nobody reads.
    /// A call that is not waiting is not touched. Sent only as the next
    /// request after the call (by the async face, which makes one waiting
    /// call at a time on a connection). Since version 5.
    Cancel {
        #[serde(with = "fixed")]
        seq: u64,
    },
}

/// Server → client.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    /// Call `seq` returned; the payload holds its result.
    Ok {
        #[serde(with = "fixed")]
        seq: u64,
    },
    /// Call `seq` returned a result embedding proxies: the payload's last
    /// `caps_len` bytes list them (`Vec<(object, fingerprint)>`), each with a
    /// reference already taken for the caller's session.
    OkCaps {
        #[serde(with = "fixed")]
        seq: u64,
        caps_len: u32,
    },
    /// Call `seq` failed; the payload holds a `WireError`.
    Err {
        #[serde(with = "fixed")]
        seq: u64,
    },
    /// The connection is being closed; the payload holds a `WireError` saying why.
    Fatal,
    /// The answer to [`Request::Goodbye`]: what the connection (or session)
    /// held is settled and its references are dropped.
    Farewell,
}

/// Splits a payload whose last `caps_len` bytes are a capability list.
pub(crate) fn split_caps(payload: &[u8], caps_len: u32) -> Result<(&[u8], &[u8])> {
    let caps_len = caps_len as usize;
    if caps_len > payload.len() {
        return Err(Error::Protocol(
            "a capability list longer than its message".into(),
        ));
    }
    Ok(payload.split_at(payload.len() - caps_len))
}
