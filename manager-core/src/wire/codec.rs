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
        Encoder { buf }
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
}

impl<'a> Decoder<'a> {
    /// A decoder over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Decoder { rest: bytes }
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
        if self.rest.is_empty() {
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
}
