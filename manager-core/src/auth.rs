//! The authentication key, and the handshake that proves it and agrees the
//! connection's keys.
//!
//! Every connection runs one Noise handshake ([`NOISE`]): `NNpsk0`, with a
//! pre-shared key derived from the [`AuthKey`]. The client's first message
//! is already encrypted under that key, so a manager answers only a client
//! that knows it (a peer without the key learns that it was refused, and
//! nothing else); the manager's answer proves the key back. Each side adds
//! an ephemeral X25519 key, so every connection has fresh transport keys
//! and forward secrecy: a key leaked tomorrow does not decrypt today's
//! traffic. What the handshake does not fix, the plaintext hello before it
//! (protocol name and version), it covers as the Noise prologue, so a
//! change to it on the path fails the handshake.

use std::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use snow::{HandshakeState, StatelessTransportState};

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

    /// The Noise pre-shared key: HKDF-SHA256 (RFC 5869) of the key's bytes
    /// with a fixed salt and context, so that a key of any length becomes
    /// the 32 bytes Noise needs and this use of the key is bound to this
    /// protocol.
    fn psk(&self) -> [u8; 32] {
        let mut psk = [0u8; 32];
        Hkdf::<Sha256>::new(Some(PSK_SALT), &self.0)
            .expand(PSK_INFO, &mut psk)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        psk
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.write_str("AuthKey(..)")
    }
}

/// The handshake and cipher suite. `NNpsk0`: no static keys (the pre-shared
/// key is the identity), the PSK mixed in before the first message so the
/// client proves it first. AES-256-GCM because with AES-NI (ring's
/// implementation) it seals and opens 4.5 GB/s here against ChaCha20-
/// Poly1305's 1.2 GB/s; BLAKE2s only hashes the handshake.
pub(crate) const NOISE: &str = "Noise_NNpsk0_25519_AESGCM_BLAKE2s";

const PSK_SALT: &[u8] = b"manager/noise-psk/v1";
const PSK_INFO: &[u8] = b"Noise_NNpsk0 pre-shared key";

/// One side of a connection's handshake.
pub(crate) struct Handshake(HandshakeState);

/// The keys of an established connection, one per direction, with the
/// message counters kept by the record layer.
pub(crate) type Keys = StatelessTransportState;

fn noise_error(e: snow::Error) -> Error {
    Error::Protocol(format!("the encrypted handshake failed: {e}"))
}

impl Handshake {
    /// The client's side; `prologue` is the hello both sides saw.
    pub(crate) fn initiator(key: &AuthKey, prologue: &[u8]) -> Result<Handshake> {
        Handshake::build(key, prologue, true)
    }

    /// The manager's side.
    pub(crate) fn responder(key: &AuthKey, prologue: &[u8]) -> Result<Handshake> {
        Handshake::build(key, prologue, false)
    }

    fn build(key: &AuthKey, prologue: &[u8], initiator: bool) -> Result<Handshake> {
        let params = NOISE.parse().map_err(noise_error)?;
        let psk = key.psk();
        let builder = snow::Builder::new(params)
            .prologue(prologue)
            .and_then(|b| b.psk(0, &psk))
            .map_err(noise_error)?;
        let state = if initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        };
        state.map(Handshake).map_err(noise_error)
    }

    /// The next handshake message, carrying `payload` encrypted.
    pub(crate) fn write(&mut self, payload: &[u8]) -> Result<Vec<u8>> {
        let mut msg = vec![0u8; payload.len() + HANDSHAKE_OVERHEAD];
        let n = self
            .0
            .write_message(payload, &mut msg)
            .map_err(noise_error)?;
        msg.truncate(n);
        Ok(msg)
    }

    /// The payload of the peer's handshake message, or `None` if it does
    /// not decrypt: the peer does not know the key (or the message was
    /// altered on the way).
    pub(crate) fn read(&mut self, msg: &[u8]) -> Option<Vec<u8>> {
        let mut payload = vec![0u8; msg.len()];
        let n = self.0.read_message(msg, &mut payload).ok()?;
        payload.truncate(n);
        Some(payload)
    }

    /// The transport keys, once both messages are through.
    pub(crate) fn finish(self) -> Result<Keys> {
        self.0.into_stateless_transport_mode().map_err(noise_error)
    }
}

/// Keys from a handshake run in memory with a fixed key: (client's, manager's).
/// For the record layer's fuzz target and tests.
pub(crate) fn test_keys() -> Option<(Keys, Keys)> {
    let key = AuthKey::from_bytes(b"record layer test key");
    let mut client = Handshake::initiator(&key, b"test").ok()?;
    let mut server = Handshake::responder(&key, b"test").ok()?;
    server.read(&client.write(&[]).ok()?)?;
    client.read(&server.write(&[]).ok()?)?;
    Some((client.finish().ok()?, server.finish().ok()?))
}

/// What a handshake message adds to its payload: an ephemeral public key
/// and an authentication tag.
const HANDSHAKE_OVERHEAD: usize = 32 + 16;

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS random source failing is not something a program can recover from.
    getrandom::fill(&mut b).expect("the operating system's random source failed");
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

    fn shake(
        client: &AuthKey,
        server: &AuthKey,
        prologues: (&[u8], &[u8]),
    ) -> Option<(Keys, Keys)> {
        let mut i = Handshake::initiator(client, prologues.0).unwrap();
        let mut r = Handshake::responder(server, prologues.1).unwrap();
        let first = i.write(b"join").unwrap();
        assert_eq!(r.read(&first)?, b"join");
        let second = r.write(b"welcome").unwrap();
        assert_eq!(i.read(&second)?, b"welcome");
        Some((i.finish().unwrap(), r.finish().unwrap()))
    }

    #[test]
    fn the_handshake_succeeds_only_with_the_same_key_and_prologue() {
        let k = AuthKey::from_bytes(b"k");
        let (c, s) = shake(&k, &k, (b"hello", b"hello")).unwrap();
        let mut sealed = [0u8; 64];
        let n = c.write_message(0, b"call", &mut sealed).unwrap();
        assert!(!sealed[..n].windows(4).any(|w| w == b"call"));
        let mut opened = [0u8; 64];
        let m = s.read_message(0, &sealed[..n], &mut opened).unwrap();
        assert_eq!(&opened[..m], b"call");
        assert!(
            s.read_message(1, &sealed[..n], &mut opened).is_err(),
            "a replay"
        );
        assert!(shake(&k, &AuthKey::from_bytes(b"j"), (b"hello", b"hello")).is_none());
        assert!(shake(&k, &k, (b"hello", b"hellO")).is_none());
    }

    #[test]
    fn the_psk_is_fixed_by_the_key_alone() {
        let a = AuthKey::from_bytes(b"secret").psk();
        assert_eq!(a, AuthKey::from_bytes(b"secret").psk());
        assert_ne!(a, AuthKey::from_bytes(b"secreT").psk());
        assert_ne!(&a[..6], b"secret");
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
