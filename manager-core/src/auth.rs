//! The authentication key and the mutual HMAC-SHA256 challenge-response.
//!
//! Client and server each send a fresh random nonce; the client proves the key
//! first (`HMAC(key, "manager client" ‖ client nonce ‖ server nonce)`), and only
//! then does the server prove it back with the other label. A peer without the
//! key learns nothing but two random nonces.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

/// The shared secret clients must prove to a manager.
///
/// ```
/// use manager::AuthKey;
///
/// let fresh = AuthKey::random();
/// let fixed = AuthKey::from_bytes(b"correct horse battery staple");
/// assert_ne!(fresh, fixed);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AuthKey(Vec<u8>);

impl AuthKey {
    /// 32 bytes from the operating system's random source.
    pub fn random() -> AuthKey {
        AuthKey(random_bytes::<32>().to_vec())
    }

    /// A key made of these bytes.
    pub fn from_bytes(bytes: impl AsRef<[u8]>) -> AuthKey {
        AuthKey(bytes.as_ref().to_vec())
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key as lowercase hex, e.g. to hand it to another process.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// A key from [`AuthKey::to_hex`] output.
    ///
    /// # Errors
    /// `Error::Protocol` if `s` is not an even number of hex digits.
    pub fn from_hex(s: &str) -> Result<AuthKey> {
        unhex(s).map(AuthKey)
    }

    pub(crate) fn proof(&self, label: &[u8], first: &[u8; 32], second: &[u8; 32]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(label);
        mac.update(first);
        mac.update(second);
        mac.finalize().into_bytes().into()
    }

    pub(crate) fn verify(
        &self,
        label: &[u8],
        first: &[u8; 32],
        second: &[u8; 32],
        proof: &[u8; 32],
    ) -> bool {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of any length");
        mac.update(label);
        mac.update(first);
        mac.update(second);
        // verify_slice compares in constant time.
        mac.verify_slice(proof).is_ok()
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.write_str("AuthKey(..)")
    }
}

pub(crate) const CLIENT_LABEL: &[u8] = b"manager client proof v1";
pub(crate) const SERVER_LABEL: &[u8] = b"manager server proof v1";

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS random source failing is not something a program can recover from.
    getrandom::getrandom(&mut b).expect("the operating system's random source failed");
    b
}

pub(crate) fn random_u64() -> u64 {
    u64::from_le_bytes(random_bytes::<8>())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub(crate) fn unhex(s: &str) -> Result<Vec<u8>> {
    if s.len() % 2 != 0 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::protocol("expected an even number of hex digits"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| Error::protocol("bad hex digit")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_same_key_label_and_nonces() {
        let k = AuthKey::from_bytes(b"k");
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let p = k.proof(CLIENT_LABEL, &a, &b);
        assert!(k.verify(CLIENT_LABEL, &a, &b, &p));
        assert!(!k.verify(SERVER_LABEL, &a, &b, &p));
        assert!(!k.verify(CLIENT_LABEL, &b, &a, &p));
        assert!(!AuthKey::from_bytes(b"j").verify(CLIENT_LABEL, &a, &b, &p));
    }

    #[test]
    fn hex_round_trips() {
        let k = AuthKey::random();
        assert_eq!(AuthKey::from_hex(&k.to_hex()).unwrap(), k);
        assert!(AuthKey::from_hex("abc").is_err());
        assert!(AuthKey::from_hex("zz").is_err());
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(
            format!("{:?}", AuthKey::from_bytes(b"secret")),
            "AuthKey(..)"
        );
    }
}
