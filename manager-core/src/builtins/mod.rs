//! The built-in shared types, SyncManager's set: list, dict, value, queue,
//! joinable queue, lock, rlock, semaphore, condition, event, barrier,
//! namespace.
//!
//! Each is an [`Object`] served like any `#[shared]` type, and declares its
//! methods once, in a [`methods!`] table: its wire ids, the exhaustive
//! `match` that runs a call, its method names and its fingerprint all come
//! from there. The blocking ones (lock, rlock, semaphore, condition, the
//! queues) wait on one core, [`wait`].
//!
//! Containers hold their elements as encoded bytes, so
//! `client.list::<MyStruct>()` needs nothing registered: the typed proxy
//! encodes and decodes on the client. Elements travel as length-prefixed
//! byte strings ([`Elem`]).

mod barrier;
mod condition;
mod dict;
mod event;
mod list;
mod lock;
mod namespace;
mod queue;
mod semaphore;
mod value;
mod wait;

use std::sync::{Arc, Weak};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::caps::{capturing, note, Cap};
use crate::client::{Client, Pending};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::proxy::{Handle, Kind, Proxy};
use crate::server::ServerState;
use crate::shared::{element_fingerprint, fingerprint, End, Object, TypeEntry};
use crate::wire::codec::{from_slice, to_vec, Decoder, Encoder};

pub use barrier::{AsyncBarrierProxy, BarrierProxy};
pub use condition::{AsyncConditionGuard, AsyncConditionProxy, ConditionProxy};
pub use dict::{AsyncDictProxy, DictProxy};
pub use event::{AsyncEventProxy, EventProxy};
pub use list::{AsyncListProxy, ListProxy};
pub use lock::{AsyncLockGuard, AsyncLockProxy, AsyncRLockProxy, LockGuard, LockProxy, RLockProxy};
pub use namespace::{AsyncNamespaceProxy, NamespaceProxy};
pub use queue::{AsyncJoinableQueueProxy, AsyncQueueProxy, JoinableQueueProxy, QueueProxy};
pub use semaphore::{AsyncSemaphoreProxy, SemaphoreProxy};
pub use value::{AsyncValueProxy, FetchAdd, ValueProxy};

// `Deferred` is defined below, beside `proxy_methods!`.

/// Encoded bytes, travelling length-prefixed.
pub(crate) type ElemBuf = serde_bytes::ByteBuf;

/// A proxy inside an element: an object of this manager (`address: None`)
/// or of another one.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireCap {
    address: Option<Address>,
    object: u64,
}

/// An element as a client sends it: its encoding and the objects it embeds.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Elem {
    bytes: ElemBuf,
    caps: Vec<WireCap>,
}

impl Elem {
    /// The encoded value.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether the value holds proxies, which its keeper must hold too.
    pub(crate) fn embeds_proxies(&self) -> bool {
        !self.caps.is_empty()
    }

    /// Encodes `value` for the manager at `manager`, recording the proxies
    /// it embeds.
    pub(crate) fn encode<T: Serialize + ?Sized>(manager: &Address, value: &T) -> Result<Elem> {
        let (bytes, caps) = capturing(|| to_vec(value));
        Ok(Elem {
            bytes: ElemBuf::from(bytes?),
            caps: caps
                .into_iter()
                .map(|c| WireCap {
                    address: (c.address != *manager).then_some(c.address),
                    object: c.object,
                })
                .collect(),
        })
    }

    /// Encodes `value` for the manager `handle` belongs to.
    pub(crate) fn for_handle<T: Serialize + ?Sized>(handle: &Handle, value: &T) -> Result<Elem> {
        Elem::encode(handle.address(), value)
    }
}

/// An element as a manager keeps it: its bytes, and a reference to every
/// object they embed for as long as it is kept. Most elements are short and
/// embed no proxy, so those live in place (24 bytes, no allocation); longer
/// ones take one allocation, and references live out of line, only when
/// there are some.
pub(crate) struct Stored(Repr);

enum Repr {
    Inline { len: u8, bytes: [u8; STORED_INLINE] },
    Boxed(Box<[u8]>),
    Holding(Box<(Box<[u8]>, Held)>),
}

/// The longest encoding a [`Stored`] keeps in place.
const STORED_INLINE: usize = 22;

const _: () = assert!(std::mem::size_of::<Stored>() == 24);

struct Held {
    state: Weak<ServerState>,
    own: Vec<u64>,
    foreign: Vec<Handle>,
}

impl Stored {
    /// Keeps `elem`, taking a reference to each object it embeds. An object
    /// that is already gone is simply not held: its proxy will report
    /// `NoSuchObject` when used.
    pub(crate) fn keep(ctx: &Context, elem: Elem) -> Stored {
        if elem.caps.is_empty() {
            if elem.bytes.len() <= STORED_INLINE {
                return Stored::plain(&elem.bytes);
            }
            // The decoded vector becomes the box: no copy.
            return Stored(Repr::Boxed(elem.bytes.into_vec().into_boxed_slice()));
        }
        let mut held = Held {
            state: Arc::downgrade(&ctx.server),
            own: Vec::new(),
            foreign: Vec::new(),
        };
        for cap in elem.caps {
            match cap.address {
                None => {
                    if ctx.server.table.retain(cap.object) {
                        held.own.push(cap.object);
                    }
                }
                Some(address) => match Handle::acquire(&address, cap.object) {
                    Ok(h) => held.foreign.push(h),
                    Err(e) => tracing::debug!(%address, object = cap.object, error = %e,
                        "a stored proxy's object is unreachable"),
                },
            }
        }
        let bytes = elem.bytes.into_vec().into_boxed_slice();
        Stored(Repr::Holding(Box::new((bytes, held))))
    }

    /// Keeps encoded bytes that embed no proxy (an integer it computed).
    pub(crate) fn plain(bytes: &[u8]) -> Stored {
        match u8::try_from(bytes.len()) {
            Ok(len) if bytes.len() <= STORED_INLINE => {
                let mut inline = [0; STORED_INLINE];
                inline[..bytes.len()].copy_from_slice(bytes);
                Stored(Repr::Inline { len, bytes: inline })
            }
            _ => Stored(Repr::Boxed(bytes.into())),
        }
    }

    /// The encoded value.
    pub(crate) fn bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Boxed(b) => b,
            Repr::Holding(h) => &h.0,
        }
    }

    /// [`Stored::write`] as a byte string (its length first), for a caller
    /// that decodes the element itself while it decodes the result.
    pub(crate) fn write_bytes(&self, out: &mut Encoder<'_>) -> Result<()> {
        out.put(&self.bytes().len())?;
        self.write(out);
        Ok(())
    }

    /// Writes the element, raw, as (part of) a result: the caller decodes it
    /// as a `T` inside its result, and the objects it embeds travel in the
    /// reply's capability list.
    pub(crate) fn write(&self, out: &mut Encoder<'_>) {
        out.put_raw(self.bytes());
        let Repr::Holding(h) = &self.0 else {
            return;
        };
        let held = &h.1;
        if let Some(state) = held.state.upgrade() {
            for &object in &held.own {
                note(Cap {
                    address: state.address.clone(),
                    object,
                    proxy: None,
                });
            }
        }
        for h in &held.foreign {
            note(Cap {
                address: h.address().clone(),
                object: h.object(),
                proxy: Some(h.clone()),
            });
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        for &object in &self.own {
            state.table.unretain(object);
        }
        // `foreign` goes now. A reply that carried this element to someone
        // holds its own clones of them until the receiver has bound them
        // (see `ServerState::call`); an element dropped with no receiver
        // (clear, set, a freed container) has nobody to wait for.
    }
}

/// A built-in type: its identity, its method table, its constructor and
/// how it runs a call.
pub(crate) trait Builtin: Send + Sync + Sized + 'static {
    /// Name on the wire and in stats.
    const NAME: &'static str;
    /// Its method table, from [`methods!`].
    type Methods: Methods;
    /// Method names by wire id.
    const METHODS: &'static [&'static str] = <Self::Methods as Methods>::NAMES;
    /// The interface fingerprint, without the element types: the name and
    /// every method's signature.
    const FINGERPRINT: u64 = fingerprint(Self::NAME, <Self::Methods as Methods>::SIGNATURES);
    /// How many element types its proxy has (`DictProxy<K, V>`: 2).
    const ELEMENTS: usize = 0;

    /// Builds the object from its constructor arguments.
    fn construct(ctx: &Context, args: &mut Decoder<'_>) -> Result<Self>;

    /// Runs one call, its arguments already decoded.
    fn call(
        &self,
        ctx: &Context,
        call: <Self::Methods as Methods>::Call<'_>,
        out: &mut Encoder<'_>,
    ) -> Result<()>;

    /// Whether `disconnected` does anything: see
    /// [`Object::tracks_connections`]. A type that overrides
    /// `disconnected` sets it.
    const TRACKS_CONNECTIONS: bool = false;

    /// Connection `conn` ended: see [`Object::disconnected`].
    fn disconnected(&self, _conn: u64, _end: End) {}
}

/// A built-in's method table, generated by [`methods!`]: the methods' names
/// and signatures by wire id, and the decoding of a call into one value.
pub(crate) trait Methods {
    /// Method names by wire id.
    const NAMES: &'static [&'static str];
    /// Method signatures by wire id, as the fingerprint hashes them.
    const SIGNATURES: &'static [&'static str];
    /// A call of one of the methods, its arguments decoded.
    type Call<'a>;
    /// Decodes a call of method `id` and all of its arguments (trailing
    /// bytes are an error); `None` if there is no method `id`.
    fn parse<'a>(id: u32, args: &mut Decoder<'a>) -> Result<Option<Self::Call<'a>>>;
}

/// An argument as a method table decodes it.
pub(crate) trait Arg<'a>: Sized {
    /// Takes the argument from `args`.
    fn take(args: &mut Decoder<'a>) -> Result<Self>;
}

macro_rules! serde_args {
    ($($t:ty),*) => {$(
        impl<'a> Arg<'a> for $t {
            fn take(args: &mut Decoder<'a>) -> Result<Self> {
                args.take()
            }
        }
    )*};
}
serde_args!(Elem, ElemBuf, String, u8, u64, Vec<Elem>, Vec<(Elem, Elem)>);

/// A size or an index (see [`take_usize`]).
impl<'a> Arg<'a> for usize {
    fn take(args: &mut Decoder<'a>) -> Result<Self> {
        take_usize(args)
    }
}

/// A byte string, borrowed from the message.
impl<'a> Arg<'a> for &'a [u8] {
    fn take(args: &mut Decoder<'a>) -> Result<Self> {
        args.take_byte_slice()
    }
}

/// Declares a built-in's method table: one row per method, `id Variant(args)
/// => name "(rest of its signature)"`, in wire-id order. From it come:
/// - `enum $method`, the wire ids (`SemaphoreMethod::Release as u32`), for
///   proxies;
/// - `enum $call`, a call with its arguments decoded, in order, as the
///   variant's fields (types implementing [`Arg`]), so the built-in's
///   `match` on it is exhaustive: a method without an arm does not compile;
/// - the [`Methods`] impl: names, signatures (which the fingerprint hashes)
///   and `parse`, which decodes a call and checks that nothing follows.
///
/// A call type that borrows from the message is written `$call<'a>`.
macro_rules! methods {
    (
        $(#[$meta:meta])*
        enum $method:ident -> $call:ident $(<$lt:lifetime>)? {
            $( $id:literal $variant:ident $(( $($arg:ty),* ))? => $name:ident $sig:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u32)]
        pub(crate) enum $method {
            $( $variant = $id, )*
        }

        #[doc = concat!("A call of a [`", stringify!($method), "`], its arguments decoded.")]
        pub(crate) enum $call $(<$lt>)? {
            $( $variant $(( $($arg),* ))?, )*
        }

        // Ids are positions in the name and signature lists.
        const _: () = {
            let mut next = 0;
            $(
                assert!(
                    $method::$variant as u32 == next,
                    "method ids must run 0, 1, 2, … in the order of the table"
                );
                next += 1;
            )*
            let _ = next;
        };

        impl crate::builtins::Methods for $method {
            const NAMES: &'static [&'static str] = &[$(stringify!($name)),*];
            const SIGNATURES: &'static [&'static str] =
                &[$(concat!(stringify!($name), $sig)),*];
            type Call<'a> = $call $(<$lt>)?;

            fn parse<'a>(
                id: u32,
                args: &mut crate::wire::codec::Decoder<'a>,
            ) -> crate::error::Result<Option<$call $(<$lt>)?>> {
                let call = match id {
                    $( $id => $call::$variant $(( $( <$arg as crate::builtins::Arg<'a>>::take(args)? ),* ))?, )*
                    _ => return Ok(None),
                };
                args.finish()?;
                Ok(Some(call))
            }
        }
    };
}
pub(crate) use methods;

/// A built-in object as the server holds it, with the element types its
/// creator named (none but for containers): its fingerprint covers them, so
/// a proxy for other element types is refused.
struct Served<B> {
    object: B,
    elements: Vec<String>,
    fingerprint: u64,
}

impl<B: Builtin> Object for Served<B> {
    fn type_name(&self) -> &'static str {
        B::NAME
    }
    fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
    fn element_types(&self) -> &[String] {
        &self.elements
    }
    fn method_name(&self, method: u32) -> &'static str {
        crate::shared::method_name(B::METHODS, method)
    }
    #[inline]
    fn call(
        &self,
        ctx: &Context,
        method: u32,
        args: &mut Decoder<'_>,
        out: &mut Encoder<'_>,
    ) -> Result<()> {
        let Some(call) = B::Methods::parse(method, args)? else {
            return Err(Error::Protocol(format!(
                "{} has no method number {method}",
                B::NAME
            )));
        };
        self.object.call(ctx, call, out)
    }
    fn tracks_connections(&self) -> bool {
        B::TRACKS_CONNECTIONS
    }
    fn disconnected(&self, conn: u64, end: End) {
        self.object.disconnected(conn, end)
    }
}

fn construct<B: Builtin>(
    ctx: &Context,
    ctor: u32,
    args: &mut Decoder<'_>,
    elements: Vec<String>,
) -> Result<Box<dyn Object>> {
    if ctor != 0 {
        return Err(Error::Protocol(format!("{} has one constructor", B::NAME)));
    }
    let object = B::construct(ctx, args)?;
    args.finish()?;
    let fingerprint = element_fingerprint(B::FINGERPRINT, elements.iter().map(String::as_str));
    Ok(Box::new(Served {
        object,
        elements,
        fingerprint,
    }))
}

const fn entry<B: Builtin>() -> TypeEntry {
    TypeEntry {
        name: B::NAME,
        fingerprint: B::FINGERPRINT,
        elements: B::ELEMENTS,
        construct: construct::<B>,
    }
}

/// The built-ins' entries, as `#[shared]` makes one for each user type:
/// [`crate::shared::preregistered`] offers them to every manager.
pub(crate) static ENTRIES: [TypeEntry; 12] = [
    entry::<value::ValueObject>(),
    entry::<list::ListObject>(),
    entry::<dict::DictObject>(),
    entry::<namespace::NamespaceObject>(),
    entry::<queue::QueueObject>(),
    entry::<queue::JoinableQueueObject>(),
    entry::<lock::LockObject>(),
    entry::<lock::RLockObject>(),
    entry::<semaphore::SemaphoreObject>(),
    entry::<condition::ConditionObject>(),
    entry::<event::EventObject>(),
    entry::<barrier::BarrierObject>(),
];

/// Creates a built-in object and returns its proxy `P`, which names the
/// object's type and element types.
pub(crate) fn create<P: Proxy>(
    client: &Client,
    args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
) -> Result<P> {
    crate::proxy::create(client, Kind::of::<P>(), 0, args).map(P::__from_handle)
}

/// Decodes an element.
pub(crate) fn decode<T: DeserializeOwned>(elem: &[u8]) -> Result<T> {
    from_slice(elem)
}

/// Implements the parts of [`Proxy`](crate::Proxy) and the serde traits that
/// every built-in proxy shares; `$obj` is its server-side object type.
macro_rules! builtin_proxy {
    ($proxy:ident < $($g:ident),* >, $obj:ty) => {
        // The manager expects as many element types as the proxy has parameters.
        const _: () = assert!(
            <$obj as crate::builtins::Builtin>::ELEMENTS == [$(stringify!($g)),*].len()
        );
        impl<$($g: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static),*> crate::Proxy for $proxy<$($g),*> {
            const TYPE_NAME: &'static str = <$obj as crate::builtins::Builtin>::NAME;
            const FINGERPRINT: u64 = <$obj as crate::builtins::Builtin>::FINGERPRINT;
            const __ELEMENT_TYPES: &'static [fn() -> &'static str] =
                &[$(std::any::type_name::<$g>),*];
            const __METHODS: &'static [&'static str] = <$obj as crate::builtins::Builtin>::METHODS;
            fn __from_handle(handle: crate::proxy::Handle) -> Self {
                $proxy { handle, _marker: std::marker::PhantomData }
            }
            fn __handle(&self) -> &crate::proxy::Handle {
                &self.handle
            }
        }
        impl<$($g),*> Clone for $proxy<$($g),*> {
            fn clone(&self) -> Self {
                $proxy { handle: self.handle.clone(), _marker: std::marker::PhantomData }
            }
        }
        impl<$($g),*> std::fmt::Debug for $proxy<$($g),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({:?})", stringify!($proxy), self.handle)
            }
        }
        impl<$($g),*> serde::Serialize for $proxy<$($g),*> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.handle.serialize(s)
            }
        }
        impl<'de, $($g: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static),*> serde::Deserialize<'de> for $proxy<$($g),*> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                crate::proxy::deserialize_proxy::<Self, D>(d)
            }
        }
    };
}
pub(crate) use builtin_proxy;

/// Pipelined calls to a built-in object: the methods of proxy `P`, each
/// sending its call without waiting and returning a [`Pending`] for the
/// reply. From the proxy's `deferred()`.
///
/// Calls sent from one thread run in the manager in the order sent, so many
/// deferred calls cost about one round trip; replies may be taken in any
/// order. A call that blocks in the manager (a queue's `get`, a lock's
/// `acquire`) holds up the calls sent after it on the same thread, as a
/// plain call would.
///
/// ```
/// # fn main() -> manager::Result<()> {
/// let mgr = manager::Manager::builder().spawn_thread()?;
/// let scores = mgr.dict::<String, u32>()?;
/// let sent: Vec<_> = (0..100)
///     .map(|i| scores.deferred().insert(format!("p{i}"), i))
///     .collect::<manager::Result<_>>()?;
/// let len = scores.deferred().len()?;
/// for p in sent {
///     assert_eq!(p.wait()?, None); // each key was new
/// }
/// assert_eq!(len.wait()?, 100);
/// # Ok(()) }
/// ```
pub struct Deferred<'a, P> {
    proxy: &'a P,
}

impl<P> Clone for Deferred<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P> Copy for Deferred<'_, P> {}

impl<P: std::fmt::Debug> std::fmt::Debug for Deferred<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Deferred").field(self.proxy).finish()
    }
}

/// How a built-in proxy method sends its call: [`Now`] waits for the reply,
/// [`Later`] returns a [`Pending`]. [`proxy_methods!`] writes each method's
/// body once and runs it with either.
pub(crate) struct Now<'a>(pub(crate) &'a Handle);

/// See [`Now`].
pub(crate) struct Later<'a>(pub(crate) &'a Handle);

impl Now<'_> {
    #[inline]
    pub(crate) fn call<R: DeserializeOwned>(
        &self,
        method: u32,
        args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
    ) -> Result<R> {
        self.0.call(method, args)
    }

    /// Encodes an element for this object's manager.
    pub(crate) fn elem<T: Serialize + ?Sized>(&self, value: &T) -> Result<Elem> {
        Elem::for_handle(self.0, value)
    }
}

impl Later<'_> {
    #[inline]
    pub(crate) fn call<R: DeserializeOwned>(
        &self,
        method: u32,
        args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
    ) -> Result<Pending<R>> {
        self.0.call_deferred(method, args)
    }

    /// Encodes an element for this object's manager.
    pub(crate) fn elem<T: Serialize + ?Sized>(&self, value: &T) -> Result<Elem> {
        Elem::for_handle(self.0, value)
    }
}

/// The async face's way of sending a call (see [`Now`]): `call` returns the
/// call's future, on the connection `route` says (see `client::aio`).
pub(crate) struct Soon<'a>(pub(crate) &'a Handle, pub(crate) Via);

/// Which connection of the async face a built-in method's call takes.
#[derive(Clone, Copy)]
pub(crate) enum Via {
    /// The client's shared one: the method never waits.
    Main,
    /// One of its own: the method may wait.
    Wait,
    /// The client's owner link: the method acts for an owner (an RLock's,
    /// a condition's), and the client as a whole is that owner.
    Owner,
}

impl Soon<'_> {
    #[inline]
    pub(crate) fn call<R: DeserializeOwned>(
        &self,
        method: u32,
        args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
    ) -> Result<crate::client::AsyncCall<R>> {
        let route = match self.1 {
            Via::Main => crate::client::Route::Main,
            Via::Wait => crate::client::Route::Wait,
            Via::Owner => crate::client::Route::Owner,
        };
        Ok(self.0.call_async_on(route, method, args))
    }

    /// Encodes an element for this object's manager.
    pub(crate) fn elem<T: Serialize + ?Sized>(&self, value: &T) -> Result<Elem> {
        Elem::for_handle(self.0, value)
    }
}

/// Runs a method body written for [`Soon`]: the call it sent, or why it
/// could not send it.
#[inline]
pub(crate) fn soon<R>(
    body: impl FnOnce() -> Result<crate::client::AsyncCall<R>>,
) -> Result<crate::client::AsyncCall<R>> {
    body()
}

/// The connection a method's async call takes: `[wait]` or `[owner]`
/// before its `fn` in [`proxy_methods!`], the shared one without.
macro_rules! via {
    () => {
        crate::builtins::Via::Main
    };
    (main) => {
        crate::builtins::Via::Main
    };
    (wait) => {
        crate::builtins::Via::Wait
    };
    (owner) => {
        crate::builtins::Via::Owner
    };
}
pub(crate) use via;

/// Defines a built-in proxy's methods once for both ways of calling: on the
/// proxy, waiting for the reply, and on its [`Deferred`] view, returning a
/// [`Pending`]. Each body is written against `|h|`, which is a [`Now`] in
/// the first and a [`Later`] in the second; it must end in `h.call(..)`.
/// Method generics go in brackets: `pub fn get[T: Bound](&self) -> T`.
///
/// The proxy's async twin (named after the `/`) gets each as an `async fn`,
/// run with a [`Soon`]; a method that may wait in the manager says so with
/// `pub [wait] fn`, one that acts for an owner with `pub [owner] fn` (see
/// [`Via`]).
macro_rules! proxy_methods {
    (impl[$($g:tt)*] $proxy:ident $(<$($pg:ident),*>)? / $async:ident; $($rest:tt)*) => {
        impl<$($g)*> $proxy $(<$($pg),*>)? {
            /// A view of this proxy whose methods send their calls without
            /// waiting for the replies: `proxy.deferred().method(..)?` returns
            /// a [`Pending`](crate::Pending), and
            /// [`wait`](crate::Pending::wait) takes the reply.
            pub fn deferred(&self) -> crate::builtins::Deferred<'_, Self> {
                crate::builtins::Deferred { proxy: self }
            }
        }
        crate::builtins::proxy_methods!(more impl[$($g)*] $proxy $(<$($pg),*>)? / $async; $($rest)*);
    };
    // Methods with bounds of their own, beside a `proxy_methods!` above.
    (
        more impl[$($g:tt)*] $proxy:ident $(<$($pg:ident),*>)? / $async:ident;
        $(
            $(#[$meta:meta])*
            pub $([$via:ident])? fn $name:ident $([$($mg:tt)*])? (&self $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty
                = |$h:ident| $body:block
        )*
    ) => {
        impl<$($g)*> $async $(<$($pg),*>)? {
            $(
                $(#[$meta])*
                pub async fn $name $(<$($mg)*>)? (&self $(, $arg: $ty)*) -> crate::error::Result<$ret> {
                    let call = {
                        let $h = crate::builtins::Soon(
                            &self.handle,
                            crate::builtins::via!($($via)?),
                        );
                        crate::builtins::soon::<$ret>(|| $body)?
                    };
                    call.await
                }
            )*
        }

        impl<$($g)*> $proxy $(<$($pg),*>)? {
            $(
                $(#[$meta])*
                pub fn $name $(<$($mg)*>)? (&self $(, $arg: $ty)*) -> crate::error::Result<$ret> {
                    let $h = crate::builtins::Now(&self.handle);
                    $body
                }
            )*
        }

        impl<$($g)*> crate::builtins::Deferred<'_, $proxy $(<$($pg),*>)?> {
            $(
                #[doc = concat!("Sends [`", stringify!($name), "`](", stringify!($proxy),
                    "::", stringify!($name), ") without waiting for its reply.")]
                ///
                /// # Errors
                /// Connection errors, and the argument's encoding errors;
                /// the call's own errors come from [`Pending::wait`](crate::Pending::wait).
                pub fn $name $(<$($mg)*>)? (&self $(, $arg: $ty)*)
                    -> crate::error::Result<crate::client::Pending<$ret>>
                {
                    let $h = crate::builtins::Later(&self.proxy.handle);
                    $body
                }
            )*
        }
    };
}
pub(crate) use proxy_methods;

// Helpers the built-in types share.

/// Implements `Proxy`, serde and `Debug` for a built-in proxy that is not
/// generic: a struct with one `handle: Handle` field.
macro_rules! plain_proxy {
    ($proxy:ident, $obj:ty) => {
        impl crate::Proxy for $proxy {
            const TYPE_NAME: &'static str = <$obj as crate::builtins::Builtin>::NAME;
            const FINGERPRINT: u64 = <$obj as crate::builtins::Builtin>::FINGERPRINT;
            const __METHODS: &'static [&'static str] = <$obj as crate::builtins::Builtin>::METHODS;
            fn __from_handle(handle: crate::proxy::Handle) -> Self {
                $proxy { handle }
            }
            fn __handle(&self) -> &crate::proxy::Handle {
                &self.handle
            }
        }
        impl std::fmt::Debug for $proxy {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({:?})", stringify!($proxy), self.handle)
            }
        }
        impl serde::Serialize for $proxy {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                self.handle.serialize(s)
            }
        }
        impl<'de> serde::Deserialize<'de> for $proxy {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                crate::proxy::deserialize_proxy::<Self, D>(d)
            }
        }
    };
}
pub(crate) use plain_proxy;

/// Declares a built-in proxy's async twin (DESIGN §2a): the same handle,
/// the same `Proxy` and serde impls, `From` both ways.
macro_rules! async_twin {
    ($(#[$meta:meta])* $async:ident < $($g:ident),* > of $proxy:ident, $obj:ty) => {
        $(#[$meta])*
        pub struct $async<$($g),*> {
            handle: crate::proxy::Handle,
            _marker: std::marker::PhantomData<fn() -> ($($g,)*)>,
        }
        crate::builtins::builtin_proxy!($async<$($g),*>, $obj);
        impl<$($g),*> From<$proxy<$($g),*>> for $async<$($g),*> {
            fn from(p: $proxy<$($g),*>) -> Self {
                $async { handle: p.handle, _marker: std::marker::PhantomData }
            }
        }
        impl<$($g),*> From<$async<$($g),*>> for $proxy<$($g),*> {
            fn from(p: $async<$($g),*>) -> Self {
                $proxy { handle: p.handle, _marker: std::marker::PhantomData }
            }
        }
    };
    ($(#[$meta:meta])* $async:ident of $proxy:ident, $obj:ty) => {
        $(#[$meta])*
        #[derive(Clone)]
        pub struct $async {
            handle: crate::proxy::Handle,
        }
        crate::builtins::plain_proxy!($async, $obj);
        impl From<$proxy> for $async {
            fn from(p: $proxy) -> Self {
                $async { handle: p.handle }
            }
        }
        impl From<$async> for $proxy {
            fn from(p: $async) -> Self {
                $proxy { handle: p.handle }
            }
        }
    };
}
pub(crate) use async_twin;

/// Creates a built-in object through the async face; the future resolves
/// to its proxy.
pub(crate) fn create_async<P: Proxy>(
    client: &Client,
    args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
) -> crate::proxy::Creating<P> {
    crate::proxy::Creating::new(client, Kind::of::<P>(), 0, args, P::__from_handle)
}

/// Writes `Option<T>` as postcard does: `0`, or `1` and the element.
pub(crate) fn write_option(out: &mut Encoder<'_>, value: Option<&Stored>) {
    write_option_with(out, value, Stored::write);
}

/// [`write_option`] for anything `write` writes as a `T`.
pub(crate) fn write_option_with<V>(
    out: &mut Encoder<'_>,
    value: Option<V>,
    write: impl FnOnce(V, &mut Encoder<'_>),
) {
    match value {
        None => out.put_raw(&[0]),
        Some(v) => {
            out.put_raw(&[1]);
            write(v, out);
        }
    }
}

/// Writes `Vec<T>` as postcard does: the length, then each element.
pub(crate) fn write_seq<'a>(
    out: &mut Encoder<'_>,
    items: impl ExactSizeIterator<Item = &'a Stored>,
) -> Result<()> {
    out.put(&items.len())?;
    for item in items {
        item.write(out);
    }
    Ok(())
}

/// Shared access to a container. A panic cannot leave one half-updated
/// (no critical section calls user code), so a poisoned lock is still sound.
pub(crate) fn read<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Exclusive access to a container.
pub(crate) fn write<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Decodes a `usize` sent as `u64` (sizes and indices travel as `u64` so
/// that 32- and 64-bit peers agree); saturates on a 32-bit manager.
pub(crate) fn take_usize(args: &mut Decoder<'_>) -> Result<usize> {
    let n: u64 = args.take()?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::{Builtin, Methods};
    use crate::wire::codec::Decoder;

    fn table<B: Builtin>() -> (&'static str, u64) {
        (B::NAME, B::FINGERPRINT)
    }

    #[test]
    fn method_tables_decode_known_ids_whole_and_nothing_else() {
        type Lock = <super::lock::LockObject as Builtin>::Methods;
        // `release` takes no argument: trailing bytes are refused.
        assert!(Lock::parse(3, &mut Decoder::new(&[])).unwrap().is_some());
        assert!(Lock::parse(3, &mut Decoder::new(&[0])).is_err());
        assert!(Lock::parse(4, &mut Decoder::new(&[])).unwrap().is_none());
        // A plain queue stops before `task_done` (9); a joinable one has it.
        type Queue = <super::queue::QueueObject as Builtin>::Methods;
        type Joinable = <super::queue::JoinableQueueObject as Builtin>::Methods;
        assert!(Queue::parse(9, &mut Decoder::new(&[])).unwrap().is_none());
        assert!(Joinable::parse(9, &mut Decoder::new(&[]))
            .unwrap()
            .is_some());
        assert_eq!(Queue::NAMES, &Joinable::NAMES[..9]);
        assert_eq!(Queue::SIGNATURES[3], "get(&self) -> T");
    }

    #[test]
    fn every_built_in_has_its_own_fingerprint() {
        let all = [
            table::<super::value::ValueObject>(),
            table::<super::list::ListObject>(),
            table::<super::dict::DictObject>(),
            table::<super::namespace::NamespaceObject>(),
            table::<super::queue::QueueObject>(),
            table::<super::queue::JoinableQueueObject>(),
            table::<super::lock::LockObject>(),
            table::<super::lock::RLockObject>(),
            table::<super::semaphore::SemaphoreObject>(),
            table::<super::condition::ConditionObject>(),
            table::<super::event::EventObject>(),
            table::<super::barrier::BarrierObject>(),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.1, b.1, "{} and {}", a.0, b.0);
            }
        }
    }
}
