//! The event loop and the threads that run it.
//!
//! A `mio::Poll` (epoll) per CPU the manager may run on (its *shards*, up
//! to [`MAX_SHARDS`]) watches the connections whose id falls to it; the
//! first also watches the listener and keeps the timers. A connection that
//! is idle, or in the handshake, is a registration and a small record
//! ([`Connection`]): no thread. The handshake's deadline is a timer in the
//! loop.
//!
//! **Leader/followers.** The threads of a small pool take turns at the
//! polls, one leader per shard. A leader handles the first event its poll
//! gets itself: it reads the request, runs the method, writes the reply,
//! and polls again. A single client's round trip therefore costs no
//! hand-off between threads, and clients on different shards are served
//! side by side, each next to its own leader: with one poll, two busy
//! clients shared one leader and measured half the calls/s of two
//! managers. Further events of the same poll go to a ready queue, and an
//! idle follower is woken to take them, so that many busy clients use
//! every core.
//!
//! **Blocking methods.** A method may block: a user method that sleeps,
//! waits in `Context::wait_until` or holds its object's lock long, or a
//! built-in wait. The leader cannot know in advance, so a monitor (the
//! thread that called `run`) looks every [`TICK`]: a leader still inside
//! the call it started a tick ago is deposed, and a follower (woken, or
//! started if none is idle) takes over the poll; likewise when ready work
//! waits and nobody takes it. The pool grows this way up to
//! [`MAX_THREADS`], and shrinks back: a follower idle for [`IDLE_EXIT`]
//! ends, down to [`MIN_THREADS`]. When nothing happens, the monitor parks
//! and costs nothing but a wake-up per sweep of expired hand-off holds (at
//! most one a second, [`SWEEP_MAX`]); the first call after a quiet spell
//! wakes it.
//!
//! **Busy-polling.** Before the leader blocks in the poll, it polls without
//! blocking for a short, learned time (`transport::spin`): a client calling
//! in a loop sends its next request within microseconds of its reply, and
//! catching it there saves waking an idle CPU. It backs off where it does
//! not pay, and [`crate::ManagerBuilder::busy_poll`] turns it off.
//!
//! **Parked calls** (see `connection`) hold no thread: [`Reactor::schedule`]
//! puts their connection back on the ready queue when their wait ends,
//! and [`Reactor::wake_at`] keeps their deadlines among the timers.
//!
//! **Out of descriptors.** One descriptor is kept in reserve. When `accept`
//! fails for lack of descriptors, the reserve is given up to accept one
//! connection, which is answered `LimitReached` once its hello arrives, and
//! then restored; the next waiting connection is taken the same way.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::server::connection::{Connection, Outcome, Resumer};
use crate::server::ServerState;
use crate::sync::lock;
use crate::transport::spin::Spin;
use crate::transport::{Listener, Socket};

/// How often the monitor looks for a leader stuck in a call.
pub(crate) const TICK: Duration = Duration::from_millis(2);
/// The pool's threads, at least.
pub(crate) const MIN_THREADS: usize = 2;
/// The pool's threads, at most: the bound on methods blocked at once.
pub(crate) const MAX_THREADS: usize = 4096;
/// A follower idle this long ends, while more than `MIN_THREADS` remain.
pub(crate) const IDLE_EXIT: Duration = Duration::from_secs(10);
/// Quiet ticks after which the monitor parks (waking only to sweep).
const PARK_AFTER: u32 = 50;
/// How often the monitor expires hand-off holds: a quarter of the hand-off
/// timeout, within these bounds.
const SWEEP_MIN: Duration = Duration::from_millis(50);
const SWEEP_MAX: Duration = Duration::from_secs(1);

const WAKER: Token = Token(usize::MAX);
const LISTENER: Token = Token(usize::MAX - 1);

/// Work for a thread of the pool.
enum Job {
    /// A connection's socket is ready (`true`: the peer hung up).
    Ready(Arc<Connection>, bool),
    /// The listener has connections waiting.
    Accept,
    /// A connection's handshake deadline passed.
    Expire(Arc<Connection>),
}

/// At most this many polls, however many CPUs.
pub(crate) const MAX_SHARDS: usize = 8;

/// A shard's leader, as the pool sees it.
#[derive(Default, Clone, Copy)]
struct Lead {
    /// Whether a thread leads: polls, or handles the event it polled.
    leader: bool,
    /// Whether the leader is handling an event now (not polling).
    handling: bool,
    /// Counts depositions: a leader whose epoch changed was deposed.
    epoch: u64,
    /// Handling spans begun: the monitor sees progress by this changing.
    started: u64,
}

/// Who does what in the pool.
#[derive(Default)]
struct Sched {
    ready: VecDeque<Job>,
    /// One per shard.
    leads: Vec<Lead>,
    /// Jobs taken from `ready`: the monitor sees progress by this changing.
    taken: u64,
    /// Followers waiting for work.
    idle: usize,
    threads: usize,
    /// Threads started that have not yet come to take work.
    starting: usize,
    monitor_parked: bool,
    exit: bool,
}

/// The poll, and the spin of whoever polls it.
struct Poller {
    poll: Poll,
    /// `None` when busy-polling is off ([`crate::ManagerBuilder::busy_poll`]).
    spin: Option<Spin>,
}

/// The spin's counts, readable while the poller blocks: spins begun, and
/// those that caught an event.
#[derive(Default)]
struct SpinCounts {
    spun: AtomicU64,
    caught: AtomicU64,
}

/// One poll, with what wakes it and what registers with it.
struct Shard {
    poll: Mutex<Poller>,
    spin_counts: SpinCounts,
    waker: Waker,
    registry: mio::Registry,
}

impl Shard {
    fn new(busy_poll: bool) -> Result<Shard> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        Ok(Shard {
            poll: Mutex::new(Poller {
                poll,
                spin: busy_poll.then(Spin::new),
            }),
            spin_counts: SpinCounts::default(),
            waker,
            registry,
        })
    }
}

/// The manager's event loop.
pub(crate) struct Reactor {
    /// The first also watches the listener and keeps the timers.
    shards: Vec<Shard>,
    /// The pool's threads, at least: one per shard, and [`MIN_THREADS`].
    min_threads: usize,
    listener: Mutex<Option<Listener>>,
    conns: Mutex<FxHashMap<u64, Arc<Connection>>>,
    /// Deadlines (a handshake's, a parked call's), soonest first: how many
    /// timers are set for each connection at each instant. A handshake
    /// that ends in time takes its own out (`Reactor::cancel_timer`), so
    /// that a manager whose peers have all connected reads no clock per
    /// poll; a parked call's stays until it fires (a run with nothing due).
    timers: Mutex<BTreeMap<(Instant, u64), u32>>,
    /// How many `timers` holds: a poll with none skips their lock and
    /// the clock.
    timer_count: AtomicUsize,
    sched: Mutex<Sched>,
    /// Followers wait here.
    follow: Condvar,
    /// The monitor waits here.
    watch: Condvar,
    /// The reserve descriptor (see the module docs).
    spare: Mutex<Option<OwnedFd>>,
    /// The connection that holds the reserve's place, if any.
    refusing: Mutex<Option<u64>>,
    /// Connections wait to be accepted that could not be for lack of
    /// descriptors.
    starved: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Reactor {
    pub(crate) fn new(listener: Listener, busy_poll: bool) -> Result<Arc<Reactor>> {
        // As many polls as CPUs this process may use (its affinity mask).
        let n = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .clamp(1, MAX_SHARDS);
        let shards = (0..n)
            .map(|_| Shard::new(busy_poll))
            .collect::<Result<Vec<_>>>()?;
        listener.set_nonblocking(true)?;
        let fd = listener.raw_fd();
        shards[0]
            .registry
            .register(&mut SourceFd(&fd), LISTENER, Interest::READABLE)?;
        let sched = Sched {
            leads: vec![Lead::default(); n],
            ..Sched::default()
        };
        Ok(Arc::new(Reactor {
            shards,
            min_threads: MIN_THREADS.max(n),
            listener: Mutex::new(Some(listener)),
            conns: Mutex::new(FxHashMap::default()),
            timers: Mutex::new(BTreeMap::new()),
            timer_count: AtomicUsize::new(0),
            sched: Mutex::new(sched),
            follow: Condvar::new(),
            watch: Condvar::new(),
            spare: Mutex::new(reserve()),
            refusing: Mutex::new(None),
            starved: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        }))
    }

    /// Starts the pool, and watches it from this thread until the manager
    /// stops.
    pub(crate) fn serve(self: &Arc<Self>, state: &Arc<ServerState>) {
        for _ in 0..self.min_threads {
            self.spawn(state);
        }
        self.monitor(state);
    }

    /// Ends the pool once nothing is served any more: its threads leave as
    /// soon as they are out of their calls. A thread still inside a method
    /// after `limit` is left to finish on its own.
    pub(crate) fn finish(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut s = lock(&self.sched);
        s.exit = true;
        self.follow.notify_all();
        self.wake_all();
        while s.threads > 0 {
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(
                    threads = s.threads,
                    "worker threads still inside a method at shutdown; not waiting for them"
                );
                break;
            }
            s = self
                .watch
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(s);
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            if t.is_finished() {
                let _ = t.join();
            }
        }
        lock(&self.conns).clear();
    }

    /// The manager stops: no more connections are accepted, every open one
    /// stops reading, and every call waiting is woken to notice.
    pub(crate) fn stop(&self) {
        if let Some(l) = lock(&self.listener).take() {
            let fd = l.raw_fd();
            let _ = self.shards[0].registry.deregister(&mut SourceFd(&fd));
        }
        let conns: Vec<_> = lock(&self.conns).values().cloned().collect();
        for c in conns {
            c.shutdown_read();
        }
        self.watch.notify_all();
        self.wake_all();
    }

    /// Returns every poll.
    fn wake_all(&self) {
        for shard in &self.shards {
            let _ = shard.waker.wake();
        }
    }

    /// How many polls there are.
    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard that watches connection `id`.
    fn shard_of(&self, id: u64) -> usize {
        (id % self.shards.len() as u64) as usize
    }

    /// Every connection still open, closed in both directions (the drain
    /// time is over).
    pub(crate) fn close_all(&self) {
        let conns: Vec<_> = lock(&self.conns).values().cloned().collect();
        for c in conns {
            c.shutdown_read();
            c.wake();
        }
    }

    fn spawn(self: &Arc<Self>, state: &Arc<ServerState>) {
        let (me, st) = (Arc::clone(self), Arc::clone(state));
        let mut s = lock(&self.sched);
        if s.threads >= MAX_THREADS {
            return;
        }
        let n = s.threads;
        let spawned = std::thread::Builder::new()
            .name(format!("manager-worker-{n}"))
            .spawn(move || me.work(&st));
        match spawned {
            Ok(t) => {
                s.threads += 1;
                s.starting += 1;
                drop(s);
                let mut threads = lock(&self.threads);
                threads.retain(|t| !t.is_finished());
                threads.push(t);
            }
            Err(e) => tracing::warn!(error = %e, "cannot start a worker thread"),
        }
    }

    /// A thread of the pool.
    fn work(self: &Arc<Self>, state: &Arc<ServerState>) {
        let mut events = Events::with_capacity(256);
        let mut jobs = Vec::with_capacity(256);
        // The shard this thread leads, if it does.
        let mut leading: Option<usize> = None;
        let mut s = lock(&self.sched);
        s.starting -= 1;
        loop {
            if s.exit {
                s.threads -= 1;
                self.watch.notify_all();
                return;
            }
            if let Some(k) = leading.or_else(|| s.leads.iter().position(|l| !l.leader)) {
                s.leads[k].leader = true;
                leading = Some(k);
                let mut polled = None;
                if s.ready.is_empty() {
                    drop(s);
                    self.poll_once(k, &mut events, &mut jobs);
                    s = lock(&self.sched);
                    // The first job found is this thread's (the queue was
                    // empty); the common poll finds one, and it skips the
                    // queue (`VecDeque::extend` costs ~80 instructions).
                    let mut found = jobs.drain(..);
                    polled = found.next();
                    for job in found {
                        s.ready.push_back(job);
                    }
                }
                let Some(job) = polled.or_else(|| s.ready.pop_front()) else {
                    continue;
                };
                // The leader handles this one itself; others go to followers.
                s.taken += 1;
                let lead = &mut s.leads[k];
                lead.handling = true;
                lead.started += 1;
                let epoch = lead.epoch;
                self.share(&mut s);
                drop(s);
                self.run_job(state, job);
                s = lock(&self.sched);
                if s.leads[k].epoch == epoch {
                    s.leads[k].handling = false;
                } else {
                    // Deposed while in the call: another thread leads now.
                    leading = None;
                }
                continue;
            }
            if let Some(job) = s.ready.pop_front() {
                s.taken += 1;
                self.share(&mut s);
                drop(s);
                self.run_job(state, job);
                s = lock(&self.sched);
                continue;
            }
            s.idle += 1;
            let (guard, waited) = self
                .follow
                .wait_timeout(s, IDLE_EXIT)
                .unwrap_or_else(PoisonError::into_inner);
            s = guard;
            s.idle -= 1;
            if waited.timed_out() && s.ready.is_empty() && !s.exit && s.threads > self.min_threads {
                s.threads -= 1;
                self.watch.notify_all();
                return;
            }
        }
    }

    /// Wakes a follower for work left in the ready queue, and the monitor
    /// if it sleeps.
    fn share(&self, s: &mut Sched) {
        if !s.ready.is_empty() && s.idle > 0 {
            self.follow.notify_one();
        }
        if s.monitor_parked {
            s.monitor_parked = false;
            self.watch.notify_one();
        }
    }

    /// Polls shard `k` once (the first until the next timer at the
    /// latest), adding the jobs it finds to `jobs`.
    fn poll_once(&self, k: usize, events: &mut Events, jobs: &mut Vec<Job>) {
        let shard = &self.shards[k];
        let timers = k == 0;
        let timeout = if !timers || self.timer_count.load(Ordering::Acquire) == 0 {
            None
        } else {
            lock(&self.timers)
                .first_key_value()
                .map(|(&(at, _), _)| at.saturating_duration_since(Instant::now()))
        };
        {
            let mut guard = lock(&shard.poll);
            let Poller { poll, spin } = &mut *guard;
            // Busy-polling (`transport::spin`): right after an answer, the
            // next request is likely to come within microseconds.
            let caught = spin.as_mut().is_some_and(|spin| {
                let caught = spin.wait(timeout, || {
                    poll.poll(events, Some(Duration::ZERO)).is_ok() && !events.is_empty()
                });
                let counts = &shard.spin_counts;
                counts.spun.store(spin.spun, Ordering::Relaxed);
                counts.caught.store(spin.caught, Ordering::Relaxed);
                caught
            });
            if !caught {
                if let Err(e) = poll.poll(events, timeout) {
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        tracing::warn!(error = %e, "polling failed");
                    }
                    return;
                }
            }
        }
        {
            let conns = lock(&self.conns);
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    LISTENER => jobs.push(Job::Accept),
                    Token(id) => {
                        if let Some(c) = conns.get(&(id as u64)) {
                            let hung_up = ev.is_read_closed() || ev.is_error();
                            jobs.push(Job::Ready(Arc::clone(c), hung_up));
                        }
                    }
                }
            }
        }
        // A timer set during the poll woke it (`wake_at`), so it is seen here.
        if !timers || self.timer_count.load(Ordering::Acquire) == 0 {
            return;
        }
        let now = Instant::now();
        let mut timers = lock(&self.timers);
        while let Some((&(at, id), _)) = timers.first_key_value() {
            if at > now {
                break;
            }
            timers.pop_first();
            if let Some(c) = lock(&self.conns).get(&id) {
                jobs.push(Job::Expire(Arc::clone(c)));
            }
        }
        self.timer_count.store(timers.len(), Ordering::Release);
    }

    /// Spins of the pollers begun, and those that caught an event.
    pub(crate) fn spin_counts(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(spun, caught), shard| {
            let c = &shard.spin_counts;
            (
                spun + c.spun.load(Ordering::Relaxed),
                caught + c.caught.load(Ordering::Relaxed),
            )
        })
    }

    /// Adds a timer for connection `id` at `at`.
    fn add_timer(&self, at: Instant, id: u64) {
        let mut timers = lock(&self.timers);
        *timers.entry((at, id)).or_insert(0) += 1;
        self.timer_count.store(timers.len(), Ordering::Release);
    }

    /// Takes out one timer for connection `id` at `at`, if set.
    pub(crate) fn cancel_timer(&self, at: Instant, id: u64) {
        let mut timers = lock(&self.timers);
        if let std::collections::btree_map::Entry::Occupied(mut e) = timers.entry((at, id)) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
        self.timer_count.store(timers.len(), Ordering::Release);
    }

    fn run_job(self: &Arc<Self>, state: &Arc<ServerState>, job: Job) {
        match job {
            Job::Ready(c, hung_up) => {
                if let Outcome::Closed = c.ready(state, hung_up) {
                    self.forget(state, &c);
                }
            }
            Job::Expire(c) => {
                if let Outcome::Closed = c.expire(state) {
                    self.forget(state, &c);
                }
            }
            Job::Accept => self.accept(state),
        }
    }

    /// A connection closed.
    fn forget(self: &Arc<Self>, state: &Arc<ServerState>, c: &Connection) {
        lock(&self.conns).remove(&c.id);
        let mut refusing = lock(&self.refusing);
        if *refusing == Some(c.id) {
            *refusing = None;
            *lock(&self.spare) = reserve();
            self.starved.store(true, Ordering::Release);
        }
        drop(refusing);
        if self.starved.swap(false, Ordering::AcqRel) {
            // A descriptor is free: take the connections that waited.
            self.accept(state);
        }
    }

    /// Accepts every connection waiting.
    fn accept(self: &Arc<Self>, state: &Arc<ServerState>) {
        loop {
            let accepted = match &*lock(&self.listener) {
                Some(l) => l.accept(),
                None => return,
            };
            match accepted {
                Ok(socket) => self.admit(state, socket, None),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    self.refuse_one(state);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    self.starved.store(true, Ordering::Release);
                    return;
                }
            }
        }
    }

    /// Out of descriptors: gives up the reserve to take one connection and
    /// tell it so. The others wait until a descriptor is free.
    fn refuse_one(self: &Arc<Self>, state: &Arc<ServerState>) {
        self.starved.store(true, Ordering::Release);
        let mut refusing = lock(&self.refusing);
        if refusing.is_some() {
            return;
        }
        let Some(spare) = lock(&self.spare).take() else {
            return;
        };
        drop(spare);
        let accepted = match &*lock(&self.listener) {
            Some(l) => l.accept(),
            None => return,
        };
        let limit = open_file_limit();
        tracing::warn!(
            limit,
            "out of file descriptors: refusing a connection (raise RLIMIT_NOFILE, or lower \
             max_connections)"
        );
        match accepted {
            Ok(socket) => {
                let id = state.new_connection_id();
                *refusing = Some(id);
                drop(refusing);
                let why = Error::LimitReached(format!(
                    "the manager has no file descriptor left for another connection (its \
                     limit is {limit}); try again later"
                ));
                self.register(state, id, socket, Some(why));
            }
            Err(_) => *lock(&self.spare) = reserve(),
        }
    }

    /// Takes a new connection into the loop.
    fn admit(self: &Arc<Self>, state: &Arc<ServerState>, socket: Socket, refusal: Option<Error>) {
        let id = state.new_connection_id();
        self.register(state, id, socket, refusal);
    }

    fn register(
        self: &Arc<Self>,
        state: &Arc<ServerState>,
        id: u64,
        socket: Socket,
        refusal: Option<Error>,
    ) {
        if let Err(e) = socket.set_nonblocking(true) {
            tracing::debug!(error = %e, "cannot make a connection non-blocking");
            return;
        }
        if let Err(e) = socket.detect_silence(state.config.limits.dead_peer_timeout) {
            tracing::debug!(error = %e, "cannot enable keepalive on a connection");
        }
        // Bound what unauthenticated peers can hold: past the limit a
        // connection is closed before a byte of it is read.
        if !state.begin_handshake() {
            tracing::warn!(peer = %socket.peer(), "too many connections in the handshake; closing one");
            socket.shutdown();
            return;
        }
        let reactor = Arc::downgrade(self);
        let conn = Arc::new_cyclic(|me| {
            let resumer = Resumer::new(me.clone(), reactor);
            Connection::new(id, socket, state, refusal, resumer)
        });
        let Some(fd) = conn.raw_fd() else {
            state.handshake_done();
            return;
        };
        lock(&self.conns).insert(id, Arc::clone(&conn));
        self.add_timer(conn.deadline, id);
        // Room to write is watched only while replies wait (see
        // `Connection::watch_writes`).
        let registered = self.shards[self.shard_of(id)].registry.register(
            &mut SourceFd(&fd),
            Token(id as usize),
            Interest::READABLE,
        );
        if let Err(e) = registered {
            tracing::warn!(error = %e, "cannot watch a connection");
            lock(&self.conns).remove(&id);
            state.handshake_done();
            return;
        }
        // The first poll waits for the soonest timer; this one may be sooner.
        let _ = self.shards[0].waker.wake();
    }

    /// Watches connection `id` (descriptor `fd`) for room to write as
    /// well as for requests (`writes`), or for requests only. A socket
    /// with room already reports it at once.
    pub(crate) fn watch(
        &self,
        id: u64,
        fd: std::os::fd::RawFd,
        writes: bool,
    ) -> std::io::Result<()> {
        let interest = if writes {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        self.shards[self.shard_of(id)].registry.reregister(
            &mut SourceFd(&fd),
            Token(id as usize),
            interest,
        )
    }

    /// Runs `conn` soon: a call of it parked may be done waiting.
    pub(crate) fn schedule(&self, conn: Arc<Connection>) {
        let own = self.shard_of(conn.id);
        let mut s = lock(&self.sched);
        s.ready.push_back(Job::Ready(conn, false));
        if s.idle > 0 {
            self.follow.notify_one();
        } else {
            // Everyone is busy or polling: a poll returns for it, one whose
            // leader is polling now if there is one.
            let k = s
                .leads
                .iter()
                .position(|l| l.leader && !l.handling)
                .unwrap_or(own);
            let _ = self.shards[k].waker.wake();
        }
        if s.monitor_parked {
            s.monitor_parked = false;
            self.watch.notify_one();
        }
    }

    /// Runs connection `id` at `at` (a parked call's deadline).
    pub(crate) fn wake_at(&self, at: Instant, id: u64) {
        self.add_timer(at, id);
        let _ = self.shards[0].waker.wake();
    }

    /// The monitor (see the module docs), until the manager stops.
    fn monitor(self: &Arc<Self>, state: &Arc<ServerState>) {
        // Hand-off holds and grace periods expire on the monitor's watch,
        // with no thread of their own.
        let period = (state.config.limits.handoff_timeout / 4).clamp(SWEEP_MIN, SWEEP_MAX);
        let mut next_sweep = Instant::now() + period;
        let sweep = |next: &mut Instant| {
            let now = Instant::now();
            state.expire(now);
            *next = now + period;
        };
        let mut s = lock(&self.sched);
        // Each lead's `started` a tick ago (no allocation per tick: the
        // manager's steady state allocates nothing).
        let mut started: Vec<u64> = s.leads.iter().map(|l| l.started).collect();
        let note = |started: &mut Vec<u64>, s: &Sched| {
            for (b, l) in started.iter_mut().zip(&s.leads) {
                *b = l.started;
            }
        };
        let (mut taken, mut quiet) = (s.taken, 0u32);
        loop {
            if state.is_stopping() {
                return;
            }
            s = self
                .watch
                .wait_timeout(s, TICK)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            if state.is_stopping() {
                return;
            }
            for (lead, &before) in s.leads.iter_mut().zip(&started) {
                if lead.handling && lead.started == before {
                    lead.leader = false;
                    lead.handling = false;
                    lead.epoch += 1;
                }
            }
            // A follower for each poll without a leader (its leader was
            // deposed, now or a tick ago and nobody came), and for work
            // nobody takes; started where none is idle.
            let leaderless = s.leads.iter().filter(|l| !l.leader).count();
            let stuck_ready = !s.ready.is_empty() && s.taken == taken && s.idle == 0;
            let wanted = leaderless + usize::from(stuck_ready);
            let woken = wanted.min(s.idle);
            for _ in 0..woken {
                self.follow.notify_one();
            }
            let more = wanted - woken;
            if more > s.starting {
                let more = more - s.starting;
                drop(s);
                for _ in 0..more {
                    self.spawn(state);
                }
                s = lock(&self.sched);
            }
            let progress = s.leads.iter().zip(&started).any(|(l, &b)| l.started != b);
            if progress || s.leads.iter().any(|l| l.handling) || !s.ready.is_empty() {
                quiet = 0;
            } else {
                quiet += 1;
            }
            note(&mut started, &s);
            taken = s.taken;
            if Instant::now() >= next_sweep {
                drop(s);
                sweep(&mut next_sweep);
                s = lock(&self.sched);
            }
            if quiet >= PARK_AFTER {
                quiet = 0;
                s.monitor_parked = true;
                while s.monitor_parked && !state.is_stopping() {
                    let now = Instant::now();
                    if now >= next_sweep {
                        drop(s);
                        sweep(&mut next_sweep);
                        s = lock(&self.sched);
                        continue;
                    }
                    s = self
                        .watch
                        .wait_timeout(s, next_sweep - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                s.monitor_parked = false;
                note(&mut started, &s);
                taken = s.taken;
            }
        }
    }
}

/// A descriptor held in reserve, for refusing a connection cleanly when
/// none is left.
fn reserve() -> Option<OwnedFd> {
    std::fs::File::open("/dev/null").ok().map(OwnedFd::from)
}

/// This process's soft limit on open descriptors.
pub(crate) fn open_file_limit() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `l` is valid for writes.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
        return 0;
    }
    l.rlim_cur
}

/// Raises the soft limit on open descriptors to the hard limit, so the
/// manager can hold as many connections as the system lets it; says so.
pub(crate) fn raise_open_file_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `l` is valid for reads and writes.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 || l.rlim_cur >= l.rlim_max {
            return;
        }
        let from = l.rlim_cur;
        l.rlim_cur = l.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &l) == 0 {
            tracing::info!(
                from,
                to = l.rlim_max,
                "raised the open-file limit (RLIMIT_NOFILE) to its hard limit"
            );
        }
    }
}
