//! One authenticated connection and its call/reply bookkeeping.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::address::Address;
use crate::auth::{random_bytes, AuthKey, CLIENT_LABEL, SERVER_LABEL};
use crate::error::{Error, Result, WireError};
use crate::transport::Socket;
use crate::wire::codec::{from_slice, Encoder};
use crate::wire::frame::{read_error, receive, send, FrameReader, FrameWriter, DEFAULT_MAX_FRAME};
use crate::wire::message::{
    Challenge, Hello, Proof, Request, Response, Welcome, MAGIC, PROTOCOL_VERSION,
};

/// How long a client waits for a manager to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A reply that arrived while another was awaited.
enum Stashed {
    Ok(Vec<u8>),
    Err(Error),
}

pub(crate) struct Link {
    pub(crate) id: u64,
    pub(crate) socket: Socket,
    reader: FrameReader,
    writer: FrameWriter,
    max_frame: usize,
    next_seq: u64,
    stash: HashMap<u64, Stashed>,
    discarded: HashSet<u64>,
    broken: Option<String>,
}

/// What the manager told a new connection about itself.
pub(crate) struct Welcomed {
    pub(crate) session: u64,
    pub(crate) max_frame: usize,
}

impl Link {
    /// Connects and authenticates; joins `session`, or opens a new one.
    pub(crate) fn open(
        id: u64,
        address: &Address,
        key: &AuthKey,
        session: Option<u64>,
    ) -> Result<(Link, Welcomed)> {
        let socket = Socket::connect(address)?;
        socket.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        let mut reader = FrameReader::new(DEFAULT_MAX_FRAME);
        let mut writer = FrameWriter::new();
        let nonce = random_bytes::<32>();
        let hello = Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            nonce,
        };
        send(&mut writer, &socket, &hello)?;
        let theirs = match receive::<Challenge, _>(&mut reader, &socket)? {
            Challenge::Nonce(n) => n,
            Challenge::Refuse(e) => return Err(e.into()),
        };
        let proof = Proof {
            proof: key.proof(CLIENT_LABEL, &nonce, &theirs),
            session,
        };
        send(&mut writer, &socket, &proof)?;
        let welcome = receive::<Welcome, _>(&mut reader, &socket).map_err(|e| match e {
            // A manager that hangs up instead of answering the proof refused it.
            Error::ConnectionLost(_) => Error::AuthenticationFailed(format!(
                "the manager at {address} closed the connection during authentication"
            )),
            e => e,
        })?;
        let (session, max_frame) = match welcome {
            Welcome::Accept {
                proof,
                session,
                connection: _,
                max_frame,
            } => {
                if !key.verify(SERVER_LABEL, &nonce, &theirs, &proof) {
                    return Err(Error::AuthenticationFailed(format!(
                        "the manager at {address} did not prove it knows the key"
                    )));
                }
                (session, usize::try_from(max_frame).unwrap_or(usize::MAX))
            }
            Welcome::Refuse(e) => return Err(e.into()),
        };
        socket.set_read_timeout(None)?;
        reader.set_max(max_frame);
        let link = Link {
            id,
            socket,
            reader,
            writer,
            max_frame,
            next_seq: 1,
            stash: HashMap::new(),
            discarded: HashSet::new(),
            broken: None,
        };
        Ok((link, Welcomed { session, max_frame }))
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    pub(crate) fn mark_broken(&mut self, why: &str) {
        self.broken.get_or_insert_with(|| why.to_owned());
    }

    fn fail(&mut self, e: Error) -> Error {
        if matches!(e, Error::ConnectionLost(_) | Error::Io(_)) || self.broken.is_none() {
            self.broken = Some(e.to_string());
        }
        e
    }

    /// Sends a call and returns its sequence number.
    #[inline]
    pub(crate) fn send(
        &mut self,
        object: u64,
        method: u32,
        args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
    ) -> Result<u64> {
        if let Some(why) = &self.broken {
            return Err(Error::ConnectionLost(why.clone()));
        }
        let seq = self.next_seq;
        args(&mut self.writer.begin())?;
        self.writer.finish(
            &Request::Call {
                seq,
                object,
                method,
            },
            self.max_frame,
        )?;
        if let Err(e) = (&self.socket).write_all(self.writer.frame()) {
            return Err(self.fail(Error::lost(e)));
        }
        self.next_seq += 1;
        Ok(seq)
    }

    /// Waits for the reply to call `seq`, keeping replies to other calls.
    pub(crate) fn wait<R: DeserializeOwned>(&mut self, seq: u64) -> Result<R> {
        if let Some(s) = self.stash.remove(&seq) {
            return match s {
                Stashed::Ok(bytes) => from_slice(&bytes),
                Stashed::Err(e) => Err(e),
            };
        }
        loop {
            if let Some(why) = &self.broken {
                return Err(Error::ConnectionLost(why.clone()));
            }
            let body = match self.reader.next(&mut &self.socket) {
                Ok(Some(body)) => body,
                Ok(None) => {
                    return Err(self.fail(Error::ConnectionLost(
                        "the manager closed the connection".into(),
                    )))
                }
                Err(e) => return Err(self.fail(read_error(e))),
            };
            let (response, payload) = match postcard::take_from_bytes::<Response>(body) {
                Ok(x) => x,
                Err(e) => {
                    return Err(self.fail(Error::Protocol(format!(
                        "malformed reply from the manager: {e}"
                    ))))
                }
            };
            match response {
                Response::Ok { seq: s } if s == seq => return from_slice(payload),
                Response::Err { seq: s } if s == seq => {
                    return Err(from_slice::<WireError>(payload)?.into())
                }
                Response::Ok { seq: s } => {
                    if !self.discarded.remove(&s) {
                        self.stash.insert(s, Stashed::Ok(payload.to_vec()));
                    }
                }
                Response::Err { seq: s } => {
                    if !self.discarded.remove(&s) {
                        let e = from_slice::<WireError>(payload).map_or_else(|e| e, Error::from);
                        self.stash.insert(s, Stashed::Err(e));
                    }
                }
                Response::Fatal => {
                    let e = from_slice::<WireError>(payload).map_or_else(|e| e, Error::from);
                    return Err(self.fail(e));
                }
            }
        }
    }

    /// Forgets the reply to `seq` (its `Pending` was dropped).
    pub(crate) fn discard(&mut self, seq: u64) {
        if self.stash.remove(&seq).is_none() && seq < self.next_seq {
            self.discarded.insert(seq);
        }
    }

    /// Sends a call and waits for its reply.
    #[inline]
    pub(crate) fn call<R: DeserializeOwned>(
        &mut self,
        object: u64,
        method: u32,
        args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
    ) -> Result<R> {
        let seq = self.send(object, method, args)?;
        self.wait(seq)
    }

    /// Drops one of the session's references to `object`; no reply.
    pub(crate) fn release(&mut self, object: u64) {
        if self.broken.is_some() {
            return;
        }
        self.writer.begin();
        if self
            .writer
            .finish(&Request::Release { object }, self.max_frame)
            .is_ok()
        {
            if let Err(e) = (&self.socket).write_all(self.writer.frame()) {
                self.fail(Error::lost(e));
            }
        }
    }
}
