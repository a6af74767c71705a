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

/// Shares a type through a manager: on a struct or enum and on its one
/// inherent impl block, generates the proxy `XProxy`, its methods, and the
/// manager's dispatcher.
///
/// ```
/// use manager::{shared, Context, Manager};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// pub struct Item { pub name: String, pub count: u32 }
///
/// /// Goods on a shelf.
/// #[shared]
/// pub struct Inventory { items: Vec<Item> }
///
/// #[shared]
/// impl Inventory {
///     /// A constructor: runs in the manager.
///     pub fn new() -> Self { Inventory { items: Vec::new() } }
///
///     /// `&mut self`: runs alone. Borrowed arguments stay borrowed on the proxy.
///     pub fn add(&mut self, name: &str, count: u32) -> usize {
///         self.items.push(Item { name: name.to_owned(), count });
///         self.items.len()
///     }
///
///     /// `&self`: runs beside other `&self` calls.
///     pub fn count(&self, name: &str) -> Option<u32> {
///         self.items.iter().find(|i| i.name == name).map(|i| i.count)
///     }
///
///     /// `&[T]` and `&T` arguments, and a result of the method's own.
///     pub fn take(&mut self, names: &[String], at_least: &u32) -> Result<usize, String> {
///         let before = self.items.len();
///         self.items.retain(|i| !(names.contains(&i.name) && i.count >= *at_least));
///         match before - self.items.len() {
///             0 => Err("nothing to take".to_owned()),
///             n => Ok(n),
///         }
///     }
///
///     /// The manager supplies `ctx`; the proxy's `whoami` takes nothing.
///     pub fn whoami(&self, ctx: &Context) -> u64 { ctx.connection_id() }
///
///     /// Not `pub`: stays on the manager's side.
///     fn total(&self) -> u32 { self.items.iter().map(|i| i.count).sum() }
/// }
///
/// fn main() -> manager::Result<()> {
///     let mgr = Manager::builder().register::<Inventory>().spawn_thread()?;
///     let shelf = InventoryProxy::new(&mgr)?;          // manager::Result<InventoryProxy>
///     assert_eq!(shelf.add("widget", 3)?, 1);          // manager::Result<usize>
///     assert_eq!(shelf.count("widget")?, Some(3));
///     let pending = shelf.deferred().add("gadget", 1)?; // sent, not waited for
///     assert_eq!(pending.wait()?, 2);
///     assert_eq!(shelf.take(&["widget".to_owned()], &2)?, Ok(1));
///     assert_eq!(shelf.take(&["widget".to_owned()], &2)?, Err("nothing to take".to_owned()));
///     assert!(shelf.whoami()? > 0);
///     Ok(())
/// }
/// ```
///
/// # The type
///
/// `#[shared]` on a struct or enum generates `XProxy` (and its deferred view
/// `XProxyDeferred`) with the type's visibility, and the [`Shared`] impl
/// that names the type on the wire by its full path (`module_path!()` and
/// its name). The type must be `Send + Sync`, as the manager's threads share
/// each object behind a reader-writer lock, and it must not be generic. It
/// need not be serde: it may hold files, threads and sockets. Put
/// `#[shared]` on its inherent impl block too, in the same module, or in a
/// module inside it that imports `XProxy` and `XProxyDeferred` by name (a
/// glob import of them meets the hidden stand-ins the impl block's expansion
/// declares, and the compiler asks for the import by name).
///
/// # Methods and constructors
///
/// The impl block's `pub fn`s make the proxy; its other functions stay on
/// the manager's side.
///
/// - **Methods.** A `pub fn` taking `&self` or `&mut self` (or `self: &Self`,
///   `self: &mut Self`) becomes a method of the proxy with the same name
///   and arguments, taking `&self` and returning [`Result`]`<R>`, where `R` is
///   the method's own return type (`()` if none). `&self` methods run
///   concurrently; `&mut self` methods run alone. Each is also a method of
///   the view `proxy.deferred()`, which sends the call without waiting and
///   returns [`Result`]`<`[`Pending`]`<R>>`.
/// - **Constructors.** A `pub fn` without a receiver that returns `Self`
///   (or the type's name) runs in the manager: the proxy's function of the
///   same name takes the [`Client`] first (`&mgr` will do) and returns
///   [`Result`]`<XProxy>`. A `pub fn` without a receiver returning anything
///   else is left alone.
/// - **Arguments** are values of types that are `Serialize +
///   DeserializeOwned`, or shared borrows of them at the top of the
///   argument: `&str`, `&[T]` and `&T`. The proxy takes the same borrowed
///   type and encodes it where it is; the manager decodes an owned `String`,
///   `Vec<T>` or `T` and lends it to the method. A borrowed argument is sent
///   as its owned type is, and the interface's fingerprint counts it as that
///   type, so a client whose method takes `String` and a manager whose method
///   takes `&str` agree. A `Vec<u8>` or `&[u8]` travels as one byte string.
/// - **Results** are owned values of serde types, proxies included; a
///   method returning `Result<T, E>` gives the proxy
///   [`Result`]`<Result<T, E>>`, whose outer error is the call's.
/// - **The context.** A first parameter after `self` (the first of a
///   constructor) of type `&Context` is supplied by the manager and is not
///   part of the proxy's signature: see [`Context`].
///
/// # What is refused, and why
///
/// Each of these is a compile error at the token that is wrong, saying
/// what to do instead; all of an impl block's are reported together.
///
/// | Refused | Why |
/// | --- | --- |
/// | `self`, `self: Box<Self>` | the object stays in the manager: take `&self` or `&mut self` |
/// | `async fn` | a method runs on a manager thread: make it a plain `fn` that blocks where it must |
/// | `unsafe fn`, `extern fn`, variadics | a remote caller cannot uphold a contract or a calling convention |
/// | generic methods or types, `impl Trait` | the proxy needs one concrete signature, the manager one concrete type |
/// | a reference in a result (`-> &str`) | the result is sent to the caller: return an owned value |
/// | `&mut T` arguments | the manager works on a copy the caller never sees: return what changed |
/// | references inside an argument (`&&str`, `Option<&T>`, `Vec<&str>`) | the manager lends only the value it decoded: borrow at the top or own inside |
/// | named lifetimes (`&'static str`), `&dyn Trait` | the manager lends a value it decoded for the call only, of a concrete type |
/// | `&Context` anywhere but first | the manager supplies it only there |
/// | `-> !` | every proxy call returns a [`Result`]: return `()` |
/// | `#[cfg]` on a shared method | client and manager could disagree on the interface: gate its body |
/// | methods named `deferred`, `to_token`, `from_token` | the proxy already has them |
/// | `#[shared]` on a trait impl, or with arguments | it goes on the type and its inherent impl block, as `#[shared]` |
///
/// A `#[shared]` impl block whose type lacks `#[shared]` is one error that
/// says so; so is a type with a field that is not `Sync` (a `Cell`). An
/// argument or result type that is not serde is reported at that type.
///
/// ```compile_fail
/// use manager::shared;
///
/// #[shared]
/// pub struct Greeter;
///
/// #[shared]
/// impl Greeter {
///     pub fn new() -> Self { Greeter }
///     // error: a shared method cannot take a `&mut` argument: ...
///     pub fn greet(&self, name: &mut String) { name.push('!') }
/// }
/// # fn main() {}
/// ```
pub use manager_macros::shared;
