//! The headers every call and reply carries, encoded and decoded by hand.
//!
//! A [`Request`] or [`Response`] header is a postcard enum: the variant's
//! index, then its fields: a call number or object id as eight
//! little-endian bytes (`wire/message.rs`), other numbers as varints
//! (LEB128). postcard's generic serializer spends a few hundred
//! instructions on a call's header, as much as the rest of a small call's
//! framing; the hot variants here write and read exactly postcard's bytes.
//! Every other variant, and every input the fast path does not accept as
//! it stands, goes to postcard itself, so what is accepted and what it
//! means are postcard's (the tests compare the two).

use serde::Serialize;

use crate::error::{Error, Result};
use crate::wire::message::{Request, Response};

/// Room for any header (a `CallCaps`: a tag, two fixed fields and two varints).
pub(crate) const MAX_HEADER: usize = 32;

/// A message header, as it goes in front of a frame's payload.
pub(crate) trait Header {
    /// Writes the header's encoding at the front of `buf`: its length.
    fn encode(&self, buf: &mut [u8; MAX_HEADER]) -> Result<usize>;
}

/// postcard's encoding of `header`: for the headers no fast path covers.
fn by_postcard<H: Serialize>(header: &H, buf: &mut [u8; MAX_HEADER]) -> Result<usize> {
    postcard::to_slice(header, buf)
        .map(|h| h.len())
        .map_err(|e| Error::Protocol(format!("cannot encode a message header: {e}")))
}

/// The handshake's frames carry no header.
impl Header for () {
    fn encode(&self, _: &mut [u8; MAX_HEADER]) -> Result<usize> {
        Ok(0)
    }
}

#[cfg(test)]
impl Header for u8 {
    fn encode(&self, buf: &mut [u8; MAX_HEADER]) -> Result<usize> {
        by_postcard(self, buf)
    }
}

/// Variant indexes, as postcard numbers them (declaration order).
const CALL: u8 = 0;
const CALL_CAPS: u8 = 1;
const OK: u8 = 0;
const OK_CAPS: u8 = 1;
const ERR: u8 = 2;

impl Header for Request {
    #[inline]
    fn encode(&self, buf: &mut [u8; MAX_HEADER]) -> Result<usize> {
        Ok(match *self {
            Request::Call {
                seq,
                object,
                method,
            } => {
                buf[0] = CALL;
                put_fixed(buf, 1, seq);
                put_fixed(buf, 9, object);
                put(buf, 17, u64::from(method))
            }
            Request::CallCaps {
                seq,
                object,
                method,
                caps_len,
            } => {
                buf[0] = CALL_CAPS;
                put_fixed(buf, 1, seq);
                put_fixed(buf, 9, object);
                let at = put(buf, 17, u64::from(method));
                put(buf, at, u64::from(caps_len))
            }
            _ => return by_postcard(self, buf),
        })
    }
}

impl Header for Response {
    #[inline]
    fn encode(&self, buf: &mut [u8; MAX_HEADER]) -> Result<usize> {
        Ok(match *self {
            Response::Ok { seq } => {
                buf[0] = OK;
                put_fixed(buf, 1, seq)
            }
            Response::Err { seq } => {
                buf[0] = ERR;
                put_fixed(buf, 1, seq)
            }
            Response::OkCaps { seq, caps_len } => {
                buf[0] = OK_CAPS;
                let at = put_fixed(buf, 1, seq);
                put(buf, at, u64::from(caps_len))
            }
            _ => return by_postcard(self, buf),
        })
    }
}

impl Request {
    /// The request at the front of `body`, and the payload after it.
    #[inline]
    pub(crate) fn decode(body: &[u8]) -> postcard::Result<(Request, &[u8])> {
        if body.first() == Some(&CALL) {
            let mut at = 17;
            if let (Some(seq), Some(object), Some(method)) = (
                take_fixed(body, 1),
                take_fixed(body, 9),
                take_u32(body, &mut at),
            ) {
                let call = Request::Call {
                    seq,
                    object,
                    method,
                };
                return Ok((call, &body[at..]));
            }
        }
        postcard::take_from_bytes(body)
    }
}

impl Response {
    /// The response at the front of `body`, and the payload after it.
    #[inline]
    pub(crate) fn decode(body: &[u8]) -> postcard::Result<(Response, &[u8])> {
        if let Some(&tag @ (OK | ERR)) = body.first() {
            if let Some(seq) = take_fixed(body, 1) {
                let r = if tag == OK {
                    Response::Ok { seq }
                } else {
                    Response::Err { seq }
                };
                return Ok((r, &body[9..]));
            }
        }
        postcard::take_from_bytes(body)
    }
}

/// Writes `v` as eight little-endian bytes at `buf[at..]`: where they end.
#[inline]
fn put_fixed(buf: &mut [u8; MAX_HEADER], at: usize, v: u64) -> usize {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
    at + 8
}

/// The eight little-endian bytes at `bytes[at..]`, if there are eight.
#[inline]
fn take_fixed(bytes: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// Writes `v` as a varint at `buf[at..]`: where it ends. A header fits:
/// at most 1 + 8 + 8 + 5 + 5 bytes.
#[inline]
fn put(buf: &mut [u8; MAX_HEADER], mut at: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        buf[at] = (v as u8) | 0x80;
        v >>= 7;
        at += 1;
    }
    buf[at] = v as u8;
    at + 1
}

/// A varint of at most `max` bytes at `bytes[*at..]`, as postcard reads
/// one (`max_last`: the largest last byte a full-length one may end with),
/// moving `at` past it; `None` where postcard would refuse it.
#[inline]
fn take(bytes: &[u8], at: &mut usize, max: usize, max_last: u8) -> Option<u64> {
    // A method index or a list's length: nearly always one byte.
    let first = *bytes.get(*at)?;
    if first < 0x80 {
        *at += 1;
        return Some(u64::from(first));
    }
    let mut out = 0u64;
    for i in 0..max {
        let b = *bytes.get(*at + i)?;
        out |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            if i == max - 1 && b > max_last {
                return None;
            }
            *at += i + 1;
            return Some(out);
        }
    }
    None
}

#[inline]
fn take_u32(bytes: &[u8], at: &mut usize) -> Option<u32> {
    take(bytes, at, 5, 0x0F).map(|v| v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDGES: [u64; 12] = [
        0,
        1,
        127,
        128,
        255,
        16_383,
        16_384,
        u32::MAX as u64 - 1,
        u32::MAX as u64,
        u32::MAX as u64 + 1,
        u64::MAX - 1,
        u64::MAX,
    ];

    /// A small deterministic generator (xorshift), for arbitrary bytes.
    fn rng(mut s: u64) -> impl FnMut() -> u64 {
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    }

    fn requests() -> Vec<Request> {
        let mut all = Vec::new();
        for &a in &EDGES {
            for &b in &EDGES {
                let m = b as u32;
                all.push(Request::Call {
                    seq: a,
                    object: b,
                    method: m,
                });
                all.push(Request::CallCaps {
                    seq: b,
                    object: a,
                    method: m,
                    caps_len: a as u32,
                });
            }
            all.push(Request::Release { object: a });
            all.push(Request::Cancel { seq: a });
        }
        all.push(Request::Goodbye { session: true });
        all
    }

    fn responses() -> Vec<Response> {
        let mut all = vec![Response::Fatal, Response::Farewell];
        for &a in &EDGES {
            all.push(Response::Ok { seq: a });
            all.push(Response::Err { seq: a });
            all.push(Response::OkCaps {
                seq: a,
                caps_len: a as u32,
            });
        }
        all
    }

    fn encoded<H: Header>(h: &H) -> Vec<u8> {
        let mut buf = [0u8; MAX_HEADER];
        let n = h.encode(&mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn headers_are_encoded_as_postcard_encodes_them() {
        for r in requests() {
            assert_eq!(encoded(&r), postcard::to_allocvec(&r).unwrap(), "{r:?}");
        }
        for r in responses() {
            assert_eq!(encoded(&r), postcard::to_allocvec(&r).unwrap(), "{r:?}");
        }
    }

    #[test]
    fn headers_decode_as_postcard_decodes_them() {
        for r in requests() {
            let mut body = encoded(&r);
            body.extend_from_slice(b"args");
            let (back, rest) = Request::decode(&body).unwrap();
            assert_eq!(format!("{back:?}"), format!("{r:?}"));
            assert_eq!(rest, b"args");
        }
        for r in responses() {
            let mut body = encoded(&r);
            body.push(7);
            let (back, rest) = Response::decode(&body).unwrap();
            assert_eq!(format!("{back:?}"), format!("{r:?}"));
            assert_eq!(rest, [7]);
        }
    }

    /// Arbitrary bytes (truncated, overlong and oversized varints among
    /// them): the hand-written reading accepts what postcard accepts, as
    /// the same header with the same payload, and refuses what it refuses.
    #[test]
    fn any_bytes_decode_as_postcard_decodes_them() {
        let mut next = rng(0x9E37_79B9_7F4A_7C15);
        let mut accepted = 0;
        for round in 0..200_000 {
            let len = (next() % 24) as usize;
            let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Mostly the hot tags, with continuation bytes and the
            // boundary values of a last byte.
            if let Some(first) = body.first_mut() {
                *first = [0, 0, 2, 1, 0x80, 5][round % 6];
            }
            for b in body.iter_mut().skip(1) {
                match next() % 5 {
                    0 => *b |= 0x80,
                    1 => *b = [0x01, 0x02, 0x0F, 0x10, 0x7F][(next() % 5) as usize],
                    _ => {}
                }
            }
            let ours = Request::decode(&body).map(|(r, rest)| (format!("{r:?}"), rest.to_vec()));
            let theirs = postcard::take_from_bytes::<Request>(&body)
                .map(|(r, rest)| (format!("{r:?}"), rest.to_vec()));
            accepted += usize::from(theirs.is_ok());
            assert_eq!(ours.ok(), theirs.ok(), "request {body:02x?}");
            let ours = Response::decode(&body).map(|(r, rest)| (format!("{r:?}"), rest.to_vec()));
            let theirs = postcard::take_from_bytes::<Response>(&body)
                .map(|(r, rest)| (format!("{r:?}"), rest.to_vec()));
            accepted += usize::from(theirs.is_ok());
            assert_eq!(ours.ok(), theirs.ok(), "response {body:02x?}");
        }
        // Both ways are exercised: many inputs decode, many do not.
        assert!((50_000..350_000).contains(&accepted), "{accepted} accepted");
    }
}
