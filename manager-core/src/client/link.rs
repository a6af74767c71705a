//! One authenticated connection and its call/reply bookkeeping.

use rustc_hash::{FxHashMap, FxHashSet};
use std::io::Write;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::address::Address;
use crate::auth::{AuthKey, Handshake};
use crate::caps::{adopting, capturing};
use crate::client::{decode_reply, Client, Method};
use crate::error::{Error, Result, WireError};
use crate::transport::spin::Spin;
use crate::transport::{wait_ready, Socket};
use crate::wire::codec::{from_slice, to_vec, Encoder};
use crate::wire::frame::{
    read_error, receive, send, FrameReader, FrameWriter, Nonblocking, BESIDE_BLOB_MAX,
    DEFAULT_MAX_FRAME,
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
    inbox: Inbox,
    writer: FrameWriter,
    max_frame: usize,
    next_seq: u64,
    /// Deferred calls not written yet: a pipeline goes out in one write,
    /// when its first reply is awaited or another call is made.
    unsent: Vec<u8>,
    broken: Option<String>,
    /// The spin before blocking for a reply (`transport::spin`).
    spin: Spin,
}

/// The reading side of a link: frames arriving, and the replies read
/// before anyone asked for them.
struct Inbox {
    reader: FrameReader,
    stash: FxHashMap<u64, Stashed>,
    /// Calls whose replies nobody will read.
    discarded: FxHashSet<u64>,
    /// Objects whose references arrived in discarded replies: released
    /// once the link is free to write.
    orphans: Vec<u64>,
}

/// What the manager told a new connection about itself.
pub(crate) struct Welcomed {
    pub(crate) session: u64,
    pub(crate) max_frame: usize,
}

/// A connection just authenticated: the socket (sealed if encrypted), the
/// frames read and written on it so far, and what the manager said.
pub(crate) struct Opened {
    pub(crate) socket: Socket,
    pub(crate) reader: FrameReader,
    pub(crate) writer: FrameWriter,
    pub(crate) welcomed: Welcomed,
}

/// Connects to `address` and authenticates with `key`, joining `session`
/// or opening a new one. Blocks (for at most the handshake's timeout).
pub(crate) fn handshake(address: &Address, key: &AuthKey, session: Option<u64>) -> Result<Opened> {
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
    Ok(Opened {
        socket,
        reader,
        writer,
        welcomed: Welcomed { session, max_frame },
    })
}

impl Link {
    /// Connects and authenticates; joins `session`, or opens a new one.
    pub(crate) fn open(
        id: u64,
        address: &Address,
        key: &AuthKey,
        session: Option<u64>,
    ) -> Result<(Link, Welcomed)> {
        let Opened {
            socket,
            reader,
            writer,
            welcomed,
        } = handshake(address, key, session)?;
        let max_frame = welcomed.max_frame;
        let link = Link {
            id,
            address: address.clone(),
            socket,
            inbox: Inbox {
                reader,
                stash: FxHashMap::default(),
                discarded: FxHashSet::default(),
                orphans: Vec::new(),
            },
            writer,
            max_frame,
            next_seq: 1,
            unsent: Vec::new(),
            broken: None,
            spin: Spin::new(),
        };
        Ok((link, welcomed))
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
        let blob = if deferred { None } else { blob };
        let blob = encode_call(
            &mut self.writer,
            &self.address,
            self.max_frame,
            (seq, object, method),
            blob,
            args,
        )?;
        self.next_seq += 1;
        if let Some((at, b)) = blob {
            self.flush()?;
            let (before, after) = self.writer.frame_around(at);
            let r = push(&self.socket, &mut self.inbox, &mut [before, b, after]);
            return self.wrote(r).map(|()| seq);
        }
        if deferred || !self.unsent.is_empty() {
            self.unsent.extend_from_slice(self.writer.frame());
            if !deferred || self.unsent.len() >= UNSENT_LIMIT {
                self.flush()?;
            }
            return Ok(seq);
        }
        let r = push(&self.socket, &mut self.inbox, &mut [self.writer.frame()]);
        self.wrote(r).map(|()| seq)
    }

    /// Writes the deferred calls not written yet.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.unsent.is_empty() {
            return Ok(());
        }
        let r = push(&self.socket, &mut self.inbox, &mut [&self.unsent]);
        self.unsent.clear();
        if self.unsent.capacity() > UNSENT_LIMIT * 4 {
            self.unsent = Vec::new();
        }
        self.wrote(r)
    }

    /// Settles a write: a failure breaks the link; references that arrived
    /// in discarded replies meanwhile are given back.
    fn wrote(&mut self, r: Result<()>) -> Result<()> {
        if let Err(e) = r {
            return Err(self.fail(e));
        }
        self.release_orphans();
        Ok(())
    }

    /// Gives back the references that arrived in replies nobody reads.
    fn release_orphans(&mut self) {
        while let Some(object) = self.inbox.orphans.pop() {
            self.release(object);
        }
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
        // Replies mostly come in the order their calls were sent: an empty
        // stash is not searched.
        let stashed = if self.inbox.stash.is_empty() {
            None
        } else {
            self.inbox.stash.remove(&seq)
        };
        if let Some(s) = stashed {
            return match s {
                Stashed::Ok(bytes, caps) => self.adopt(client, &bytes, caps, method),
                Stashed::Err(e) => Err(e),
            };
        }
        loop {
            if let Some(why) = &self.broken {
                return Err(Error::ConnectionLost(why.clone()));
            }
            let inbox = &mut self.inbox;
            // The cheap checks first: a pinned process never looks at the
            // record layer's buffer (a lock) for a spin it will not make.
            if client.busy_polls()
                && self.spin.take_turn()
                && !inbox.reader.holds_frame()
                && !self.socket.has_buffered()
            {
                let socket = &self.socket;
                self.spin.spin(None, || socket.readable_now());
            }
            let body = match inbox.reader.next(&mut &self.socket) {
                Ok(Some(body)) => body,
                Ok(None) => {
                    return Err(self.fail(Error::ConnectionLost(
                        "the manager closed the connection".into(),
                    )))
                }
                Err(e) => return Err(self.fail(read_error(e))),
            };
            let reply = match Reply::parse(body) {
                Ok(reply) => reply,
                Err(e) => return Err(self.fail(e)),
            };
            if reply.seq != seq {
                let s = reply.seq;
                let reply = reply.stashed();
                inbox.keep(s, reply);
                self.release_orphans();
                continue;
            }
            if !reply.ok {
                return Err(from_slice::<WireError>(reply.payload)?.into());
            }
            if reply.caps.is_none() {
                return decode_reply(reply.payload, method);
            }
            let (bytes, caps) = (reply.payload.to_vec(), reply.caps);
            return self.adopt(client, &bytes, caps, method);
        }
    }

    /// Forgets the reply to `seq` (its `Pending` was dropped). The call
    /// itself still runs: it is sent now if it was still buffered.
    pub(crate) fn discard(&mut self, seq: u64) {
        let _ = self.flush();
        match self.inbox.stash.remove(&seq) {
            Some(s) => {
                self.inbox.orphan(s);
                self.release_orphans();
            }
            None if seq < self.next_seq => {
                self.inbox.discarded.insert(seq);
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
        let sent = self
            .writer
            .finish(&Request::Goodbye { session }, self.max_frame)
            .and_then(|()| push(&self.socket, &mut self.inbox, &mut [self.writer.frame()]));
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
            let Ok(Some(body)) = self.inbox.reader.next(&mut &self.socket) else {
                return;
            };
            if let Ok((Response::Farewell, _)) = Response::decode(body) {
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
            let r = push(&self.socket, &mut self.inbox, &mut [self.writer.frame()]);
            let _ = self.wrote(r);
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

/// Encodes call `seq` of `method` of `object` into `writer`: the arguments
/// `args` writes, the ids of the objects of the manager at `address` among
/// the proxies they embed, and the header. With `blob`, `args` may leave
/// that byte string out of the frame (see [`Encoder::put_bytes`]); the
/// frame is then [`FrameWriter::frame_around`] the offset returned.
pub(crate) fn encode_call<'b>(
    writer: &mut FrameWriter,
    address: &Address,
    max_frame: usize,
    (seq, object, method): (u64, u64, u32),
    blob: Option<&'b [u8]>,
    args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
) -> Result<BlobAt<'b>> {
    let (caps_len, blob) = encode_args(writer, address, blob, args)?;
    finish_call(writer, max_frame, (seq, object, method), caps_len, blob)?;
    Ok(blob)
}

/// The first half of [`encode_call`]: the payload, and the length of the
/// capability list at its end (0 without one).
pub(crate) fn encode_args<'b>(
    writer: &mut FrameWriter,
    address: &Address,
    blob: Option<&'b [u8]>,
    args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
) -> Result<(u32, BlobAt<'b>)> {
    let (encoded, caps) = capturing(|| {
        let mut e = writer.begin();
        if let Some(b) = blob {
            e.allow_blob(b);
        }
        args(&mut e)?;
        Ok::<_, Error>(e.blob())
    });
    let mark = encoded?;
    let mut caps_len = 0;
    // A list, even empty, tells the manager that the arguments embed
    // proxies: it then binds those of other managers while decoding.
    if !caps.is_empty() {
        let own: Vec<u64> = caps
            .iter()
            .filter(|c| &c.address == address)
            .map(|c| c.object)
            .collect();
        let mut p = writer.payload();
        let before = p.len();
        p.put(&own)?;
        caps_len = (p.len() - before) as u32;
    }
    // The encoder leaves out only the slice it was allowed: `blob`.
    let blob = match mark.zip(blob) {
        Some((at, b)) if writer.payload_len() + MAX_BESIDE_SLACK > BESIDE_BLOB_MAX => {
            // Too much else in the frame for the manager to hold beside
            // the byte string: it goes inline after all.
            writer.insert_at(at, b);
            None
        }
        blob => blob,
    };
    Ok((caps_len, blob))
}

/// A byte string left out of a frame, and where in the frame it belongs.
pub(crate) type BlobAt<'b> = Option<(usize, &'b [u8])>;

/// The second half of [`encode_call`]: the header in front of the payload.
pub(crate) fn finish_call(
    writer: &mut FrameWriter,
    max_frame: usize,
    (seq, object, method): (u64, u64, u32),
    caps_len: u32,
    blob: Option<(usize, &[u8])>,
) -> Result<()> {
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
    writer.finish_with(&header, max_frame, blob.map(|(at, b)| (at, b.len())))
}

/// Room for the header and prefix of a frame, beside its payload.
const MAX_BESIDE_SLACK: usize = 64;

/// Writes `parts`, frames as this client made them, whole. While the
/// manager takes no more, the replies it sends meanwhile are read into
/// `inbox`: a manager stops reading a connection whose replies pile up,
/// and a client that only wrote would then wait for it forever. So any
/// number of deferred calls may be in flight.
fn push(socket: &Socket, inbox: &mut Inbox, parts: &mut [&[u8]]) -> Result<()> {
    if !socket.is_sealed() {
        return push_wire(socket, inbox, parts);
    }
    // Records go out as they are sealed: the manager opens the first while
    // the next are sealed.
    let mut through = Through {
        socket,
        inbox,
        failed: None,
    };
    let r = socket.encode_through(parts, &mut through);
    match (through.failed, r) {
        (Some(e), _) => Err(e),
        (None, r) => r.map_err(Error::lost),
    }
}

/// Pushes sealed records as [`push_wire`] does, keeping its error.
struct Through<'a> {
    socket: &'a Socket,
    inbox: &'a mut Inbox,
    failed: Option<Error>,
}

impl Write for Through<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match push_wire(self.socket, self.inbox, &mut [buf]) {
            Ok(()) => Ok(buf.len()),
            Err(e) => {
                self.failed = Some(e);
                Err(std::io::Error::other("the record could not be written"))
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// [`push`], of bytes as they go on the wire.
fn push_wire(socket: &Socket, inbox: &mut Inbox, parts: &mut [&[u8]]) -> Result<()> {
    let mut reading = false;
    let mut first = 0;
    let r = loop {
        while first < parts.len() && parts[first].is_empty() {
            first += 1;
        }
        if first == parts.len() {
            break Ok(());
        }
        match socket.write_wire_now(&parts[first..]) {
            Ok(0) => {
                break Err(Error::lost(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "the socket took no bytes",
                )))
            }
            Ok(mut n) => {
                // Skip what was written: whole parts, then part of one.
                while n > 0 {
                    let p = parts[first];
                    if n >= p.len() {
                        n -= p.len();
                        first += 1;
                    } else {
                        parts[first] = &p[n..];
                        n = 0;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !reading {
                    if let Err(e) = socket.set_nonblocking(true) {
                        break Err(Error::lost(e));
                    }
                    reading = true;
                }
                let ready =
                    wait_ready(socket.raw_fd(), libc::POLLIN | libc::POLLOUT, Duration::MAX);
                if let Err(e) = ready
                    .map_err(Error::lost)
                    .and_then(|_| inbox.take_arrived(socket))
                {
                    break Err(e);
                }
            }
            Err(e) => break Err(Error::lost(e)),
        }
    };
    if reading {
        if let Err(e) = socket.set_nonblocking(false) {
            return Err(Error::lost(e));
        }
    }
    r
}

/// A reply as it arrived: to which call, whether it succeeded, its
/// payload, and the references of the proxies the payload carries.
pub(crate) struct Reply<'a> {
    pub(crate) seq: u64,
    pub(crate) ok: bool,
    pub(crate) payload: &'a [u8],
    pub(crate) caps: crate::caps::ReplyCaps,
}

impl<'a> Reply<'a> {
    /// Reads the reply in frame `body`; a fatal answer, a farewell nobody
    /// asked for, or a malformed reply is an error that ends the link.
    pub(crate) fn parse(body: &'a [u8]) -> Result<Reply<'a>> {
        let (response, payload) = Response::decode(body)
            .map_err(|e| Error::Protocol(format!("malformed reply from the manager: {e}")))?;
        let (seq, ok, payload, caps) = match response {
            Response::Ok { seq } => (seq, true, payload, None),
            Response::OkCaps { seq, caps_len } => {
                let (result, caps) = split_caps(payload, caps_len)?;
                (
                    seq,
                    true,
                    result,
                    Some(from_slice::<Vec<(u64, u64)>>(caps)?),
                )
            }
            Response::Err { seq } => (seq, false, payload, None),
            Response::Fatal => {
                return Err(from_slice::<WireError>(payload).map_or_else(|e| e, Error::from))
            }
            Response::Farewell => {
                return Err(Error::Protocol(
                    "the manager said farewell to a connection that did not say goodbye".into(),
                ))
            }
        };
        Ok(Reply {
            seq,
            ok,
            payload,
            caps,
        })
    }

    /// The reply, kept until its call is waited for.
    fn stashed(self) -> Stashed {
        if self.ok {
            Stashed::Ok(self.payload.to_vec(), self.caps)
        } else {
            Stashed::Err(from_slice::<WireError>(self.payload).map_or_else(|e| e, Error::from))
        }
    }
}

impl Inbox {
    /// Keeps the reply to call `seq` for whoever waits for it, or lets it
    /// go if nobody will.
    fn keep(&mut self, seq: u64, reply: Stashed) {
        if self.discarded.remove(&seq) {
            self.orphan(reply);
        } else {
            self.stash.insert(seq, reply);
        }
    }

    /// Notes the references a reply nobody reads carries, to give back.
    fn orphan(&mut self, reply: Stashed) {
        if let Stashed::Ok(_, Some(caps)) = reply {
            self.orphans
                .extend(caps.into_iter().map(|(object, _)| object));
        }
    }

    /// Reads the replies that have arrived on `socket`, which is in
    /// non-blocking mode, until it has no more now.
    fn take_arrived(&mut self, socket: &Socket) -> Result<()> {
        let mut input = Nonblocking::new(socket, crate::transport::DEAD_PEER_TIMEOUT);
        loop {
            let body = match self.reader.next(&mut input) {
                Ok(Some(body)) => body,
                Ok(None) => {
                    return Err(Error::ConnectionLost(
                        "the manager closed the connection".into(),
                    ))
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(read_error(e)),
            };
            let reply = Reply::parse(body)?;
            let seq = reply.seq;
            let reply = reply.stashed();
            self.keep(seq, reply);
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deferred calls whose replies nobody waited for still run.
        let _ = self.flush();
    }
}
