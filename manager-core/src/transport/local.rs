//! Local sockets (Unix domain sockets), created through `interprocess` in a
//! directory only the owner can enter.

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt;

use crate::address::{ensure_private_dir, runtime_dir, Address};
use crate::error::{Error, Result};

pub(crate) fn connect(path: &Path) -> Result<crate::transport::Socket> {
    let s = UnixStream::connect(path).map_err(|e| {
        Error::Io(io::Error::new(
            e.kind(),
            format!("cannot connect to the manager at {}: {e}", path.display()),
        ))
    })?;
    Ok(crate::transport::Socket::Unix(s))
}

/// A listening local socket; its file is removed when it is dropped.
pub(crate) struct LocalListener {
    inner: interprocess::os::unix::uds_local_socket::Listener,
}

impl LocalListener {
    pub(crate) fn bind(address: &Address) -> Result<LocalListener> {
        let path = address
            .local_path()
            .ok_or_else(|| Error::protocol("not a local address"))?;
        if let Some(dir) = path.parent() {
            if dir == runtime_dir() {
                ensure_private_dir(dir)?;
            } else if !dir.as_os_str().is_empty() && !dir.exists() {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("directory {} does not exist", dir.display()),
                )));
            }
        }
        // A socket file nobody answers on is left over from a dead manager; one
        // that answers belongs to a live one we must not displace.
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("a manager already listens at {}", path.display()),
                )));
            }
            std::fs::remove_file(path)?;
        }
        let name = path.to_fs_name::<GenericFilePath>()?;
        let inner = ListenerOptions::new()
            .name(name)
            .mode(0o600)
            .reclaim_name(true)
            .create_sync_as::<interprocess::os::unix::uds_local_socket::Listener>()
            .map_err(|e| {
                Error::Io(io::Error::new(
                    e.kind(),
                    format!("cannot listen at {}: {e}", path.display()),
                ))
            })?;
        Ok(LocalListener { inner })
    }

    pub(crate) fn listener(&self) -> &UnixListener {
        self.inner.inner()
    }

    pub(crate) fn accept(&self) -> io::Result<UnixStream> {
        self.listener().accept().map(|(s, _)| s)
    }
}
