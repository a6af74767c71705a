//! `Manager` and its builder: where a manager runs, and the handle that owns it.

use std::collections::HashMap;
use std::ops::Deref;
use std::time::Duration;

use crate::address::Address;
use crate::auth::AuthKey;
use crate::client::Client;
use crate::error::Result;
use crate::server::signals::{self, OnSignal};
use crate::server::{Limits, Server, ServerConfig, ServerThread};
use crate::shared::{Shared, TypeEntry};
use crate::spawn::ChildManager;

/// A running manager, and a [`Client`] of it (through `Deref`).
///
/// Dropping it, or calling [`Manager::shutdown`], stops the manager: its
/// objects are freed and other clients' next calls fail with
/// `Error::ConnectionLost` or `Error::ServerShutdown`.
///
/// ```
/// use manager::{shared, Manager};
///
/// #[shared]
/// pub struct Counter { value: i64 }
///
/// #[shared]
/// impl Counter {
///     pub fn new(start: i64) -> Self { Counter { value: start } }
///     pub fn incr(&mut self, by: i64) -> i64 { self.value += by; self.value }
/// }
///
/// # fn main() -> manager::Result<()> {
/// let mgr = Manager::builder().register::<Counter>().spawn_thread()?;
/// let c = CounterProxy::new(&mgr, 5)?;
/// assert_eq!(c.incr(2)?, 7);
/// mgr.shutdown()?;
/// # Ok(()) }
/// ```
pub struct Manager {
    client: Client,
    address: Address,
    key: AuthKey,
    running: Running,
}

enum Running {
    Thread(ServerThread),
    Process(ChildManager),
    Stopped,
}

impl Manager {
    /// A builder with the defaults: a fresh private local socket, a random
    /// key, only the built-in types.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// Where the manager listens; give it with [`Manager::auth_key`] to
    /// processes that should connect.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The key clients must prove.
    pub fn auth_key(&self) -> &AuthKey {
        &self.key
    }

    /// The OS process id of a manager started with
    /// [`ManagerBuilder::start`]; `None` for one running on a thread.
    pub fn process_id(&self) -> Option<u32> {
        match &self.running {
            Running::Process(child) => Some(child.id()),
            _ => None,
        }
    }

    /// Stops the manager and waits until it has stopped. Returns promptly
    /// even while other clients are connected.
    ///
    /// # Errors
    /// `Error::Io` if a manager process could not be reaped.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    /// Blocks until the manager stops: a client called
    /// [`Client::shutdown_manager`], or this process received SIGINT or
    /// SIGTERM (which stop it cleanly: calls in progress get their replies).
    /// For a program that hosts a manager and has nothing else to do.
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().spawn_thread()?;
    /// let (address, key) = (mgr.address().clone(), mgr.auth_key().clone());
    /// std::thread::spawn(move || {
    ///     let client = manager::Client::connect(&address, &key)?;
    ///     client.shutdown_manager()
    /// });
    /// mgr.wait()?; // returns once the other client has stopped it
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `Error::Io` if the signal handlers cannot be installed or a manager
    /// process cannot be reaped.
    pub fn wait(mut self) -> Result<()> {
        let client = self.client.clone();
        let _on_signal = OnSignal::new(signals::STOP, move || {
            let _ = client.shutdown_manager();
        })?;
        match std::mem::replace(&mut self.running, Running::Stopped) {
            Running::Thread(mut t) => {
                t.join();
                Ok(())
            }
            Running::Process(child) => child.wait(),
            Running::Stopped => Ok(()),
        }
    }

    fn stop(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.running, Running::Stopped) {
            Running::Thread(mut t) => {
                t.stop();
                Ok(())
            }
            Running::Process(child) => child.stop(&self.client),
            Running::Stopped => Ok(()),
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "stopping the manager failed");
        }
    }
}

impl Deref for Manager {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Settings of a manager, and where to run it.
///
/// ```
/// use std::time::Duration;
/// use manager::{AuthKey, Manager};
///
/// # fn main() -> manager::Result<()> {
/// let mgr = Manager::builder()
///     .address("tcp:127.0.0.1:0".parse()?)
///     .auth_key(AuthKey::from_bytes(b"shared secret"))
///     .max_frame_size(16 << 20)
///     .handshake_timeout(Duration::from_secs(2))
///     .spawn_thread()?;
/// assert_ne!(mgr.address().to_string(), "tcp:127.0.0.1:0"); // the real port
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until start(), spawn_thread() or serve()"]
pub struct ManagerBuilder {
    address: Option<Address>,
    key: Option<AuthKey>,
    types: HashMap<&'static str, TypeEntry>,
    limits: Limits,
}

impl Default for ManagerBuilder {
    fn default() -> Self {
        ManagerBuilder {
            address: None,
            key: None,
            types: crate::shared::preregistered(),
            limits: Limits::default(),
        }
    }
}

impl ManagerBuilder {
    /// Lets the manager construct objects of type `T`. Constructing a type
    /// that was not registered is `Error::NotRegistered`.
    pub fn register<T: Shared>(mut self) -> Self {
        self.types.insert(T::TYPE_NAME, TypeEntry::of::<T>());
        self
    }

    /// Listens at `address` instead of a fresh private local socket.
    pub fn address(mut self, address: Address) -> Self {
        self.address = Some(address);
        self
    }

    /// Uses `key` instead of a random one.
    pub fn auth_key(mut self, key: AuthKey) -> Self {
        self.key = Some(key);
        self
    }

    /// The largest message, in bytes, the manager accepts or sends
    /// (default 64 MiB). Bounds what a peer can make it allocate.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.limits.max_frame = bytes.clamp(1024, u32::MAX as usize);
        self
    }

    /// How long a new connection may take to authenticate (default 5 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.limits.handshake_timeout = timeout;
        self
    }

    /// How long a token from `to_token` keeps its object alive if it is never
    /// redeemed (default 60 s).
    ///
    /// The same time bounds how long this manager keeps a reference to
    /// another manager's object after sending its proxy in a reply (a
    /// proxy taken out of a container or a field), so that the receiver can
    /// take its own reference first: such an object may outlive its last
    /// proxy by up to this time.
    pub fn handoff_timeout(mut self, timeout: Duration) -> Self {
        self.limits.handoff_timeout = timeout;
        self
    }

    /// How many authenticated connections may be open at once (default
    /// 16,384; a client holds one per thread that calls). Past it, a new client gets
    /// `Error::LimitReached`.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.limits.max_connections = n.max(1);
        self
    }

    /// How many connections may be in the handshake at once (default 1024);
    /// more are closed as they arrive, so silent peers cannot exhaust threads.
    pub fn max_handshakes(mut self, n: usize) -> Self {
        self.limits.max_handshakes = n.max(1);
        self
    }

    /// How many objects one client session may hold that it created (default
    /// 16 Mi). Past it, constructors return `Error::LimitReached`.
    pub fn max_objects_per_session(mut self, n: usize) -> Self {
        self.limits.max_objects_per_session = n.max(1);
        self
    }

    /// How long a client on TCP may stay silent, neither answering the
    /// manager's keepalive probes nor acknowledging what it was sent, before
    /// its connections count as ended abnormally (default 60 s; whole
    /// seconds, at least 2). Its machine may have lost power, or a firewall
    /// may have started dropping its packets: per DESIGN §4 its locks and
    /// permits are then given back, and its references dropped.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder()
    ///     .address("tcp:127.0.0.1:0".parse()?)
    ///     .dead_peer_timeout(Duration::from_secs(15))
    ///     .spawn_thread()?;
    /// # Ok(()) }
    /// ```
    pub fn dead_peer_timeout(mut self, timeout: Duration) -> Self {
        self.limits.dead_peer_timeout = timeout.max(Duration::from_secs(2));
        self
    }

    /// Encrypts connections on a local socket too (default: no, since the
    /// kernel already keeps other users out of the socket's directory).
    /// Connections on `tcp:` addresses are always encrypted, and those on
    /// `tcp-plain:` never; see [`Address`].
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().encrypt_local(true).spawn_thread()?;
    /// assert_eq!(mgr.value(1u8)?.get()?, 1);
    /// # Ok(()) }
    /// ```
    pub fn encrypt_local(mut self, yes: bool) -> Self {
        self.limits.encrypt_local = yes;
        self
    }

    /// Turns the manager's busy-polling on or off (default: on). With it,
    /// the thread that answered a call checks for the next request without
    /// blocking for a few tens of microseconds at most before it sleeps, so
    /// a client calling in a loop does not pay for waking an idle CPU on
    /// every call. It backs off by itself where it does not pay (a manager
    /// allowed one CPU only, more runnable threads than cores, clients that
    /// pause between calls); off, an idle moment never costs CPU time. The
    /// client's side is [`Client::set_busy_poll`](crate::Client::set_busy_poll).
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().busy_poll(false).spawn_thread()?;
    /// assert_eq!(mgr.value(1u8)?.get()?, 1);
    /// # Ok(()) }
    /// ```
    pub fn busy_poll(mut self, on: bool) -> Self {
        self.limits.busy_poll = on;
        self
    }

    pub(crate) fn config(self) -> ServerConfig {
        ServerConfig {
            address: self.address.unwrap_or_else(Address::fresh_local),
            key: self.key.unwrap_or_else(AuthKey::random),
            types: self.types,
            limits: self.limits,
        }
    }

    /// Runs the manager as a child OS process of this program and returns
    /// once it is ready. The child exits when the `Manager` is dropped, when
    /// `shutdown` is called, and when this process dies, even by SIGKILL.
    ///
    /// The child is this same executable, started again: a static
    /// constructor catches it before `main`, so the program's `main` never
    /// runs there. It knows every `#[shared]` type linked into the program.
    ///
    /// ```no_run
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().start()?;
    /// let greeting = mgr.value(String::from("hello"))?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `Error::Io` if the process cannot be started or does not become ready.
    pub fn start(self) -> Result<Manager> {
        let config = self.config();
        let key = config.key.clone();
        let (child, address) = ChildManager::start(&config)?;
        let client = match Client::connect(&address, &key) {
            Ok(c) => c,
            Err(e) => {
                child.kill();
                return Err(e);
            }
        };
        Ok(Manager {
            client,
            address,
            key,
            running: Running::Process(child),
        })
    }

    /// Runs the manager on a thread of this process: for tests and
    /// single-process programs.
    ///
    /// # Errors
    /// `Error::Io` if the address cannot be bound.
    pub fn spawn_thread(self) -> Result<Manager> {
        let config = self.config();
        let key = config.key.clone();
        let server = Server::bind(config)?;
        let address = server.state().address.clone();
        let thread = ServerThread::spawn(server)?;
        let client = Client::connect(&address, &key)?;
        Ok(Manager {
            client,
            address,
            key,
            running: Running::Thread(thread),
        })
    }

    /// Runs the manager on this thread until it is shut down: by a client's
    /// [`Client::shutdown_manager`], or by SIGINT or SIGTERM, which stop it
    /// cleanly (calls in progress get their replies). For a dedicated server
    /// binary; [`ManagerBuilder::serve_with`] also creates what it serves.
    ///
    /// ```no_run
    /// # fn main() -> manager::Result<()> {
    /// manager::Manager::builder()
    ///     .address("tcp:0.0.0.0:5050".parse()?)
    ///     .auth_key(manager::AuthKey::from_hex(&std::env::var("KEY").unwrap_or_default())?)
    ///     .serve()
    /// # }
    /// ```
    ///
    /// # Errors
    /// `Error::Io` if the address cannot be bound or the signal handlers
    /// cannot be installed.
    pub fn serve(self) -> Result<()> {
        self.serve_with(|_| Ok(()))
    }

    /// Binds the address, runs `setup` with a client of the manager, then
    /// serves as [`ManagerBuilder::serve`] does: Python's "register, create
    /// and publish, then `serve_forever()`". A bind failure (say, the port
    /// is taken) is an error before `setup` runs; an error of `setup` is
    /// returned and nothing is served.
    ///
    /// What `setup` creates lives while something refers to it: publish
    /// what clients should find ([`Client::publish`]); the rest is freed
    /// when `setup` returns.
    ///
    /// ```no_run
    /// # fn main() -> manager::Result<()> {
    /// manager::Manager::builder()
    ///     .address("tcp:0.0.0.0:5050".parse()?)
    ///     .auth_key(manager::AuthKey::from_hex(&std::env::var("KEY").unwrap_or_default())?)
    ///     .serve_with(|client| {
    ///         client.publish("jobs", &client.queue::<String>(0)?)?;
    ///         client.publish("done", &client.value(0u64)?)
    ///     })
    /// # }
    /// ```
    ///
    /// # Errors
    /// `Error::Io` if the address cannot be bound or the signal handlers
    /// cannot be installed, or what `setup` returns.
    pub fn serve_with(self, setup: impl FnOnce(&Client) -> Result<()>) -> Result<()> {
        let server = Server::bind(self.config())?;
        let state = std::sync::Arc::clone(server.state());
        {
            let client = Client::local(
                &(std::sync::Arc::clone(&state) as std::sync::Arc<dyn crate::client::InProcess>),
            );
            setup(&client)?;
        }
        let _on_signal = OnSignal::new(signals::STOP, move || state.stop())?;
        tracing::info!(address = %server.state().address, "manager serving");
        server.run();
        Ok(())
    }
}
