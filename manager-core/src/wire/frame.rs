//! Length-prefixed frames: a little-endian `u32` body length, then the body.
//!
//! A call whose argument is a long byte string sends it out of line: the
//! length's top bit ([`BLOB_FLAG`]) says that two more `u32`s follow, the
//! byte string's offset in the body and its length. The body's bytes are the
//! same either way; the writer takes the byte string from the caller's
//! memory (a vectored write) and the reader puts it in an allocation of its
//! own, which the method receives as its `Vec<u8>` without a copy.
//!
//! A body is a postcard-encoded message header followed by its payload. The
//! writer builds the payload first in a reused buffer and slots the header in
//! front of it afterwards, so a call costs no copy of its arguments and one
//! `write`; the reader pulls as much as the socket has, so a small reply costs
//! one `read`.

use std::io::{Read, Write};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::wire::codec::Encoder;
use crate::wire::header::{Header, MAX_HEADER};

/// The default maximum frame body: bounds what a peer can make us allocate.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024 * 1024;

/// Room reserved in front of a payload for the length prefix and a header.
const ROOM: usize = BLOB_PREFIX + MAX_HEADER;
/// Set in a frame's length when a byte string travels out of line.
pub(crate) const BLOB_FLAG: u32 = 1 << 31;
/// A frame's prefix when it carries a byte string out of line: the length
/// (with [`BLOB_FLAG`]), the byte string's offset in the body, its length.
const BLOB_PREFIX: usize = 12;
/// At most this much of a frame travels beside an out-of-line byte string
/// (its prefix, header and other arguments), so that a reader can hold it
/// in its usual buffer.
pub(crate) const BESIDE_BLOB_MAX: usize = INITIAL;
/// Buffers grown past this by a large frame shrink back once it is handled;
/// below it they are kept, so a connection that moves large values does
/// not pay for fresh memory (page faults) on every call.
const KEEP: usize = 16 << 20;
const INITIAL: usize = 16 * 1024;
/// What a reader and a writer start with: an idle connection that has made
/// only small calls keeps no more than this per buffer (thousands of idle
/// peers are a manager's common case). A reader that fills its buffer in
/// one read doubles it, up to [`INITIAL`], so a pipelining peer soon reads
/// as much per call as before.
const SMALL: usize = 512;

/// Builds outgoing frames in one reused buffer.
pub(crate) struct FrameWriter {
    buf: Vec<u8>,
    /// Where the finished frame starts in `buf`.
    start: usize,
}

impl FrameWriter {
    pub(crate) fn new() -> Self {
        FrameWriter {
            buf: Vec::with_capacity(SMALL),
            start: 0,
        }
    }

    /// Starts a new frame with an empty payload and returns the payload's encoder.
    #[inline]
    pub(crate) fn begin(&mut self) -> Encoder<'_> {
        if self.buf.capacity() > KEEP {
            self.buf = Vec::with_capacity(INITIAL);
        }
        self.buf.clear();
        self.buf.resize(ROOM, 0);
        Encoder::new(&mut self.buf)
    }

    /// The payload's encoder, to append more after `begin`.
    #[inline]
    pub(crate) fn payload(&mut self) -> Encoder<'_> {
        Encoder::new(&mut self.buf)
    }

    /// Bytes of payload written since `begin`.
    pub(crate) fn payload_len(&self) -> usize {
        self.buf.len().saturating_sub(ROOM)
    }

    /// Puts `header` in front of the payload; [`FrameWriter::frame`] is then
    /// the whole frame.
    ///
    /// # Errors
    /// `Error::Protocol` if the frame would exceed `max` bytes.
    #[inline]
    pub(crate) fn finish<H: Header>(&mut self, header: &H, max: usize) -> Result<()> {
        self.finish_with(header, max, None)
    }

    /// [`FrameWriter::finish`] for a payload that lacks `blob_len` bytes at
    /// offset `blob_at` of the buffer, to be written from elsewhere: the
    /// frame is then [`FrameWriter::frame_around`] that byte string.
    pub(crate) fn finish_with<H: Header>(
        &mut self,
        header: &H,
        max: usize,
        blob: Option<(usize, usize)>,
    ) -> Result<()> {
        let mut tmp = [0u8; MAX_HEADER];
        let hl = header.encode(&mut tmp)?;
        let h = &tmp[..hl];
        let blob_len = blob.map_or(0, |(_, len)| len);
        let body = self.payload_len() + hl + blob_len;
        if body > max {
            return Err(Error::Protocol(format!(
                "a message of {body} bytes exceeds the maximum frame size of {max} bytes"
            )));
        }
        let len = u32::try_from(body)
            .ok()
            .filter(|l| l & BLOB_FLAG == 0)
            .ok_or_else(|| Error::Protocol(format!("a message of {body} bytes is too large")))?;
        let start = match blob {
            None => {
                let start = ROOM - hl - 4;
                self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
                start
            }
            Some((at, blob_len)) => {
                let start = ROOM - hl - BLOB_PREFIX;
                // Offsets in the body, which begins with the header.
                let at = u32::try_from(at - ROOM + hl).map_err(|_| Error::protocol("offset"))?;
                let blob_len = u32::try_from(blob_len).map_err(|_| Error::protocol("length"))?;
                self.buf[start..start + 4].copy_from_slice(&(len | BLOB_FLAG).to_le_bytes());
                self.buf[start + 4..start + 8].copy_from_slice(&at.to_le_bytes());
                self.buf[start + 8..start + 12].copy_from_slice(&blob_len.to_le_bytes());
                start
            }
        };
        self.buf[ROOM - hl..ROOM].copy_from_slice(h);
        self.start = start;
        Ok(())
    }

    /// The bytes of the frame last finished with an out-of-line byte string
    /// at `at`: what goes before it and what goes after it.
    pub(crate) fn frame_around(&self, at: usize) -> (&[u8], &[u8]) {
        (&self.buf[self.start..at], &self.buf[at..])
    }

    /// Puts `bytes` into the payload at offset `at` of the buffer: an
    /// out-of-line byte string that goes inline after all.
    pub(crate) fn insert_at(&mut self, at: usize, bytes: &[u8]) {
        self.buf.splice(at..at, bytes.iter().copied());
    }

    /// The frame last finished.
    #[inline]
    pub(crate) fn frame(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Encodes `header` with `payload` as one frame and writes it.
    pub(crate) fn send<H: Header, W: Write>(
        &mut self,
        w: &mut W,
        header: &H,
        max: usize,
    ) -> Result<()> {
        self.finish(header, max)?;
        w.write_all(self.frame()).map_err(Error::lost)
    }
}

/// A byte stream that can append to a vector without initializing its
/// spare capacity first: a long byte string arriving out of line is read
/// once, not zeroed and then read.
pub(crate) trait ReadFresh: Read {
    /// Appends at most `n` bytes to `buf` and returns how many; 0 at the
    /// end of the stream. The default reads through a buffer on the stack.
    fn read_append(&mut self, buf: &mut Vec<u8>, n: usize) -> std::io::Result<usize> {
        let mut tmp = [0u8; 8192];
        let k = self.read(&mut tmp[..n.min(8192)])?;
        buf.extend_from_slice(&tmp[..k]);
        Ok(k)
    }

    /// Waits until a read can make progress, after one returned
    /// `WouldBlock` in the middle of a large frame: a non-blocking stream
    /// finishes a frame it has begun once its first bytes are in. The
    /// default passes `WouldBlock` on, for streams that never return it.
    fn wait_readable(&mut self) -> std::io::Result<()> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
}

/// Reads into `buf` once, retrying an interruption, and waiting for the
/// stream (`ReadFresh::wait_readable`) where it would block.
fn read_some<R: ReadFresh>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => r.wait_readable()?,
            r => return r,
        }
    }
}

fn ended_inside() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the stream ended inside a frame",
    )
}

impl ReadFresh for &[u8] {}

/// A socket reads a long byte string straight into its allocation.
impl ReadFresh for &crate::transport::Socket {
    fn read_append(&mut self, buf: &mut Vec<u8>, n: usize) -> std::io::Result<usize> {
        crate::transport::Socket::read_append(self, buf, n)
    }
}

/// Reads a non-blocking socket, for [`FrameReader`]: `WouldBlock` between
/// frames ends a round of reading, and inside a large frame it waits.
pub(crate) struct Nonblocking<'a> {
    socket: &'a crate::transport::Socket,
    patience: Duration,
    /// The last read took less than it had room for: the socket had no
    /// more then, and bytes arriving later make it ready again, so a read
    /// that would only say `WouldBlock` can be skipped (as tokio does).
    /// Never set through the record layer, whose reads are its own.
    drained: bool,
    /// Whether a short read may be trusted to mean "drained" (not once
    /// the peer's end is half closed).
    pub(crate) trust_short: bool,
}

impl<'a> Nonblocking<'a> {
    pub(crate) fn new(socket: &'a crate::transport::Socket, patience: Duration) -> Self {
        Nonblocking {
            socket,
            patience,
            drained: false,
            trust_short: true,
        }
    }

    /// Whether the socket is known to have nothing more now.
    pub(crate) fn is_drained(&self) -> bool {
        self.drained && self.trust_short
    }
}

/// A [`Nonblocking`] that never waits, even inside a frame: `WouldBlock`
/// comes back to the caller, and the frame reader keeps what it has read
/// (an async driver's input, which waits for readiness on its runtime).
pub(crate) struct NeverWait<'a>(pub(crate) Nonblocking<'a>);

impl std::io::Read for NeverWait<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl ReadFresh for NeverWait<'_> {
    fn read_append(&mut self, buf: &mut Vec<u8>, n: usize) -> std::io::Result<usize> {
        self.0.read_append(buf, n)
    }
}

impl std::io::Read for Nonblocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = Read::read(&mut &*self.socket, buf)?;
        self.drained =
            n > 0 && n < buf.len() && !matches!(self.socket, crate::transport::Socket::Sealed(_));
        Ok(n)
    }
}

impl ReadFresh for Nonblocking<'_> {
    fn read_append(&mut self, buf: &mut Vec<u8>, n: usize) -> std::io::Result<usize> {
        self.socket.read_append(buf, n)
    }

    fn wait_readable(&mut self) -> std::io::Result<()> {
        if crate::transport::wait_ready(self.socket.raw_fd(), libc::POLLIN, self.patience)? {
            Ok(())
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the peer stopped in the middle of a frame",
            ))
        }
    }
}

/// Reads frames, buffering whatever the socket delivers.
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max: usize,
    /// Whether frames may carry a byte string out of line (calls to a manager).
    blobs: bool,
}

/// A byte string that arrived out of line, and the offset in its frame's
/// body where it belongs.
#[derive(Debug)]
pub(crate) struct Blob {
    pub(crate) at: usize,
    pub(crate) bytes: Vec<u8>,
}

impl FrameReader {
    pub(crate) fn new(max: usize) -> Self {
        FrameReader {
            buf: vec![0; SMALL],
            start: 0,
            end: 0,
            max,
            blobs: false,
        }
    }

    pub(crate) fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Accepts frames with a byte string out of line, from
    /// [`FrameReader::next_with_blob`]; other frames are refused with one.
    pub(crate) fn allow_blobs(&mut self) {
        self.blobs = true;
    }

    /// Bytes read ahead and not yet returned as frames.
    pub(crate) fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Whether the next frame can be returned without reading (it is
    /// buffered whole, or it carries a byte string out of line, which is
    /// read its own way).
    pub(crate) fn holds_frame(&self) -> bool {
        let avail = self.end - self.start;
        if avail < 4 {
            return false;
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&self.buf[self.start..self.start + 4]);
        let len = u32::from_le_bytes(len);
        len & BLOB_FLAG != 0 || avail >= 4 + len as usize
    }

    /// The next frame's body; `Ok(None)` on end of stream between frames.
    ///
    /// # Errors
    /// `Error::Protocol` for a length over the maximum (before allocating it)
    /// or a stream that ends inside a frame; the I/O error otherwise.
    pub(crate) fn next<R: ReadFresh>(&mut self, r: &mut R) -> std::io::Result<Option<&[u8]>> {
        Ok(self.next_with_blob(r)?.map(|(body, _)| body))
    }

    /// The next frame's body, and the byte string it carries out of line
    /// if it has one (only after [`FrameReader::allow_blobs`]).
    ///
    /// # Errors
    /// As [`FrameReader::next`]; also `InvalidData` for a malformed or
    /// unexpected out-of-line byte string.
    pub(crate) fn next_with_blob<R: ReadFresh>(
        &mut self,
        r: &mut R,
    ) -> std::io::Result<Option<(&[u8], Option<Blob>)>> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP {
                self.buf = vec![0; INITIAL];
            } else if self.buf.len() < SMALL {
                self.buf = vec![0; SMALL];
            }
        }
        loop {
            let avail = self.end - self.start;
            if avail >= 4 {
                let mut len = [0u8; 4];
                len.copy_from_slice(&self.buf[self.start..self.start + 4]);
                let len = u32::from_le_bytes(len);
                if len & BLOB_FLAG != 0 {
                    return self
                        .read_blob_frame(r, (len & !BLOB_FLAG) as usize)
                        .map(Some);
                }
                let len = len as usize;
                if len > self.max {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        FrameTooLarge { len, max: self.max },
                    ));
                }
                let total = 4 + len;
                if avail >= total {
                    let body = self.start + 4..self.start + total;
                    self.start += total;
                    return Ok(Some((&self.buf[body], None)));
                }
                if total > INITIAL {
                    return self.read_large(r, total).map(|body| Some((body, None)));
                }
                if self.start + total > self.buf.len() {
                    self.compact();
                    if total > self.buf.len() {
                        self.buf.resize(total.next_power_of_two().min(INITIAL), 0);
                    }
                }
            } else if self.buf.len() - self.start < 4 {
                self.compact();
            }
            let room = self.buf.len() - self.end;
            let n = match r.read(&mut self.buf[self.end..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return if self.end == self.start {
                    Ok(None)
                } else {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the stream ended inside a frame",
                    ))
                };
            }
            self.end += n;
            if n == room && self.buf.len() < INITIAL {
                // More may be waiting: read more at a time from now on.
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
    }

    /// The next frame's body if it is short (at most `max` bytes, no byte
    /// string out of line) and whole, reading what `r` has now; the frame
    /// stays next. `None` if the next frame is another, or not whole yet
    /// (`r` would block or has ended).
    ///
    /// # Errors
    /// Those of `r`, but `WouldBlock`.
    pub(crate) fn peek_short<R: ReadFresh>(
        &mut self,
        r: &mut R,
        max: usize,
    ) -> std::io::Result<Option<&[u8]>> {
        loop {
            let avail = self.end - self.start;
            if avail >= 4 {
                let mut len = [0u8; 4];
                len.copy_from_slice(&self.buf[self.start..self.start + 4]);
                let len = u32::from_le_bytes(len) as usize;
                if len > max {
                    return Ok(None);
                }
                if avail >= 4 + len {
                    return Ok(Some(&self.buf[self.start + 4..self.start + 4 + len]));
                }
            }
            if self.buf.len() - self.start < 4 + max {
                self.compact();
            }
            if self.buf.len() < 4 + max {
                self.buf.resize(4 + max, 0);
            }
            match r.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(None),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Drops the frame [`FrameReader::peek_short`] returned.
    pub(crate) fn skip_peeked(&mut self) {
        let avail = self.end - self.start;
        if avail >= 4 {
            let mut len = [0u8; 4];
            len.copy_from_slice(&self.buf[self.start..self.start + 4]);
            let total = 4 + u32::from_le_bytes(len) as usize;
            self.start += total.min(avail);
        }
    }

    /// Reads a frame larger than the usual buffer straight into a buffer of
    /// its size, reusing (without re-zeroing) one kept from an earlier large
    /// frame. A fresh one costs address space only until bytes arrive, so a
    /// peer that announces 64 MiB and stalls costs what it actually sent.
    fn read_large<R: ReadFresh>(&mut self, r: &mut R, total: usize) -> std::io::Result<&[u8]> {
        let have = self.end - self.start;
        if self.buf.len() >= total {
            // A buffer kept from an earlier large frame is already
            // initialized: read into it in place, without zero-filling.
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = 0;
            let mut at = have;
            while at < total {
                match read_some(r, &mut self.buf[at..total]) {
                    Ok(0) => {
                        self.buf = Vec::new();
                        return Err(ended_inside());
                    }
                    Ok(n) => at += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        // An input that does not wait (an async driver's):
                        // what arrived stays, and the next call goes on.
                        self.end = at;
                        return Err(e);
                    }
                    Err(e) => {
                        self.buf = Vec::new();
                        return Err(e);
                    }
                }
            }
        } else {
            let mut big = Vec::with_capacity(total);
            big.extend_from_slice(&self.buf[self.start..self.end]);
            self.start = 0;
            self.end = 0;
            // A fresh buffer fills as bytes arrive: a stalled peer costs
            // what it sent, not what it announced.
            while big.len() < total {
                let missing = total - big.len();
                let got = match r.read_append(&mut big, missing) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        r.wait_readable().map(|()| 1)
                    }
                    got => got,
                };
                match got {
                    Ok(0) => {
                        self.buf = Vec::new();
                        return Err(ended_inside());
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        // An input that does not wait: the frame is kept,
                        // its buffer at full size, to go on in place. (Only
                        // a client reads so: from its manager.)
                        let at = big.len();
                        big.resize(total, 0);
                        self.buf = big;
                        self.end = at;
                        return Err(e);
                    }
                    Err(e) => {
                        self.buf = Vec::new();
                        return Err(e);
                    }
                }
            }
            self.buf = big;
        }
        self.start = total;
        self.end = total;
        Ok(&self.buf[4..total])
    }

    /// Reads a frame of `len` body bytes whose prefix says that a byte
    /// string travels out of line: the bytes beside it into the usual
    /// buffer, the byte string straight into an allocation of its own.
    fn read_blob_frame<R: ReadFresh>(
        &mut self,
        r: &mut R,
        len: usize,
    ) -> std::io::Result<(&[u8], Option<Blob>)> {
        let invalid = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
        if !self.blobs {
            return Err(invalid(
                "a frame with a byte string out of line, where none may be",
            ));
        }
        if len > self.max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                FrameTooLarge { len, max: self.max },
            ));
        }
        if self.start + BESIDE_BLOB_MAX > self.buf.len() {
            self.compact();
            if self.buf.len() < BESIDE_BLOB_MAX {
                self.buf.resize(BESIDE_BLOB_MAX, 0);
            }
        }
        self.fill(r, BLOB_PREFIX)?;
        let word = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&self.buf[self.start + i..self.start + i + 4]);
            u32::from_le_bytes(w) as usize
        };
        let (at, blob_len) = (word(4), word(8));
        if blob_len == 0 || at.checked_add(blob_len).map_or(true, |e| e > len) {
            return Err(invalid(
                "a byte string out of line that does not fit its frame",
            ));
        }
        let beside = BLOB_PREFIX + len - blob_len;
        if beside > BESIDE_BLOB_MAX {
            return Err(invalid("too many bytes beside a byte string out of line"));
        }
        // The bytes before the byte string.
        self.fill(r, BLOB_PREFIX + at)?;
        // The byte string: what is buffered already, then the rest straight
        // from the stream. What followed it in the buffer moves up to where
        // it began.
        let from = self.start + BLOB_PREFIX + at;
        let buffered = (self.end - from).min(blob_len);
        let mut bytes = Vec::with_capacity(blob_len);
        bytes.extend_from_slice(&self.buf[from..from + buffered]);
        self.buf.copy_within(from + buffered..self.end, from);
        self.end -= buffered;
        while bytes.len() < blob_len {
            let missing = blob_len - bytes.len();
            match r.read_append(&mut bytes, missing) {
                Ok(0) => return Err(ended_inside()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => r.wait_readable()?,
                Err(e) => return Err(e),
            }
        }
        // The bytes after it.
        self.fill(r, beside)?;
        let body = self.start + BLOB_PREFIX..self.start + beside;
        self.start += beside;
        Ok((&self.buf[body], Some(Blob { at, bytes })))
    }

    /// Reads until `n` bytes from `start` are buffered; the buffer has room.
    fn fill<R: ReadFresh>(&mut self, r: &mut R, n: usize) -> std::io::Result<()> {
        while self.end - self.start < n {
            match read_some(r, &mut self.buf[self.end..])? {
                0 => return Err(ended_inside()),
                k => self.end += k,
            }
        }
        Ok(())
    }

    fn compact(&mut self) {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }
}

/// Handshake messages are small; a peer that has not authenticated may not
/// make us allocate more than this.
pub(crate) const HANDSHAKE_MAX_FRAME: usize = 1024;

/// Sends one handshake message as a frame of its own.
pub(crate) fn send<T: serde::Serialize, W: Write>(
    writer: &mut FrameWriter,
    mut w: W,
    msg: &T,
) -> Result<()> {
    writer.begin().put(msg)?;
    writer.send(&mut w, &(), HANDSHAKE_MAX_FRAME)
}

/// Receives one handshake message.
pub(crate) fn receive<T: serde::de::DeserializeOwned, R: ReadFresh>(
    reader: &mut FrameReader,
    mut r: R,
) -> Result<T> {
    match reader.next(&mut r) {
        Ok(Some(body)) => crate::wire::codec::from_slice(body),
        Ok(None) => Err(Error::ConnectionLost(
            "the peer closed the connection during the handshake".into(),
        )),
        Err(e) => Err(read_error(e)),
    }
}

/// The error inside an `InvalidData` I/O error for an oversized frame.
#[derive(Debug)]
pub(crate) struct FrameTooLarge {
    pub(crate) len: usize,
    pub(crate) max: usize,
}

impl std::fmt::Display for FrameTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a frame of {} bytes exceeds the maximum frame size of {} bytes",
            self.len, self.max
        )
    }
}

impl std::error::Error for FrameTooLarge {}

/// Maps a read error to the crate's error: oversized or truncated frames are
/// protocol errors, the rest means the connection is gone.
pub(crate) fn read_error(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::InvalidData {
        Error::Protocol(e.to_string())
    } else if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut
    {
        Error::Timeout("the peer did not answer in time".into())
    } else {
        Error::lost(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec::BLOB_MIN;

    /// A reader that hands out at most `chunk` bytes per read.
    struct Trickle<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl ReadFresh for Trickle<'_> {}

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.chunk.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn frames(payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut w = FrameWriter::new();
        let mut out = Vec::new();
        for p in payloads {
            w.begin().put_raw(p);
            w.finish(&7u8, DEFAULT_MAX_FRAME).unwrap();
            out.extend_from_slice(w.frame());
        }
        out
    }

    #[test]
    fn frames_split_anywhere_read_back_whole() {
        let payloads = vec![vec![1, 2, 3], vec![], vec![9; 40_000], vec![4]];
        let data = frames(&payloads);
        for chunk in [1, 3, 7, 4096, usize::MAX] {
            let mut r = FrameReader::new(DEFAULT_MAX_FRAME);
            let mut src = Trickle { data: &data, chunk };
            for p in &payloads {
                let body = r.next(&mut src).unwrap().unwrap();
                assert_eq!(body[0], 7, "header first");
                assert_eq!(&body[1..], &p[..]);
            }
            assert!(r.next(&mut src).unwrap().is_none());
        }
    }

    #[test]
    fn oversized_length_is_refused_before_allocation() {
        let data = (u32::MAX).to_le_bytes();
        let mut r = FrameReader::new(1024);
        let e = r.next(&mut &data[..]).unwrap_err();
        assert!(matches!(read_error(e), Error::Protocol(_)));
        assert!(r.buf.len() <= INITIAL);
    }

    #[test]
    fn a_large_announced_frame_that_never_arrives_is_not_kept() {
        let mut data = (10_000_000u32).to_le_bytes().to_vec();
        data.extend_from_slice(&[0u8; 100]);
        let mut r = FrameReader::new(DEFAULT_MAX_FRAME);
        assert!(r.next(&mut &data[..]).is_err(), "it ends inside the frame");
        assert!(
            r.buf.len() <= 2 * INITIAL,
            "{} bytes allocated",
            r.buf.len()
        );
    }

    #[test]
    fn large_frames_between_small_ones_read_back_whole() {
        let payloads = vec![
            vec![1],
            vec![5; 3 << 20],
            vec![2, 3],
            vec![6; 100_000],
            vec![4],
        ];
        let data = frames(&payloads);
        for chunk in [7, 65536, usize::MAX] {
            let mut r = FrameReader::new(DEFAULT_MAX_FRAME);
            let mut src = Trickle { data: &data, chunk };
            for p in &payloads {
                let body = r.next(&mut src).unwrap().unwrap();
                assert_eq!(&body[1..], &p[..]);
            }
            assert!(r.next(&mut src).unwrap().is_none());
        }
    }

    /// Yields `chunk` bytes at a time, then `WouldBlock` once, in turn.
    struct Stalling<'a> {
        bytes: &'a [u8],
        chunk: usize,
        blocked: bool,
    }

    impl Read for Stalling<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if !std::mem::replace(&mut self.blocked, true) && !self.bytes.is_empty() {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            self.blocked = false;
            let n = self.chunk.min(out.len()).min(self.bytes.len());
            out[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    impl ReadFresh for Stalling<'_> {}

    #[test]
    fn a_large_frame_read_without_waiting_resumes_where_it_stopped() {
        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let small = vec![9u8; 10];
        let stream = frames(&[big.clone(), small.clone(), big.clone(), big.clone()]);
        let mut r = FrameReader::new(1 << 20);
        let mut input = Stalling {
            bytes: &stream,
            chunk: 7_000,
            blocked: false,
        };
        let mut got = Vec::new();
        while got.len() < 4 {
            match r.next(&mut input) {
                // Each body is the header (7) and the payload.
                Ok(Some(body)) => got.push(body[1..].to_vec()),
                Ok(None) => panic!("ended early"),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!(
            got == [big.clone(), small, big.clone(), big],
            "frames read back whole"
        );
    }

    #[test]
    fn truncated_frame_is_an_error_not_a_clean_end() {
        let mut data = frames(&[vec![1, 2, 3, 4]]);
        data.pop();
        let mut r = FrameReader::new(1024);
        assert!(r.next(&mut &data[..]).is_err());
    }

    #[test]
    fn writer_refuses_frames_over_the_maximum() {
        let mut w = FrameWriter::new();
        w.begin().put_raw(&[0; 100]);
        assert!(matches!(w.finish(&1u8, 50), Err(Error::Protocol(_))));
    }

    /// A frame whose payload is `before`, then `blob` out of line, then
    /// `after`: the bytes a client writes.
    fn blob_frame(before: &[u8], blob: &[u8], after: &[u8]) -> Vec<u8> {
        let mut w = FrameWriter::new();
        let mut e = w.begin();
        e.allow_blob(blob);
        e.put_raw(before);
        e.put_bytes(blob).unwrap();
        e.put_raw(after);
        let at = e.blob().expect("a long byte string stays out");
        w.finish_with(&7u8, DEFAULT_MAX_FRAME, Some((at, blob.len())))
            .unwrap();
        let (head, tail) = w.frame_around(at);
        [head, blob, tail].concat()
    }

    #[test]
    fn byte_strings_out_of_line_arrive_in_their_own_vector() {
        let blob: Vec<u8> = (0..BLOB_MIN * 3).map(|i| (i % 251) as u8).collect();
        let mut data = frames(&[vec![1, 2]]);
        data.extend(blob_frame(&[9, 9], &blob, &[3, 4, 5]));
        data.extend(frames(&[vec![6]]));
        data.extend(blob_frame(&[], &blob[..BLOB_MIN], &[]));
        for chunk in [7, 4096, 100_000, usize::MAX] {
            let mut r = FrameReader::new(DEFAULT_MAX_FRAME);
            r.allow_blobs();
            let mut src = Trickle { data: &data, chunk };
            let (body, b) = r.next_with_blob(&mut src).unwrap().unwrap();
            assert_eq!((body, b.is_none()), (&[7, 1, 2][..], true));
            let (body, b) = r.next_with_blob(&mut src).unwrap().unwrap();
            let b = b.expect("out of line");
            // The body lacks the byte string but keeps its length prefix.
            let mut len = Vec::new();
            crate::wire::codec::Encoder::new(&mut len)
                .put(&blob.len())
                .unwrap();
            assert_eq!(body, [&[7, 9, 9][..], &len, &[3, 4, 5]].concat());
            assert_eq!(b.at, 3 + len.len());
            assert_eq!(b.bytes, blob, "chunk {chunk}");
            let (body, b) = r.next_with_blob(&mut src).unwrap().unwrap();
            assert_eq!((body, b.is_none()), (&[7, 6][..], true));
            let (_, b) = r.next_with_blob(&mut src).unwrap().unwrap();
            assert_eq!(b.expect("out of line").bytes, &blob[..BLOB_MIN]);
            assert!(r.next_with_blob(&mut src).unwrap().is_none());
        }
    }

    #[test]
    fn short_byte_strings_stay_inline_and_encode_as_serde_bytes() {
        let mut w = FrameWriter::new();
        let mut e = w.begin();
        let short = [1, 2, 3];
        e.allow_blob(&short);
        e.put_bytes(&short).unwrap();
        assert!(e.blob().is_none());
        let mut plain = Vec::new();
        crate::wire::codec::Encoder::new(&mut plain)
            .put(serde_bytes::Bytes::new(&[1, 2, 3]))
            .unwrap();
        assert_eq!(&w.buf[ROOM..], &plain[..]);
    }

    #[test]
    fn malformed_or_unexpected_out_of_line_frames_are_refused() {
        let blob = vec![5u8; BLOB_MIN];
        let good = blob_frame(&[1], &blob, &[2]);
        let read = |data: &[u8], allow: bool| {
            let mut r = FrameReader::new(DEFAULT_MAX_FRAME);
            if allow {
                r.allow_blobs();
            }
            r.next_with_blob(&mut &data[..]).map(|f| f.is_some())
        };
        assert!(read(&good, true).unwrap());
        // Not where they may be (a client reading replies, a handshake).
        assert!(read(&good, false).is_err());
        // The stream ends inside the byte string.
        assert!(read(&good[..good.len() - 10], true).is_err());
        let with = |at: u32, len: u32| {
            let mut d = good.clone();
            d[4..8].copy_from_slice(&at.to_le_bytes());
            d[8..12].copy_from_slice(&len.to_le_bytes());
            d
        };
        // Empty, or reaching past the end of the frame.
        assert!(read(&with(2, 0), true).is_err());
        assert!(read(&with(10, BLOB_MIN as u32), true).is_err());
        assert!(read(&with(u32::MAX, 2), true).is_err());
        // Too much beside it for the reader's buffer.
        let mut big = good.clone();
        let body = (BESIDE_BLOB_MAX + BLOB_MIN) as u32 | BLOB_FLAG;
        big[0..4].copy_from_slice(&body.to_le_bytes());
        assert!(read(&big, true).is_err());
        // Over the maximum frame size.
        let mut r = FrameReader::new(1024);
        r.allow_blobs();
        assert!(r.next_with_blob(&mut &good[..]).is_err());
    }
}
