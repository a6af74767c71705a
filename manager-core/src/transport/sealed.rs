//! The record layer of an encrypted connection: the byte stream after the
//! handshake, cut into Noise transport messages.
//!
//! A record is a 16-bit big-endian length, then a Noise transport message of
//! that many bytes (at most 65,535: the ciphertext and its 16-byte tag), as
//! the Noise specification's section on application responsibilities
//! describes. Each direction numbers its records from 0 with the cipher's
//! nonce, so a record that is altered, dropped, reordered, replayed or taken
//! from another connection fails authentication. The first such failure
//! ends the connection: the reader returns an error and every later read
//! does too, and nothing of the bad record reaches the frames above.
//!
//! Frames and records are independent: a small frame is one record, an
//! 8 MiB frame about 128, and the writer seals from the caller's memory
//! into a bounded buffer, so no second full copy of a large frame exists.
//! The reader opens a record straight into the caller's buffer when it
//! fits (an out-of-line byte string lands in the method's `Vec` in one
//! step), and into a small buffer of its own otherwise.

use std::io::{self, Read, Write};
use std::sync::Mutex;

use crate::auth::Keys;
use crate::sync::lock;
use crate::transport::Socket;

/// The largest Noise message.
const MAX_RECORD: usize = 65_535;
/// What sealing adds to a record's plaintext.
const TAG: usize = 16;
/// The most plaintext one record carries.
const MAX_PLAIN: usize = MAX_RECORD - TAG;
/// A record's length prefix.
const PREFIX: usize = 2;
/// Sealed records are written once this many bytes wait.
const FLUSH_AT: usize = 256 * 1024;
/// The reader's buffer starts this small (most connections carry small
/// calls) and grows to hold one whole record only when one arrives.
const INITIAL: usize = 16 * 1024;

/// An encrypted connection over `inner`: shared by every clone of its
/// [`Socket`], so that all writers take their turn in one sequence.
pub(crate) struct Sealed {
    pub(crate) inner: Socket,
    keys: Keys,
    writer: Mutex<Sealer>,
    reader: Mutex<Opener>,
}

impl Sealed {
    pub(crate) fn new(inner: Socket, keys: Keys) -> Sealed {
        Sealed {
            inner,
            keys,
            writer: Mutex::new(Sealer::default()),
            reader: Mutex::new(Opener::default()),
        }
    }

    pub(crate) fn read(&self, out: &mut [u8]) -> io::Result<usize> {
        let r = lock(&self.reader).read(&self.keys, &mut &self.inner, out);
        self.warn_if_forged(r)
    }

    pub(crate) fn read_append(&self, buf: &mut Vec<u8>, n: usize) -> io::Result<usize> {
        let r = lock(&self.reader).read_append(&self.keys, &mut &self.inner, buf, n);
        self.warn_if_forged(r)
    }

    /// Whether bytes read from the socket wait here: plaintext of an opened
    /// record not yet taken, or the read-ahead of the next record.
    pub(crate) fn has_buffered(&self) -> bool {
        let r = lock(&self.reader);
        r.taken < r.plain.len() || r.start < r.end
    }

    /// Seals `parts` as one stream and writes them; returns their total length.
    pub(crate) fn write(&self, parts: &[&[u8]]) -> io::Result<usize> {
        lock(&self.writer).seal(&self.keys, parts, &mut &self.inner)
    }

    /// Seals `parts` as one stream and hands the records to `out` as they
    /// are sealed, a few at a time (a writer that must not block: the
    /// socket's own writes are `out`'s to make).
    pub(crate) fn seal_through(&self, parts: &[&[u8]], out: &mut impl Write) -> io::Result<()> {
        lock(&self.writer).seal(&self.keys, parts, out).map(drop)
    }

    /// Seals `parts` as one stream into `out`, for a writer that sends the
    /// records itself without blocking. Records are numbered as they are
    /// sealed: `out` must reach the socket in the order it was filled.
    pub(crate) fn seal_into(&self, parts: &[&[u8]], out: &mut Vec<u8>) -> io::Result<()> {
        lock(&self.writer).seal(&self.keys, parts, out).map(drop)
    }

    fn warn_if_forged(&self, r: io::Result<usize>) -> io::Result<usize> {
        if let Err(e) = &r {
            if e.get_ref().is_some_and(|e| e.is::<Forged>()) {
                tracing::warn!(peer = %self.inner.peer(), "{e}; closing the connection");
            }
        }
        r
    }
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// A record that did not authenticate.
#[derive(Debug)]
struct Forged;

impl std::fmt::Display for Forged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "an encrypted record failed authentication: it was altered, replayed, \
             reordered or forged on the way",
        )
    }
}

impl std::error::Error for Forged {}

fn forged() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Forged)
}

fn truncated() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the stream ended inside an encrypted record",
    )
}

/// The sending half: the next record's number and the records not yet
/// written.
#[derive(Default)]
pub(crate) struct Sealer {
    nonce: u64,
    buf: Vec<u8>,
}

impl Sealer {
    /// Seals `parts`, in order, into records and writes them to `out`.
    pub(crate) fn seal(
        &mut self,
        keys: &Keys,
        parts: &[&[u8]],
        out: &mut impl Write,
    ) -> io::Result<usize> {
        let mut total = 0;
        for part in parts {
            for chunk in part.chunks(MAX_PLAIN) {
                let at = self.buf.len();
                self.buf.resize(at + PREFIX + chunk.len() + TAG, 0);
                let n = keys
                    .write_message(self.nonce, chunk, &mut self.buf[at + PREFIX..])
                    .map_err(|e| io::Error::other(format!("cannot seal a record: {e}")))?;
                self.nonce += 1;
                // n <= MAX_RECORD, which fits the prefix.
                self.buf[at..at + PREFIX].copy_from_slice(&(n as u16).to_be_bytes());
                self.buf.truncate(at + PREFIX + n);
                if self.buf.len() >= FLUSH_AT {
                    self.flush(out)?;
                }
            }
            total += part.len();
        }
        self.flush(out)?;
        if self.buf.capacity() > FLUSH_AT + MAX_RECORD + PREFIX {
            self.buf = Vec::new();
        }
        Ok(total)
    }

    fn flush(&mut self, out: &mut impl Write) -> io::Result<()> {
        let r = out.write_all(&self.buf);
        self.buf.clear();
        r
    }
}

/// The receiving half: the next record's number, ciphertext read ahead,
/// and the opened part of a record the caller had no room for.
#[derive(Default)]
pub(crate) struct Opener {
    nonce: u64,
    raw: Vec<u8>,
    start: usize,
    end: usize,
    plain: Vec<u8>,
    taken: usize,
    /// Set by the first record that failed: the stream is over.
    failed: bool,
}

impl Opener {
    /// Reads plaintext into `out`: what is left of an opened record, or the
    /// next record. `Ok(0)` only at the end of the stream, between records.
    pub(crate) fn read(
        &mut self,
        keys: &Keys,
        src: &mut impl Read,
        out: &mut [u8],
    ) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.taken < self.plain.len() {
                let n = (self.plain.len() - self.taken).min(out.len());
                out[..n].copy_from_slice(&self.plain[self.taken..self.taken + n]);
                self.taken += n;
                return Ok(n);
            }
            let Some(len) = self.next_record(src)? else {
                return Ok(0);
            };
            let plain = len - TAG;
            if plain == 0 {
                self.open(keys, len, &mut [])?;
            } else if plain <= out.len() {
                return self.open(keys, len, &mut out[..plain]);
            } else {
                let mut spare = std::mem::take(&mut self.plain);
                spare.resize(plain, 0);
                let opened = self.open(keys, len, &mut spare);
                self.plain = spare;
                self.taken = 0;
                if let Err(e) = opened {
                    self.plain.clear();
                    return Err(e);
                }
            }
        }
    }

    /// Appends at most `n` bytes of plaintext to `buf`, opening whole
    /// records that fit straight into it.
    pub(crate) fn read_append(
        &mut self,
        keys: &Keys,
        src: &mut impl Read,
        buf: &mut Vec<u8>,
        n: usize,
    ) -> io::Result<usize> {
        let at = buf.len();
        buf.resize(at + n.min(MAX_PLAIN), 0);
        let r = self.read(keys, src, &mut buf[at..]);
        buf.truncate(at + *r.as_ref().unwrap_or(&0));
        r
    }

    /// Reads until a whole record is buffered and returns its length, or
    /// `None` at the end of the stream between records.
    fn next_record(&mut self, src: &mut impl Read) -> io::Result<Option<usize>> {
        if self.failed {
            return Err(forged());
        }
        if self.start == self.end {
            // Nothing read ahead: start over at the front. A buffer grown to
            // one whole record stays (64 KiB), so a large transfer does not
            // allocate per record.
            self.start = 0;
            self.end = 0;
        }
        if self.raw.is_empty() {
            self.raw.resize(INITIAL, 0);
        }
        loop {
            let avail = self.end - self.start;
            if avail >= PREFIX {
                let len = usize::from(u16::from_be_bytes([
                    self.raw[self.start],
                    self.raw[self.start + 1],
                ]));
                if len < TAG {
                    self.failed = true;
                    return Err(forged());
                }
                if avail >= PREFIX + len {
                    return Ok(Some(len));
                }
                if self.start + PREFIX + len > self.raw.len() {
                    self.raw.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                    if self.raw.len() < PREFIX + len {
                        self.raw.resize(PREFIX + MAX_RECORD, 0);
                    }
                }
            } else if self.start + PREFIX > self.raw.len() {
                self.raw.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = match src.read(&mut self.raw[self.end..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return if self.start == self.end {
                    Ok(None)
                } else {
                    Err(truncated())
                };
            }
            self.end += n;
        }
    }

    /// Opens the buffered record of `len` bytes into `out` (exactly its
    /// plaintext's length).
    fn open(&mut self, keys: &Keys, len: usize, out: &mut [u8]) -> io::Result<usize> {
        let record = &self.raw[self.start + PREFIX..self.start + PREFIX + len];
        match keys.read_message(self.nonce, record, out) {
            Ok(n) => {
                self.nonce += 1;
                self.start += PREFIX + len;
                Ok(n)
            }
            Err(_) => {
                self.failed = true;
                Err(forged())
            }
        }
    }
}

/// Opens a stream of records from `bytes` with keys fresh from a real
/// handshake, as a manager opens what a peer sends after it: for the fuzz
/// target and the property tests. Returns the plaintext opened before the
/// stream ended or failed, and whether it failed. Never panics.
pub fn open_stream(bytes: &[u8], valid_prefix: &[&[u8]]) -> (Vec<u8>, bool) {
    let Some((client, server)) = crate::auth::test_keys() else {
        return (Vec::new(), true);
    };
    let mut sealed = Vec::new();
    if Sealer::default()
        .seal(&client, valid_prefix, &mut sealed)
        .is_err()
    {
        return (Vec::new(), true);
    }
    sealed.extend_from_slice(bytes);
    let mut opener = Opener::default();
    let mut src = &sealed[..];
    let mut plain = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match opener.read(&server, &mut src, &mut chunk) {
            Ok(0) => return (plain, false),
            Ok(n) => plain.extend_from_slice(&chunk[..n]),
            Err(_) => return (plain, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (Keys, Keys) {
        crate::auth::test_keys().unwrap()
    }

    fn seal(keys: &Keys, parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        Sealer::default().seal(keys, parts, &mut out).unwrap();
        out
    }

    /// Reads everything with `chunk`-sized reads.
    fn open_all(keys: &Keys, mut src: &[u8], chunk: usize) -> io::Result<Vec<u8>> {
        let mut o = Opener::default();
        let mut all = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            match o.read(keys, &mut src, &mut buf)? {
                0 => return Ok(all),
                n => all.extend_from_slice(&buf[..n]),
            }
        }
    }

    #[test]
    fn records_round_trip_whatever_the_read_sizes() {
        let (c, s) = keys();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let wire = seal(&c, &[b"small", &[], &big, b"tail"]);
        assert!(!wire.windows(5).any(|w| w == b"small"));
        let mut want = b"small".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"tail");
        for chunk in [1, 7, 4096, 65_519, 1 << 20] {
            assert_eq!(open_all(&s, &wire, chunk).unwrap(), want, "chunk {chunk}");
        }
    }

    #[test]
    fn a_flipped_byte_a_replay_or_a_cut_is_refused() {
        let (c, s) = keys();
        let mut sealer = Sealer::default();
        let mut wire = Vec::new();
        sealer.seal(&c, &[b"one"], &mut wire).unwrap();
        let first = wire.clone();
        sealer.seal(&c, &[b"two"], &mut wire).unwrap();
        let mut flipped = wire.clone();
        flipped[first.len() + 4] ^= 1;
        assert_eq!(open_all(&s, &wire, 64).unwrap(), b"onetwo");
        assert!(open_all(&s, &flipped, 64).is_err());
        let mut replayed = wire.clone();
        replayed.extend_from_slice(&first);
        assert!(open_all(&s, &replayed, 64).is_err());
        assert!(open_all(&s, &wire[..wire.len() - 1], 64).is_err());
        let swapped = [&wire[first.len()..], &first[..]].concat();
        assert!(open_all(&s, &swapped, 64).is_err());
    }

    #[test]
    fn after_a_failure_nothing_more_is_opened() {
        let (c, s) = keys();
        let wire = seal(&c, &[b"good"]);
        let mut bad = wire.clone();
        bad[3] ^= 0x80;
        bad.extend_from_slice(&wire);
        let (plain, failed) = {
            let mut o = Opener::default();
            let mut src = &bad[..];
            let mut buf = [0u8; 16];
            let first = o.read(&s, &mut src, &mut buf);
            (first.is_ok(), o.read(&s, &mut src, &mut buf).is_err())
        };
        assert!(!plain && failed);
    }

    #[test]
    fn the_fuzz_entry_point_opens_a_valid_prefix() {
        let (plain, failed) = open_stream(&[], &[b"abc", b"def"]);
        assert_eq!((plain.as_slice(), failed), (&b"abcdef"[..], false));
        let (plain, failed) = open_stream(&[0, 17, 1, 2, 3], &[b"abc"]);
        assert_eq!((plain.as_slice(), failed), (&b"abc"[..], true));
    }
}
