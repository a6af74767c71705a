//! The async face's connections (DESIGN §2a).
//!
//! A client's async calls share one connection, [`AsyncLink`], with any
//! number in flight: each call's frame goes into the link's outgoing
//! buffer, and its future waits in a slot for the reply with its sequence
//! number. One task per link, the [`Driver`], writes what is buffered and
//! reads what arrives, filling slots and waking their futures; a future
//! never reads or writes a socket itself, and never blocks.
//!
//! **Where it runs.** The driver is spawned on the tokio runtime the link
//! is opened from (`Handle::try_current`), so that under tokio a reply
//! wakes the caller from the runtime's own reactor, with no thread between
//! them. Under any other executor (`futures::executor::block_on`, say),
//! links are driven by one background runtime thread of this process,
//! `manager-async-io`. If the runtime a link was opened from shuts down,
//! its driver is dropped with it: the link fails its calls with
//! `ConnectionLost`, and the next call opens a fresh one where it runs.
//!
//! **Calls that wait.** The manager runs one connection's calls in order,
//! and a call that waits (a queue's `get`, a lock's `acquire`, a barrier's
//! `wait`) parks its connection until it is over. So such a call does not
//! go on the shared link: it leases a link of its own from the client's
//! pool ([`Lease`]), which returns to the pool when the call is over, and
//! blocked calls of one client never block each other. A future dropped
//! while its call waits closes its leased link ([`Abandon::Close`]): the
//! manager cancels the parked waiter at that hang-up, before it can take
//! anything, and whatever was already on its way to it (an item, a lock
//! whose reply was in flight) goes back, as after any abnormal end. A lock
//! guard keeps the link its lock was taken on (the link is the owner, as a
//! thread is for the blocking face) until it is dropped.
//!
//! The proxy-level calls of an rlock or a condition (`acquire`, `wait`,
//! `release` without a guard) act for the client as one owner, on one
//! owner link that holds all of them: a wait dropped there is withdrawn
//! with [`Request::Cancel`] instead, so the link and its holds go on. A
//! condition's `wait` withdrawn so still takes its lock back before it
//! ends, as asyncio's does when cancelled: the owner's next call on the
//! link runs once it holds the lock again.
//!
//! Opening a link is the blocking handshake of the blocking face, run on
//! a short-lived thread while the future waits.

use std::future::Future;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};

use serde::de::DeserializeOwned;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::address::Address;
use crate::caps::{adopting, ReplyCaps};
use crate::client::link::{encode_args, encode_call, finish_call, handshake, Opened, Reply};
use crate::client::{decode_reply, Client, Method};
use crate::error::{Error, Result, WireError};
use crate::sync::lock;
use crate::transport::{Socket, DEAD_PEER_TIMEOUT};
use crate::wire::codec::{from_slice, Encoder};
use crate::wire::frame::{read_error, FrameReader, FrameWriter, NeverWait, Nonblocking};
use crate::wire::message::Request;

/// Idle leased links a client keeps; more are closed as they come back.
const IDLE_MAX: usize = 16;

/// What a client keeps for its async face: the shared link, and the pool
/// of links for calls that wait.
#[derive(Default)]
pub(crate) struct Aio {
    main: Mutex<Main>,
    idle: Mutex<Vec<Arc<AsyncLink>>>,
    /// The link of the proxy-level owned-lock calls (an RLock's or a
    /// condition's `acquire` without a guard): the client is one owner.
    owner: Mutex<Main>,
}

/// A shared link as it stands: none yet, opening, or open.
#[derive(Default)]
enum Main {
    #[default]
    None,
    Opening(Arc<Opening>),
    Open(Arc<AsyncLink>),
}

impl Aio {
    /// Drops one of the session's references to `object` on the shared
    /// link, if it is open: whether it did.
    pub(crate) fn release(&self, object: u64) -> bool {
        match &*lock(&self.main) {
            Main::Open(l) if !l.is_broken() => {
                l.release(object);
                true
            }
            _ => false,
        }
    }

    /// An idle link of the pool, if one is usable.
    fn pop_idle(&self) -> Option<Arc<AsyncLink>> {
        let mut idle = lock(&self.idle);
        loop {
            match idle.pop() {
                Some(l) if l.is_broken() => continue,
                other => return other,
            }
        }
    }

    /// Sets the client's shared link (at `connect_async`).
    pub(crate) fn set_main(&self, link: Arc<AsyncLink>) {
        *lock(&self.main) = Main::Open(link);
    }

    /// Closes every link (the client goes): nothing else holds them then,
    /// as every call and guard holds the client.
    pub(crate) fn close_all(&self) {
        drop(std::mem::take(&mut *lock(&self.idle)));
        for slot in [&self.main, &self.owner] {
            drop(std::mem::take(&mut *lock(slot)));
        }
    }
}

/// Which connection a call goes on.
pub(crate) enum Route {
    /// The client's shared link: calls that never wait.
    Main,
    /// A link leased for this call alone, back to the pool after it.
    Wait,
    /// The client's owner link (see [`Aio::owner`]).
    Owner,
    /// This link (a guard's).
    On(Arc<AsyncLink>),
}

impl Route {
    /// What a future dropped before its reply does on this route.
    fn abandon(&self) -> Abandon {
        match self {
            Route::Main => Abandon::Discard,
            Route::Owner => Abandon::Cancel,
            Route::Wait | Route::On(_) => Abandon::Close,
        }
    }
}

/// What becomes of a call whose future was dropped before its reply.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Abandon {
    /// The reply is let go (a call that never waits runs to its end).
    Discard,
    /// A call still waiting in the manager is withdrawn
    /// ([`Request::Cancel`]); the link goes on (the owner link, whose
    /// holds must stay).
    Cancel,
    /// The link is closed, ending abnormally (DESIGN §4): a waiting call
    /// is withdrawn before it takes anything, and whatever it was granted
    /// in the meantime (a lock whose reply was on its way) goes back. The
    /// link was the call's alone.
    Close,
}

/// The runtime links opened here are driven on: the caller's tokio
/// runtime, or the background one.
pub(crate) fn runtime() -> Result<tokio::runtime::Handle> {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => Ok(h),
        Err(_) => background(),
    }
}

/// Registers `fd` (owned by a link's socket) with `rt`'s reactor.
fn register(
    fd: RawFd,
    interest: Interest,
    rt: &tokio::runtime::Handle,
) -> std::io::Result<AsyncFd<Fd>> {
    let _in = rt.enter();
    // tokio panics for a runtime without I/O, which it cannot be asked.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: `fd` is the socket of a link's `Core`, open until the
        // core drops; the `AsyncFd` lives in the core's driver, which holds
        // the core and drops the `AsyncFd` first.
        unsafe { AsyncFd::register_with_interest(Fd(fd), interest) }
    }))
    .map_err(|_| std::io::Error::other("the tokio runtime has no I/O driver (enable_io)"))?
    .map_err(std::io::Error::from)
}

/// The process's own runtime thread, for links opened outside tokio.
fn background() -> Result<tokio::runtime::Handle> {
    static BACKGROUND: std::sync::OnceLock<std::result::Result<tokio::runtime::Handle, String>> =
        std::sync::OnceLock::new();
    BACKGROUND
        .get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(|e| e.to_string())?;
            let handle = rt.handle().clone();
            std::thread::Builder::new()
                .name("manager-async-io".into())
                .spawn(move || rt.block_on(std::future::pending::<()>()))
                .map_err(|e| e.to_string())?;
            Ok(handle)
        })
        .clone()
        .map_err(|e| {
            Error::Io(std::io::Error::other(format!(
                "cannot start the async I/O thread: {e}"
            )))
        })
}

/// A descriptor for the reactor; the link's socket owns it.
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// One connection of the async face, as its users hold it: when the last
/// of them lets go, it ends (normally, with a goodbye, unless the process
/// is failing), and its driver with it.
pub(crate) struct AsyncLink(Arc<Core>);

impl std::ops::Deref for AsyncLink {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.0
    }
}

impl Drop for AsyncLink {
    fn drop(&mut self) {
        self.0.close(crate::client::ending_normally());
    }
}

/// A connection of the async face, shared by its users and its driver.
pub(crate) struct Core {
    /// Broken or closed: asked by every call, so without the lock.
    unusable: std::sync::atomic::AtomicBool,
    address: Address,
    socket: Arc<Socket>,
    max_frame: usize,
    state: Mutex<State>,
}

/// A link's bookkeeping, under its lock.
struct State {
    next_seq: u64,
    writer: FrameWriter,
    /// Bytes to write as they go on the wire (sealed on an encrypted link).
    out: Vec<u8>,
    sent: usize,
    /// The driver has been asked to write `out`.
    flush_asked: bool,
    slots: Slots,
    broken: Option<String>,
    /// The driver's waker.
    driver: Option<Waker>,
    closed: bool,
}

/// The calls in flight on a link, by sequence number: numbers are given in
/// order, and replies mostly come in order, so a ring indexed from the
/// oldest call in flight (no hashing, no search).
#[derive(Default)]
struct Slots {
    /// The sequence number of `ring[0]`.
    first: u64,
    ring: std::collections::VecDeque<Slot>,
}

impl Slots {
    /// Call `seq`, the next number, is awaited from now on.
    fn open(&mut self, seq: u64) {
        if self.ring.is_empty() {
            self.first = seq;
        }
        debug_assert_eq!(self.first + self.ring.len() as u64, seq);
        self.ring.push_back(Slot::Waiting(None));
    }

    fn get_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.ring.get_mut(i).filter(|s| !matches!(s, Slot::Gone))
    }

    fn remove(&mut self, seq: u64) -> Option<Slot> {
        let slot = std::mem::replace(self.get_mut(seq)?, Slot::Gone);
        while matches!(self.ring.front(), Some(Slot::Gone)) {
            self.ring.pop_front();
            self.first += 1;
        }
        Some(slot)
    }

    fn all_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.ring.iter_mut()
    }
}

/// A reply's result as it waits for its call: short ones in place (most
/// are a few bytes), without an allocation.
enum Payload {
    Inline(u8, [u8; INLINE]),
    Heap(Vec<u8>),
}

const INLINE: usize = 38;

impl Payload {
    fn new(bytes: &[u8]) -> Payload {
        if bytes.len() <= INLINE {
            let mut inline = [0; INLINE];
            inline[..bytes.len()].copy_from_slice(bytes);
            Payload::Inline(bytes.len() as u8, inline)
        } else {
            Payload::Heap(bytes.to_vec())
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Inline(len, bytes) => &bytes[..usize::from(*len)],
            Payload::Heap(v) => v,
        }
    }
}

/// Where a call's reply goes.
enum Slot {
    /// Awaited by the future this waker wakes.
    Waiting(Option<Waker>),
    /// Arrived, not yet taken.
    Arrived(Result<(Payload, ReplyCaps)>),
    /// Its future was dropped: the reply is let go.
    Discarded,
    /// Taken (a hole in the ring).
    Gone,
}

impl Core {
    /// Connects to `client`'s manager and joins its session (blocking: run
    /// off the executor), then starts the link's driver on `rt`.
    fn open(client: &Client, rt: &tokio::runtime::Handle) -> Result<Arc<AsyncLink>> {
        let Opened {
            socket,
            reader,
            writer,
            welcomed,
        } = handshake(client.address(), client.key(), Some(client.session()))?;
        Core::start(
            client.address(),
            socket,
            reader,
            writer,
            welcomed.max_frame,
            rt,
        )
    }

    fn start(
        address: &Address,
        socket: Socket,
        reader: FrameReader,
        writer: FrameWriter,
        max_frame: usize,
        rt: &tokio::runtime::Handle,
    ) -> Result<Arc<AsyncLink>> {
        socket.set_nonblocking(true)?;
        let link = Arc::new(Core {
            unusable: std::sync::atomic::AtomicBool::new(false),
            address: address.clone(),
            socket: Arc::new(socket),
            max_frame,
            state: Mutex::new(State {
                next_seq: 1,
                writer,
                out: Vec::new(),
                sent: 0,
                flush_asked: false,
                slots: Slots::default(),
                broken: None,
                driver: None,
                closed: false,
            }),
        });
        let raw = link.socket.raw_fd();
        // A runtime built without its I/O driver cannot watch sockets: the
        // background one does.
        let (fd, rt) = match register(raw, Interest::READABLE, rt) {
            Ok(fd) => (fd, rt.clone()),
            Err(_) => {
                let bg = background()?;
                (register(raw, Interest::READABLE, &bg)?, bg)
            }
        };
        rt.spawn(Driver {
            fd: Some(fd),
            watching_writes: false,
            inbox: Inbox {
                reader,
                arrived: Vec::new(),
                wake: Vec::new(),
            },
            link: Arc::clone(&link),
        });
        Ok(Arc::new(AsyncLink(link)))
    }

    fn is_broken(&self) -> bool {
        self.unusable.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Sends a call; its reply will wait in the slot of the number returned.
    fn send(
        &self,
        object: u64,
        method: u32,
        args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
    ) -> Result<u64> {
        let mut st = lock(&self.state);
        if let Some(why) = &st.broken {
            return Err(Error::ConnectionLost(why.clone()));
        }
        let seq = st.next_seq;
        encode_call(
            &mut st.writer,
            &self.address,
            self.max_frame,
            (seq, object, method),
            None,
            args,
        )?;
        self.sent_frame(&mut st, seq)
    }

    /// Sends a call encoded before the link was open.
    fn send_prepared(&self, object: u64, method: u32, p: &mut Prepared) -> Result<u64> {
        let mut st = lock(&self.state);
        if let Some(why) = &st.broken {
            return Err(Error::ConnectionLost(why.clone()));
        }
        let seq = st.next_seq;
        finish_call(
            &mut p.writer,
            self.max_frame,
            (seq, object, method),
            p.caps_len,
            None,
        )?;
        let lone = st.is_idle();
        self.socket.encode_into(&[p.writer.frame()], &mut st.out)?;
        Ok(self.awaited(&mut st, seq, lone))
    }

    /// The frame in the link's writer is call `seq`: queued, awaited.
    fn sent_frame(&self, st: &mut State, seq: u64) -> Result<u64> {
        let lone = st.is_idle();
        let State { out, writer, .. } = &mut *st;
        self.socket.encode_into(&[writer.frame()], out)?;
        Ok(self.awaited(st, seq, lone))
    }

    /// Call `seq` (the next number), just queued, awaits its reply. A `lone`
    /// call (nothing else in flight) is written at once, saving the driver
    /// a turn; calls sent together wait for the driver, which writes them
    /// in one go.
    fn awaited(&self, st: &mut State, seq: u64, lone: bool) -> u64 {
        st.next_seq += 1;
        st.slots.open(seq);
        if !(lone && matches!(flush(st, &self.socket), Ok(true))) {
            ask_flush(&mut st.flush_asked, &st.driver);
        }
        seq
    }

    /// Queues a request that has no reply (a release, a cancel, a goodbye).
    fn notify(&self, request: &Request) {
        let mut st = lock(&self.state);
        if st.broken.is_some() {
            return;
        }
        let State {
            out,
            writer,
            driver,
            flush_asked,
            ..
        } = &mut *st;
        writer.begin();
        if writer.finish(request, self.max_frame).is_ok()
            && self.socket.encode_into(&[writer.frame()], out).is_ok()
        {
            ask_flush(flush_asked, driver);
        }
    }

    /// Drops one of the session's references to `object`, after the calls
    /// sent on this link before.
    pub(crate) fn release(&self, object: u64) {
        self.notify(&Request::Release { object });
    }

    /// Ends the link: normally (a goodbye first) or not.
    fn close(&self, goodbye: bool) {
        if std::mem::replace(&mut lock(&self.state).closed, true) {
            return;
        }
        self.unusable
            .store(true, std::sync::atomic::Ordering::Release);
        if goodbye {
            self.notify(&Request::Goodbye { session: false });
            // Written now: the driver may never run again.
            let mut st = lock(&self.state);
            let _ = flush(&mut st, &self.socket);
        }
        self.socket.shutdown();
    }

    /// The reply to `seq`, if it has arrived; else `waker` is woken when it does.
    fn take(&self, seq: u64, waker: &Waker) -> Poll<Result<(Payload, ReplyCaps)>> {
        let mut st = lock(&self.state);
        match st.slots.get_mut(seq) {
            Some(Slot::Waiting(w)) => {
                if !w.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    *w = Some(waker.clone());
                }
                if let Some(why) = &st.broken {
                    let why = why.clone();
                    st.slots.remove(seq);
                    return Poll::Ready(Err(Error::ConnectionLost(why)));
                }
                Poll::Pending
            }
            Some(Slot::Arrived(_)) => match st.slots.remove(seq) {
                Some(Slot::Arrived(r)) => Poll::Ready(r),
                _ => Poll::Ready(Err(Error::protocol("a reply taken twice"))),
            },
            _ => Poll::Ready(Err(Error::protocol("a reply taken twice"))),
        }
    }

    /// The future awaiting `seq` is gone: its reply is let go (and the
    /// references it carries given back); with `cancel`, a call still
    /// waiting in the manager is withdrawn.
    fn abandon(&self, seq: u64, how: Abandon) {
        let mut st = lock(&self.state);
        match st.slots.get_mut(seq) {
            Some(slot @ Slot::Waiting(_)) => {
                *slot = Slot::Discarded;
                drop(st);
                match how {
                    Abandon::Discard => {}
                    Abandon::Cancel => self.notify(&Request::Cancel { seq }),
                    Abandon::Close => self.close(false),
                }
            }
            Some(Slot::Arrived(_)) => {
                let arrived = st.slots.remove(seq);
                drop(st);
                if let Some(Slot::Arrived(Ok((_, Some(caps))))) = arrived {
                    for (object, _) in caps {
                        self.release(object);
                    }
                }
            }
            _ => {}
        }
    }

    /// Fails every call in flight: the link is unusable from now on.
    fn fail(&self, why: String) {
        let wakers: Vec<Waker> = {
            let mut st = lock(&self.state);
            st.broken.get_or_insert(why);
            self.unusable
                .store(true, std::sync::atomic::Ordering::Release);
            st.slots
                .all_mut()
                .filter_map(|s| match s {
                    Slot::Waiting(w) => w.take(),
                    _ => None,
                })
                .collect()
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl State {
    /// Nothing in flight and nothing waiting to be written.
    fn is_idle(&self) -> bool {
        self.slots.ring.is_empty() && self.sent == self.out.len()
    }
}

/// Asks the driver to write what waits, unless it was asked already.
fn ask_flush(asked: &mut bool, driver: &Option<Waker>) {
    if !*asked {
        *asked = true;
        if let Some(w) = driver {
            w.wake_by_ref();
        }
    }
}

/// Writes what waits in `st.out`, as far as the socket takes it now:
/// whether all of it went.
fn flush(st: &mut State, socket: &Socket) -> std::io::Result<bool> {
    while st.sent < st.out.len() {
        match socket.write_wire_now(&[&st.out[st.sent..]]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => st.sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    st.out.clear();
    st.sent = 0;
    if st.out.capacity() > 1 << 20 {
        st.out = Vec::new();
    }
    Ok(true)
}

/// The task that moves a link's bytes: writes what calls queued, reads
/// replies into their slots.
struct Driver {
    /// Dropped (deregistered) before `link`, whose socket owns the descriptor.
    fd: Option<AsyncFd<Fd>>,
    /// Whether `fd` is registered for writability too (only while bytes
    /// wait that the socket did not take: else each reply the manager
    /// reads would wake this task).
    watching_writes: bool,
    inbox: Inbox,
    link: Arc<Core>,
}

/// A driver's reading side: the frames, and the replies read in a round
/// and the futures to wake, kept between rounds so that reading
/// allocates nothing.
struct Inbox {
    reader: FrameReader,
    arrived: Vec<(u64, Result<(Payload, ReplyCaps)>)>,
    wake: Vec<Waker>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Dropped with its runtime, or ended: calls in flight fail.
        self.fd = None;
        self.link
            .fail("the async runtime that drove this connection has shut down".into());
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            let stuck = {
                let mut st = lock(&this.link.state);
                if st.broken.is_some() {
                    return Poll::Ready(());
                }
                if !st.driver.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    st.driver = Some(cx.waker().clone());
                }
                st.flush_asked = false;
                match flush(&mut st, &this.link.socket) {
                    Ok(all) => !all,
                    Err(e) => {
                        drop(st);
                        this.link.fail(format!("cannot write to the manager: {e}"));
                        return Poll::Ready(());
                    }
                }
            };
            if stuck != this.watching_writes {
                if let Err(e) = this.watch_writes(stuck) {
                    this.link.fail(format!("cannot watch the connection: {e}"));
                    return Poll::Ready(());
                }
            }
            let Some(fd) = &this.fd else {
                return Poll::Ready(());
            };
            if stuck {
                match fd.poll_write_ready(cx) {
                    Poll::Ready(Ok(mut ready)) => {
                        ready.clear_ready();
                        continue;
                    }
                    Poll::Ready(Err(e)) => {
                        this.link.fail(format!("cannot write to the manager: {e}"));
                        return Poll::Ready(());
                    }
                    Poll::Pending => {}
                }
            }
            match fd.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    this.link.fail(format!("cannot read from the manager: {e}"));
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(mut ready)) => match this.inbox.read_arrived(&this.link) {
                    Ok(true) => ready.clear_ready(),
                    Ok(false) => {
                        this.link.fail("the manager closed the connection".into());
                        return Poll::Ready(());
                    }
                    Err(e) => {
                        this.link.fail(e.to_string());
                        return Poll::Ready(());
                    }
                },
            }
        }
    }
}

impl Driver {
    /// Registers the socket for writability as well as readability, or
    /// for readability alone.
    fn watch_writes(&mut self, on: bool) -> std::io::Result<()> {
        let interest = if on {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        // One registration per descriptor: the old one goes first.
        self.fd = None;
        let rt = tokio::runtime::Handle::current();
        self.fd = Some(register(self.link.socket.raw_fd(), interest, &rt)?);
        self.watching_writes = on;
        Ok(())
    }
}

impl Inbox {
    /// Reads the replies that have arrived on `link` into their slots:
    /// `false` at the end of the stream.
    fn read_arrived(&mut self, link: &Core) -> Result<bool> {
        let mut input = NeverWait(Nonblocking::new(&link.socket, DEAD_PEER_TIMEOUT));
        let open = loop {
            match self.reader.next(&mut input) {
                Ok(Some(body)) => {
                    let reply = Reply::parse(body)?;
                    let result = if reply.ok {
                        Ok((Payload::new(reply.payload), reply.caps))
                    } else {
                        Err(from_slice::<WireError>(reply.payload).map_or_else(|e| e, Error::from))
                    };
                    self.arrived.push((reply.seq, result));
                }
                Ok(None) => break false,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
                Err(e) => return Err(read_error(e)),
            }
        };
        let mut orphans = Vec::new();
        {
            let mut st = lock(&link.state);
            for (seq, result) in self.arrived.drain(..) {
                match st.slots.get_mut(seq) {
                    Some(slot @ Slot::Waiting(_)) => {
                        if let Slot::Waiting(Some(w)) =
                            std::mem::replace(slot, Slot::Arrived(result))
                        {
                            self.wake.push(w);
                        }
                    }
                    _ => {
                        // Nobody awaits it: what it carries goes back.
                        st.slots.remove(seq);
                        if let Ok((_, Some(caps))) = result {
                            orphans.extend(caps.into_iter().map(|(object, _)| object));
                        }
                    }
                }
            }
        }
        for object in orphans {
            link.release(object);
        }
        self.wake.drain(..).for_each(Waker::wake);
        Ok(open)
    }
}

/// A call encoded while its link was not open yet.
struct Prepared {
    writer: FrameWriter,
    caps_len: u32,
}

/// A link being opened, shared by the calls that wait for it.
pub(crate) struct Opening {
    state: Mutex<OpeningState>,
}

/// What an [`Opening`] has come to, and who waits for it.
#[derive(Default)]
struct OpeningState {
    link: Option<std::result::Result<Arc<AsyncLink>, String>>,
    waiting: Vec<Waker>,
}

impl Opening {
    /// Opens a link for `client` on a thread of its own.
    fn start(client: &Client) -> Result<Arc<Opening>> {
        let rt = runtime()?;
        let opening = Arc::new(Opening {
            state: Mutex::new(OpeningState::default()),
        });
        let done = Arc::clone(&opening);
        let client = client.clone();
        std::thread::Builder::new()
            .name("manager-connect".into())
            .spawn(move || {
                let r = Core::open(&client, &rt).map_err(|e| e.to_string());
                let wakers = {
                    let mut st = lock(&done.state);
                    st.link = Some(r);
                    std::mem::take(&mut st.waiting)
                };
                wakers.into_iter().for_each(Waker::wake);
            })?;
        Ok(opening)
    }

    fn poll(&self, waker: &Waker) -> Poll<Result<Arc<AsyncLink>>> {
        let mut st = lock(&self.state);
        match &st.link {
            Some(Ok(link)) => Poll::Ready(Ok(Arc::clone(link))),
            Some(Err(why)) => Poll::Ready(Err(Error::ConnectionLost(format!(
                "cannot open a connection to the manager: {why}"
            )))),
            None => {
                if !st.waiting.iter().any(|w| w.will_wake(waker)) {
                    st.waiting.push(waker.clone());
                }
                Poll::Pending
            }
        }
    }
}

/// A leased link: back to its client's pool when dropped (a call that
/// still waited on it was cancelled first, so the next one queues behind
/// the cancel).
pub(crate) struct Lease {
    link: Option<Arc<AsyncLink>>,
    client: Client,
}

impl Lease {
    pub(crate) fn link(&self) -> Option<&Arc<AsyncLink>> {
        self.link.as_ref()
    }

    /// Ends the leased link abnormally instead of returning it (what it
    /// holds goes back).
    pub(crate) fn close(&mut self) {
        if let Some(link) = self.link.take() {
            link.close(false);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(link) = self.link.take() else { return };
        if link.is_broken() {
            return;
        }
        let mut idle = lock(&self.client.inner.aio.idle);
        if idle.len() < IDLE_MAX {
            idle.push(link);
        } else {
            drop(idle);
            // Closed as it drops, with a goodbye.
            drop(link);
        }
    }
}

/// Where a call is: failed before it was sent, waiting for its link,
/// sent, or over.
///
/// The rare steps are boxed, so that a call's future stays small: a
/// thousand of them in flight are moved into executors' task slots.
enum Step {
    Failed(Option<Box<Error>>),
    Opening(Box<Waiting>),
    Sent {
        link: Arc<AsyncLink>,
        seq: u64,
        abandon: Abandon,
        /// The lease the call holds, returned when it is over.
        _lease: Option<Lease>,
    },
    Done,
}

/// A call waiting for its link to open.
struct Waiting {
    open: Arc<Opening>,
    /// Where the link goes: the client's shared or owner slot, or a lease.
    slot: OpenFor,
    abandon: Abandon,
    object: u64,
    prepared: Prepared,
}

/// What a link being opened is for.
#[derive(Clone, Copy)]
enum OpenFor {
    Main,
    Owner,
    Lease,
}

/// An async call: resolves to its result (DESIGN §2a). Dropping it lets
/// its reply go, and withdraws a call that waits in the manager.
#[doc(hidden)]
#[must_use = "a call's future does nothing until it is awaited"]
pub struct AsyncCall<R> {
    step: Step,
    /// The client whose session decoded proxies join (none for a call that
    /// failed before it had one).
    client: Option<Client>,
    method: Method,
    _result: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for AsyncCall<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncCall")
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl<R> AsyncCall<R> {
    /// A call that fails with `e` when awaited.
    pub(crate) fn failed(client: Client, method: Method, e: Error) -> AsyncCall<R> {
        AsyncCall {
            step: Step::Failed(Some(Box::new(e))),
            client: Some(client),
            method,
            _result: PhantomData,
        }
    }

    /// A call of a proxy that could not bind to its manager: fails with `e`.
    pub(crate) fn unbound(method: Method, e: Error) -> AsyncCall<R> {
        AsyncCall {
            step: Step::Failed(Some(Box::new(e))),
            client: None,
            method,
            _result: PhantomData,
        }
    }

    /// Sends call `method` of `object` on `route` (or prepares it, if the
    /// link is still to be opened).
    pub(crate) fn new(
        client: &Client,
        object: u64,
        method: Method,
        route: Route,
        args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
    ) -> AsyncCall<R> {
        let step = match Self::start(client, object, method, route, args) {
            Ok(step) => step,
            Err(e) => Step::Failed(Some(Box::new(e))),
        };
        AsyncCall {
            step,
            client: Some(client.clone()),
            method,
            _result: PhantomData,
        }
    }

    fn start(
        client: &Client,
        object: u64,
        method: Method,
        route: Route,
        args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
    ) -> Result<Step> {
        let abandon = route.abandon();
        let aio = &client.inner.aio;
        let (link, lease, open) = match route {
            Route::On(link) => (Some(link), None, None),
            Route::Main | Route::Owner => {
                let (slot, which) = match route {
                    Route::Main => (&aio.main, OpenFor::Main),
                    _ => (&aio.owner, OpenFor::Owner),
                };
                let mut slot = lock(slot);
                match &*slot {
                    Main::Open(l) if !l.is_broken() => (Some(Arc::clone(l)), None, None),
                    Main::Opening(o) => (None, None, Some((Arc::clone(o), which))),
                    _ => {
                        let o = Opening::start(client)?;
                        *slot = Main::Opening(Arc::clone(&o));
                        (None, None, Some((o, which)))
                    }
                }
            }
            Route::Wait => match aio.pop_idle() {
                Some(l) => (
                    Some(Arc::clone(&l)),
                    Some(Lease {
                        link: Some(l),
                        client: client.clone(),
                    }),
                    None,
                ),
                None => (None, None, Some((Opening::start(client)?, OpenFor::Lease))),
            },
        };
        if let Some(link) = link {
            let seq = link.send(object, method.index, args)?;
            return Ok(Step::Sent {
                link,
                seq,
                abandon,
                _lease: lease,
            });
        }
        let Some((open, slot)) = open else {
            return Err(Error::protocol("a call with no connection"));
        };
        let mut writer = FrameWriter::new();
        let (caps_len, _) = encode_args(&mut writer, client.address(), None, args)?;
        Ok(Step::Opening(Box::new(Waiting {
            open,
            slot,
            abandon,
            object,
            prepared: Prepared { writer, caps_len },
        })))
    }
}

impl<R: DeserializeOwned> Future for AsyncCall<R> {
    type Output = Result<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<R>> {
        let this = self.get_mut();
        loop {
            match &mut this.step {
                Step::Failed(e) => {
                    let e = e.take();
                    this.step = Step::Done;
                    return Poll::Ready(Err(e.map_or_else(
                        || Error::protocol("a call polled after it failed"),
                        |e| *e,
                    )));
                }
                Step::Opening(waiting) => {
                    let Waiting {
                        open,
                        slot,
                        abandon,
                        object,
                        prepared,
                    } = &mut **waiting;
                    let link = match open.poll(cx.waker()) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(r) => r,
                    };
                    let Some(client) = &this.client else {
                        return Poll::Ready(Err(Error::protocol("a call without its client")));
                    };
                    let aio = &client.inner.aio;
                    let slot = *slot;
                    // The link opened (or failed) for everyone waiting on it.
                    let keep = |s: &Mutex<Main>| {
                        let mut s = lock(s);
                        if let Main::Opening(o) = &*s {
                            if Arc::ptr_eq(o, open) {
                                *s = match &link {
                                    Ok(l) => Main::Open(Arc::clone(l)),
                                    Err(_) => Main::None,
                                };
                            }
                        }
                    };
                    match slot {
                        OpenFor::Main => keep(&aio.main),
                        OpenFor::Owner => keep(&aio.owner),
                        OpenFor::Lease => {}
                    }
                    let link = match link {
                        Ok(l) => l,
                        Err(e) => {
                            this.step = Step::Done;
                            return Poll::Ready(Err(e));
                        }
                    };
                    let lease = matches!(slot, OpenFor::Lease).then(|| Lease {
                        link: Some(Arc::clone(&link)),
                        client: client.clone(),
                    });
                    let sent = link.send_prepared(*object, this.method.index, prepared);
                    match sent {
                        Ok(seq) => {
                            this.step = Step::Sent {
                                link,
                                seq,
                                abandon: *abandon,
                                _lease: lease,
                            };
                        }
                        Err(e) => {
                            this.step = Step::Done;
                            return Poll::Ready(Err(e));
                        }
                    }
                }
                Step::Sent { link, seq, .. } => {
                    let reply = match link.take(*seq, cx.waker()) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(r) => r,
                    };
                    let link = Arc::clone(link);
                    // Over: the lease (if any) goes back with the step.
                    this.step = Step::Done;
                    let (bytes, caps) = match reply {
                        Ok(r) => r,
                        Err(e) => return Poll::Ready(Err(e)),
                    };
                    let bytes = bytes.as_slice();
                    let Some(caps) = caps else {
                        return Poll::Ready(decode_reply(bytes, this.method));
                    };
                    let method = this.method;
                    let Some(client) = &this.client else {
                        return Poll::Ready(Err(Error::protocol("a call without its client")));
                    };
                    let (r, left) = adopting(client, caps, || decode_reply(bytes, method));
                    for object in left {
                        link.release(object);
                    }
                    return Poll::Ready(r);
                }
                Step::Done => {
                    return Poll::Ready(Err(Error::protocol("a call polled after it was over")))
                }
            }
        }
    }
}

impl<R> AsyncCall<R> {
    /// Lets the call run without its reply (a guard's release).
    pub(crate) fn detach(self) {
        drop(self.quiet());
    }

    /// This call, whose future, dropped, lets the reply go and nothing
    /// more: for a call on a guard's connection that never waits (a
    /// notify), whose drop must not close the connection that holds the
    /// lock.
    pub(crate) fn quiet(mut self) -> Self {
        match &mut self.step {
            Step::Sent { abandon, .. } => *abandon = Abandon::Discard,
            Step::Opening(waiting) => waiting.abandon = Abandon::Discard,
            _ => {}
        }
        self
    }
}

impl<R> Drop for AsyncCall<R> {
    fn drop(&mut self) {
        if let Step::Sent {
            link, seq, abandon, ..
        } = &self.step
        {
            link.abandon(*seq, *abandon);
        }
    }
}

impl Client {
    /// Connects to the manager at `address`, proving `key`, without
    /// blocking the executor (DESIGN §2a): the client's calls through async
    /// proxies share one connection, with any number in flight. The same
    /// `Client` serves blocking proxies too, and its `lookup`, `publish`,
    /// `stats` and `to_token` (which block) work as on any client.
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().spawn_thread()?;
    /// let (address, key) = (mgr.address().clone(), mgr.auth_key().clone());
    /// futures::executor::block_on(async {
    ///     let client = manager::Client::connect_async(&address, &key).await?;
    ///     let v = client.value_async(1i64).await?;
    ///     assert_eq!(v.get().await?, 1);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub async fn connect_async(address: &Address, key: &AuthKey) -> Result<Client> {
        let rt = runtime()?;
        let (address, key) = (address.clone(), key.clone());
        off_thread(move || {
            let client = Client::connect(&address, &key)?;
            let link = Core::open(&client, &rt)?;
            client.inner.aio.set_main(link);
            Ok(client)
        })?
        .await
    }

    /// Calls `method` of `object` through the async face, on `route`.
    pub(crate) fn call_async<R>(
        &self,
        object: u64,
        method: Method,
        route: Route,
        args: impl FnOnce(&mut Encoder<'_>) -> Result<()>,
    ) -> AsyncCall<R> {
        AsyncCall::new(self, object, method, route, args)
    }

    /// A link of this client's pool, for a lock guard to own.
    pub(crate) async fn lease(&self) -> Result<Lease> {
        let link = match self.inner.aio.pop_idle() {
            Some(l) => l,
            None => {
                let open = Opening::start(self)?;
                std::future::poll_fn(|cx| open.poll(cx.waker())).await?
            }
        };
        Ok(Lease {
            link: Some(link),
            client: self.clone(),
        })
    }
}

use crate::auth::AuthKey;

/// Runs `f` on a thread of its own; the future resolves to what it returns.
fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<OffThread<T>> {
    let shared = Arc::new(Mutex::new(Done {
        result: None,
        waker: None,
    }));
    let done = Arc::clone(&shared);
    std::thread::Builder::new()
        .name("manager-connect".into())
        .spawn(move || {
            let r = f();
            let waker = {
                let mut st = lock(&done);
                st.result = Some(r);
                st.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        })?;
    Ok(OffThread { shared })
}

/// The result of [`off_thread`]'s thread.
struct OffThread<T> {
    shared: Arc<Mutex<Done<T>>>,
}

/// What [`off_thread`]'s thread returned, and who waits for it.
struct Done<T> {
    result: Option<Result<T>>,
    waker: Option<Waker>,
}

impl<T> Future for OffThread<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<T>> {
        let mut st = lock(&self.shared);
        match st.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
