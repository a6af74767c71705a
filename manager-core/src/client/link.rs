//! One authenticated connection and its call/reply bookkeeping.

use std::collections::{HashMap, HashSet};
use std::io::{IoSlice, Write};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::address::Address;
use crate::auth::{AuthKey, Handshake};
use crate::caps::{adopting, capturing};
use crate::client::{decode_reply, Client, Method};
use crate::error::{Error, Result, WireError};
use crate::transport::Socket;
use crate::wire::codec::{from_slice, to_vec, Encoder};
use crate::wire::frame::{
    read_error, receive, send, FrameReader, FrameWriter, BESIDE_BLOB_MAX, DEFAULT_MAX_FRAME,
};
use crate::wire::message::{
    split_caps, Answer, Hello, Join, Request, Response, Welcome, MAGIC, PROTOCOL_VERSION,
};
use serde_bytes::ByteBuf;

/// Deferred calls are written once this many bytes are buffered.
const UNSENT_LIMIT: usize = 64 * 1024;

/// How long a client waits for a manager to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a goodbye waits for the manager's answer. More than the manager
/// waits for a session's other connections.
pub(crate) const FAREWELL_TIMEOUT: Duration = Duration::from_secs(5);

/// A reply that arrived while another was awaited.
enum Stashed {
    Ok(Vec<u8>, crate::caps::ReplyCaps),
    Err(Error),
}

pub(crate) struct Link {
    pub(crate) id: u64,
    /// The manager's address: proxies to its objects travel as capabilities.
    address: Address,
    pub(crate) socket: Socket,
    reader: FrameReader,
    writer: FrameWriter,
    max_frame: usize,
    next_seq: u64,
    stash: HashMap<u64, Stashed>,
    discarded: HashSet<u64>,
    /// Deferred calls not written yet: a pipeline goes out in one write,
    /// when its first reply is awaited or another call is made.
    unsent: Vec<u8>,
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
        socket.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
        let mut reader = FrameReader::new(DEFAULT_MAX_FRAME);
        let mut writer = FrameWriter::new();
        let hello = Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            reserved: [0; 32],
        };
        let mut noise = Handshake::initiator(key, &to_vec(&hello)?)?;
        let join = Join {
            session,
            encrypt: address.is_encrypted(),
        };
        let first = ByteBuf::from(noise.write(&to_vec(&join)?)?);
        // The hello and the first handshake message leave in one write.
        let mut opening = Vec::new();
        send(&mut writer, &mut opening, &hello)?;
        send(&mut writer, &mut opening, &first)?;
        (&socket).write_all(&opening).map_err(Error::lost)?;
        let answer = receive::<Answer, _>(&mut reader, &socket).map_err(|e| match e {
            // A manager that hangs up instead of answering refused the key.
            Error::ConnectionLost(_) => Error::AuthenticationFailed(format!(
                "the manager at {address} closed the connection during authentication"
            )),
            e => e,
        })?;
        let second = match answer {
            Answer::Noise(m) => m,
            Answer::Refuse(e) => return Err(e.into()),
        };
        let welcome = noise.read(&second).ok_or_else(|| {
            Error::AuthenticationFailed(format!(
                "the manager at {address} did not prove it knows the key"
            ))
        })?;
        let (session, max_frame, encrypted) = match from_slice::<Welcome>(&welcome)? {
            Welcome::Accept {
                session,
                connection: _,
                max_frame,
                encrypted,
            } => (
                session,
                usize::try_from(max_frame).unwrap_or(usize::MAX),
                encrypted,
            ),
            Welcome::Refuse(e) => return Err(e.into()),
        };
        if address.is_encrypted() && !encrypted {
            return Err(Error::Protocol(format!(
                "the manager at {address} offered an unencrypted connection to a tcp: address"
            )));
        }
        if reader.buffered() != 0 {
            return Err(Error::Protocol(format!(
                "the manager at {address} sent bytes before the handshake was over"
            )));
        }
        let keys = noise.finish()?;
        let socket = if encrypted { socket.seal(keys) } else { socket };
        socket.set_read_timeout(None)?;
        socket.set_write_timeout(None)?;
        reader.set_max(max_frame);
        let link = Link {
            id,
            address: address.clone(),
            socket,
            reader,
            writer,
            max_frame,
            next_seq: 1,
            stash: HashMap::new(),
            discarded: HashSet::new(),
            unsent: Vec::new(),
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

    /// Sends a call and returns its sequence number. A `deferred` call may
    /// stay in this link's buffer until [`Link::flush`].
    #[inline]
    pub(crate) fn send(
        &mut self,
        object: u64,
        method: u32,
        deferred: bool,
        args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
    ) -> Result<u64> {
        self.send_with(object, method, deferred, None, args)
    }

    /// [`Link::send`], where `args` may leave `blob`, one of the arguments'
    /// byte strings, out of the frame buffer (see [`Encoder::put_bytes`]):
    /// it is then written from where it is, around the rest of the frame.
    pub(crate) fn send_with(
        &mut self,
        object: u64,
        method: u32,
        deferred: bool,
        blob: Option<&[u8]>,
        args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
    ) -> Result<u64> {
        if let Some(why) = &self.broken {
            return Err(Error::ConnectionLost(why.clone()));
        }
        let seq = self.next_seq;
        let writer = &mut self.writer;
        let (encoded, caps) = capturing(|| {
            let mut e = writer.begin();
            if let (Some(b), false) = (blob, deferred) {
                e.allow_blob(b);
            }
            args(&mut e)?;
            Ok::<_, Error>(e.blob())
        });
        let mark = encoded?;
        let own: Vec<u64> = caps
            .iter()
            .filter(|c| c.address == self.address)
            .map(|c| c.object)
            .collect();
        let mut caps_len = 0;
        // A list, even empty, tells the manager that the arguments embed
        // proxies: it then binds those of other managers while decoding.
        if !caps.is_empty() {
            let mut p = self.writer.payload();
            let before = p.len();
            p.put(&own)?;
            caps_len = (p.len() - before) as u32;
        }
        // The encoder leaves out only the slice it was allowed: `blob`.
        let blob = mark.zip(blob);
        let blob = match blob {
            Some((at, b)) if self.writer.payload_len() + MAX_BESIDE_SLACK > BESIDE_BLOB_MAX => {
                // Too much else in the frame for the manager to hold beside
                // the byte string: it goes inline after all.
                self.writer.insert_at(at, b);
                None
            }
            blob => blob,
        };
        let header = if caps_len == 0 {
            Request::Call {
                seq,
                object,
                method,
            }
        } else {
            Request::CallCaps {
                seq,
                object,
                method,
                caps_len,
            }
        };
        self.writer
            .finish_with(&header, self.max_frame, blob.map(|(at, b)| (at, b.len())))?;
        self.next_seq += 1;
        if let Some((at, b)) = blob {
            self.flush()?;
            let (before, after) = self.writer.frame_around(at);
            if let Err(e) = write_all_vectored(&self.socket, &mut [before, b, after]) {
                return Err(self.fail(Error::lost(e)));
            }
            return Ok(seq);
        }
        if deferred || !self.unsent.is_empty() {
            self.unsent.extend_from_slice(self.writer.frame());
            if !deferred || self.unsent.len() >= UNSENT_LIMIT {
                self.flush()?;
            }
            return Ok(seq);
        }
        if let Err(e) = (&self.socket).write_all(self.writer.frame()) {
            return Err(self.fail(Error::lost(e)));
        }
        Ok(seq)
    }

    /// Writes the deferred calls not written yet.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.unsent.is_empty() {
            return Ok(());
        }
        let r = (&self.socket).write_all(&self.unsent);
        self.unsent.clear();
        if self.unsent.capacity() > UNSENT_LIMIT * 4 {
            self.unsent = Vec::new();
        }
        r.map_err(|e| self.fail(Error::lost(e)))
    }

    /// Decodes a result of `method` whose embedded proxies have references
    /// waiting in `caps`; gives back the ones no proxy took.
    fn adopt<R: DeserializeOwned>(
        &mut self,
        client: &Client,
        bytes: &[u8],
        caps: crate::caps::ReplyCaps,
        method: Method,
    ) -> Result<R> {
        let Some(caps) = caps else {
            return decode_reply(bytes, method);
        };
        let (r, left) = adopting(client, caps, || decode_reply(bytes, method));
        for object in left {
            self.release(object);
        }
        r
    }

    /// Waits for the reply to call `seq`, of `method`, keeping replies to
    /// other calls. `client` is the client this link serves: decoded
    /// proxies join it.
    pub(crate) fn wait<R: DeserializeOwned>(
        &mut self,
        seq: u64,
        client: &Client,
        method: Method,
    ) -> Result<R> {
        self.flush()?;
        if let Some(s) = self.stash.remove(&seq) {
            return match s {
                Stashed::Ok(bytes, caps) => self.adopt(client, &bytes, caps, method),
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
            let (s, ok, payload, caps) = match response {
                Response::Ok { seq: s } => (s, true, payload, None),
                Response::OkCaps { seq: s, caps_len } => {
                    let (result, caps) = split_caps(payload, caps_len)?;
                    (s, true, result, Some(from_slice::<Vec<(u64, u64)>>(caps)?))
                }
                Response::Err { seq: s } => (s, false, payload, None),
                Response::Fatal => {
                    let e = from_slice::<WireError>(payload).map_or_else(|e| e, Error::from);
                    return Err(self.fail(e));
                }
                Response::Farewell => {
                    return Err(self.fail(Error::Protocol(
                        "the manager said farewell to a connection that did not say goodbye".into(),
                    )))
                }
            };
            if s == seq {
                if !ok {
                    return Err(from_slice::<WireError>(payload)?.into());
                }
                if caps.is_none() {
                    return decode_reply(payload, method);
                }
                let bytes = payload.to_vec();
                return self.adopt(client, &bytes, caps, method);
            }
            let stashed = if ok {
                Stashed::Ok(payload.to_vec(), caps)
            } else {
                Stashed::Err(from_slice::<WireError>(payload).map_or_else(|e| e, Error::from))
            };
            if self.discarded.remove(&s) {
                self.drop_stashed(stashed);
            } else {
                self.stash.insert(s, stashed);
            }
        }
    }

    /// Gives back the references of a reply nobody will read.
    fn drop_stashed(&mut self, s: Stashed) {
        if let Stashed::Ok(_, Some(caps)) = s {
            for (object, _) in caps {
                self.release(object);
            }
        }
    }

    /// Forgets the reply to `seq` (its `Pending` was dropped). The call
    /// itself still runs: it is sent now if it was still buffered.
    pub(crate) fn discard(&mut self, seq: u64) {
        let _ = self.flush();
        match self.stash.remove(&seq) {
            Some(s) => self.drop_stashed(s),
            None if seq < self.next_seq => {
                self.discarded.insert(seq);
            }
            None => {}
        }
    }

    /// Sends a call and waits for its reply; `blob` as in [`Link::send_with`].
    #[inline]
    pub(crate) fn call<R: DeserializeOwned>(
        &mut self,
        client: &Client,
        object: u64,
        method: Method,
        blob: Option<&[u8]>,
        args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
    ) -> Result<R> {
        let seq = self.send_with(object, method.index, false, blob, args)?;
        self.wait(seq, client, method)
    }

    /// Ends this connection normally: the manager settles what it held
    /// (and with `session`, what every connection of the session held) and
    /// its references, answers, and closes. Waits for that answer for at
    /// most [`FAREWELL_TIMEOUT`]; the link is unusable afterwards.
    pub(crate) fn goodbye(&mut self, session: bool) {
        if self.broken.is_some() || self.flush().is_err() {
            return;
        }
        self.writer.begin();
        let sent = self.writer.send(
            &mut &self.socket,
            &Request::Goodbye { session },
            self.max_frame,
        );
        self.mark_broken("the connection was closed by this client");
        if sent.is_err()
            || self
                .socket
                .set_read_timeout(Some(FAREWELL_TIMEOUT))
                .is_err()
        {
            return;
        }
        let deadline = std::time::Instant::now() + FAREWELL_TIMEOUT;
        // Replies to calls whose `Pending` was dropped may come first.
        while std::time::Instant::now() < deadline {
            let Ok(Some(body)) = self.reader.next(&mut &self.socket) else {
                return;
            };
            if let Ok((Response::Farewell, _)) = postcard::take_from_bytes::<Response>(body) {
                return;
            }
        }
    }

    /// Drops one of the session's references to `object`; no reply.
    pub(crate) fn release(&mut self, object: u64) {
        if self.broken.is_some() || self.flush().is_err() {
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

/// Says goodbye on `socket`, a connection of this client no thread is using,
/// without waiting for the answer: the manager settles it before it answers
/// the session's goodbye on the main connection.
pub(crate) fn say_goodbye(socket: &Socket) {
    let mut writer = FrameWriter::new();
    writer.begin();
    let _ = writer.send(
        &mut &*socket,
        &Request::Goodbye { session: false },
        DEFAULT_MAX_FRAME,
    );
}

/// Room for the header and prefix of a frame, beside its payload.
const MAX_BESIDE_SLACK: usize = 64;

/// Writes `bufs` whole, in as few vectored writes as the socket allows.
fn write_all_vectored(socket: &Socket, bufs: &mut [&[u8]]) -> std::io::Result<()> {
    let mut first = 0;
    while first < bufs.len() {
        if bufs[first].is_empty() {
            first += 1;
            continue;
        }
        let slices: Vec<IoSlice<'_>> = bufs[first..].iter().map(|b| IoSlice::new(b)).collect();
        match (&*socket).write_vectored(&slices) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "the socket took no bytes",
                ))
            }
            Ok(mut n) => {
                // Skip what was written: whole buffers, then part of one.
                while n > 0 && first < bufs.len() {
                    let b = bufs[first];
                    if n >= b.len() {
                        n -= b.len();
                        first += 1;
                    } else {
                        bufs[first] = &b[n..];
                        n = 0;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deferred calls whose replies nobody waited for still run.
        let _ = self.flush();
    }
}
