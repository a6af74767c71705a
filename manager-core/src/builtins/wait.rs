//! The one wait core of the blocking built-ins: lock, rlock, semaphore,
//! condition and queue (plain and joinable) all wait here.
//!
//! - [`Waiters`]: the callers waiting for a grant (a permit, a notification,
//!   an item), oldest first. A grant is handed to the oldest waiter, which
//!   owns it from then on: nobody races for it, and a waiter that gives up
//!   once granted passes its grant on.
//! - [`wait_turn`]: how a waiter waits. A call from a connection parks: it
//!   joins the waiters and returns without a reply, holding no thread; the
//!   grant handed to it, its deadline, its caller's hang-up or the
//!   manager's stop runs it again from its request, and it finds its place
//!   by its ticket (see `server::connection::Resume`). A call from this
//!   process, or one that cannot be run again, sleeps in
//!   [`Context::wait_until`] instead.
//! - [`Permits`]: permits with a ledger of what each connection holds, and
//!   the rule of DESIGN §4 for what a connection's end gives back
//!   ([`Policy`]), written once for every primitive.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::builtins::Arg;
use crate::context::{caller_left, Context};
use crate::error::{Error, Result};
use crate::server::connection::{Peer, Resume, Resumer};
use crate::shared::End;
use crate::sync::lock;
use crate::wire::codec::Decoder;

#[cfg(test)]
mod tests;

/// How long a blocking call may wait: not at all (`try_*`), forever (the
/// plain form), or until a deadline (`*_timeout`, decoded from its
/// `Duration`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// Not at all.
    No,
    /// As long as it takes.
    Forever,
    /// Until this instant.
    Until(Instant),
}

impl Wait {
    /// The deadline as [`Context::wait_until`] takes it: `None` for none;
    /// not waiting is a deadline of now.
    pub(crate) fn deadline(self) -> Option<Instant> {
        match self {
            Wait::No => Some(Instant::now()),
            Wait::Forever => None,
            Wait::Until(deadline) => Some(deadline),
        }
    }
}

/// A timeout from now; forever if that is beyond what `Instant` can hold.
impl<'a> Arg<'a> for Wait {
    fn take(args: &mut Decoder<'a>) -> Result<Self> {
        let timeout: Duration = args.take()?;
        Ok(Instant::now()
            .checked_add(timeout)
            .map_or(Wait::Forever, Wait::Until))
    }
}

/// Callers waiting for a grant of type `G`, oldest first.
pub(crate) struct Waiters<G = ()> {
    next_ticket: u64,
    queue: VecDeque<Waiter>,
    /// Grants handed over and not yet taken up, by ticket.
    granted: Vec<(u64, G)>,
}

struct Waiter {
    ticket: u64,
    conn: u64,
    /// What wakes the waiting call.
    wake: Wake,
}

/// How a waiting call is woken.
enum Wake {
    /// Its thread sleeps on this.
    Thread(Arc<Condvar>),
    /// It is parked: its connection runs it again.
    Call(Resumer),
}

impl<G> Default for Waiters<G> {
    fn default() -> Self {
        Waiters {
            next_ticket: 0,
            queue: VecDeque::new(),
            granted: Vec::new(),
        }
    }
}

impl<G> Waiters<G> {
    /// Whether anybody is waiting for a grant.
    pub(crate) fn any(&self) -> bool {
        !self.queue.is_empty()
    }

    /// How many grants were handed over and not yet taken up.
    pub(crate) fn pending(&self) -> usize {
        self.granted.len()
    }

    /// Hands `grant` to the oldest waiter and wakes it: `Ok` with the
    /// waiter's connection, or `Err(grant)` back if nobody waits.
    pub(crate) fn hand_off(&mut self, grant: G) -> std::result::Result<u64, G> {
        let Some(waiter) = self.queue.pop_front() else {
            return Err(grant);
        };
        self.granted.push((waiter.ticket, grant));
        match &waiter.wake {
            Wake::Thread(cv) => cv.notify_one(),
            Wake::Call(resumer) => resumer.resume(),
        }
        Ok(waiter.conn)
    }

    /// Queues a waiter for `conn`, woken by `wake`; its ticket.
    fn join(&mut self, conn: u64, wake: Wake) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket = self.next_ticket.wrapping_add(1);
        self.queue.push_back(Waiter { ticket, conn, wake });
        ticket
    }

    fn is_granted(&self, ticket: u64) -> bool {
        self.granted.iter().any(|(t, _)| *t == ticket)
    }

    /// Waiter `ticket` leaves: with its grant if it has one, else out of
    /// the queue.
    fn leave(&mut self, ticket: u64) -> Option<G> {
        if let Some(i) = self.granted.iter().position(|(t, _)| *t == ticket) {
            return Some(self.granted.swap_remove(i).1);
        }
        self.queue.retain(|w| w.ticket != ticket);
        None
    }
}

/// Waits behind every earlier waiter of `waiters(state)` for a grant, as
/// long as `wait` allows: `None` if the time ran out first. `guard` is
/// `state`, locked, and is returned locked. A grant handed over to a call
/// that gives up anyway (its caller is gone, the manager stops) goes to
/// `pass_on`, so it is not lost.
///
/// # Errors
/// Those of [`Context::wait_until`]: `Error::ConnectionLost`,
/// `Error::ServerShutdown`.
pub(crate) fn wait_turn<'a, S, G>(
    ctx: &Context,
    state: &'a Mutex<S>,
    mut guard: MutexGuard<'a, S>,
    wait: Wait,
    waiters: impl Fn(&mut S) -> &mut Waiters<G>,
    pass_on: impl FnOnce(&mut S, G),
) -> Result<(MutexGuard<'a, S>, Option<G>)> {
    if let Wait::No = wait {
        return Ok((guard, None));
    }
    if let Some(peer) = ctx.peer() {
        if let Some(resume) = peer.parking() {
            return park_turn(ctx, peer, resume, guard, wait, waiters, pass_on);
        }
    }
    let wake = Arc::new(Condvar::new());
    let ticket = waiters(&mut guard).join(ctx.connection_id(), Wake::Thread(Arc::clone(&wake)));
    let waited = ctx.wait_until(guard, &wake, wait.deadline(), |s| {
        waiters(s).is_granted(ticket)
    });
    match waited {
        Ok((mut guard, _)) => match waiters(&mut guard).leave(ticket) {
            // Granted to a caller who left before the loop noticed: the
            // grant goes on, not into the void.
            Some(grant) if ctx.peer_has_left() => {
                pass_on(&mut guard, grant);
                Err(caller_left())
            }
            grant => Ok((guard, grant)),
        },
        Err(e) => {
            let mut guard = lock(state);
            if let Some(grant) = waiters(&mut guard).leave(ticket) {
                pass_on(&mut guard, grant);
            }
            Err(e)
        }
    }
}

/// [`wait_turn`] for a call that parks: on its first run it joins the
/// waiters and parks; run again (`resume`), it takes its grant, gives up
/// (cancelled, passing on a grant that came too late), reports its time
/// out, or parks once more.
fn park_turn<'a, S, G>(
    ctx: &Context,
    peer: &Peer,
    resume: Option<Resume>,
    mut guard: MutexGuard<'a, S>,
    wait: Wait,
    waiters: impl Fn(&mut S) -> &mut Waiters<G>,
    pass_on: impl FnOnce(&mut S, G),
) -> Result<(MutexGuard<'a, S>, Option<G>)> {
    let first = resume.is_none();
    let Resume { ticket, deadline } = match resume {
        Some(r) => r,
        None => Resume {
            ticket: waiters(&mut guard)
                .join(ctx.connection_id(), Wake::Call(peer.resumer().clone())),
            deadline: wait.deadline(),
        },
    };
    let granted = waiters(&mut guard).is_granted(ticket);
    if granted && !peer.has_left() {
        let grant = waiters(&mut guard).leave(ticket);
        return Ok((guard, grant));
    }
    let cancelled = if ctx.server.is_stopping() {
        Some(Error::ServerShutdown)
    } else if granted || peer.is_gone() {
        Some(caller_left())
    } else {
        None
    };
    if let Some(e) = cancelled {
        if let Some(grant) = waiters(&mut guard).leave(ticket) {
            pass_on(&mut guard, grant);
        }
        return Err(e);
    }
    if deadline.is_some_and(|d| Instant::now() >= d) {
        // Not granted (looked at above, under the same lock): it leaves.
        let _ = waiters(&mut guard).leave(ticket);
        return Ok((guard, None));
    }
    peer.park(Resume { ticket, deadline }, first);
    Err(parked())
}

/// What a call that just parked returns: the request loop sees the park
/// and sends no reply, so this error only unwinds the call.
pub(crate) fn parked() -> Error {
    Error::Protocol("the call is parked".into())
}

/// What a connection's permits are, which decides who may give them back
/// and what its end gives back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Policy {
    /// A permit taken is taken: anyone may give one back, and a normal end
    /// leaves it taken (a Lock, a semaphore).
    Counted,
    /// One permit, held in levels by one connection, which alone gives
    /// them back: nobody else could, so any end frees it (an RLock, a
    /// condition's lock).
    Owned,
}

impl Policy {
    /// DESIGN §4: whether what a connection holds goes back when it ends as
    /// `end`. After an abnormal end everything does; after a normal one
    /// only what nobody else could give back.
    pub(crate) fn gives_back(self, end: End) -> bool {
        end == End::Abnormal || self == Policy::Owned
    }
}

/// Why a give-back is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Nothing is out: the lock is free, or a bounded semaphore is full.
    NothingOut,
    /// Another connection holds the owned permit.
    HeldByAnother,
}

/// Permits (a lock's one, a semaphore's many), who holds them, and who
/// waits for one.
pub(crate) struct Permits {
    free: u64,
    /// At most this many are free (a lock: 1, a bounded semaphore: its
    /// initial value); one given back beyond it is dropped.
    limit: Option<u64>,
    policy: Policy,
    /// The ledger, by connection: permits held (`Counted`), or levels of
    /// the one permit (`Owned`), including those handed to a waiter that
    /// has not woken yet.
    held: FxHashMap<u64, u64>,
    waiters: Waiters,
}

impl Permits {
    /// `permits` free, of which at most `limit` may ever be free.
    pub(crate) fn new(permits: u64, limit: Option<u64>, policy: Policy) -> Permits {
        Permits {
            free: permits,
            limit,
            policy,
            held: FxHashMap::default(),
            waiters: Waiters::default(),
        }
    }

    /// Whether `conn` holds a permit.
    pub(crate) fn holds(&self, conn: u64) -> bool {
        self.held.contains_key(&conn)
    }

    /// Takes `levels` for `conn` if it may now: the holder of an owned
    /// permit always may; anyone else takes a free permit if nobody is
    /// waiting ahead.
    fn try_take(&mut self, conn: u64, levels: u64) -> Result<bool> {
        if self.policy == Policy::Owned && self.holds(conn) {
            self.record(conn, levels)?;
            return Ok(true);
        }
        if self.free == 0 || self.waiters.any() {
            return Ok(false);
        }
        self.record(conn, levels)?;
        self.free -= 1;
        Ok(true)
    }

    fn record(&mut self, conn: u64, n: u64) -> Result<()> {
        let held = self.held.entry(conn).or_insert(0);
        *held = held
            .checked_add(n)
            .ok_or_else(|| Error::LimitReached("lock recursion depth".into()))?;
        Ok(())
    }

    /// Takes one off `conn`'s record.
    fn unrecord(&mut self, conn: u64) {
        if let Some(n) = self.held.get_mut(&conn) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(&conn);
            }
        }
    }

    /// How many permits a record of `n` stands for.
    fn permits_in(&self, n: u64) -> u64 {
        match self.policy {
            Policy::Counted => n,
            Policy::Owned => 1,
        }
    }

    /// Gives `n` permits back: to the oldest waiters first, then free, up
    /// to the limit.
    fn give(&mut self, mut n: u64) {
        while n > 0 {
            let Ok(conn) = self.waiters.hand_off(()) else {
                break;
            };
            let held = self.held.entry(conn).or_insert(0);
            *held = held.saturating_add(1);
            n -= 1;
        }
        let free = self.free.saturating_add(n);
        self.free = self.limit.map_or(free, |limit| free.min(limit));
    }

    /// A `release` by `conn`: one level of its owned permit, or, counted,
    /// one permit from its own record or, released on another's behalf
    /// (allowed, as in Python), from anybody's, so a connection that ends
    /// later gives back only what is still out.
    pub(crate) fn release(&mut self, conn: u64) -> std::result::Result<(), Refused> {
        match self.policy {
            Policy::Owned => {
                let Some(levels) = self.held.get_mut(&conn) else {
                    return Err(if self.held.is_empty() {
                        Refused::NothingOut
                    } else {
                        Refused::HeldByAnother
                    });
                };
                *levels -= 1;
                if *levels == 0 {
                    self.held.remove(&conn);
                    self.give(1);
                }
            }
            Policy::Counted => {
                if self.limit.is_some_and(|limit| self.free >= limit) {
                    return Err(Refused::NothingOut);
                }
                let from = if self.holds(conn) {
                    Some(conn)
                } else {
                    self.held.keys().next().copied()
                };
                if let Some(from) = from {
                    self.unrecord(from);
                }
                self.give(1);
            }
        }
        Ok(())
    }

    /// Gives back everything `conn` holds, at once (a condition's `wait`);
    /// its record, `None` if it holds nothing.
    pub(crate) fn put_down(&mut self, conn: u64) -> Option<u64> {
        let n = self.held.remove(&conn)?;
        self.give(self.permits_in(n));
        Some(n)
    }

    /// Connection `conn` ended as `end`: what it holds goes back if the
    /// policy says so, and its record goes either way.
    pub(crate) fn settle(&mut self, conn: u64, end: End) {
        let Some(n) = self.held.remove(&conn) else {
            return;
        };
        if self.policy.gives_back(end) {
            self.give(self.permits_in(n));
        }
    }
}

/// Takes `levels` of `permits(state)` for the calling connection (1, but
/// for a condition taking back the levels its `wait` put down), waiting in
/// turn as `wait` allows; whether it did. `guard` is `state`, locked.
///
/// # Errors
/// Those of [`wait_turn`]; `Error::LimitReached` for levels beyond count.
pub(crate) fn acquire<'a, S>(
    ctx: &Context,
    state: &'a Mutex<S>,
    mut guard: MutexGuard<'a, S>,
    wait: Wait,
    levels: u64,
    permits: impl Fn(&mut S) -> &mut Permits,
) -> Result<(MutexGuard<'a, S>, bool)> {
    let conn = ctx.connection_id();
    // Run again after parking, the call's place is in the queue already.
    if !ctx.is_resuming() && permits(&mut guard).try_take(conn, levels)? {
        return Ok((guard, true));
    }
    let (mut guard, grant) = wait_turn(
        ctx,
        state,
        guard,
        wait,
        |s| &mut permits(s).waiters,
        |s, ()| {
            // Handed over, and not taken up: the next waiter's.
            let p = permits(s);
            p.unrecord(conn);
            p.give(1);
        },
    )?;
    if grant.is_some() && levels > 1 {
        // The hand-over recorded one level.
        permits(&mut guard).record(conn, levels - 1)?;
    }
    Ok((guard, grant.is_some()))
}
