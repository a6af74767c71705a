//! One connection as the event loop drives it: the handshake, then the
//! request loop, with all of its frame I/O on the one [`Connection`] type.
//!
//! A connection holds no thread. When its socket is ready, a thread of the
//! pool ([`super::reactor`]) runs [`Connection::ready`]: it reads what has
//! arrived, and for each whole request runs the call and queues the reply
//! ([`requests`]: read a request → apply it → queue its reply, each a named
//! step); then it writes what is queued, as far as the socket takes it
//! without blocking. What it does not take waits for the socket to become
//! writable again; while more than [`OUT_LIMIT`] bytes wait, no further
//! request is read, so a peer that sends and never reads costs a bounded
//! buffer, and a peer that reads while it sends (every client of ours
//! does) is never deadlocked against.
//!
//! Two threads never run one connection at once: readiness that arrives
//! while a thread is in it is left for that thread ([`Run`]). A hang-up is
//! noted at once even then, so that a call blocked in the connection's
//! thread ends ([`Peer::hang_up`]).
//!
//! **Parked calls.** A built-in wait of a remote caller (a `get` or `put`
//! that cannot go on, an `acquire` of a held lock, rlock, semaphore or
//! condition, a condition's, event's or barrier's `wait`, a joinable
//! queue's `join`) does not
//! keep its thread: it joins its object's waiters with a [`Resumer`] and
//! returns, and the connection keeps the request aside ([`Parked`]) and
//! reads nothing further (one connection's calls run in order), but for a
//! cancel of that call ([`Request::Cancel`], which the async face's owner
//! connection sends when a future is dropped): the call is run again as if
//! its caller had left, and the connection goes on. Whatever
//! ends the wait runs the connection again through the loop: the grant
//! (`Waiters::hand_off` calls [`Resumer::resume`]), the deadline (a timer,
//! [`Resumer::resume_at`]), the hang-up, or the manager's stop. The call is
//! then run again from its request and finds its place by its ticket
//! ([`Resume`]), so a method runs the same code whether it waited or not.
//! A hang-up cancels the parked call before it can take anything: a grant
//! that reached a caller who left goes on to the next waiter. A wait of
//! more than one step (a condition's `wait`: the notification, then its
//! lock back) keeps where it is in its object between runs. A call that
//! carries a byte string out of line or proxies keeps its thread where it
//! waits, as user methods do.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustc_hash::FxHashSet;
use serde_bytes::ByteBuf;

use crate::auth::{Handshake, Keys};
use crate::context::{Caller, Context};
use crate::error::{Error, Result};
use crate::server::{control, Invocation, Recent, ServerState};
use crate::shared::End;
use crate::sync::lock;
use crate::transport::{wait_ready, Socket};
use crate::wire::codec::{from_slice, to_vec, Decoder};
use crate::wire::frame::{
    read_error, send, Blob, FrameReader, FrameWriter, Nonblocking, ReadFresh, HANDSHAKE_MAX_FRAME,
};
use crate::wire::message::{
    split_caps, Answer, Hello, Join, Request, Response, Welcome, CONTROL, MAGIC, PROTOCOL_VERSION,
};

/// Replies queued past this stop the reading of requests until the peer
/// has taken some.
pub(crate) const OUT_LIMIT: usize = 1 << 20;

/// Queued replies are written once this many bytes wait, even while more
/// requests are buffered: a deep pipeline is answered as it is read.
const WRITE_AT: usize = 64 * 1024;

/// A queued put-back: what returns an item a reply carries out of a
/// container, if the reply never reaches the socket.
type PutBack = Box<dyn FnOnce() + Send>;

/// What a call running in the connection's thread shares with the loop:
/// the queued replies, and whether the peer hung up.
pub(crate) struct Peer {
    hung_up: AtomicBool,
    /// The caller of the parked call left ([`Request::Cancel`]): while it
    /// is run again, the peer counts as gone for it.
    cancelled: AtomicBool,
    /// The connection's socket, to look at directly where a hang-up the
    /// loop has not seen yet matters (see [`Peer::has_left`]).
    socket: Arc<Socket>,
    out: Mutex<Outbox>,
    /// More than [`OUT_LIMIT`] bytes wait in `out` (kept as `out` changes,
    /// so that the request loop need not lock it to ask).
    backlogged: AtomicBool,
    /// The condition variable a call of this connection waits on now, so
    /// that a hang-up or shutdown wakes it (see [`Context::wait_until`]).
    waiting: Mutex<Option<WaitingOn>>,
    /// How long a write that must finish (before a call blocks, or at the
    /// end) may wait for the peer to take bytes.
    patience: Duration,
    /// The parking of this connection's call (see [`Park`]).
    park: Mutex<Park>,
    /// The call being run may park (set by the request loop).
    park_allowed: AtomicBool,
    /// `park` holds a wait to resume or one just parked.
    park_busy: AtomicBool,
    /// Runs the connection again, for a parked call whose wait is over.
    resumer: Resumer,
    /// The objects that track connections this one has called: the only
    /// ones told when it ends (see [`Peer::touch`]).
    touched: Mutex<FxHashSet<u64>>,
    /// The last of `touched`, which a call on it again need not lock for.
    last_touched: AtomicU64,
}

/// A call that waits without a thread: it joined its object's waiters and
/// returned; whatever ends the wait (a grant, its deadline, a hang-up, the
/// manager's stop) runs the connection again, and the call is run again
/// from its request, finding its place among the waiters by its ticket.
/// Until it is over, the connection reads no further request: calls of
/// one connection run in order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Resume {
    /// The waiter's ticket in its object's queue.
    pub(crate) ticket: u64,
    /// The wait's deadline, as the first run computed it.
    pub(crate) deadline: Option<Instant>,
}

/// Touched by the thread running the connection's call only; `busy` and
/// `allowed` let the common call (which neither resumes nor parks) skip
/// the mutex.
#[derive(Default)]
struct Park {
    /// The call being run again resumes this wait.
    resume: Option<Resume>,
    /// The call just run parked with this wait.
    parked: Option<Resume>,
}

/// What runs a connection again from another thread.
#[derive(Clone)]
pub(crate) struct Resumer {
    conn: std::sync::Weak<Connection>,
    reactor: std::sync::Weak<super::reactor::Reactor>,
}

impl Resumer {
    pub(crate) fn new(
        conn: std::sync::Weak<Connection>,
        reactor: std::sync::Weak<super::reactor::Reactor>,
    ) -> Resumer {
        Resumer { conn, reactor }
    }

    /// The connection and its loop, while both live.
    fn upgrade(&self) -> Option<(Arc<Connection>, Arc<super::reactor::Reactor>)> {
        Some((self.conn.upgrade()?, self.reactor.upgrade()?))
    }

    /// Schedules the connection to run (a parked call's wait may be over).
    pub(crate) fn resume(&self) {
        if let Some((conn, reactor)) = self.upgrade() {
            reactor.schedule(conn);
        }
    }

    /// Schedules the connection to run at `deadline`.
    fn resume_at(&self, deadline: Instant) {
        if let Some((conn, reactor)) = self.upgrade() {
            reactor.wake_at(deadline, conn.id);
        }
    }

    /// Takes out the timer of connection `id` at `deadline` (its
    /// handshake's, once the handshake is over).
    fn cancel_at(&self, deadline: Instant, id: u64) {
        if let Some(reactor) = self.reactor.upgrade() {
            reactor.cancel_timer(deadline, id);
        }
    }
}

/// A condition variable a blocked call waits on.
struct WaitingOn(*const Condvar);

// SAFETY: the pointer is only dereferenced under `Peer::waiting`'s lock,
// and the waiting call clears it (under that lock) before the condition
// variable it points to can go away; `Condvar` itself is `Sync`.
unsafe impl Send for WaitingOn {}

/// Replies on their way: bytes as they go on the wire (sealed, on an
/// encrypted connection), and the put-backs of replies not yet written.
/// Its methods take the connection's socket (the peer's own), which the
/// outbox does not keep a second handle to: a manager holds thousands.
struct Outbox {
    bytes: Vec<u8>,
    /// Bytes of `bytes` already written.
    sent: usize,
    /// Put-backs, each with the offset in `bytes` where its reply ends.
    undo: Vec<(usize, PutBack)>,
    /// On an encrypted connection, replies not sealed yet: they are sealed
    /// together when they go (or when a reply with a put-back follows
    /// them), so that a pipeline's replies cost one record, not one each.
    plain: Vec<u8>,
}

/// A reply at least this long is sealed as it comes, not staged.
const SEAL_ALONE: usize = 16 * 1024;

impl Outbox {
    fn pending(&self) -> usize {
        self.bytes.len() - self.sent + self.plain.len()
    }

    /// Adds `frame` to what goes: sealed later on an encrypted connection
    /// (a long one at once, after those waiting: it would gain nothing
    /// from company and cost a copy), as it is otherwise.
    fn push(&mut self, socket: &Socket, frame: &[u8]) -> std::io::Result<()> {
        if socket.is_sealed() {
            if frame.len() < SEAL_ALONE {
                self.plain.extend_from_slice(frame);
                return Ok(());
            }
            self.seal_waiting(socket)?;
        }
        socket.encode_into(&[frame], &mut self.bytes)
    }

    /// Seals the replies waiting in `plain` onto `bytes`.
    fn seal_waiting(&mut self, socket: &Socket) -> std::io::Result<()> {
        if self.plain.is_empty() {
            return Ok(());
        }
        socket.encode_into(&[&self.plain], &mut self.bytes)?;
        self.plain.clear();
        if self.plain.capacity() > 4 * OUT_LIMIT {
            self.plain = Vec::new();
        }
        Ok(())
    }

    /// Writes what the socket takes now; `Ok(true)` once nothing waits.
    fn write_some(&mut self, socket: &Socket) -> std::io::Result<bool> {
        self.seal_waiting(socket)?;
        while self.sent < self.bytes.len() {
            match socket.write_wire(&self.bytes[self.sent..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        // Replies written: their items are delivered.
        let sent = self.sent;
        if !self.undo.is_empty() {
            self.undo.retain(|(end, _)| *end > sent);
        }
        if self.sent == self.bytes.len() {
            self.bytes.clear();
            self.sent = 0;
            if self.bytes.capacity() > 4 * OUT_LIMIT {
                self.bytes = Vec::new();
            }
            return Ok(true);
        }
        if self.sent > OUT_LIMIT {
            self.bytes.drain(..self.sent);
            for (end, _) in &mut self.undo {
                *end -= self.sent;
            }
            self.sent = 0;
        }
        Ok(false)
    }
}

impl Peer {
    fn new(socket: Arc<Socket>, patience: Duration, resumer: Resumer) -> Peer {
        Peer {
            hung_up: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            socket,
            out: Mutex::new(Outbox {
                bytes: Vec::new(),
                sent: 0,
                undo: Vec::new(),
                plain: Vec::new(),
            }),
            backlogged: AtomicBool::new(false),
            waiting: Mutex::new(None),
            patience,
            park: Mutex::new(Park::default()),
            park_allowed: AtomicBool::new(false),
            park_busy: AtomicBool::new(false),
            resumer,
            touched: Mutex::new(FxHashSet::default()),
            last_touched: AtomicU64::new(0),
        }
    }

    /// Notes that this connection called `object`, which tracks
    /// connections (a lock may now know it as a holder or a waiter).
    pub(crate) fn touch(&self, object: u64) {
        if self.last_touched.load(Ordering::Relaxed) != object {
            lock(&self.touched).insert(object);
            self.last_touched.store(object, Ordering::Relaxed);
        }
    }

    /// The objects [`Peer::touch`] noted, once the connection is over.
    fn take_touched(&self) -> FxHashSet<u64> {
        std::mem::take(&mut *lock(&self.touched))
    }

    /// The wait a call run again resumes; `None` on a first run, or where
    /// the call may not park (then it blocks its thread).
    pub(crate) fn parking(&self) -> Option<Option<Resume>> {
        if !self.park_allowed.load(Ordering::Relaxed) {
            return None;
        }
        Some(lock(&self.park).resume.take())
    }

    /// The call being run parks with `wait`: it returns without a reply,
    /// and is run again when [`Peer::resumer`] is told.
    pub(crate) fn park(&self, wait: Resume, first: bool) {
        lock(&self.park).parked = Some(wait);
        self.park_busy.store(true, Ordering::Relaxed);
        if let (true, Some(deadline)) = (first, wait.deadline) {
            self.resumer.resume_at(deadline);
        }
    }

    /// Whether the call being run has just parked.
    pub(crate) fn has_parked(&self) -> bool {
        self.park_busy.load(Ordering::Relaxed) && lock(&self.park).parked.is_some()
    }

    /// Whether the call being run resumes a parked wait.
    pub(crate) fn is_resuming(&self) -> bool {
        self.park_busy.load(Ordering::Relaxed) && lock(&self.park).resume.is_some()
    }

    /// What runs this connection again.
    pub(crate) fn resumer(&self) -> &Resumer {
        &self.resumer
    }

    /// Sets up a run of a call: whether it may park, and the wait it
    /// resumes.
    #[inline]
    fn prepare(&self, allowed: bool, resume: Option<Resume>) {
        self.park_allowed.store(allowed, Ordering::Relaxed);
        if resume.is_none() && !self.park_busy.load(Ordering::Relaxed) {
            return;
        }
        self.prepare_park(resume);
    }

    /// [`Peer::prepare`]'s rare part: a wait to resume, or one to clear.
    #[cold]
    fn prepare_park(&self, resume: Option<Resume>) {
        let mut park = lock(&self.park);
        self.park_busy.store(resume.is_some(), Ordering::Relaxed);
        park.resume = resume;
        park.parked = None;
    }

    /// The wait the call just run parked with, if it did.
    fn parked(&self) -> Option<Resume> {
        self.park_allowed.store(false, Ordering::Relaxed);
        // A load first: the common call neither parked nor resumed, and
        // needs no read-modify-write.
        if !self.park_busy.load(Ordering::Relaxed) || !self.park_busy.swap(false, Ordering::Relaxed)
        {
            return None;
        }
        let mut park = lock(&self.park);
        park.resume = None;
        park.parked.take()
    }

    /// Whether the peer has hung up (or the connection failed).
    pub(crate) fn is_gone(&self) -> bool {
        self.hung_up.load(Ordering::Acquire) || self.cancelled.load(Ordering::Acquire)
    }

    /// Whether the peer is gone, asking the socket itself if the loop has
    /// not noticed yet: a grant (an item, a lock, a notification) about to
    /// be taken up must not go to a caller that left a moment ago, when the
    /// waiter behind it could have it.
    pub(crate) fn has_left(&self) -> bool {
        if self.is_gone() {
            return true;
        }
        if self.socket.peer_gone() {
            self.hang_up();
            return true;
        }
        false
    }

    /// If the call being run was withdrawn by its caller (the async face's
    /// cancel) while the connection goes on, lets it go on waiting after
    /// all and says so: a condition wait takes its lock back before it
    /// ends, as asyncio's does.
    pub(crate) fn go_on_if_withdrawn(&self) -> bool {
        let withdrawn =
            self.cancelled.load(Ordering::Acquire) && !self.hung_up.load(Ordering::Acquire);
        if withdrawn {
            self.cancelled.store(false, Ordering::Release);
        }
        withdrawn
    }

    /// Notes that the peer is gone, and wakes a call of its waiting.
    pub(crate) fn hang_up(&self) {
        self.hung_up.store(true, Ordering::Release);
        self.wake();
    }

    /// Wakes the call of this connection that waits, if one does: it looks
    /// again at why it waits, and at whether it should give up.
    pub(crate) fn wake(&self) {
        if let Some(WaitingOn(cv)) = &*lock(&self.waiting) {
            // SAFETY: see `WaitingOn`: set only while its call waits on it.
            unsafe { (**cv).notify_all() };
        }
    }

    /// Runs `wait` with `cv` registered as what this connection's call
    /// waits on.
    pub(crate) fn waiting_on<R>(&self, cv: &Condvar, wait: impl FnOnce() -> R) -> R {
        struct Clear<'a>(&'a Mutex<Option<WaitingOn>>);
        impl Drop for Clear<'_> {
            fn drop(&mut self) {
                *lock(self.0) = None;
            }
        }
        *lock(&self.waiting) = Some(WaitingOn(cv));
        let _clear = Clear(&self.waiting);
        wait()
    }

    /// Queues a reply; `put_back` runs if it cannot be delivered. A reply
    /// that carries an item is written at once.
    fn queue(&self, frame: &[u8], put_back: Option<PutBack>) -> Result<()> {
        let mut out = lock(&self.out);
        if let Some(put_back) = put_back {
            if self.is_gone() {
                drop(out);
                put_back();
                return Err(Error::ConnectionLost(
                    "the caller left before its reply".into(),
                ));
            }
            // Sealed after the replies before it, and at once: its end on
            // the wire is where its item counts as delivered.
            out.seal_waiting(&self.socket).map_err(Error::lost)?;
            self.socket
                .encode_into(&[frame], &mut out.bytes)
                .map_err(Error::lost)?;
            let end = out.bytes.len();
            out.undo.push((end, put_back));
            let r = out.write_some(&self.socket).map(drop).map_err(Error::lost);
            self.note_backlog(&out);
            return r;
        }
        out.push(&self.socket, frame).map_err(Error::lost)?;
        if out.pending() >= WRITE_AT {
            out.write_some(&self.socket).map_err(Error::lost)?;
            self.note_backlog(&out);
        }
        Ok(())
    }

    fn note_backlog(&self, out: &Outbox) {
        self.backlogged
            .store(out.pending() > OUT_LIMIT, Ordering::Relaxed);
    }

    /// Writes what is queued, as far as the socket takes it now; whether
    /// nothing waits any more.
    fn write_some(&self) -> Result<bool> {
        let mut out = lock(&self.out);
        let r = out.write_some(&self.socket).map_err(Error::lost);
        self.note_backlog(&out);
        r
    }

    /// Writes everything queued, waiting for the peer to take it: before a
    /// call blocks (no reply may wait behind it), and at the end.
    pub(crate) fn write_all(&self) -> Result<()> {
        let mut out = lock(&self.out);
        let deadline = Instant::now() + self.patience;
        while !out.write_some(&self.socket).map_err(Error::lost)? {
            self.note_backlog(&out);
            let now = Instant::now();
            if now >= deadline
                || !wait_ready(self.socket.raw_fd(), libc::POLLOUT, deadline - now)
                    .map_err(Error::lost)?
            {
                return Err(Error::ConnectionLost(
                    "the peer took no replies for too long".into(),
                ));
            }
        }
        self.note_backlog(&out);
        Ok(())
    }

    /// Whether too much waits to be written to read more requests.
    fn is_backlogged(&self) -> bool {
        self.backlogged.load(Ordering::Relaxed)
    }

    /// Runs the put-backs of replies that will never be written.
    fn undeliverable(&self) {
        let undo = std::mem::take(&mut lock(&self.out).undo);
        for (_, put_back) in undo {
            put_back();
        }
    }
}

/// A byte stream of requests.
pub(crate) trait Input: ReadFresh {
    /// Whether the stream is known to have nothing more now.
    fn drained(&self) -> bool {
        false
    }
}

impl Input for &[u8] {}

impl Input for Nonblocking<'_> {
    fn drained(&self) -> bool {
        self.is_drained()
    }
}

/// Where a connection is.
enum Phase {
    Handshake(Box<Shaking>),
    Open(Box<Open>),
    Closed,
}

/// A connection in the handshake.
struct Shaking {
    socket: Socket,
    reader: FrameReader,
    writer: FrameWriter,
    /// Set once the hello has arrived.
    noise: Option<Handshake>,
    /// Why the connection is refused whatever it sends (the manager is out
    /// of descriptors): said in answer to its hello.
    refusal: Option<Error>,
}

/// An authenticated connection.
struct Open {
    socket: Arc<Socket>,
    reader: FrameReader,
    writer: FrameWriter,
    ctx: Context,
    parked: Option<Parked>,
}

/// A call parked in its object's waiters: its request, to run again, and
/// its place among the waiters.
pub(crate) struct Parked {
    body: Vec<u8>,
    /// The call's sequence number, which a cancel names.
    seq: u64,
    wait: Resume,
}

/// Who runs a connection now: nobody, a thread, or a thread that must look
/// again before it leaves (readiness arrived meanwhile).
struct Run(AtomicU8);

const IDLE: u8 = 0;
const RUNNING: u8 = 1;
const AGAIN: u8 = 2;

impl Run {
    /// Enters the connection, or leaves the readiness to the thread in it.
    fn enter(&self) -> bool {
        loop {
            match self
                .0
                .compare_exchange(IDLE, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(AGAIN) => return false,
                Err(_) => {
                    if self
                        .0
                        .compare_exchange(RUNNING, AGAIN, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return false;
                    }
                }
            }
        }
    }

    /// Leaves the connection: false if readiness arrived meanwhile, and
    /// the caller must run it once more.
    fn leave(&self) -> bool {
        if self
            .0
            .compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return true;
        }
        self.0.store(RUNNING, Ordering::Release);
        false
    }
}

/// One connection of the manager.
pub(crate) struct Connection {
    pub(crate) id: u64,
    peer_name: String,
    /// The descriptor, for the shutdown of another thread; `None` once
    /// closed, so that a reused number is never touched.
    fd: Mutex<Option<RawFd>>,
    run: Run,
    /// The poll said the stream has ended (or failed): read to its end,
    /// short reads notwithstanding.
    read_closed: AtomicBool,
    /// The loop also watches the socket for room to write: only while
    /// replies wait that it did not take. (Watched always, every reply the
    /// peer reads would be an event: it costs a round trip about a fifth.)
    watching_writes: AtomicBool,
    /// Set once authenticated.
    peer: OnceLock<Arc<Peer>>,
    phase: Mutex<Phase>,
    /// When the handshake must be over.
    pub(crate) deadline: Instant,
    /// What runs this connection again (for its parked calls).
    resumer: Resumer,
}

/// What a round of work on a connection came to.
pub(crate) enum Outcome {
    /// It goes on; the loop hears from its socket again.
    Open,
    /// It is closed: the caller forgets it.
    Closed,
}

impl Connection {
    /// A connection just accepted, `refusal` set if the manager cannot
    /// serve it and says why in answer to its hello.
    pub(crate) fn new(
        id: u64,
        socket: Socket,
        state: &ServerState,
        refusal: Option<Error>,
        resumer: Resumer,
    ) -> Connection {
        Connection {
            resumer,
            id,
            peer_name: socket.peer(),
            fd: Mutex::new(Some(socket.raw_fd())),
            run: Run(AtomicU8::new(IDLE)),
            read_closed: AtomicBool::new(false),
            watching_writes: AtomicBool::new(false),
            peer: OnceLock::new(),
            phase: Mutex::new(Phase::Handshake(Box::new(Shaking {
                socket,
                reader: FrameReader::new(HANDSHAKE_MAX_FRAME),
                writer: FrameWriter::new(),
                noise: None,
                refusal,
            }))),
            deadline: Instant::now() + state.config.limits.handshake_timeout,
        }
    }

    /// The descriptor the loop polls.
    pub(crate) fn raw_fd(&self) -> Option<RawFd> {
        *lock(&self.fd)
    }

    /// Stops reading (at shutdown): the peer's next request is never read,
    /// the connection sees the end of its stream and closes.
    pub(crate) fn shutdown_read(&self) {
        if let Some(fd) = *lock(&self.fd) {
            // SAFETY: `fd` is open while it is recorded here.
            unsafe { libc::shutdown(fd, libc::SHUT_RD) };
        }
        if let Some(peer) = self.peer.get() {
            peer.wake();
        }
    }

    /// Wakes a call of this connection that waits (the manager stops).
    pub(crate) fn wake(&self) {
        if let Some(peer) = self.peer.get() {
            peer.wake();
        }
    }

    /// The socket is ready (`closed`: the peer hung up or it failed): runs
    /// the connection as far as it goes now.
    pub(crate) fn ready(&self, state: &Arc<ServerState>, closed: bool) -> Outcome {
        if closed {
            self.read_closed.store(true, Ordering::Release);
        }
        // At shutdown the manager itself stopped reading: that is no
        // hang-up, and the call in progress still gets its reply out.
        if closed && !state.is_stopping() {
            if let Some(peer) = self.peer.get() {
                peer.hang_up();
            }
        }
        if !self.run.enter() {
            return Outcome::Open;
        }
        self.drive(state)
    }

    /// Runs the entered connection until no readiness is left for it.
    fn drive(&self, state: &Arc<ServerState>) -> Outcome {
        loop {
            let outcome = {
                let mut phase = lock(&self.phase);
                self.advance(state, &mut phase)
            };
            if let Outcome::Closed = outcome {
                // Nobody enters a closed connection again.
                return outcome;
            }
            if self.run.leave() {
                return Outcome::Open;
            }
        }
    }

    /// The handshake's time is up: closes the connection if it is still in
    /// it.
    pub(crate) fn expire(&self, state: &Arc<ServerState>) -> Outcome {
        if !self.run.enter() {
            return Outcome::Open;
        }
        {
            let mut phase = lock(&self.phase);
            if let Phase::Handshake(_) = &*phase {
                tracing::debug!(conn = self.id, peer = %self.peer_name, "handshake timed out");
                self.close(state, &mut phase, Err(Error::Timeout("handshake".into())));
                return Outcome::Closed;
            }
        }
        self.drive(state)
    }

    fn advance(&self, state: &Arc<ServerState>, phase: &mut Phase) -> Outcome {
        match phase {
            Phase::Handshake(shaking) => match handshake_step(state, shaking, self.id) {
                Ok(None) => Outcome::Open,
                Ok(Some((session, keys))) => {
                    state.handshake_done();
                    self.open(state, phase, session, keys)
                }
                Err(e) => {
                    state.handshake_done();
                    match &e {
                        Error::AuthenticationFailed(_) => tracing::warn!(
                            peer = %self.peer_name,
                            "authentication failed: the peer does not know the key"
                        ),
                        _ => {
                            tracing::debug!(peer = %self.peer_name, error = %e, "handshake failed")
                        }
                    }
                    // Its refusal, if it earned one, is written already.
                    self.forget_fd();
                    if let Phase::Handshake(shaking) = std::mem::replace(phase, Phase::Closed) {
                        shaking.socket.shutdown();
                    }
                    Outcome::Closed
                }
            },
            Phase::Open(open) => match self.serve(state, open) {
                Ok(None) => Outcome::Open,
                Ok(Some(ended)) => {
                    self.close(state, phase, Ok(ended));
                    Outcome::Closed
                }
                Err(e) => {
                    self.close(state, phase, Err(e));
                    Outcome::Closed
                }
            },
            Phase::Closed => Outcome::Closed,
        }
    }

    /// The handshake is over: the connection joins `session`.
    fn open(
        &self,
        state: &Arc<ServerState>,
        phase: &mut Phase,
        session: u64,
        keys: Option<Keys>,
    ) -> Outcome {
        let Phase::Handshake(shaking) = std::mem::replace(phase, Phase::Closed) else {
            return Outcome::Closed;
        };
        self.resumer.cancel_at(self.deadline, self.id);
        let Shaking {
            socket,
            mut reader,
            writer,
            ..
        } = *shaking;
        // The welcome went out unsealed; what follows is sealed.
        let socket = Arc::new(match keys {
            Some(keys) => socket.seal(keys),
            None => socket,
        });
        let peer = Arc::new(Peer::new(
            Arc::clone(&socket),
            state.config.limits.dead_peer_timeout,
            self.resumer.clone(),
        ));
        let _ = self.peer.set(Arc::clone(&peer));
        tracing::debug!(
            conn = self.id,
            session = format_args!("{session:016x}"),
            "connection open"
        );
        reader.set_max(state.config.limits.max_frame);
        reader.allow_blobs();
        *phase = Phase::Open(Box::new(Open {
            socket,
            reader,
            writer,
            ctx: Context {
                server: Arc::clone(state),
                session,
                conn: self.id,
                undo: Default::default(),
                caller: Caller::Remote(peer),
            },
            parked: None,
        }));
        // Requests may have come with the handshake's last message.
        self.advance(state, phase)
    }

    /// The request loop, for what the socket has now.
    fn serve(&self, state: &ServerState, open: &mut Open) -> Result<Option<Ended>> {
        let Open {
            socket,
            reader,
            writer,
            ctx,
            parked,
        } = open;
        let Caller::Remote(peer) = &ctx.caller else {
            return Err(Error::protocol("a connection without a peer"));
        };
        let peer = Arc::clone(peer);
        let mut input = Nonblocking::new(socket, state.config.limits.dead_peer_timeout);
        // After the end of the stream, a short read proves nothing: the
        // end itself must be read, and no further readiness announces it.
        input.trust_short = !self.read_closed.load(Ordering::Acquire);
        loop {
            match requests(state, ctx, &mut input, reader, writer, &*peer, parked)? {
                Flow::Ended(ended) => return Ok(Some(ended)),
                Flow::Drained | Flow::Parked => {
                    let all = peer.write_some()?;
                    self.watch_writes(!all);
                    return Ok(None);
                }
                Flow::Backlogged => {
                    // Reading resumes once the peer takes replies; if it
                    // has taken them all already, at once.
                    let all = peer.write_some()?;
                    self.watch_writes(!all);
                    if !all {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Watches the socket for room to write (`on`), or stops, if that
    /// changes anything.
    fn watch_writes(&self, on: bool) {
        if self.watching_writes.load(Ordering::Relaxed) == on {
            return;
        }
        let Some(fd) = self.raw_fd() else { return };
        if let Some(reactor) = self.resumer.reactor.upgrade() {
            if reactor.watch(self.id, fd, on).is_ok() {
                self.watching_writes.store(on, Ordering::Relaxed);
            }
        }
    }

    /// Ends an authenticated connection as `ended` says: settles what it
    /// held, and closes it.
    fn close(&self, state: &ServerState, phase: &mut Phase, ended: Result<Ended>) {
        self.forget_fd();
        let Phase::Open(open) = std::mem::replace(phase, Phase::Closed) else {
            // Still in the handshake (its time ran out).
            state.handshake_done();
            return;
        };
        let Open {
            socket,
            ctx,
            mut writer,
            mut parked,
            ..
        } = *open;
        let session = ctx.session;
        let peer = self.peer.get().cloned();
        if parked.is_some() {
            // Its waiter leaves its object, passing on a grant it got.
            if let Some(peer) = &peer {
                peer.hang_up();
            }
            let _ = run_parked(state, &ctx, &mut writer, &mut parked);
        }
        let end = match &ended {
            Ok(Ended::Goodbye { session: all }) => {
                if *all {
                    // The client's other connections said goodbye just before
                    // this one (or are about to close with its process): settle
                    // them first, so the farewell below means the whole session.
                    state.table.mark_leaving(session);
                    state.await_session(session, self.id, SESSION_FAREWELL);
                }
                End::Normal
            }
            Ok(Ended::Shutdown) => End::Normal,
            // Without a goodbye, unless the client said one for the session.
            _ if state.table.is_leaving(session) => End::Normal,
            Ok(Ended::Closed) => End::Abnormal,
            Err(e) => {
                tracing::debug!(conn = self.id, error = %e, "connection closed with an error");
                if let (Error::Protocol(_), Some(peer)) = (e, &peer) {
                    // Tell the peer why before hanging up; it may not be listening.
                    let mut writer = FrameWriter::new();
                    if writer.begin().put(&e.to_wire()).is_ok()
                        && writer
                            .finish(&Response::Fatal, state.config.limits.max_frame)
                            .is_ok()
                    {
                        let _ = peer.queue(writer.frame(), None);
                    }
                }
                End::Abnormal
            }
        };
        if let Some(peer) = &peer {
            // Replies already queued reach a peer still listening.
            if !peer.is_gone() && peer.write_all().is_err() {
                peer.hang_up();
            }
            peer.undeliverable();
        }
        tracing::debug!(conn = self.id, ?end, "connection ending");
        let touched = peer.as_ref().map(|p| p.take_touched()).unwrap_or_default();
        state.table.disconnected(self.id, end, touched);
        state.table.leave_session(session);
        if let (Ok(Ended::Goodbye { .. }), Some(peer)) = (&ended, &peer) {
            // Everything the connection held is settled: say so, then close.
            let mut writer = FrameWriter::new();
            writer.begin();
            if writer
                .finish(&Response::Farewell, state.config.limits.max_frame)
                .is_ok()
                && peer.queue(writer.frame(), None).is_ok()
            {
                let _ = peer.write_all();
            }
        }
        drop(ctx);
        socket.shutdown();
        drop(socket);
        state.unregister(self.id);
        tracing::debug!(conn = self.id, "connection closed");
    }

    /// The descriptor is about to close: nobody may use its number again.
    fn forget_fd(&self) {
        *lock(&self.fd) = None;
    }
}

/// How long a session's goodbye waits for its other connections to end.
const SESSION_FAREWELL: Duration = Duration::from_secs(2);

/// How a connection's requests ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The peer closed the stream without a goodbye.
    Closed,
    /// The peer said goodbye (for all its session's connections with `session`).
    Goodbye { session: bool },
    /// The peer asked the manager to shut down.
    Shutdown,
}

/// Where the request loop stopped.
pub(crate) enum Flow {
    /// Nothing more to read now.
    Drained,
    /// Too many replies wait to be written.
    Backlogged,
    /// The call run last waits, parked; nothing more is read until it is
    /// over.
    Parked,
    /// The peer ended the connection.
    Ended(Ended),
}

/// Where replies go.
pub(crate) trait Replies {
    /// Queues `frame`; `put_back` returns its item if it is not delivered.
    fn queue(&self, frame: &[u8], put_back: Option<PutBack>) -> Result<()>;
    /// Whether reading should pause until replies are written.
    fn is_backlogged(&self) -> bool {
        false
    }
}

impl Replies for Peer {
    fn queue(&self, frame: &[u8], put_back: Option<PutBack>) -> Result<()> {
        Peer::queue(self, frame, put_back)
    }
    fn is_backlogged(&self) -> bool {
        Peer::is_backlogged(self)
    }
}

/// The fuzzing harness collects replies.
impl Replies for Mutex<Vec<u8>> {
    fn queue(&self, frame: &[u8], _: Option<PutBack>) -> Result<()> {
        lock(self).extend_from_slice(frame);
        Ok(())
    }
}

/// A request, parsed.
enum Command<'a> {
    /// Run a method.
    Call(Call<'a>),
    /// Drop one of the session's references.
    Release { object: u64 },
    /// End the connection (and, with `session`, the session's others).
    Goodbye { session: bool },
    /// The caller of a call left; see [`Request::Cancel`].
    Cancel,
}

/// A method call: which, and its arguments.
struct Call<'a> {
    seq: u64,
    object: u64,
    method: u32,
    args: Decoder<'a>,
    /// The objects of this manager the arguments embed, if they embed any
    /// proxy (see [`ServerState::call`]).
    arg_caps: Option<Vec<u64>>,
    /// Whether a byte string came out of line (it is moved into the call,
    /// so the call cannot be run again from its request).
    has_blob: bool,
}

impl<'a> Command<'a> {
    /// Parses a frame's body and its out-of-line byte string.
    fn parse(body: &'a [u8], blob: Option<Blob>) -> Result<Command<'a>> {
        let (request, payload) = Request::decode(body)
            .map_err(|e| Error::Protocol(format!("malformed request: {e}")))?;
        let header_len = body.len() - payload.len();
        let (seq, object, method, args, arg_caps) = match request {
            Request::Call {
                seq,
                object,
                method,
            } => (seq, object, method, payload, None),
            Request::CallCaps {
                seq,
                object,
                method,
                caps_len,
            } => {
                let (args, caps) = split_caps(payload, caps_len)?;
                (
                    seq,
                    object,
                    method,
                    args,
                    Some(from_slice::<Vec<u64>>(caps)?),
                )
            }
            Request::Release { object } => return Ok(Command::Release { object }),
            Request::Goodbye { session } => return Ok(Command::Goodbye { session }),
            // Read here only after its call was over: nothing to do.
            Request::Cancel { .. } => return Ok(Command::Cancel),
        };
        let has_blob = blob.is_some();
        let args = match blob {
            None => Decoder::new(args),
            // The byte string's offset in the arguments, which follow the header.
            Some(Blob { at, bytes }) => match at.checked_sub(header_len) {
                Some(at) if at <= args.len() => Decoder::with_blob(args, at, bytes),
                _ => {
                    return Err(Error::protocol(
                        "a byte string out of line outside the arguments",
                    ))
                }
            },
        };
        Ok(Command::Call(Call {
            seq,
            object,
            method,
            args,
            arg_caps,
            has_blob,
        }))
    }
}

impl Call<'_> {
    fn is_shutdown(&self) -> bool {
        self.object == CONTROL && self.method == control::method::SHUTDOWN
    }

    /// Whether the call may park: it can be run again from its request
    /// (no byte string moved out of it, no proxies adopted by it).
    fn may_park(&self) -> bool {
        !self.has_blob && self.arg_caps.is_none()
    }

    /// Runs the call and leaves its reply (result or error) in `writer`.
    fn apply(
        self,
        state: &ServerState,
        ctx: &Context,
        writer: &mut FrameWriter,
        recent: &mut Recent,
    ) -> Result<()> {
        let max = state.config.limits.max_frame;
        let seq = self.seq;
        let call = Invocation {
            object: self.object,
            method: self.method,
            args: self.args,
            arg_caps: self.arg_caps.as_deref(),
        };
        let result =
            state
                .call(ctx, call, &mut writer.begin(), recent)
                .and_then(|(caps, foreign)| {
                    // The peer binds these while decoding the reply; no
                    // message says when it has, so they are kept for the
                    // hand-off time.
                    state.keep_for_handoff(foreign);
                    let Some(caps) = caps else {
                        return writer.finish(&Response::Ok { seq }, max);
                    };
                    let mut p = writer.payload();
                    let before = p.len();
                    p.put(&caps)?;
                    let caps_len = (p.len() - before) as u32;
                    writer.finish(&Response::OkCaps { seq, caps_len }, max)
                });
        if let Err(e) = result {
            writer.begin().put(&e.to_wire())?;
            writer.finish(&Response::Err { seq }, max)?;
        }
        Ok(())
    }
}

/// The request loop: reads a request, applies it, queues its reply, for as
/// long as whole requests arrive (from any byte stream: a socket, or a
/// fuzzer's bytes) and replies may be queued. A call parked before is run
/// again first: nothing after it is read until it is over.
pub(crate) fn requests(
    state: &ServerState,
    ctx: &Context,
    input: &mut impl Input,
    reader: &mut FrameReader,
    writer: &mut FrameWriter,
    replies: &impl Replies,
    parked: &mut Option<Parked>,
) -> Result<Flow> {
    if parked.is_some() {
        let mut ran = run_parked(state, ctx, writer, parked)?;
        if ran.is_none() && cancel_arrived(input, reader, parked)? {
            // Its caller left: the call gives up, and its error answer
            // goes where answers to calls nobody awaits go.
            if let Some(peer) = ctx.peer() {
                peer.cancelled.store(true, Ordering::Release);
                let again = run_parked(state, ctx, writer, parked);
                peer.cancelled.store(false, Ordering::Release);
                ran = again?;
            }
        }
        match ran {
            None => return Ok(Flow::Parked),
            Some(shutdown) => {
                replies.queue(writer.frame(), ctx.take_undo())?;
                if shutdown {
                    state.stop();
                    return Ok(Flow::Ended(Ended::Shutdown));
                }
            }
        }
    }
    // The object called last, for this round only (see `Recent`).
    let mut recent = Recent::default();
    // Counted once per round, not once per call: a shared counter.
    let mut calls = Counted {
        total: &state.calls,
        here: 0,
    };
    loop {
        if replies.is_backlogged() {
            return Ok(Flow::Backlogged);
        }
        if input.drained() && reader.buffered() == 0 {
            return Ok(Flow::Drained);
        }
        let (body, blob) = match reader.next_with_blob(input) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(Flow::Ended(Ended::Closed)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(Flow::Drained),
            Err(e) => return Err(read_error(e)),
        };
        match Command::parse(body, blob)? {
            Command::Call(call) => {
                let shutdown = call.is_shutdown();
                let seq = call.seq;
                let peer = ctx.peer();
                if let Some(peer) = peer {
                    peer.prepare(call.may_park(), None);
                }
                calls.here += 1;
                call.apply(state, ctx, writer, &mut recent)?;
                if let Some(wait) = peer.and_then(|p| p.parked()) {
                    state.blocked.fetch_add(1, Ordering::Relaxed);
                    *parked = Some(Parked {
                        body: body.to_vec(),
                        seq,
                        wait,
                    });
                    return Ok(Flow::Parked);
                }
                replies.queue(writer.frame(), ctx.take_undo())?;
                if shutdown {
                    state.stop();
                    return Ok(Flow::Ended(Ended::Shutdown));
                }
            }
            Command::Release { object } => state.table.release(ctx.session, object),
            Command::Goodbye { session } => return Ok(Flow::Ended(Ended::Goodbye { session })),
            Command::Cancel => {}
        }
    }
}

/// Whether the next request is the cancel of the parked call, which it then
/// takes; any other request stays unread until the parked call is over.
fn cancel_arrived(
    input: &mut impl Input,
    reader: &mut FrameReader,
    parked: &Option<Parked>,
) -> Result<bool> {
    let Some(p) = parked else { return Ok(false) };
    let next = match reader.peek_short(input, CANCEL_MAX) {
        Ok(next) => next,
        Err(e) => return Err(read_error(e)),
    };
    let is_cancel = next.is_some_and(|body| {
        matches!(
            Request::decode(body),
            Ok((Request::Cancel { seq }, rest)) if seq == p.seq && rest.is_empty()
        )
    });
    if is_cancel {
        reader.skip_peeked();
    }
    Ok(is_cancel)
}

/// A cancel's frame is no longer than this.
const CANCEL_MAX: usize = 16;

/// Calls run, added to the manager's count when a round of requests ends.
struct Counted<'a> {
    total: &'a AtomicU64,
    here: u64,
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if self.here > 0 {
            self.total.fetch_add(self.here, Ordering::Relaxed);
        }
    }
}

/// Runs the parked call again: `None` if it still waits, else whether it
/// was the shutdown, with its reply in `writer`.
fn run_parked(
    state: &ServerState,
    ctx: &Context,
    writer: &mut FrameWriter,
    parked: &mut Option<Parked>,
) -> Result<Option<bool>> {
    let (Some(p), Some(peer)) = (parked.take(), ctx.peer()) else {
        return Ok(Some(false));
    };
    let ran = match Command::parse(&p.body, None) {
        Ok(Command::Call(call)) => {
            let shutdown = call.is_shutdown();
            peer.prepare(true, Some(p.wait));
            state.calls.fetch_add(1, Ordering::Relaxed);
            let ran = call
                .apply(state, ctx, writer, &mut Recent::default())
                .map(|()| shutdown);
            match peer.parked() {
                Some(wait) if ran.is_ok() => {
                    *parked = Some(Parked {
                        body: p.body,
                        seq: p.seq,
                        wait,
                    });
                    return Ok(None);
                }
                _ => ran,
            }
        }
        Ok(_) => Err(Error::protocol("a parked request that is not a call")),
        Err(e) => Err(e),
    };
    // Over, one way or the other: no longer counted as blocked.
    state.blocked.fetch_sub(1, Ordering::Relaxed);
    ran.map(Some)
}

/// Runs the handshake as far as the bytes that arrived allow: `None` until
/// it is over, then the session the connection joined and the keys if what
/// follows is encrypted.
fn handshake_step(
    state: &ServerState,
    shaking: &mut Shaking,
    conn: u64,
) -> Result<Option<(u64, Option<Keys>)>> {
    let Shaking {
        socket,
        reader,
        writer,
        noise,
        refusal,
    } = shaking;
    loop {
        let mut input = Nonblocking::new(socket, state.config.limits.handshake_timeout);
        let body = match reader.next(&mut input) {
            Ok(Some(body)) => body,
            Ok(None) => {
                return Err(Error::ConnectionLost(
                    "the peer closed the connection during the handshake".into(),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(read_error(e)),
        };
        let Some(noise_state) = noise else {
            let hello: Hello = from_slice(body)?;
            if hello.magic != MAGIC || hello.version != PROTOCOL_VERSION {
                let e = Error::Protocol(format!(
                    "the manager speaks protocol version {PROTOCOL_VERSION}; the client sent \
                     another protocol or version {}",
                    hello.version
                ));
                send(
                    writer,
                    &mut writer_out(socket),
                    &Answer::Refuse(e.to_wire()),
                )?;
                return Err(e);
            }
            if let Some(e) = refusal.take() {
                send(
                    writer,
                    &mut writer_out(socket),
                    &Answer::Refuse(e.to_wire()),
                )?;
                return Err(e);
            }
            *noise = Some(Handshake::responder(&state.config.key, &to_vec(&hello)?)?);
            continue;
        };
        let first: ByteBuf = from_slice(body)?;
        // Nothing but a refusal until the client has proved the key.
        let Some(join) = noise_state.read(&first) else {
            let e = Error::AuthenticationFailed("the manager refused the client's key".into());
            send(
                writer,
                &mut writer_out(socket),
                &Answer::Refuse(e.to_wire()),
            )?;
            return Err(e);
        };
        let admitted =
            from_slice::<Join>(&join).and_then(|join| state.admit(conn, socket.is_tcp(), &join));
        let welcome = match &admitted {
            Ok((session, encrypted)) => Welcome::Accept {
                session: *session,
                connection: conn,
                max_frame: state.config.limits.max_frame as u64,
                encrypted: *encrypted,
            },
            Err(e) => Welcome::Refuse(e.to_wire()),
        };
        let second = noise_state.write(&to_vec(&welcome)?)?;
        let sent = send(
            writer,
            &mut writer_out(socket),
            &Answer::Noise(ByteBuf::from(second)),
        );
        let (session, encrypted) = admitted?;
        let settled = sent.and_then(|()| {
            if reader.buffered() != 0 {
                return Err(Error::protocol(
                    "the client sent bytes before the handshake was over",
                ));
            }
            noise
                .take()
                .ok_or_else(|| Error::protocol("the handshake has no state"))?
                .finish()
        });
        return match settled {
            Ok(keys) => Ok(Some((session, encrypted.then_some(keys)))),
            Err(e) => {
                state.table.leave_session(session);
                state.unregister(conn);
                Err(e)
            }
        };
    }
}

/// Writes a handshake message to a socket that is new and nearly empty:
/// the kernel takes a message this small at once; one it does not take
/// (the peer sent a flood and reads nothing) fails the handshake.
fn writer_out(socket: &Socket) -> impl std::io::Write + '_ {
    struct Out<'a>(&'a Socket);
    impl std::io::Write for Out<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.write_wire(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    Out(socket)
}
