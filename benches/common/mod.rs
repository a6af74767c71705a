//! What the benchmark suite needs besides the calls it measures: the raw
//! floor ([`floor`]), client processes for the multi-client rows ([`pool`]),
//! and the per-run record that turns criterion samples into the summary
//! table ([`report`]).
//!
//! Child processes are this same bench binary, started again with
//! [`ROLE`] set; `main` calls [`run_child_role`] before anything else, the
//! way the runtime's own manager child is caught before `main` (see
//! `manager-core/src/spawn.rs`). A child dies with its parent: it exits on
//! end of file on its stdin, and on the parent's death by any signal.

pub mod counter;
pub mod floor;
pub mod pool;
pub mod report;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;

/// The environment variable naming the role a re-executed bench binary plays.
pub const ROLE: &str = "MANAGER_BENCH_ROLE";

/// Where a floor server listens, as `uds:PATH` or `tcp:HOST:PORT`.
pub const FLOOR_ADDR: &str = "MANAGER_BENCH_FLOOR_ADDR";

/// The two kinds of socket every row is measured over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A Unix domain socket (the runtime's local socket).
    Uds,
    /// TCP over loopback, with `TCP_NODELAY`.
    Tcp,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Uds, Transport::Tcp];

    /// The short name used in bench ids and in the summary.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Uds => "uds",
            Transport::Tcp => "tcp",
        }
    }
}

/// A connected stream of either kind.
pub enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    /// Connects to `uds:PATH` or `tcp:HOST:PORT` (with `TCP_NODELAY`).
    pub fn connect(addr: &str) -> io::Result<Stream> {
        if let Some(path) = addr.strip_prefix("uds:") {
            UnixStream::connect(path).map(Stream::Unix)
        } else if let Some(hostport) = addr.strip_prefix("tcp:") {
            let s = TcpStream::connect(hostport)?;
            s.set_nodelay(true)?;
            Ok(Stream::Tcp(s))
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a floor address: {addr}"),
            ))
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A closure that performs one operation of a client process.
pub type Op = Box<dyn FnMut()>;

/// If this process was started as a child role, plays it and exits; returns
/// otherwise. `ours` builds a client process's operation from its
/// environment for targets other than the floor (the bench's own
/// `#[shared]` types live in the bench, not here).
pub fn run_child_role(ours: fn(&str) -> Op) {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets this process's signal.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    let code = match role.as_str() {
        "floor-server" => floor::serve_main(),
        "worker" => pool::worker_main(ours),
        other => {
            eprintln!("bench: unknown child role {other:?}");
            2
        }
    };
    std::process::exit(code);
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it and
    // CPU_ISSET only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Whether this process may run on one CPU only (`taskset -c 0`): the
/// condition of the one-client rows the targets are stated for.
pub fn pinned() -> bool {
    allowed_cpus().len() == 1
}

/// Pins this process to CPU `cpu`.
pub fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity
    // only read and write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
