//! `Barrier` (Python's `threading.Barrier` through a manager).

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::builtins::wait::{parked, Wait};
use crate::builtins::{
    async_twin, create, create_async, methods, plain_proxy, proxy_methods, take_usize, Builtin,
};
use crate::client::Client;
use crate::context::{caller_left, Context};
use crate::error::{Error, Result};
use crate::proxy::Handle;
use crate::server::connection::{Peer, Resume, Resumer};
use crate::shared::End;
use crate::sync::lock;
use crate::wire::codec::{Decoder, Encoder};

struct State {
    /// Counts the rounds: a round ends when `parties` callers wait (it
    /// passes) or when the barrier breaks with callers waiting.
    generation: u64,
    /// The connections waiting in this round, in arrival order, with what
    /// runs a parked waiter's call again.
    waiters: Vec<(u64, Option<Resumer>)>,
    /// The arrival index of each parked waiter, kept for its call's next
    /// run.
    arrivals: HashMap<u64, usize>,
    /// Set by `abort`, a timed-out wait or a waiter's disconnection; cleared by `reset`.
    broken: bool,
    /// Rounds that ended broken, with how many of their waiters have not
    /// woken yet to learn it; a round that passed is not recorded.
    broken_rounds: HashMap<u64, usize>,
}

impl State {
    /// Ends the current round as broken: its waiters get `BrokenBarrier`.
    fn break_round(&mut self) {
        if !self.waiters.is_empty() {
            self.broken_rounds
                .insert(self.generation, self.waiters.len());
            self.end_round();
        }
    }

    /// Ends the current round: its parked waiters run again to learn how.
    fn end_round(&mut self) {
        for (_, resumer) in self.waiters.drain(..) {
            if let Some(r) = resumer {
                r.resume();
            }
        }
        self.generation = self.generation.wrapping_add(1);
    }

    /// A waiter of round `generation`, now over, learns how it ended.
    fn outcome(&mut self, generation: u64) -> Result<()> {
        let Some(left) = self.broken_rounds.get_mut(&generation) else {
            return Ok(());
        };
        *left -= 1;
        if *left == 0 {
            self.broken_rounds.remove(&generation);
        }
        Err(Error::BrokenBarrier)
    }

    /// Takes `conn` out of the current round and breaks the barrier: what
    /// happens when one of its waiters times out or goes away.
    fn leave_and_break(&mut self, conn: u64) {
        if let Some(i) = self.waiters.iter().position(|(c, _)| *c == conn) {
            self.waiters.remove(i);
        }
        self.arrivals.remove(&conn);
        self.broken = true;
        self.break_round();
    }
}

pub(crate) struct BarrierObject {
    parties: usize,
    state: Mutex<State>,
    changed: Condvar,
}

methods! {
    /// A barrier's methods, by wire id.
    enum BarrierMethod -> BarrierCall {
        0 Wait => wait "(&self) -> usize",
        1 WaitTimeout(Wait) => wait_timeout "(&self, timeout: Duration) -> usize",
        2 Reset => reset "(&self)",
        3 Abort => abort "(&self)",
        4 Parties => parties "(&self) -> usize",
        5 NWaiting => n_waiting "(&self) -> usize",
        6 IsBroken => is_broken "(&self) -> bool",
    }
}

impl Builtin for BarrierObject {
    const NAME: &'static str = "manager::Barrier";
    type Methods = BarrierMethod;

    fn construct(_ctx: &Context, args: &mut Decoder<'_>) -> Result<Self> {
        let parties = take_usize(args)?;
        if parties == 0 {
            return Err(Error::Protocol("a barrier needs at least one party".into()));
        }
        Ok(BarrierObject {
            parties,
            state: Mutex::new(State {
                generation: 0,
                waiters: Vec::new(),
                arrivals: HashMap::new(),
                broken: false,
                broken_rounds: HashMap::new(),
            }),
            changed: Condvar::new(),
        })
    }

    fn call(&self, ctx: &Context, call: BarrierCall, out: &mut Encoder<'_>) -> Result<()> {
        match call {
            BarrierCall::Wait => out.put(&self.wait(ctx, Wait::Forever)?),
            BarrierCall::WaitTimeout(wait) => out.put(&self.wait(ctx, wait)?),
            BarrierCall::Reset => {
                let mut s = lock(&self.state);
                s.break_round();
                s.broken = false;
                drop(s);
                self.changed.notify_all();
                Ok(())
            }
            BarrierCall::Abort => {
                let mut s = lock(&self.state);
                s.broken = true;
                s.break_round();
                drop(s);
                self.changed.notify_all();
                Ok(())
            }
            BarrierCall::Parties => out.put(&self.parties),
            BarrierCall::NWaiting => out.put(&lock(&self.state).waiters.len()),
            BarrierCall::IsBroken => out.put(&lock(&self.state).broken),
        }
    }

    const TRACKS_CONNECTIONS: bool = true;

    fn disconnected(&self, conn: u64, end: End) {
        self.release_all(conn, end)
    }
}

impl BarrierObject {
    /// Waits for the round to pass; this caller's arrival index. A call
    /// from a connection parks; run again, it learns how its round ended
    /// ([`BarrierObject::resume_wait`]).
    fn wait(&self, ctx: &Context, wait: Wait) -> Result<usize> {
        let conn = ctx.connection_id();
        let mut s = lock(&self.state);
        let parking = ctx.peer().and_then(|p| p.parking().map(|r| (p, r)));
        if let Some((peer, Some(resume))) = parking {
            return self.resume_wait(ctx, peer, s, resume);
        }
        if s.broken {
            return Err(Error::BrokenBarrier);
        }
        let index = s.waiters.len();
        if index + 1 >= self.parties {
            // The last one in: the round passes.
            s.end_round();
            drop(s);
            self.changed.notify_all();
            return Ok(index);
        }
        let generation = s.generation;
        if let Some((peer, None)) = parking {
            s.waiters.push((conn, Some(peer.resumer().clone())));
            s.arrivals.insert(conn, index);
            let deadline = wait.deadline();
            peer.park(
                Resume {
                    ticket: generation,
                    deadline,
                },
                true,
            );
            return Err(parked());
        }
        s.waiters.push((conn, None));
        let waited = ctx.wait_until(s, &self.changed, wait.deadline(), |s| {
            s.generation != generation
        });
        let (mut s, over) = match waited {
            Ok(r) => r,
            Err(e) => {
                // The caller is gone: the others must not wait for it.
                let mut s = lock(&self.state);
                if s.generation == generation {
                    s.leave_and_break(conn);
                    drop(s);
                    self.changed.notify_all();
                } else {
                    let _ = s.outcome(generation);
                }
                return Err(e);
            }
        };
        if !over {
            // A timeout breaks the barrier for everyone, as in Python.
            s.leave_and_break(conn);
            drop(s);
            self.changed.notify_all();
            return Err(Error::BrokenBarrier);
        }
        s.outcome(generation).map(|()| index)
    }

    /// A parked `wait` run again (its ticket is its round): the round's
    /// outcome if it is over; else a time out, a hang-up or the manager's
    /// stop breaks the barrier for the others, as in the blocking form;
    /// else it parks once more.
    fn resume_wait(
        &self,
        ctx: &Context,
        peer: &Peer,
        mut s: std::sync::MutexGuard<'_, State>,
        resume: Resume,
    ) -> Result<usize> {
        let conn = ctx.connection_id();
        let generation = resume.ticket;
        if s.generation != generation {
            let index = s.arrivals.remove(&conn).unwrap_or(0);
            return s.outcome(generation).map(|()| index);
        }
        let cancelled = if ctx.server.is_stopping() {
            Some(Error::ServerShutdown)
        } else if peer.is_gone() {
            Some(caller_left())
        } else if resume.deadline.is_some_and(|d| Instant::now() >= d) {
            Some(Error::BrokenBarrier)
        } else {
            None
        };
        if let Some(e) = cancelled {
            s.leave_and_break(conn);
            drop(s);
            self.changed.notify_all();
            return Err(e);
        }
        peer.park(resume, false);
        Err(parked())
    }

    /// Connection `conn` ended, either way: if it was waiting (its call
    /// could not see it go), the barrier breaks.
    fn release_all(&self, conn: u64, _end: End) {
        let mut s = lock(&self.state);
        if s.waiters.iter().any(|(c, _)| *c == conn) {
            s.leave_and_break(conn);
            drop(s);
            self.changed.notify_all();
        }
    }
}

/// Proxy to a barrier (Python's `threading.Barrier` through a manager), from
/// [`Client::barrier`]. Each `wait` of a generation returns a distinct index
/// in `0..parties`. A waiter whose connection closes breaks the barrier, so
/// the others get `Error::BrokenBarrier` instead of waiting forever.
///
/// ```
/// use std::time::Duration;
/// # fn main() -> manager::Result<()> {
/// let mgr = manager::Manager::builder().spawn_thread()?;
/// let b = mgr.barrier(1)?;
/// assert_eq!(b.wait()?, 0);
/// let two = mgr.barrier(2)?;
/// assert!(matches!(two.wait_timeout(Duration::from_millis(10)), Err(manager::Error::BrokenBarrier)));
/// assert!(two.is_broken()?);
/// two.reset()?;
/// assert_eq!(two.parties()?, 2);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct BarrierProxy {
    handle: Handle,
}

plain_proxy!(BarrierProxy, BarrierObject);

async_twin!(
    /// The async face of [`BarrierProxy`] (DESIGN §2a): the same methods, each
    /// an `async fn` returning the same result; the same object as a
    /// `BarrierProxy` converted with `into()`, both ways.
    AsyncBarrierProxy of BarrierProxy, BarrierObject
);

proxy_methods! {
    impl[] BarrierProxy / AsyncBarrierProxy;

    /// Waits until `parties` callers wait; returns this caller's index
    /// (Python: `barrier.wait()`).
    ///
    /// # Errors
    /// `Error::BrokenBarrier` if the barrier is or becomes broken.
    pub [wait] fn wait(&self) -> usize = |h| { h.call(BarrierMethod::Wait as u32, |_| Ok(())) }

    /// Like [`BarrierProxy::wait`], for at most `timeout`; a timeout breaks
    /// the barrier (Python: `barrier.wait(t)`).
    ///
    /// # Errors
    /// `Error::BrokenBarrier` on timeout or if the barrier is broken.
    pub [wait] fn wait_timeout(&self, timeout: Duration) -> usize = |h| { h.call(BarrierMethod::WaitTimeout as u32, |a| a.put(&timeout)) }

    /// Returns the barrier to its initial state; current waiters get
    /// `BrokenBarrier` (Python: `barrier.reset()`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn reset(&self) -> () = |h| { h.call(BarrierMethod::Reset as u32, |_| Ok(())) }

    /// Breaks the barrier (Python: `barrier.abort()`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn abort(&self) -> () = |h| { h.call(BarrierMethod::Abort as u32, |_| Ok(())) }

    /// How many callers it takes to pass (Python: `barrier.parties`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn parties(&self) -> usize = |h| { h.call(BarrierMethod::Parties as u32, |_| Ok(())) }

    /// How many callers wait now (Python: `barrier.n_waiting`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn n_waiting(&self) -> usize = |h| { h.call(BarrierMethod::NWaiting as u32, |_| Ok(())) }

    /// Whether it is broken (Python: `barrier.broken`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn is_broken(&self) -> bool = |h| { h.call(BarrierMethod::IsBroken as u32, |_| Ok(())) }
}

impl Client {
    /// A new barrier for `parties` callers (Python: `manager.Barrier(parties)`).
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().spawn_thread()?;
    /// let b = mgr.barrier(3)?;
    /// assert_eq!(b.n_waiting()?, 0);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `Error::Protocol` if `parties` is 0; connection errors.
    pub fn barrier(&self, parties: usize) -> Result<BarrierProxy> {
        create::<BarrierProxy>(self, |a| a.put(&(parties as u64)))
    }
}

impl Client {
    /// [`Client::barrier`] through the async face (DESIGN §2a).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn barrier_async(&self, parties: usize) -> Result<AsyncBarrierProxy> {
        create_async::<AsyncBarrierProxy>(self, |a| a.put(&(parties as u64))).await
    }
}
