//! `Barrier` (Python's `threading.Barrier` through a manager).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::builtins::{create, deadline, no_such_method, plain_proxy, Builtin};
use crate::client::Client;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::proxy::Handle;
use crate::server::lock;
use crate::wire::codec::{Decoder, Encoder};

/// How a generation of waiters ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Passed,
    Broken,
}

struct State {
    generation: u64,
    /// Connections waiting in the current generation, in arrival order.
    waiters: Vec<u64>,
    broken: bool,
    /// Recent generations' outcomes, for waiters that wake late.
    outcomes: VecDeque<(u64, Outcome)>,
}

impl State {
    /// Ends the current generation.
    fn finish(&mut self, outcome: Outcome) {
        self.outcomes.push_back((self.generation, outcome));
        if self.outcomes.len() > 64 {
            self.outcomes.pop_front();
        }
        self.generation += 1;
        self.waiters.clear();
    }

    fn outcome(&self, generation: u64) -> Option<Outcome> {
        self.outcomes
            .iter()
            .find(|(g, _)| *g == generation)
            .map(|(_, o)| *o)
    }

    /// Breaks the barrier: every waiter gets `BrokenBarrier`, and so does
    /// every `wait` until `reset`.
    fn break_it(&mut self) {
        self.broken = true;
        if !self.waiters.is_empty() {
            self.finish(Outcome::Broken);
        }
    }
}

pub(crate) struct BarrierObject {
    parties: usize,
    state: Mutex<State>,
    changed: Condvar,
}

mod m {
    pub(super) const WAIT: u32 = 0;
    pub(super) const WAIT_TIMEOUT: u32 = 1;
    pub(super) const RESET: u32 = 2;
    pub(super) const ABORT: u32 = 3;
    pub(super) const PARTIES: u32 = 4;
    pub(super) const N_WAITING: u32 = 5;
    pub(super) const IS_BROKEN: u32 = 6;
}

impl BarrierObject {
    fn wait(&self, ctx: &Context, until: Option<std::time::Instant>) -> Result<usize> {
        let mut s = lock(&self.state);
        if s.broken {
            return Err(Error::BrokenBarrier);
        }
        let index = s.waiters.len();
        s.waiters.push(ctx.connection_id());
        if index + 1 == self.parties {
            s.finish(Outcome::Passed);
            drop(s);
            self.changed.notify_all();
            return Ok(index);
        }
        let generation = s.generation;
        let waited = ctx.wait_until(s, &self.changed, until, |s| s.generation != generation);
        let (mut s, ended) = match waited {
            Ok(r) => r,
            Err(e) => {
                // This waiter's caller is gone: the others must not wait for it.
                let mut s = lock(&self.state);
                if s.generation == generation {
                    s.break_it();
                    drop(s);
                    self.changed.notify_all();
                }
                return Err(e);
            }
        };
        if !ended {
            // A timeout breaks the barrier for everyone, as in Python.
            s.break_it();
            drop(s);
            self.changed.notify_all();
            return Err(Error::BrokenBarrier);
        }
        match s.outcome(generation) {
            Some(Outcome::Passed) => Ok(index),
            _ => Err(Error::BrokenBarrier),
        }
    }
}

impl Builtin for BarrierObject {
    const NAME: &'static str = "manager::Barrier";
    const METHODS: &'static [&'static str] = &[
        "wait",
        "wait_timeout",
        "reset",
        "abort",
        "parties",
        "n_waiting",
        "is_broken",
    ];

    fn construct(_ctx: &Context, args: &mut Decoder<'_>) -> Result<Self> {
        let parties: u64 = args.take()?;
        if parties == 0 {
            return Err(Error::Protocol("a barrier needs at least one party".into()));
        }
        Ok(BarrierObject {
            parties: usize::try_from(parties).unwrap_or(usize::MAX),
            state: Mutex::new(State {
                generation: 0,
                waiters: Vec::new(),
                broken: false,
                outcomes: VecDeque::new(),
            }),
            changed: Condvar::new(),
        })
    }

    fn call(
        &self,
        ctx: &Context,
        method: u32,
        args: &mut Decoder<'_>,
        out: &mut Encoder<'_>,
    ) -> Result<()> {
        match method {
            m::WAIT | m::WAIT_TIMEOUT => {
                let until = if method == m::WAIT_TIMEOUT {
                    deadline(args.take::<Duration>()?)
                } else {
                    None
                };
                args.finish()?;
                let index = self.wait(ctx, until)?;
                out.put(&index)
            }
            m::RESET => {
                args.finish()?;
                let mut s = lock(&self.state);
                if !s.waiters.is_empty() {
                    s.finish(Outcome::Broken);
                }
                s.broken = false;
                drop(s);
                self.changed.notify_all();
                Ok(())
            }
            m::ABORT => {
                args.finish()?;
                lock(&self.state).break_it();
                self.changed.notify_all();
                Ok(())
            }
            m::PARTIES => {
                args.finish()?;
                out.put(&self.parties)
            }
            m::N_WAITING => {
                args.finish()?;
                out.put(&lock(&self.state).waiters.len())
            }
            m::IS_BROKEN => {
                args.finish()?;
                out.put(&lock(&self.state).broken)
            }
            _ => Err(no_such_method::<Self>(method)),
        }
    }

    fn disconnected(&self, conn: u64) {
        let mut s = lock(&self.state);
        if s.waiters.contains(&conn) {
            s.break_it();
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

impl BarrierProxy {
    /// Waits until `parties` callers wait; returns this caller's index
    /// (Python: `barrier.wait()`).
    ///
    /// # Errors
    /// `Error::BrokenBarrier` if the barrier is or becomes broken.
    pub fn wait(&self) -> Result<usize> {
        self.handle.call(m::WAIT, |_| Ok(()))
    }

    /// Like [`BarrierProxy::wait`], for at most `timeout`; a timeout breaks
    /// the barrier (Python: `barrier.wait(t)`).
    ///
    /// # Errors
    /// `Error::BrokenBarrier` on timeout or if the barrier is broken.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        self.handle.call(m::WAIT_TIMEOUT, |a| a.put(&timeout))
    }

    /// Returns the barrier to its initial state; current waiters get
    /// `BrokenBarrier` (Python: `barrier.reset()`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn reset(&self) -> Result<()> {
        self.handle.call(m::RESET, |_| Ok(()))
    }

    /// Breaks the barrier (Python: `barrier.abort()`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn abort(&self) -> Result<()> {
        self.handle.call(m::ABORT, |_| Ok(()))
    }

    /// How many callers it takes to pass (Python: `barrier.parties`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn parties(&self) -> Result<usize> {
        self.handle.call(m::PARTIES, |_| Ok(()))
    }

    /// How many callers wait now (Python: `barrier.n_waiting`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn n_waiting(&self) -> Result<usize> {
        self.handle.call(m::N_WAITING, |_| Ok(()))
    }

    /// Whether it is broken (Python: `barrier.broken`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn is_broken(&self) -> Result<bool> {
        self.handle.call(m::IS_BROKEN, |_| Ok(()))
    }
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
        let handle = create::<BarrierObject>(self, |a| a.put(&(parties as u64)))?;
        Ok(<BarrierProxy as crate::Proxy>::__from_handle(handle))
    }
}
