//! `ManagerBuilder::start`: the manager as a child process of this program.
//!
//! The parent re-executes its own executable with [`CHILD_ENV`] set and the
//! server's settings written to the child's stdin. A static constructor
//! ([`child_entry`]) sees the variable before `main` runs, serves, and exits,
//! so the user's `main` (or a test harness) never runs in the child. The
//! child reports its bound address on stdout and exits when its stdin, whose
//! write end only the parent holds, reaches end of file: when the parent
//! closes it, or dies in any way.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::auth::AuthKey;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::server::signals::OnSignal;
use crate::server::{Limits, Server, ServerConfig};
use crate::shared::find_type;
use crate::wire::control::method;

/// Marks a process started as a manager child.
const CHILD_ENV: &str = "MANAGER_INTERNAL_SERVE";
/// A `tracing` filter (`info`, `manager_core=debug`, ...) for the manager
/// process's logs on stderr; unset, it logs nothing.
pub const LOG_ENV: &str = "MANAGER_LOG";
const READY: &str = "manager-ready\t";
const FAILED: &str = "manager-error\t";
/// How long a starting child may take to bind and report.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping child may take before it is killed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds the settings message a child reads.
const MAX_SETTINGS: u32 = 1 << 20;

/// The settings a child receives on stdin.
#[derive(Serialize, Deserialize)]
struct Settings {
    address: String,
    key: Vec<u8>,
    types: Vec<String>,
    limits: Limits,
    /// The parent's verified keys: proxies to those managers may be stored here.
    keyring: Vec<(String, Vec<u8>)>,
}

/// A manager child process, owned by its `Manager`.
pub(crate) struct ChildManager {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    forwarder: Option<JoinHandle<()>>,
}

impl ChildManager {
    pub(crate) fn start(config: &ServerConfig) -> Result<(ChildManager, Address)> {
        // Keeps the constructor's object file linked into every program that
        // can start a child, so the child always finds its entry point.
        std::hint::black_box(child_entry as fn());
        let exe = std::env::current_exe()?;
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                Error::Io(std::io::Error::new(
                    e.kind(),
                    format!("cannot start the manager process {}: {e}", exe.display()),
                ))
            })?;
        let settings = Settings {
            address: config.address.to_string(),
            key: config.key.as_bytes().to_vec(),
            types: config.types.keys().map(|s| (*s).to_owned()).collect(),
            limits: config.limits.clone(),
            keyring: crate::client::snapshot()
                .into_iter()
                .map(|(a, k)| (a.to_string(), k.as_bytes().to_vec()))
                .collect(),
        };
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(Error::Io(std::io::Error::other(
                "the child's pipes are missing",
            )));
        };
        let bytes = postcard::to_allocvec(&settings)?;
        let sent = (bytes.len() as u32)
            .to_le_bytes()
            .iter()
            .chain(&bytes)
            .copied()
            .collect::<Vec<u8>>();
        let mut me = ChildManager {
            child,
            stdin: None,
            forwarder: None,
        };
        if let Err(e) = stdin.write_all(&sent) {
            me.kill();
            return Err(Error::Io(e));
        }
        me.stdin = Some(stdin);

        // Read the report on a thread so a child that never answers cannot
        // hang us; the same thread then forwards the child's stdout to ours,
        // so what shared methods print is seen.
        let (tx, rx) = mpsc::channel();
        me.forwarder = std::thread::Builder::new()
            .name("manager-child-stdout".into())
            .spawn(move || {
                let mut r = BufReader::new(stdout);
                let mut line = String::new();
                let res = r.read_line(&mut line).map(|_| line);
                let _ = tx.send(res);
                let _ = std::io::copy(&mut r, &mut std::io::stdout());
            })
            .ok();
        let report = rx.recv_timeout(READY_TIMEOUT);
        let line = match report {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                me.kill();
                return Err(Error::Io(e));
            }
            Err(_) => {
                me.kill();
                return Err(Error::Timeout(format!(
                    "the manager process did not report ready within {READY_TIMEOUT:?}"
                )));
            }
        };
        let line = line.trim_end();
        if let Some(addr) = line.strip_prefix(READY) {
            let address = addr.parse()?;
            Ok((me, address))
        } else {
            me.kill();
            let why = line.strip_prefix(FAILED).unwrap_or(if line.is_empty() {
                "the manager process exited before reporting ready"
            } else {
                line
            });
            Err(Error::Io(std::io::Error::other(format!(
                "the manager process failed to start: {why}"
            ))))
        }
    }

    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// Asks the child to stop, closes its stdin, and reaps it.
    pub(crate) fn stop(mut self, client: &Client) -> Result<()> {
        let _ = client.control::<()>(method::SHUTDOWN, |_| Ok(()));
        self.reap()
    }

    /// Waits until the child exits by itself (a client asked it to stop).
    pub(crate) fn wait(mut self) -> Result<()> {
        self.child.wait()?;
        self.reap()
    }

    fn reap(&mut self) -> Result<()> {
        drop(self.stdin.take());
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if self.child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!("the manager process did not exit in time; killing it");
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            // No portable way to wait for a child with a deadline: poll gently.
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(f) = self.forwarder.take() {
            let _ = f.join();
        }
        Ok(())
    }

    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.reap();
    }
}

impl Drop for ChildManager {
    fn drop(&mut self) {
        if self.stdin.is_some() || self.forwarder.is_some() {
            let _ = self.reap();
        }
    }
}

/// Runs before `main` in every process of a program that links this crate;
/// does nothing unless this process was started as a manager child.
///
/// `unsafe` as ctor asks: it runs before `main`, where std's runtime is not
/// set up. It touches only the environment, stdio, sockets and threads, all
/// of which work there (checked by every test that starts a manager).
#[ctor::ctor(unsafe)]
fn child_entry() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    // Single-threaded here, before main: nothing else reads the environment.
    std::env::remove_var(CHILD_ENV);
    let code = serve_child();
    std::process::exit(code);
}

fn serve_child() -> i32 {
    // Before main, Rust's runtime has not yet set SIGPIPE to ignore; a write
    // to a closed socket must be an error, not the end of the manager.
    // SAFETY: setting a signal disposition to SIG_IGN is async-signal-safe.
    // SIGINT (a Ctrl-C at the terminal reaches the whole process group) is
    // the parent's to handle, as Python's manager processes leave it: the
    // parent stops us cleanly, or its exit closes our stdin.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    init_logging();
    let mut stdin = std::io::stdin();
    let config = match read_settings(&mut stdin) {
        Ok(c) => c,
        Err(e) => return report_failure(&e),
    };
    let server = match Server::bind(config) {
        Ok(s) => s,
        Err(e) => return report_failure(&e),
    };
    let state = std::sync::Arc::clone(server.state());
    {
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{READY}{}", state.address)
            .and_then(|()| out.flush())
            .is_err()
        {
            return 1;
        }
    }
    // The parent holds the only write end of our stdin: end of file means it
    // closed it or died, and either way we stop.
    let watcher = std::thread::Builder::new()
        .name("manager-parent-watch".into())
        .spawn(move || {
            let _ = std::io::copy(&mut stdin, &mut std::io::sink());
            state.stop();
        });
    if watcher.is_err() {
        return 1;
    }
    let state = std::sync::Arc::clone(server.state());
    let on_term = OnSignal::new(&[libc::SIGTERM], move || state.stop());
    server.run();
    drop(on_term);
    0
}

/// The manager process has no `main` of the user's to set up logging, so
/// it reads [`LOG_ENV`] itself; so does a manager on a thread of a program
/// that installed no `tracing` subscriber of its own.
pub(crate) fn init_logging() {
    if tracing::dispatcher::has_been_set() {
        return;
    }
    let Ok(filter) = std::env::var(LOG_ENV) else {
        return;
    };
    let targets = match filter.parse::<tracing_subscriber::filter::Targets>() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("manager: ignoring {LOG_ENV}={filter:?}: {e}");
            return;
        }
    };
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(true),
    );
    let _ = tracing::subscriber::set_global_default(subscriber.with(targets));
}

fn read_settings(r: &mut impl Read) -> Result<ServerConfig> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > MAX_SETTINGS {
        return Err(Error::protocol("the manager settings are too large"));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)?;
    let s: Settings = postcard::from_bytes(&buf)?;
    crate::client::preload(
        s.keyring
            .iter()
            .filter_map(|(a, k)| Some((a.parse().ok()?, AuthKey::from_bytes(k))))
            .collect(),
    );
    let mut types = crate::shared::preregistered();
    for name in &s.types {
        if types.contains_key(name.as_str()) {
            continue;
        }
        let entry = find_type(name).ok_or_else(|| {
            Error::NotRegistered(format!(
                "{name} is registered by the parent but not linked into this program"
            ))
        })?;
        types.insert(entry.name, *entry);
    }
    Ok(ServerConfig {
        address: s.address.parse()?,
        key: AuthKey::from_bytes(&s.key),
        types,
        limits: s.limits,
    })
}

fn report_failure(e: &Error) -> i32 {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{FAILED}{e}");
    let _ = out.flush();
    1
}
