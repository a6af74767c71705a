//! TCP: needs an explicit `tcp:` address and goes through the same handshake.

use std::io;
use std::net::{TcpListener, TcpStream};

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
    Ok(Socket::Tcp(s))
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
    Ok((l, Address::tcp(host, real)))
}
