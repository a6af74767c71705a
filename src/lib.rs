//! Shared objects for Rust processes.
//!
//! A **manager** is a server that owns objects; other processes, on this
//! machine or across the network, hold typed **proxies** and call the
//! objects' methods through them. It is Python's `multiprocessing.managers`
//! rebuilt for Rust: typed at compile time, fast, crash-safe, and secure by
//! default.
//!
//! ```
//! use manager::{shared, Manager};
//!
//! #[shared]
//! pub struct Counter { value: i64 }
//!
//! #[shared]
//! impl Counter {
//!     pub fn new(start: i64) -> Self { Counter { value: start } }
//!     pub fn incr(&mut self, by: i64) -> i64 { self.value += by; self.value }
//!     pub fn get(&self) -> i64 { self.value }
//! }
//!
//! fn main() -> manager::Result<()> {
//!     // `start()` runs the manager as its own process; `spawn_thread()` in this one.
//!     let mgr = Manager::builder().register::<Counter>().spawn_thread()?;
//!     let counter = CounterProxy::new(&mgr, 0)?;     // the object lives in the manager
//!     std::thread::scope(|s| {
//!         for _ in 0..4 {
//!             let c = counter.clone();               // proxies are values
//!             s.spawn(move || c.incr(1));
//!         }
//!     });
//!     assert_eq!(counter.get()?, 4);
//!     Ok(())
//! }
//! ```
//!
//! # A tour
//!
//! - **Shared types.** `#[shared]` on a struct (or enum) and on its inherent
//!   impl block generates `XProxy`: every `pub fn` taking `&self` or `&mut
//!   self` becomes a proxy method returning [`Result`]`<R>`, and every `pub fn
//!   .. -> Self` a constructor that runs in the manager. `&self` methods run
//!   concurrently, `&mut self` methods alone. Arguments and results are serde
//!   types; the object itself need not be (it may hold files, threads,
//!   sockets). `proxy.deferred()` sends calls without waiting, returning a
//!   [`Pending`].
//! - **Managers.** [`Manager::builder`] registers the types a manager may
//!   construct and runs it as a child process ([`ManagerBuilder::start`]), on
//!   a thread ([`ManagerBuilder::spawn_thread`]) or on the current thread
//!   ([`ManagerBuilder::serve`]). A `Manager` derefs to a [`Client`]; any
//!   process connects its own with [`Client::connect`].
//! - **Proxies are values.** Every proxy implements [`Proxy`]: clone it,
//!   publish it under a name ([`Client::publish`], [`Client::lookup`]), or hand
//!   it to another process as a token ([`Proxy::to_token`],
//!   [`Proxy::from_token`]).
//! - **Lifetime.** An object lives while a proxy, a name or a token in
//!   hand-off refers to it. When a client process exits or is killed, its
//!   references go with it; [`Client::stats`] shows what is alive.
//! - **Security.** Every connection starts with a Noise handshake keyed by
//!   the [`AuthKey`]; on a `tcp:` [`Address`] everything after it is
//!   encrypted and authenticated (`tcp-plain:` opts out on both ends). Local
//!   sockets live in a directory only their owner can enter.
//! - **Failure.** A panic in a shared method comes back as
//!   [`Error::RemotePanic`] and the manager goes on serving; a client killed
//!   mid-call costs the manager nothing but that connection.

pub use manager_core::*;
pub use manager_macros::shared;
