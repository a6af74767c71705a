//! What the transports need from Linux beyond POSIX: a local peer's
//! credentials (`SO_PEERCRED`) and a peer's hang-up seen without reading
//! (`POLLRDHUP`). Another system gets a file of its own beside this one.

use std::os::fd::RawFd;

/// The process id and user id of the peer of local socket `fd`, as the
/// kernel saw them when it connected.
pub(super) fn peer_credentials(fd: RawFd) -> Option<(i32, u32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0).then_some((cred.pid, cred.uid))
}

/// Whether the peer of `fd` has closed its end (or the socket failed),
/// without consuming anything it sent.
pub(super) fn peer_gone(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}
