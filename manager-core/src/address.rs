//! Where a manager listens: a local socket or a TCP endpoint.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};

/// The address of a manager: `local:NAME`, `tcp:HOST:PORT` or
/// `tcp-plain:HOST:PORT`.
///
/// `local:NAME` with no `/` in `NAME` is a socket in a per-user directory only
/// its owner can enter (`$XDG_RUNTIME_DIR/manager/`, else `manager-<uid>/` in
/// the system temp dir); a `NAME` with a `/` is the socket's path. `tcp:` with
/// port 0 binds any free port, and the running manager reports the real one.
///
/// On `tcp:` everything after the first handshake message is encrypted and
/// authenticated (Noise, with keys fresh for each connection). `tcp-plain:`
/// is the opt-out for a network you trust: the key is still proved, but
/// calls travel in clear. Both ends must ask for it: a client that says
/// `tcp:` to a `tcp-plain:` manager, or the other way round, is refused with
/// an error that says so.
///
/// ```
/// use manager::Address;
///
/// let a: Address = "tcp:127.0.0.1:0".parse()?;
/// assert_eq!(a.to_string(), "tcp:127.0.0.1:0");
/// let l: Address = "local:/tmp/my.sock".parse()?;
/// assert_eq!(l.local_path(), Some(std::path::Path::new("/tmp/my.sock")));
/// assert!(a.is_encrypted() && !l.is_encrypted());
/// assert!(!"tcp-plain:10.0.0.5:5050".parse::<Address>()?.is_encrypted());
/// # Ok::<(), manager::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Address {
    kind: Kind,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Kind {
    Local {
        name: String,
        path: PathBuf,
    },
    Tcp {
        host: String,
        port: u16,
        /// `tcp-plain:`: authenticated, not encrypted.
        plain: bool,
    },
}

impl Address {
    /// A local-socket address; `name` without `/` lives in the per-user directory.
    ///
    /// # Errors
    /// `Error::Protocol` if the name is empty.
    pub fn local(name: &str) -> Result<Address> {
        if name.is_empty() {
            return Err(Error::protocol("a local address needs a name: local:NAME"));
        }
        let path = if name.contains('/') {
            PathBuf::from(name)
        } else {
            runtime_dir().join(name)
        };
        Ok(Address {
            kind: Kind::Local {
                name: name.to_owned(),
                path,
            },
        })
    }

    /// An encrypted TCP address (`tcp:HOST:PORT`).
    pub fn tcp(host: &str, port: u16) -> Address {
        Address {
            kind: Kind::Tcp {
                host: host.to_owned(),
                port,
                plain: false,
            },
        }
    }

    /// A TCP address whose calls travel unencrypted (`tcp-plain:HOST:PORT`),
    /// for a network you trust; the key is still proved.
    pub fn tcp_plain(host: &str, port: u16) -> Address {
        Address {
            kind: Kind::Tcp {
                host: host.to_owned(),
                port,
                plain: true,
            },
        }
    }

    /// Whether connections to this address are encrypted: `tcp:` ones are;
    /// `tcp-plain:` and local sockets (which the kernel keeps private to
    /// their user) are not, unless the manager asks for it
    /// ([`ManagerBuilder::encrypt_local`](crate::ManagerBuilder::encrypt_local)).
    pub fn is_encrypted(&self) -> bool {
        matches!(self.kind, Kind::Tcp { plain: false, .. })
    }

    /// This address with another port: the real one of `tcp:HOST:0`.
    pub(crate) fn with_port(&self, real: u16) -> Address {
        match &self.kind {
            Kind::Tcp { host, plain, .. } => Address {
                kind: Kind::Tcp {
                    host: host.clone(),
                    port: real,
                    plain: *plain,
                },
            },
            Kind::Local { .. } => self.clone(),
        }
    }

    /// Whether this is a TCP address on a loopback host.
    pub(crate) fn is_loopback(&self) -> bool {
        match &self.kind {
            Kind::Tcp { host, .. } => {
                host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            Kind::Local { .. } => true,
        }
    }

    /// A fresh local address for a new manager of this process.
    pub(crate) fn fresh_local() -> Address {
        let nonce = crate::auth::random_u64();
        // The name is unique per process and random, so two managers never race for it.
        Address::local(&format!(
            "m-{}-{:08x}.sock",
            std::process::id(),
            nonce as u32
        ))
        .expect("a generated name is never empty")
    }

    /// The socket file of a local address.
    pub fn local_path(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Local { path, .. } => Some(path),
            Kind::Tcp { .. } => None,
        }
    }

    /// Host and port of a TCP address.
    pub(crate) fn tcp_parts(&self) -> Option<(&str, u16)> {
        match &self.kind {
            Kind::Tcp { host, port, .. } => Some((host, *port)),
            Kind::Local { .. } => None,
        }
    }
}

/// The per-user directory for local sockets, mode 0700.
pub(crate) fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("manager"),
        _ => {
            // SAFETY: getuid has no preconditions and cannot fail.
            let uid = unsafe { libc::getuid() };
            std::env::temp_dir().join(format!("manager-{uid}"))
        }
    }
}

/// Creates `dir` (mode 0700) if needed and checks that only we can enter it:
/// a socket in a directory others can write could be swapped under us.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.into()),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    if !meta.is_dir() || meta.uid() != uid {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "socket directory {} is not a directory owned by uid {uid}",
                dir.display()
            ),
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Local { name, .. } => write!(f, "local:{name}"),
            Kind::Tcp { host, port, plain } => {
                let scheme = if *plain { "tcp-plain" } else { "tcp" };
                if host.contains(':') {
                    write!(f, "{scheme}:[{host}]:{port}")
                } else {
                    write!(f, "{scheme}:{host}:{port}")
                }
            }
        }
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl FromStr for Address {
    type Err = Error;

    fn from_str(s: &str) -> Result<Address> {
        if let Some(name) = s.strip_prefix("local:") {
            return Address::local(name);
        }
        let tcp = s
            .strip_prefix("tcp:")
            .map(|rest| (rest, false))
            .or_else(|| s.strip_prefix("tcp-plain:").map(|rest| (rest, true)));
        if let Some((rest, plain)) = tcp {
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| {
                Error::protocol(format!("address {s:?} has no port: use tcp:HOST:PORT"))
            })?;
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            if host.is_empty() {
                return Err(Error::protocol(format!("address {s:?} has no host")));
            }
            let port = port
                .parse::<u16>()
                .map_err(|_| Error::protocol(format!("address {s:?} has a bad port")))?;
            return Ok(if plain {
                Address::tcp_plain(host, port)
            } else {
                Address::tcp(host, port)
            });
        }
        Err(Error::protocol(format!(
            "address {s:?} must start with local:, tcp: or tcp-plain:"
        )))
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_strings() {
        for s in [
            "local:x.sock",
            "local:/tmp/a/b",
            "tcp:127.0.0.1:80",
            "tcp:[::1]:9",
            "tcp-plain:10.1.2.3:5050",
            "tcp-plain:[::1]:9",
        ] {
            let a: Address = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
            let again: Address = a.to_string().parse().unwrap();
            assert_eq!(a, again);
        }
    }

    #[test]
    fn local_names_without_slash_live_in_the_private_dir() {
        let a: Address = "local:abc".parse().unwrap();
        assert_eq!(a.local_path().unwrap(), runtime_dir().join("abc"));
    }

    #[test]
    fn bad_addresses_are_refused() {
        for s in [
            "",
            "local:",
            "tcp:host",
            "tcp::80",
            "tcp:h:99999",
            "udp:x:1",
            "tcp-plain:x",
        ] {
            assert!(s.parse::<Address>().is_err(), "{s}");
        }
    }
}
