//! The floor: a raw length-prefixed ping-pong with no framework, between
//! this process and a server process, over the same kinds of socket the
//! runtime uses.
//!
//! A frame is a little-endian `u32` length and that many bytes, as on the
//! runtime's wire. The server answers every frame with a frame of its first
//! 16 bytes (so a 16-byte ping comes back whole and an 8 MiB frame gets a
//! 16-byte acknowledgement), and answers everything one `read` delivered
//! with one `write`, as the manager does with a pipeline.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::process::{Child, ChildStdin, Command, Stdio};

use super::{Stream, Transport, FLOOR_ADDR, ROLE};

/// The size of a small message, as in the issue.
pub const MSG: usize = 16;
/// The depth of the pipelined form.
pub const DEPTH: usize = 64;
/// The size of the large message.
pub const BIG: usize = 8 << 20;

const READY: &str = "floor-ready\t";
const TRANSPORT_ENV: &str = "MANAGER_BENCH_FLOOR_TRANSPORT";

/// A floor server process, stopped when dropped.
pub struct FloorServer {
    child: Child,
    stdin: Option<ChildStdin>,
    /// `uds:PATH` or `tcp:127.0.0.1:PORT`.
    pub addr: String,
}

impl FloorServer {
    /// The server process's id.
    #[allow(dead_code)] // Not every bench that shares this module asks.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts a floor server process listening on a fresh socket.
    pub fn start(transport: Transport) -> FloorServer {
        let exe = std::env::current_exe().expect("the bench binary has a path");
        let mut child = Command::new(exe)
            .env(ROLE, "floor-server")
            .env(TRANSPORT_ENV, transport.name())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the bench binary can start itself");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("the child's stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the floor server reports its address");
        let addr = line
            .trim_end()
            .strip_prefix(READY)
            .unwrap_or_else(|| panic!("the floor server did not start: {line:?}"))
            .to_owned();
        FloorServer { child, stdin, addr }
    }
}

impl Drop for FloorServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// The floor server process: accepts connections until its stdin closes,
/// each served by a thread of its own (the manager's model too).
pub fn serve_main() -> i32 {
    let transport = std::env::var(TRANSPORT_ENV).unwrap_or_default();
    let mut socket_file = None;
    let addr = match transport.as_str() {
        "uds" => {
            let path = std::env::temp_dir()
                .join(format!("manager-bench-floor-{}.sock", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let l = UnixListener::bind(&path).expect("bind the floor's socket");
            let addr = format!("uds:{}", path.display());
            socket_file = Some(path);
            std::thread::spawn(move || {
                for s in l.incoming().flatten() {
                    std::thread::spawn(move || echo(Stream::Unix(s)));
                }
            });
            addr
        }
        "tcp" => {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind the floor's port");
            let addr = format!("tcp:{}", l.local_addr().expect("a bound port"));
            std::thread::spawn(move || {
                for s in l.incoming().flatten() {
                    let _ = s.set_nodelay(true);
                    std::thread::spawn(move || echo(Stream::Tcp(s)));
                }
            });
            addr
        }
        other => {
            eprintln!("bench: unknown floor transport {other:?}");
            return 2;
        }
    };
    {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{READY}{addr}");
        let _ = out.flush();
    }
    // The parent holds the only write end of our stdin.
    let _ = io::copy(&mut io::stdin(), &mut io::sink());
    if let Some(path) = socket_file {
        let _ = std::fs::remove_file(path);
    }
    0
}

/// Answers frames until the peer closes: everything one read brought in
/// is answered with one write. The buffer grows to the largest frame seen
/// and stays, so the 8 MiB rows measure the socket, not the allocator.
fn echo(mut s: Stream) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(64 * 1024);
    let (mut start, mut end) = (0usize, 0usize);
    loop {
        let mut need = 4;
        while end - start >= 4 {
            let len = u32::from_le_bytes(buf[start..start + 4].try_into().expect("4 bytes"));
            let total = 4 + len as usize;
            if end - start < total {
                need = total;
                break;
            }
            let body = &buf[start + 4..start + total];
            let n = body.len().min(MSG);
            out.extend_from_slice(&(n as u32).to_le_bytes());
            out.extend_from_slice(&body[..n]);
            start += total;
        }
        if !out.is_empty() {
            if s.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
        if start == end {
            start = 0;
            end = 0;
        } else if buf.len() - start < need || end == buf.len() {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        if buf.len() < need {
            buf.resize(need, 0);
        }
        match s.read(&mut buf[end..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => end += n,
        }
    }
}

/// One connection to a floor server, with its messages built once.
pub struct FloorClient {
    s: Stream,
    /// One 16-byte message, framed.
    one: Vec<u8>,
    /// `DEPTH` of them back to back.
    batch: Vec<u8>,
    /// One 8 MiB message, framed; built on first use.
    big: Vec<u8>,
    back: Vec<u8>,
}

impl FloorClient {
    pub fn connect(addr: &str) -> FloorClient {
        let s = Stream::connect(addr).expect("connect to the floor server");
        let mut one = (MSG as u32).to_le_bytes().to_vec();
        one.extend_from_slice(&[7u8; MSG]);
        let batch = one.repeat(DEPTH);
        FloorClient {
            s,
            back: vec![0; batch.len()],
            one,
            batch,
            big: Vec::new(),
        }
    }

    /// One round trip of a 16-byte message: one write, one read.
    #[inline]
    pub fn ping(&mut self) {
        self.s.write_all(&self.one).expect("floor write");
        self.s
            .read_exact(&mut self.back[..self.one.len()])
            .expect("floor read");
    }

    /// `DEPTH` messages in one write, then their `DEPTH` answers.
    #[inline]
    pub fn pipeline(&mut self) {
        self.s.write_all(&self.batch).expect("floor write");
        self.s.read_exact(&mut self.back).expect("floor read");
    }

    /// An 8 MiB message to the server and its 16-byte answer: the same bytes
    /// an 8 MiB `Vec<u8>` argument moves, with no copy on either side.
    pub fn big(&mut self) {
        if self.big.is_empty() {
            self.big = (BIG as u32).to_le_bytes().to_vec();
            self.big.resize(4 + BIG, 7);
        }
        self.s.write_all(&self.big).expect("floor write");
        self.s
            .read_exact(&mut self.back[..4 + MSG])
            .expect("floor read");
    }
}

/// The operation of a floor client process in the multi-client rows.
pub fn worker_op() -> super::Op {
    let addr = std::env::var(FLOOR_ADDR).expect("a floor worker knows its server");
    let mut c = FloorClient::connect(&addr);
    Box::new(move || c.ping())
}
