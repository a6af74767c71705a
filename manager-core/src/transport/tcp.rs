//! TCP: needs an explicit `tcp:` address and goes through the same handshake.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

use crate::address::Address;
use crate::error::{Error, Result};
use crate::transport::Socket;

pub(crate) fn connect(address: &Address) -> Result<Socket> {
    let (host, port) = address
        .tcp_parts()
        .ok_or_else(|| Error::protocol("not a tcp address"))?;
    let s = TcpStream::connect((host, port)).map_err(|e| {
        Error::Io(io::Error::new(
            e.kind(),
            format!("cannot connect to the manager at {address}: {e}"),
        ))
    })?;
    // Calls are small request/response pairs: Nagle would add 40 ms to each.
    s.set_nodelay(true)?;
    detect_silence(&s, super::DEAD_PEER_TIMEOUT)?;
    Ok(Socket::Tcp(s))
}

/// Keepalive probes sent before a silent peer is declared dead.
const PROBES: u32 = 4;

/// Spends half of `bound` idle before the first probe and the other half
/// on [`PROBES`] probes; on Linux `TCP_USER_TIMEOUT` caps the whole at
/// `bound` and also covers data sent and never acknowledged, which
/// keepalive alone does not. The kernel counts in whole seconds, so the
/// bound is at least 2 s.
pub(crate) fn detect_silence(s: &TcpStream, bound: Duration) -> io::Result<()> {
    let (idle, interval) = schedule(bound);
    let sock = SockRef::from(s);
    let keepalive = TcpKeepalive::new().with_time(idle).with_interval(interval);
    #[cfg(not(any(target_os = "windows", target_os = "openbsd", target_os = "redox")))]
    let keepalive = keepalive.with_retries(PROBES);
    sock.set_tcp_keepalive(&keepalive)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    sock.set_tcp_user_timeout(Some(bound.max(Duration::from_secs(2))))?;
    Ok(())
}

/// The idle time and the probe interval for a bound.
fn schedule(bound: Duration) -> (Duration, Duration) {
    let secs = bound.as_secs().max(2);
    let idle = secs / 2;
    let interval = ((secs - idle) / u64::from(PROBES)).max(1);
    (Duration::from_secs(idle), Duration::from_secs(interval))
}

pub(crate) fn bind(address: &Address) -> Result<(TcpListener, Address)> {
    let (host, port) = address
        .tcp_parts()
        .ok_or_else(|| Error::protocol("not a tcp address"))?;
    let l = TcpListener::bind((host, port)).map_err(|e| {
        Error::Io(io::Error::new(
            e.kind(),
            format!("cannot listen at {address}: {e}"),
        ))
    })?;
    let real = l.local_addr()?.port();
    Ok((l, address.with_port(real)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_stays_within_the_bound() {
        for secs in [2u64, 3, 10, 60, 600] {
            let (idle, interval) = schedule(Duration::from_secs(secs));
            assert!(idle >= Duration::from_secs(1));
            assert!(interval >= Duration::from_secs(1));
            if secs >= 10 {
                assert!(
                    idle + interval * PROBES <= Duration::from_secs(secs),
                    "{secs}"
                );
            }
        }
        assert_eq!(schedule(Duration::ZERO), schedule(Duration::from_secs(2)));
    }

    #[test]
    fn keepalive_is_set_on_a_connected_socket() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        detect_silence(&s, Duration::from_secs(10)).unwrap();
        let sock = SockRef::from(&s);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(5));
        #[cfg(target_os = "linux")]
        assert_eq!(
            sock.tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(10))
        );
    }
}
