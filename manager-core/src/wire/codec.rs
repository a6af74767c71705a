//! Encoding of arguments and results: postcard values written one after another
//! into a reused buffer, read back in the same order.
//!
//! Postcard is concatenative (encoding `a` then `b` equals encoding `(a, b)`),
//! so a call's arguments need no tuple and no intermediate allocation.

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};

/// Writes postcard values at the end of a byte buffer.
pub struct Encoder<'a> {
    buf: &'a mut Vec<u8>,
    blob: BlobSlot,
}

/// Byte strings at least this long may travel out of line: written from the
/// caller's own memory and read into their own allocation (see
/// [`Encoder::put_bytes`]).
pub(crate) const BLOB_MIN: usize = 64 * 1024;

/// Whether an encoder may leave one byte string out of its buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlobSlot {
    /// Everything goes into the buffer.
    Inline,
    /// The byte string at `ptr`, of `len` bytes, may stay out if long.
    Open { ptr: usize, len: usize },
    /// The allowed byte string belongs at `at` in the buffer (its length
    /// prefix is already there).
    Taken { at: usize },
}

struct VecFlavor<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for VecFlavor<'_> {
    type Output = ();

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

impl<'a> Encoder<'a> {
    /// An encoder that appends to `buf`.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Encoder {
            buf,
            blob: BlobSlot::Inline,
        }
    }

    /// Lets `bytes`, if long, stay out of the buffer when it is given to
    /// [`Encoder::put_bytes`]; [`Encoder::blob`] then says where it belongs.
    pub(crate) fn allow_blob(&mut self, bytes: &[u8]) {
        self.blob = BlobSlot::Open {
            ptr: bytes.as_ptr() as usize,
            len: bytes.len(),
        };
    }

    /// Where the byte string given to [`Encoder::allow_blob`] belongs in the
    /// buffer, if it was left out.
    pub(crate) fn blob(&self) -> Option<usize> {
        match self.blob {
            BlobSlot::Taken { at } => Some(at),
            _ => None,
        }
    }

    /// Appends a byte string, encoded as `serde_bytes` encodes it (its
    /// length, then its bytes). For a long argument of a call, the bytes may
    /// be written to the socket from `bytes` itself instead of copied here.
    ///
    /// # Errors
    /// None in practice; the signature matches [`Encoder::put`].
    #[inline]
    pub fn put_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let this = BlobSlot::Open {
            ptr: bytes.as_ptr() as usize,
            len: bytes.len(),
        };
        if self.blob == this && bytes.len() >= BLOB_MIN {
            self.put(&bytes.len())?;
            self.blob = BlobSlot::Taken { at: self.buf.len() };
            return Ok(());
        }
        self.put(serde_bytes::Bytes::new(bytes))
    }

    /// Appends one value.
    ///
    /// # Errors
    /// `Error::Protocol` if the value's `Serialize` impl fails.
    #[inline]
    pub fn put<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        postcard::serialize_with_flavor(value, VecFlavor(self.buf)).map_err(Error::from)
    }

    /// Appends raw bytes, already encoded.
    pub fn put_raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// How many bytes the buffer holds.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Reads postcard values from the front of a byte slice.
pub struct Decoder<'a> {
    rest: &'a [u8],
    /// A byte string that arrived out of line, and the offset in the
    /// original bytes where it belongs.
    blob: Option<(usize, Vec<u8>)>,
    /// The length of the original bytes: offsets are measured from their start.
    len: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Decoder {
            rest: bytes,
            blob: None,
            len: bytes.len(),
        }
    }

    /// A decoder over `bytes`, which lack one byte string: `blob` belongs at
    /// offset `at` (after its length prefix).
    pub(crate) fn with_blob(bytes: &'a [u8], at: usize, blob: Vec<u8>) -> Self {
        Decoder {
            rest: bytes,
            blob: Some((at, blob)),
            len: bytes.len(),
        }
    }

    /// Takes the next value, a byte string encoded by [`Encoder::put_bytes`]
    /// (or as `serde_bytes` encodes one). A long one that arrived out of
    /// line is handed over without a copy.
    ///
    /// # Errors
    /// `Error::Protocol` if the bytes do not hold a byte string.
    #[inline]
    pub fn take_bytes(&mut self) -> Result<Vec<u8>> {
        if let Some((at, blob)) = &self.blob {
            let (len, rest) = postcard::take_from_bytes::<usize>(self.rest)
                .map_err(|e| Error::Protocol(format!("malformed argument or result: {e}")))?;
            if self.len - rest.len() == *at && len == blob.len() {
                self.rest = rest;
                if let Some((_, blob)) = self.blob.take() {
                    return Ok(blob);
                }
            }
        }
        Ok(self.take_byte_slice()?.to_vec())
    }

    /// Takes the next value.
    ///
    /// # Errors
    /// `Error::Protocol` if the bytes do not hold a `T`.
    #[inline]
    pub fn take<T: DeserializeOwned>(&mut self) -> Result<T> {
        let (value, rest) = postcard::take_from_bytes(self.rest)
            .map_err(|e| Error::Protocol(format!("malformed argument or result: {e}")))?;
        self.rest = rest;
        Ok(value)
    }

    /// Takes the next value, a byte string, borrowed from the input.
    ///
    /// # Errors
    /// `Error::Protocol` if the bytes do not hold a byte string.
    pub(crate) fn take_byte_slice(&mut self) -> Result<&'a [u8]> {
        let (len, rest) = postcard::take_from_bytes::<usize>(self.rest)
            .map_err(|e| Error::Protocol(format!("malformed argument or result: {e}")))?;
        if len > rest.len() {
            return Err(Error::Protocol(
                "a byte string longer than its message".into(),
            ));
        }
        let (bytes, rest) = rest.split_at(len);
        self.rest = rest;
        Ok(bytes)
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// Checks that every byte was read: trailing bytes mean the peer encoded
    /// another signature than the one we decode.
    ///
    /// # Errors
    /// `Error::Protocol` if bytes remain.
    #[inline]
    pub fn finish(&self) -> Result<()> {
        if self.blob.is_some() {
            Err(Error::Protocol(
                "a byte string sent out of line is not where an argument takes one".into(),
            ))
        } else if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Error::Protocol(format!(
                "{} unexpected trailing bytes after the arguments",
                self.rest.len()
            )))
        }
    }
}

/// Encodes one value into a fresh vector.
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    Encoder::new(&mut v).put(value)?;
    Ok(v)
}

/// Why bytes are not exactly one value of a type: said of the value, so
/// that the caller can name it (a reply, a namespace value).
#[derive(Debug)]
pub(crate) enum Undecodable {
    Malformed(postcard::Error),
    LeftOver(usize),
}

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Undecodable::Malformed(e) => e.fmt(f),
            Undecodable::LeftOver(1) => f.write_str("1 byte is left over after it"),
            Undecodable::LeftOver(n) => write!(f, "{n} bytes are left over after it"),
        }
    }
}

/// Decodes exactly one `T` from `bytes`.
#[inline]
pub(crate) fn take_exactly<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Undecodable> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(Undecodable::LeftOver(rest.len())),
        Err(e) => Err(Undecodable::Malformed(e)),
    }
}

/// Decodes exactly one value from `bytes`.
pub(crate) fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let mut d = Decoder::new(bytes);
    let v = d.take()?;
    d.finish()?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_written_in_sequence_read_back_in_sequence() {
        let mut buf = Vec::new();
        let mut e = Encoder::new(&mut buf);
        e.put(&5i64).unwrap();
        e.put("hello").unwrap();
        e.put(&vec![1u8, 2, 3]).unwrap();
        let mut d = Decoder::new(&buf);
        assert_eq!(d.take::<i64>().unwrap(), 5);
        assert_eq!(d.take::<String>().unwrap(), "hello");
        assert_eq!(d.take::<Vec<u8>>().unwrap(), vec![1, 2, 3]);
        d.finish().unwrap();
    }

    #[test]
    fn trailing_bytes_and_short_input_are_protocol_errors() {
        let buf = to_vec(&(1u32, 2u32)).unwrap();
        assert!(matches!(from_slice::<u32>(&buf), Err(Error::Protocol(_))));
        assert!(matches!(
            from_slice::<String>(&[200]),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn a_byte_string_out_of_line_is_handed_over_where_it_belongs() {
        let mut buf = Vec::new();
        let mut e = Encoder::new(&mut buf);
        e.put(&1u8).unwrap();
        e.put_bytes(&[3, 3]).unwrap();
        e.put(&4usize).unwrap(); // the length prefix of the missing byte string
        let at = e.len();
        e.put(&5u8).unwrap();
        let blob = vec![9u8; 4];
        let mut d = Decoder::with_blob(&buf, at, blob.clone());
        assert_eq!(d.take::<u8>().unwrap(), 1);
        assert_eq!(d.take_bytes().unwrap(), [3, 3], "an inline one before it");
        assert_eq!(d.take_bytes().unwrap(), blob);
        assert_eq!(d.take::<u8>().unwrap(), 5);
        d.finish().unwrap();
        // One that no argument takes is an error, not a silent loss.
        let mut d = Decoder::with_blob(&buf, at, blob);
        assert_eq!(d.take::<u8>().unwrap(), 1);
        assert!(matches!(d.finish(), Err(Error::Protocol(_))));
    }
}
