//! What the transports need from Linux beyond POSIX: a local peer's
//! credentials (`SO_PEERCRED`) and a peer's hang-up seen without reading
//! (`POLLRDHUP`), and the CPUs the process may use (`sched_getaffinity`).
//! Another system gets a file of its own beside this one.

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

/// Writes as much of `parts` (at most the first [`SEND_PARTS`]) to socket
/// `fd` as it takes now: without blocking, whatever the socket's mode, and
/// without a `SIGPIPE` when the peer is gone.
pub(super) fn send_now(fd: RawFd, parts: &[&[u8]]) -> std::io::Result<usize> {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; SEND_PARTS];
    let n = parts.len().min(SEND_PARTS);
    for (v, p) in iov.iter_mut().zip(parts) {
        v.iov_base = p.as_ptr() as *mut libc::c_void;
        v.iov_len = p.len();
    }
    // SAFETY: an all-zero msghdr is valid (no address, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = n as _;
    loop {
        // SAFETY: `msg` points at `n` iovecs describing live byte slices,
        // which `sendmsg` only reads.
        let k = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if k >= 0 {
            return Ok(k as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// How many parts [`send_now`] writes in one call.
pub(super) const SEND_PARTS: usize = 4;

/// How many CPUs this process may run on (its affinity mask), at least 1.
pub(super) fn cpus_available() -> usize {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid for writes of the size given.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return 1;
    }
    // SAFETY: `set` was filled in by the kernel.
    (unsafe { libc::CPU_COUNT(&set) } as usize).max(1)
}
