//! Length-prefixed frames: a little-endian `u32` body length, then the body.
//!
//! A body is a postcard-encoded message header followed by its payload. The
//! writer builds the payload first in a reused buffer and slots the header in
//! front of it afterwards, so a call costs no copy of its arguments and one
//! `write`; the reader pulls as much as the socket has, so a small reply costs
//! one `read`.

use std::io::{Read, Write};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::wire::codec::Encoder;

/// The default maximum frame body: bounds what a peer can make us allocate.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024 * 1024;

/// Room reserved in front of a payload for the length prefix and a header.
const MAX_HEADER: usize = 32;
const ROOM: usize = 4 + MAX_HEADER;
/// Buffers grown past this by a large frame shrink back once it is handled;
/// below it they are kept, so a connection that moves large values does
/// not pay for fresh memory (page faults) on every call.
const KEEP: usize = 16 << 20;
const INITIAL: usize = 16 * 1024;

/// Builds outgoing frames in one reused buffer.
pub(crate) struct FrameWriter {
    buf: Vec<u8>,
    /// Where the finished frame starts in `buf`.
    start: usize,
}

impl FrameWriter {
    pub(crate) fn new() -> Self {
        FrameWriter {
            buf: Vec::with_capacity(INITIAL),
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
    pub(crate) fn finish<H: Serialize>(&mut self, header: &H, max: usize) -> Result<()> {
        let mut tmp = [0u8; MAX_HEADER];
        let h = postcard::to_slice(header, &mut tmp)
            .map_err(|e| Error::Protocol(format!("cannot encode a message header: {e}")))?;
        let hl = h.len();
        let body = self.payload_len() + hl;
        if body > max {
            return Err(Error::Protocol(format!(
                "a message of {body} bytes exceeds the maximum frame size of {max} bytes"
            )));
        }
        let len = u32::try_from(body)
            .map_err(|_| Error::Protocol(format!("a message of {body} bytes is too large")))?;
        let start = ROOM - hl - 4;
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[start + 4..ROOM].copy_from_slice(h);
        self.start = start;
        Ok(())
    }

    /// The frame last finished.
    #[inline]
    pub(crate) fn frame(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Encodes `header` with `payload` as one frame and writes it.
    pub(crate) fn send<H: Serialize, W: Write>(
        &mut self,
        w: &mut W,
        header: &H,
        max: usize,
    ) -> Result<()> {
        self.finish(header, max)?;
        w.write_all(self.frame()).map_err(Error::lost)
    }
}

/// Reads frames, buffering whatever the socket delivers.
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max: usize,
}

impl FrameReader {
    pub(crate) fn new(max: usize) -> Self {
        FrameReader {
            buf: vec![0; INITIAL],
            start: 0,
            end: 0,
            max,
        }
    }

    pub(crate) fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Whether a whole frame is already buffered: more requests are waiting.
    pub(crate) fn has_frame(&self) -> bool {
        let avail = self.end - self.start;
        if avail < 4 {
            return false;
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&self.buf[self.start..self.start + 4]);
        avail >= 4 + u32::from_le_bytes(len) as usize
    }

    /// The next frame's body; `Ok(None)` on end of stream between frames.
    ///
    /// # Errors
    /// `Error::Protocol` for a length over the maximum (before allocating it)
    /// or a stream that ends inside a frame; the I/O error otherwise.
    pub(crate) fn next<R: Read>(&mut self, r: &mut R) -> std::io::Result<Option<&[u8]>> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP || self.buf.len() < INITIAL {
                self.buf = vec![0; INITIAL];
            }
        }
        loop {
            let avail = self.end - self.start;
            if avail >= 4 {
                let mut len = [0u8; 4];
                len.copy_from_slice(&self.buf[self.start..self.start + 4]);
                let len = u32::from_le_bytes(len) as usize;
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
                    return Ok(Some(&self.buf[body]));
                }
                if total > INITIAL {
                    return self.read_large(r, total).map(Some);
                }
                if self.start + total > self.buf.len() {
                    self.compact();
                }
            } else if self.buf.len() - self.start < 4 {
                self.compact();
            }
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
        }
    }

    /// Reads a frame larger than the usual buffer straight into a buffer of
    /// its size, reusing (without re-zeroing) one kept from an earlier large
    /// frame. A fresh one costs address space only until bytes arrive, so a
    /// peer that announces 64 MiB and stalls costs what it actually sent.
    fn read_large<R: Read>(&mut self, r: &mut R, total: usize) -> std::io::Result<&[u8]> {
        let have = self.end - self.start;
        if self.buf.len() >= total {
            // A buffer kept from an earlier large frame is already
            // initialized: read into it in place, without zero-filling.
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = 0;
            if let Err(e) = r.read_exact(&mut self.buf[have..total]) {
                self.buf = Vec::new();
                return Err(e);
            }
        } else {
            let mut big = Vec::with_capacity(total);
            big.extend_from_slice(&self.buf[self.start..self.end]);
            self.start = 0;
            self.end = 0;
            // A fresh buffer fills as bytes arrive: a stalled peer costs
            // what it sent, not what it announced.
            let read = r.take((total - have) as u64).read_to_end(&mut big);
            let complete = big.len() == total;
            self.buf = big;
            read?;
            if !complete {
                self.buf = Vec::new();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the stream ended inside a frame",
                ));
            }
        }
        self.start = total;
        self.end = total;
        Ok(&self.buf[4..total])
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
pub(crate) fn send<T: Serialize, W: Write>(
    writer: &mut FrameWriter,
    mut w: W,
    msg: &T,
) -> Result<()> {
    writer.begin().put(msg)?;
    writer.send(&mut w, &(), HANDSHAKE_MAX_FRAME)
}

/// Receives one handshake message.
pub(crate) fn receive<T: serde::de::DeserializeOwned, R: Read>(
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

    /// A reader that hands out at most `chunk` bytes per read.
    struct Trickle<'a> {
        data: &'a [u8],
        chunk: usize,
    }

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
}
