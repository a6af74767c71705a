//! Byte streams between a client and a manager: local sockets and TCP meet
//! here in one [`Socket`] and one [`Listener`], and nothing above this module
//! knows which it has.

mod local;
pub(crate) mod sealed;
pub(crate) mod spin;
mod tcp;

// What differs between operating systems lives in one file per system.
#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod os;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use crate::address::Address;
use crate::auth::Keys;
use crate::error::Result;
use sealed::Sealed;

/// A connected stream.
#[derive(Debug)]
pub(crate) enum Socket {
    Unix(UnixStream),
    Tcp(TcpStream),
    /// Either of the others, encrypted after the handshake; its clones
    /// share one sequence of records.
    Sealed(Arc<Sealed>),
}

/// How long a silent TCP peer keeps its connection by default: past it, the
/// connection counts as ended abnormally (DESIGN §4).
pub(crate) const DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(60);

impl Socket {
    /// Connects to a manager's address.
    pub(crate) fn connect(address: &Address) -> Result<Socket> {
        if let Some(path) = address.local_path() {
            local::connect(path)
        } else {
            tcp::connect(address)
        }
    }

    /// This socket, encrypted from here on with `keys`.
    pub(crate) fn seal(self, keys: Keys) -> Socket {
        Socket::Sealed(Arc::new(Sealed::new(self, keys)))
    }

    /// Whether this is a TCP connection (encrypted or not).
    pub(crate) fn is_tcp(&self) -> bool {
        match self {
            Socket::Unix(_) => false,
            Socket::Tcp(_) => true,
            Socket::Sealed(s) => s.inner.is_tcp(),
        }
    }

    /// Makes a TCP connection fail within about `bound` once the peer
    /// falls silent without closing it (its machine lost power, a cable was
    /// pulled, a firewall began dropping): keepalive probes while idle, and
    /// `TCP_USER_TIMEOUT` while data waits to be acknowledged. A local
    /// socket needs nothing: the kernel knows when its peer is gone.
    pub(crate) fn detect_silence(&self, bound: Duration) -> io::Result<()> {
        match self {
            Socket::Unix(_) => Ok(()),
            Socket::Tcp(s) => tcp::detect_silence(s, bound),
            Socket::Sealed(s) => s.inner.detect_silence(bound),
        }
    }

    pub(crate) fn try_clone(&self) -> io::Result<Socket> {
        Ok(match self {
            Socket::Unix(s) => Socket::Unix(s.try_clone()?),
            Socket::Tcp(s) => Socket::Tcp(s.try_clone()?),
            Socket::Sealed(s) => Socket::Sealed(Arc::clone(s)),
        })
    }

    /// Ends both directions: the peer reads end-of-stream, and a thread of
    /// ours blocked reading this socket wakes.
    pub(crate) fn shutdown(&self) {
        self.end(std::net::Shutdown::Both);
    }

    fn end(&self, how: std::net::Shutdown) {
        let _ = match self {
            Socket::Unix(s) => s.shutdown(how),
            Socket::Tcp(s) => s.shutdown(how),
            Socket::Sealed(s) => {
                s.inner.end(how);
                Ok(())
            }
        };
    }

    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Unix(s) => s.set_read_timeout(t),
            Socket::Tcp(s) => s.set_read_timeout(t),
            Socket::Sealed(s) => s.inner.set_read_timeout(t),
        }
    }

    pub(crate) fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Unix(s) => s.set_write_timeout(t),
            Socket::Tcp(s) => s.set_write_timeout(t),
            Socket::Sealed(s) => s.inner.set_write_timeout(t),
        }
    }

    /// The peer, for logs.
    pub(crate) fn peer(&self) -> String {
        match self {
            Socket::Unix(_) => self.peer_credentials().map_or_else(
                || "local peer".to_owned(),
                |(pid, uid)| format!("local peer pid {pid} uid {uid}"),
            ),
            Socket::Tcp(s) => s
                .peer_addr()
                .map_or_else(|_| "tcp peer".to_owned(), |a| a.to_string()),
            Socket::Sealed(s) => s.inner.peer(),
        }
    }

    /// The process id and user id of a local peer, as the kernel saw them
    /// when it connected.
    fn peer_credentials(&self) -> Option<(i32, u32)> {
        os::peer_credentials(self.raw_fd())
    }

    /// Switches the socket between blocking and non-blocking I/O (the
    /// manager's event loop uses it non-blocking).
    pub(crate) fn set_nonblocking(&self, yes: bool) -> io::Result<()> {
        match self {
            Socket::Unix(s) => s.set_nonblocking(yes),
            Socket::Tcp(s) => s.set_nonblocking(yes),
            Socket::Sealed(s) => s.inner.set_nonblocking(yes),
        }
    }

    /// Adds `frame` to `out` as it goes on the wire: sealed into records on
    /// an encrypted connection, as it is otherwise.
    #[inline]
    pub(crate) fn encode_into(&self, frame: &[&[u8]], out: &mut Vec<u8>) -> io::Result<()> {
        match self {
            Socket::Sealed(s) => s.seal_into(frame, out),
            _ => {
                for part in frame {
                    out.extend_from_slice(part);
                }
                Ok(())
            }
        }
    }

    /// Hands `frame` to `out` as it goes on the wire: sealed into records,
    /// a few at a time, on an encrypted connection; as it is otherwise.
    pub(crate) fn encode_through(&self, frame: &[&[u8]], out: &mut impl Write) -> io::Result<()> {
        match self {
            Socket::Sealed(s) => s.seal_through(frame, out),
            _ => frame.iter().try_for_each(|part| out.write_all(part)),
        }
    }

    /// Writes bytes prepared by [`Socket::encode_into`]; on a non-blocking
    /// socket, as many as it takes now.
    pub(crate) fn write_wire(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Unix(s) => (&mut &*s).write(bytes),
            Socket::Tcp(s) => (&mut &*s).write(bytes),
            Socket::Sealed(s) => s.inner.write_wire(bytes),
        }
    }

    /// Writes as much of `parts`, bytes as they go on the wire (see
    /// [`Socket::encode_into`]), as the socket takes now without blocking,
    /// whether or not it is in non-blocking mode; how many. `WouldBlock`
    /// when it takes none.
    pub(crate) fn write_wire_now(&self, parts: &[&[u8]]) -> io::Result<usize> {
        os::send_now(self.raw_fd(), parts)
    }

    /// Whether frames must be sealed into records before they go on the
    /// wire ([`Socket::encode_into`]).
    pub(crate) fn is_sealed(&self) -> bool {
        matches!(self, Socket::Sealed(_))
    }

    pub(crate) fn raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Socket::Unix(s) => s.as_fd().as_raw_fd(),
            Socket::Tcp(s) => s.as_fd().as_raw_fd(),
            Socket::Sealed(s) => s.inner.raw_fd(),
        }
    }

    /// Whether the peer has closed its end (or the socket failed), without
    /// consuming anything it sent.
    pub(crate) fn peer_gone(&self) -> bool {
        os::peer_gone(self.raw_fd())
    }

    /// Whether a read would find something now (bytes, the end, or an
    /// error), without consuming it.
    pub(crate) fn readable_now(&self) -> bool {
        wait_ready(self.raw_fd(), libc::POLLIN, Duration::ZERO).unwrap_or(true)
    }

    /// Whether this socket holds bytes read from the stream but not yet
    /// delivered (the record layer's read-ahead): a read may return them
    /// without the socket being readable.
    pub(crate) fn has_buffered(&self) -> bool {
        match self {
            Socket::Sealed(s) => s.has_buffered(),
            _ => false,
        }
    }
}

impl Socket {
    /// Appends at most `n` bytes to `buf` without zeroing its spare
    /// capacity first; how many, 0 at the end of the stream.
    pub(crate) fn read_append(&self, buf: &mut Vec<u8>, n: usize) -> io::Result<usize> {
        if let Socket::Sealed(s) = self {
            return s.read_append(buf, n);
        }
        buf.reserve(n);
        let spare = buf.spare_capacity_mut();
        let want = n.min(spare.len());
        // SAFETY: `recv` writes at most `want` bytes into the spare capacity,
        // which is valid for writes of that many bytes; exactly the `k` it
        // reports are initialized before the length covers them.
        let k = unsafe { libc::recv(self.raw_fd(), spare.as_mut_ptr().cast(), want, 0) };
        if k < 0 {
            return Err(io::Error::last_os_error());
        }
        let k = k as usize;
        // SAFETY: `k <= want` bytes past the length were just initialized.
        unsafe { buf.set_len(buf.len() + k) };
        Ok(k)
    }
}

impl Read for &Socket {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match *self {
            Socket::Unix(s) => (&mut &*s).read(buf),
            Socket::Tcp(s) => (&mut &*s).read(buf),
            Socket::Sealed(s) => s.read(buf),
        }
    }
}

impl Write for &Socket {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match *self {
            Socket::Unix(s) => (&mut &*s).write(buf),
            Socket::Tcp(s) => (&mut &*s).write(buf),
            Socket::Sealed(s) => s.write(&[buf]),
        }
    }

    #[inline]
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match *self {
            Socket::Unix(s) => (&mut &*s).write_vectored(bufs),
            Socket::Tcp(s) => (&mut &*s).write_vectored(bufs),
            Socket::Sealed(s) => {
                let parts: Vec<&[u8]> = bufs.iter().map(|b| &**b).collect();
                s.write(&parts)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Waits until `fd` is ready for `events` (`libc::POLLIN`, `POLLOUT`), for
/// at most `limit`: whether it is. A hang-up or error counts as ready, so
/// the next read or write reports it.
pub(crate) fn wait_ready(
    fd: std::os::fd::RawFd,
    events: libc::c_short,
    limit: Duration,
) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ms = libc::c_int::try_from(limit.as_millis()).unwrap_or(libc::c_int::MAX);
    loop {
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        if n >= 0 {
            return Ok(n > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A bound listener.
pub(crate) enum Listener {
    Local(local::LocalListener),
    Tcp(std::net::TcpListener),
}

impl Listener {
    /// Binds `address`; returns the listener and the address clients should
    /// use (with the real port for `tcp:HOST:0`).
    pub(crate) fn bind(address: &Address) -> Result<(Listener, Address)> {
        if address.local_path().is_some() {
            let l = local::LocalListener::bind(address)?;
            Ok((Listener::Local(l), address.clone()))
        } else {
            let (l, a) = tcp::bind(address)?;
            Ok((Listener::Tcp(l), a))
        }
    }

    /// Makes `accept` return `WouldBlock` instead of waiting.
    pub(crate) fn set_nonblocking(&self, yes: bool) -> io::Result<()> {
        match self {
            Listener::Local(l) => l.listener().set_nonblocking(yes),
            Listener::Tcp(l) => l.set_nonblocking(yes),
        }
    }

    pub(crate) fn raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Listener::Local(l) => l.listener().as_raw_fd(),
            Listener::Tcp(l) => l.as_raw_fd(),
        }
    }

    pub(crate) fn accept(&self) -> io::Result<Socket> {
        match self {
            Listener::Local(l) => l.accept().map(Socket::Unix),
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nodelay(true)?;
                Ok(Socket::Tcp(s))
            }
        }
    }
}
