//! The client: a session with one manager, a connection per calling thread
//! (the first to call shares the session's own), the process-wide keyring,
//! and pending replies of pipelined calls.

mod aio;
mod farewell;
mod keyring;
mod link;
mod local;
mod pending;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use serde::de::DeserializeOwned;

use crate::address::Address;
use crate::auth::AuthKey;
use crate::error::{Error, Result};
use crate::proxy::Proxy;
use crate::stats::Stats;
use crate::sync::lock;
use crate::transport::Socket;
use crate::wire::codec::{take_exactly, Encoder, Undecodable};
use crate::wire::control::method;
use crate::wire::message::CONTROL;

pub use aio::AsyncCall;
pub(crate) use aio::{Lease, Route};
pub(crate) use farewell::ending_normally;
pub(crate) use keyring::{client_for, client_with, preload, register_local, snapshot};
use link::Link;
pub(crate) use local::InProcess;
pub use pending::Pending;

/// A connection to a manager, shared by every thread of this process that
/// clones it.
///
/// Each thread that calls through a `Client` gets its own connection, so
/// calls from one thread run in order and threads never wait for each other.
/// The first thread to call uses the connection `connect` opened: a client
/// used from one thread holds one connection, as in Python.
/// All of them form one session: the references its proxies hold live while
/// the `Client` (or any proxy made through it) lives, and end when it is
/// dropped or the process exits.
///
/// ```
/// use manager::{Client, Manager};
///
/// # fn main() -> manager::Result<()> {
/// let mgr = Manager::builder().spawn_thread()?;
/// // Another process would get the address and key by argument or pipe.
/// let client = Client::connect(mgr.address(), mgr.auth_key())?;
/// assert!(client.stats()?.connections >= 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<ClientInner>,
}

pub(crate) struct ClientInner {
    id: u64,
    address: Address,
    key: AuthKey,
    /// The session's id on the manager; renewed if the manager restarts.
    session: AtomicU64,
    transport: Transport,
    /// Set once the session has said goodbye (at process exit, or on drop).
    departed: AtomicBool,
    /// The async face's connections.
    aio: aio::Aio,
    /// Whether a thread waiting for a reply spins briefly first.
    busy_poll: AtomicBool,
}

enum Transport {
    /// Sockets to a manager, one per thread.
    Remote(Box<Remote>),
    /// Calls into a manager of this process, without a socket.
    Local(Weak<dyn local::InProcess>),
}

struct Remote {
    /// Holds the session open while the client lives, and serves threads
    /// that cannot have a link of their own (thread-local storage torn down).
    main: Mutex<Link>,
    /// The thread whose calls go on `main` ([`thread_tag`]; 0 until a
    /// thread calls): the first to call claims it, so a client used from one
    /// thread holds one connection. Other threads open their own.
    claimed: AtomicU64,
    /// Releases made while this process's thread inside a call on `main`
    /// holds it (a proxy dropped while its reply decodes): sent once that
    /// call is done.
    deferred: Mutex<Vec<u64>>,
    /// Whether `deferred` holds any: a call looks at this, not the mutex.
    has_deferred: AtomicBool,
    /// Every thread link's socket, to close them when the client goes.
    sockets: Mutex<HashMap<u64, Socket>>,
    next_link: AtomicU64,
}

impl ClientInner {
    fn remote(&self) -> &Remote {
        match &self.transport {
            Transport::Remote(r) => r,
            // Only the socket paths below ask, and they are reached only
            // through `Client::call` & co., which dispatch on the transport.
            Transport::Local(_) => unreachable!("a local client has no sockets"),
        }
    }
}

/// A method as a call names it: its number on the wire, and the method
/// names of its type, which only a reply that does not decode looks at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Method {
    index: u32,
    names: &'static [&'static str],
}

impl Method {
    #[inline]
    pub(crate) fn new(index: u32, names: &'static [&'static str]) -> Method {
        Method { index, names }
    }

    /// Control method `index`.
    fn control(index: u32) -> Method {
        Method::new(index, crate::wire::control::METHODS)
    }
}

/// Decodes the reply to a call of `method`: exactly one `R`. Its error
/// says which reply, and as what, did not decode.
#[inline]
pub(crate) fn decode_reply<R: DeserializeOwned>(bytes: &[u8], method: Method) -> Result<R> {
    take_exactly(bytes).map_err(|why| undecodable::<R>(method, why))
}

#[cold]
fn undecodable<R>(method: Method, why: Undecodable) -> Error {
    Error::Protocol(format!(
        "the reply of `{}` could not be decoded as `{}`: {why}",
        crate::shared::method_name(method.names, method.index),
        std::any::type_name::<R>()
    ))
}

static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's connection to each client's manager.
    static LINKS: RefCell<Vec<ThreadLink>> = const { RefCell::new(Vec::new()) };
    /// Whether this thread is using a client's main link right now.
    static IN_MAIN: Cell<bool> = const { Cell::new(false) };
    /// This thread's tag, for claiming a client's main link; 0 until asked.
    static THREAD_TAG: Cell<u64> = const { Cell::new(0) };
}

static NEXT_TAG: AtomicU64 = AtomicU64::new(1);

/// A number of this thread's own, never 0; 0 during thread teardown.
fn thread_tag() -> u64 {
    THREAD_TAG
        .try_with(|t| {
            if t.get() == 0 {
                t.set(NEXT_TAG.fetch_add(1, Ordering::Relaxed));
            }
            t.get()
        })
        .unwrap_or(0)
}

struct ThreadLink {
    client: u64,
    owner: Weak<ClientInner>,
    link: Link,
}

impl Drop for ThreadLink {
    fn drop(&mut self) {
        // With the client gone, its session said goodbye for this link too.
        if let Some(owner) = self.owner.upgrade() {
            lock(&owner.remote().sockets).remove(&self.link.id);
            // The thread ends (or the process exits) with the client alive.
            if ending_normally() {
                self.link.goodbye(false);
            }
        }
    }
}

impl ClientInner {
    /// The process exits with this client alive: the session says goodbye
    /// on the main connection. Connections of threads still running close
    /// with the process, and the manager counts them as ending normally too.
    fn depart_at_exit(&self) {
        let Transport::Remote(r) = &self.transport else {
            return;
        };
        if self.departed.swap(true, Ordering::AcqRel) {
            return;
        }
        match r.main.try_lock() {
            Ok(mut main) => main.goodbye(true),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().goodbye(true),
            // Another thread is inside a call on the main link (a `get`
            // that waits, say): the session says goodbye on a link of its
            // own, and the manager settles the busy one as ending normally.
            Err(std::sync::TryLockError::WouldBlock) => {
                let id = r.next_link.fetch_add(1, Ordering::Relaxed);
                let session = Some(self.session.load(Ordering::Acquire));
                if let Ok((mut link, _)) = Link::open(id, &self.address, &self.key, session) {
                    link.goodbye(true);
                }
            }
        }
    }
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        // First: the session's goodbye below waits for its other
        // connections to end.
        self.aio.close_all();
        match &mut self.transport {
            Transport::Remote(r) => {
                if ending_normally() && !self.departed.swap(true, Ordering::AcqRel) {
                    // Every call holds a clone of the client, so no thread is
                    // inside one now: each thread's connection is idle and
                    // may say goodbye from here, and the session's goodbye
                    // is answered once all of them are settled.
                    for s in lock(&r.sockets).values() {
                        link::say_goodbye(s);
                    }
                    r.main
                        .get_mut()
                        .unwrap_or_else(PoisonError::into_inner)
                        .goodbye(true);
                }
                // Threads that used this client may live on; closing their
                // sockets ends the session now rather than when they exit.
                for s in lock(&r.sockets).values() {
                    s.shutdown();
                }
                lock(&r.main).socket.shutdown();
            }
            Transport::Local(state) => {
                if let Some(state) = state.upgrade() {
                    state.leave_session(*self.session.get_mut());
                }
            }
        }
    }
}

impl Client {
    /// Connects to the manager at `address`, proving `key`.
    ///
    /// On success the key is remembered for `address` in this process's
    /// keyring, so proxies to that manager that arrive later (from tokens,
    /// containers or replies) can bind to it.
    ///
    /// # Errors
    /// `Error::Io` if nothing listens there, `Error::AuthenticationFailed` if
    /// the key is wrong, `Error::Protocol` if the peer is not a manager.
    pub fn connect(address: &Address, key: &AuthKey) -> Result<Client> {
        let id = NEXT_CLIENT.fetch_add(1, Ordering::Relaxed);
        let (main, welcome) = Link::open(0, address, key, None)?;
        let _ = welcome.max_frame;
        let client = Client {
            inner: Arc::new(ClientInner {
                id,
                address: address.clone(),
                key: key.clone(),
                session: AtomicU64::new(welcome.session),
                transport: Transport::Remote(Box::new(Remote {
                    main: Mutex::new(main),
                    claimed: AtomicU64::new(0),
                    deferred: Mutex::new(Vec::new()),
                    has_deferred: AtomicBool::new(false),
                    sockets: Mutex::new(HashMap::new()),
                    next_link: AtomicU64::new(1),
                })),
                departed: AtomicBool::new(false),
                aio: aio::Aio::default(),
                busy_poll: AtomicBool::new(true),
            }),
        };
        farewell::register(&client.inner);
        keyring::remember(&client);
        Ok(client)
    }

    /// A client that calls into `state`, a manager of this process, directly.
    pub(crate) fn local(state: &Arc<dyn local::InProcess>) -> Client {
        Client {
            inner: Arc::new(ClientInner {
                id: NEXT_CLIENT.fetch_add(1, Ordering::Relaxed),
                address: state.address().clone(),
                key: state.key().clone(),
                session: AtomicU64::new(state.open_session()),
                transport: Transport::Local(Arc::downgrade(state)),
                departed: AtomicBool::new(false),
                aio: aio::Aio::default(),
                busy_poll: AtomicBool::new(true),
            }),
        }
    }

    /// Calls `method` of `object` and waits for the result.
    #[inline]
    pub(crate) fn call<R: DeserializeOwned>(
        &self,
        object: u64,
        method: Method,
        args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
    ) -> Result<R> {
        self.call_with(object, method, None, args)
    }

    /// [`Client::call`], where `args` may leave `blob`, a long byte string
    /// it encodes with [`Encoder::put_bytes`], to be written from where it is.
    #[inline]
    pub(crate) fn call_with<R: DeserializeOwned>(
        &self,
        object: u64,
        method: Method,
        blob: Option<&[u8]>,
        args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
    ) -> Result<R> {
        match &self.inner.transport {
            Transport::Remote(_) => self.with_link(|l| l.call(self, object, method, blob, args)),
            Transport::Local(state) => {
                let (out, caps, _foreign) =
                    local::call(state, self.session(), object, method.index, args)?;
                self.adopt_local(&out, caps, method)
            }
        }
    }

    /// Sends a call whose result is taken later.
    #[inline]
    pub(crate) fn call_deferred<R: DeserializeOwned>(
        &self,
        object: u64,
        method: Method,
        args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
    ) -> Result<Pending<R>> {
        match &self.inner.transport {
            Transport::Remote(_) => self.with_link(|l| {
                let seq = l.send(object, method.index, true, args)?;
                Ok(Pending::sent(self.clone(), l.id, seq, method))
            }),
            // In the manager's own process the call runs now; its result waits.
            Transport::Local(state) => Ok(Pending::ready(
                self.clone(),
                local::call(state, self.session(), object, method.index, args),
                method,
            )),
        }
    }

    /// Decodes an in-process result of `method`, adopting the references
    /// its proxies need.
    pub(crate) fn adopt_local<R: DeserializeOwned>(
        &self,
        bytes: &[u8],
        caps: crate::caps::ReplyCaps,
        method: Method,
    ) -> Result<R> {
        let Some(caps) = caps else {
            return decode_reply(bytes, method);
        };
        let (r, left) = crate::caps::adopting(self, caps, || decode_reply(bytes, method));
        for object in left {
            self.release(object);
        }
        r
    }

    pub(crate) fn session(&self) -> u64 {
        self.inner.session.load(Ordering::Acquire)
    }

    /// Turns busy-polling on or off for this client and its clones (default:
    /// on). With it, a thread waiting for a reply first checks for it
    /// without blocking, for a few tens of microseconds at most, before it
    /// sleeps: a round trip then costs no wake-up of an idle CPU. It backs
    /// off by itself where it does not pay (a process allowed one CPU only,
    /// more runnable threads than cores, replies that take long); turn it
    /// off to never spend CPU time on it. The manager's side is
    /// [`ManagerBuilder::busy_poll`](crate::ManagerBuilder::busy_poll).
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().spawn_thread()?;
    /// mgr.set_busy_poll(false);
    /// assert_eq!(mgr.value(7u8)?.get()?, 7);
    /// # Ok(()) }
    /// ```
    pub fn set_busy_poll(&self, on: bool) {
        self.inner.busy_poll.store(on, Ordering::Relaxed);
    }

    /// Whether threads waiting for a reply spin first.
    #[inline]
    pub(crate) fn busy_polls(&self) -> bool {
        self.inner.busy_poll.load(Ordering::Relaxed)
    }

    /// The address of the manager this client talks to.
    pub fn address(&self) -> &Address {
        &self.inner.address
    }

    pub(crate) fn key(&self) -> &AuthKey {
        &self.inner.key
    }

    /// What the manager holds and has done.
    ///
    /// # Errors
    /// `Error::ConnectionLost` if the manager is gone.
    pub fn stats(&self) -> Result<Stats> {
        self.control(method::STATS, |_| Ok(()))
    }

    /// Publishes `proxy`'s object under `name`, replacing whatever had it.
    /// A published object lives until it is unpublished, even with no proxy.
    ///
    /// ```
    /// # use manager::{shared, Manager};
    /// # #[shared] pub struct Flag { on: bool }
    /// # #[shared] impl Flag { pub fn new() -> Self { Flag { on: false } } pub fn on(&self) -> bool { self.on } }
    /// # fn main() -> manager::Result<()> {
    /// let mgr = Manager::builder().register::<Flag>().spawn_thread()?;
    /// mgr.publish("flag", &FlagProxy::new(&mgr)?)?;
    /// let again: FlagProxy = mgr.lookup("flag")?;
    /// assert!(!again.on()?);
    /// mgr.unpublish("flag")?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `Error::NoSuchObject` if the object is gone; `Error::Protocol` if the
    /// proxy belongs to another manager.
    pub fn publish<P: Proxy>(&self, name: &str, proxy: &P) -> Result<()> {
        let h = proxy.__handle();
        if h.address() != self.address() {
            return Err(Error::Protocol(format!(
                "cannot publish on {} a proxy to an object of the manager at {}",
                self.address(),
                h.address()
            )));
        }
        let object = h.object();
        self.control(method::PUBLISH, |a| {
            a.put(name)?;
            a.put(&object)
        })
    }

    /// The proxy published under `name`.
    ///
    /// # Errors
    /// `Error::NoSuchName` if nothing has that name; `Error::InterfaceMismatch`
    /// if the object is not a `P`.
    pub fn lookup<P: Proxy>(&self, name: &str) -> Result<P> {
        let kind = crate::proxy::Kind::of::<P>();
        let object: u64 = self.control(method::LOOKUP, |a| {
            a.put(name)?;
            kind.put_expected(a)
        })?;
        Ok(P::__from_handle(crate::proxy::Handle::bound(
            self.clone(),
            object,
            kind,
        )))
    }

    /// Removes `name`; the object lives on while proxies refer to it.
    ///
    /// # Errors
    /// `Error::NoSuchName` if nothing has that name.
    pub fn unpublish(&self, name: &str) -> Result<()> {
        self.control(method::UNPUBLISH, |a| a.put(name))
    }

    /// Asks the manager to shut down, as [`Manager::shutdown`](crate::Manager::shutdown)
    /// does for its owner; for managers run with `serve()` in another process.
    ///
    /// # Errors
    /// `Error::ConnectionLost` if the manager is already gone.
    pub fn shutdown_manager(&self) -> Result<()> {
        self.control(method::SHUTDOWN, |_| Ok(()))
    }

    /// Checks that the manager answers.
    ///
    /// # Errors
    /// `Error::ConnectionLost` if it does not.
    pub fn ping(&self) -> Result<()> {
        self.control(method::PING, |_| Ok(()))
    }

    #[inline]
    pub(crate) fn control<R: DeserializeOwned>(
        &self,
        m: u32,
        args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
    ) -> Result<R> {
        self.call(CONTROL, Method::control(m), args)
    }

    /// Runs `f` on this thread's connection: the client's main one if this
    /// thread claimed it (the first thread to call does), else one of its
    /// own, opened on first use.
    #[inline]
    pub(crate) fn with_link<R>(&self, f: impl FnOnce(&mut Link) -> Result<R>) -> Result<R> {
        if self.main_is_mine() {
            return self.on_main(f);
        }
        let mut f = Some(f);
        let on_thread = LINKS.try_with(|links| {
            let Ok(mut links) = links.try_borrow_mut() else {
                return None;
            };
            let pos = match links.iter().position(|t| t.client == self.inner.id) {
                Some(p) => p,
                None => match self.open_thread_link() {
                    Ok(t) => {
                        links.retain(|t| t.owner.strong_count() > 0);
                        links.push(t);
                        links.len() - 1
                    }
                    Err(e) => return Some(Err(e)),
                },
            };
            let run = f.take().expect("f is taken once");
            let r = run(&mut links[pos].link);
            if links[pos].link.is_broken() {
                // The next call opens a fresh connection.
                links.swap_remove(pos);
            }
            Some(r)
        });
        match on_thread {
            Ok(Some(r)) => r,
            // Re-entered from inside a call on this thread, or during thread
            // teardown: the shared main link serves.
            _ => {
                let run = f.take().expect("f is taken once");
                self.on_main(run)
            }
        }
    }

    /// Whether this thread's calls go on the main link: it claimed it (or
    /// does now, being the first to call), and is not inside a call on it
    /// already (that call waits for its reply there, so a nested call takes
    /// a link of its own).
    #[inline]
    fn main_is_mine(&self) -> bool {
        let tag = thread_tag();
        if tag == 0 || IN_MAIN.try_with(Cell::get).unwrap_or(true) {
            return false;
        }
        let claimed = &self.inner.remote().claimed;
        let owner = claimed.load(Ordering::Relaxed);
        owner == tag
            || (owner == 0
                && claimed
                    .compare_exchange(0, tag, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok())
    }

    /// Runs `f` on the client's main link, renewing the session if the
    /// link broke.
    fn on_main<R>(&self, f: impl FnOnce(&mut Link) -> Result<R>) -> Result<R> {
        // A call made while this thread already uses the main link (a proxy
        // bound while decoding its reply) would wait for itself: refuse it;
        // the caller falls back to binding later.
        if IN_MAIN.try_with(Cell::get).unwrap_or(false) {
            return Err(Error::Protocol(
                "a call from inside a call on the shared connection".into(),
            ));
        }
        let mut main = lock(&self.inner.remote().main);
        if main.is_broken() {
            self.renew_session(&mut main)?;
        }
        let _ = IN_MAIN.try_with(|c| c.set(true));
        let r = f(&mut main);
        let _ = IN_MAIN.try_with(|c| c.set(false));
        let remote = self.inner.remote();
        // A load first: the common call has no deferred release to send.
        if remote.has_deferred.load(Ordering::Acquire)
            && remote.has_deferred.swap(false, Ordering::AcqRel)
        {
            let deferred = std::mem::take(&mut *lock(&remote.deferred));
            for object in deferred {
                main.release(object);
            }
        }
        r
    }

    /// Whether this thread has made blocking calls through this client (it
    /// claimed the main link, or has a link of its own), without claiming.
    fn has_blocking_link_here(&self) -> bool {
        let tag = thread_tag();
        tag != 0 && self.inner.remote().claimed.load(Ordering::Relaxed) == tag
            || LINKS
                .try_with(|links| {
                    links
                        .try_borrow()
                        .map_or(true, |l| l.iter().any(|t| t.client == self.inner.id))
                })
                .unwrap_or(true)
    }

    /// Runs `f` on the link `id` of this thread, if it still exists.
    pub(crate) fn with_existing_link<R>(
        &self,
        id: u64,
        f: impl FnOnce(&mut Link) -> Result<R>,
    ) -> Result<R> {
        if id == 0 {
            return f(&mut lock(&self.inner.remote().main));
        }
        let mut f = Some(f);
        let r = LINKS.try_with(|links| {
            let mut links = links.try_borrow_mut().ok()?;
            let t = links
                .iter_mut()
                .find(|t| t.client == self.inner.id && t.link.id == id)?;
            let run = f.take().expect("f is taken once");
            Some(run(&mut t.link))
        });
        match r {
            Ok(Some(r)) => r,
            _ => Err(Error::ConnectionLost(
                "the connection this call was sent on has closed".into(),
            )),
        }
    }

    fn open_thread_link(&self) -> Result<ThreadLink> {
        let inner = &self.inner;
        let remote = inner.remote();
        let id = remote.next_link.fetch_add(1, Ordering::Relaxed);
        let open = |session: u64| {
            Link::open(id, &inner.address, &inner.key, Some(session)).map(|(l, _)| l)
        };
        let tried = inner.session.load(Ordering::Acquire);
        let link = match open(tried) {
            Ok(link) => link,
            Err(Error::ConnectionLost(why)) => {
                // The manager no longer knows our session: it restarted. If
                // our main connection is dead too, start a new session.
                let mut main = lock(&remote.main);
                if inner.session.load(Ordering::Acquire) == tried {
                    if main.socket.peer_gone() {
                        main.mark_broken("the manager closed the connection");
                    }
                    if !main.is_broken() {
                        return Err(Error::ConnectionLost(why));
                    }
                    self.renew_session(&mut main)?;
                }
                let session = inner.session.load(Ordering::Acquire);
                drop(main);
                open(session)?
            }
            Err(Error::Io(e)) => {
                return Err(Error::ConnectionLost(format!(
                    "cannot reach the manager at {}: {e}",
                    inner.address
                )))
            }
            Err(e) => return Err(e),
        };
        if let Ok(s) = link.socket.try_clone() {
            lock(&remote.sockets).insert(id, s);
        }
        Ok(ThreadLink {
            client: self.inner.id,
            owner: Arc::downgrade(&self.inner),
            link,
        })
    }

    /// Replaces a broken main connection, and with it the session. Objects
    /// the old session held may be gone; their proxies get `NoSuchObject`.
    fn renew_session(&self, main: &mut Link) -> Result<()> {
        let inner = &self.inner;
        let (fresh, welcome) = Link::open(0, &inner.address, &inner.key, None).map_err(|e| {
            Error::ConnectionLost(format!(
                "cannot reach the manager at {}: {e}",
                inner.address
            ))
        })?;
        tracing::debug!(address = %inner.address, "reconnected with a new session");
        *main = fresh;
        inner.session.store(welcome.session, Ordering::Release);
        Ok(())
    }

    /// Drops one of this session's references to `object`. Uses this
    /// thread's connection if it has one, so the release follows the calls
    /// this thread sent before it; otherwise the main one.
    pub(crate) fn release(&self, object: u64) {
        if let Transport::Local(state) = &self.inner.transport {
            if let Some(state) = state.upgrade() {
                state.release(self.session(), object);
            }
            return;
        }
        let remote = self.inner.remote();
        if !self.has_blocking_link_here() && self.inner.aio.release(object) {
            // A thread that made no blocking call (an executor's): after
            // the async calls, on their connection, without blocking.
            return;
        }
        if self.main_is_mine() {
            // After this thread's calls, on the link they went on.
            lock(&remote.main).release(object);
            return;
        }
        let mut object = Some(object);
        let _ = LINKS.try_with(|links| {
            if let Ok(mut links) = links.try_borrow_mut() {
                if let Some(t) = links.iter_mut().find(|t| t.client == self.inner.id) {
                    if let Some(o) = object.take() {
                        t.link.release(o);
                    }
                }
            }
        });
        let Some(o) = object else { return };
        if IN_MAIN.try_with(Cell::get).unwrap_or(false) {
            // This thread holds the main link, inside a call on it.
            lock(&remote.deferred).push(o);
            remote.has_deferred.store(true, Ordering::Release);
            return;
        }
        match remote.main.try_lock() {
            Ok(mut main) => main.release(o),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().release(o),
            // Another thread's call (perhaps a long wait) holds the main
            // link: this thread releases on a link of its own.
            Err(std::sync::TryLockError::WouldBlock) => {
                let _ = self.with_link(|l| {
                    l.release(o);
                    Ok(())
                });
            }
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.inner.address)
            .field(
                "session",
                &format_args!("{:016x}", self.inner.session.load(Ordering::Relaxed)),
            )
            .finish()
    }
}
