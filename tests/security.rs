//! Authentication: only a peer that proves the key is served.

use manager::{shared, AuthKey, Client, Error, Manager, Proxy};

#[shared]
pub struct Secret {
    word: String,
}

#[shared]
impl Secret {
    /// A secret word.
    pub fn new(word: String) -> Self {
        Secret { word }
    }
    /// The word.
    pub fn word(&self) -> String {
        self.word.clone()
    }
}

fn assert_refused<T: std::fmt::Debug>(r: manager::Result<T>) {
    match r {
        Err(Error::AuthenticationFailed { .. }) => {}
        other => panic!("expected AuthenticationFailed, got {other:?}"),
    }
}

#[test]
fn wrong_key_is_refused_and_the_manager_goes_on() {
    for address in ["tcp:127.0.0.1:0", "local:auth-test.sock"] {
        let mgr = Manager::builder()
            .register::<Secret>()
            .address(address.parse().unwrap())
            .auth_key(AuthKey::from_bytes(b"right"))
            .spawn_thread()
            .unwrap();
        let s = SecretProxy::new(&mgr, "swordfish".into()).unwrap();
        let before = mgr.stats().unwrap().connections;
        for _ in 0..3 {
            assert_refused(Client::connect(
                mgr.address(),
                &AuthKey::from_bytes(b"wrong"),
            ));
        }
        assert_refused(Client::connect(mgr.address(), &AuthKey::from_bytes(b"")));
        // A token does not carry the key: redeeming it with a wrong one fails too.
        assert_refused(SecretProxy::from_token(
            &s.to_token().unwrap(),
            &AuthKey::from_bytes(b"wrong"),
        ));
        // Refused peers never became connections.
        assert_eq!(mgr.stats().unwrap().connections, before, "{address}");
        let good = Client::connect(mgr.address(), &AuthKey::from_bytes(b"right")).unwrap();
        let again = SecretProxy::new(&good, "still here".into()).unwrap();
        assert_eq!(again.word().unwrap(), "still here");
        assert_eq!(s.word().unwrap(), "swordfish");
    }
}

#[test]
fn a_peer_that_is_not_a_manager_client_is_dropped() {
    use std::io::{Read, Write};
    let mgr = Manager::builder().spawn_thread().unwrap();
    let path = mgr.address().local_path().unwrap().to_owned();
    let mut raw = std::os::unix::net::UnixStream::connect(&path).unwrap();
    raw.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    // The manager hangs up; it may say why first.
    let _ = raw.read_to_end(&mut buf);
    assert!(buf.len() < 1024);
    mgr.ping().unwrap();
}
