//! Adaptive busy-polling: a short spin on a socket before blocking on it,
//! when the bytes awaited are likely to come within the spin.
//!
//! A blocked read costs a sleep and a wake-up, and on a machine with an
//! idle CPU the wake-up dominates a round trip: the CPU the sleeper ran on
//! has gone idle (on a virtual machine, back to the host) and takes tens of
//! microseconds to come back. A thread that expects bytes soon (a client
//! waiting for its reply, the manager's poller right after it answered)
//! therefore first checks for them without blocking, for a bounded time,
//! and blocks as before only if they have not come.
//!
//! It backs off where it does not pay:
//! - A process that may run on one CPU only never spins: its peer, on the
//!   same CPU, could not answer while it spins. (Checked once per spinner,
//!   from the process's CPU affinity.)
//! - Between checks the spinner yields its CPU, so with more runnable
//!   threads than cores the others run (a yield with nobody waiting
//!   returns at once).
//! - A spin that ends without its bytes (a long method, a client that
//!   thinks between calls, an idle peer) makes the next ones block at once:
//!   after `n` misses in a row, the next `2^n - 1` waits do not spin (at
//!   most 1,023); a spin that catches its bytes starts over.
//! - The budget is learned: four times the average wait of the spins that
//!   caught their bytes, between [`MIN_SPIN`] and [`MAX_SPIN`].
//!
//! [`Client::set_busy_poll`](crate::Client::set_busy_poll) and
//! [`ManagerBuilder::busy_poll`](crate::ManagerBuilder::busy_poll) turn it
//! off.

use std::time::{Duration, Instant};

/// The longest a spin lasts.
pub(crate) const MAX_SPIN: Duration = Duration::from_micros(50);
/// The shortest budget a learned one is given.
pub(crate) const MIN_SPIN: Duration = Duration::from_micros(8);
/// After `n` misses in a row, `2^n - 1` waits are skipped, `n` counted up
/// to this (at most 1,023 skipped).
const MAX_BACKOFF: u32 = 10;

/// One spinner's state: a client link's, or the manager's poller's.
#[derive(Debug)]
pub(crate) struct Spin {
    /// Whether spinning can pay here at all (more than one CPU).
    possible: bool,
    /// The current budget.
    budget: Duration,
    /// Average wait of the spins that caught their bytes, in nanoseconds
    /// (an exponentially weighted mean, 1/8 per sample).
    caught_ns: u64,
    /// Spins in a row that caught nothing.
    misses: u32,
    /// Waits still to block at once.
    skip: u32,
    /// Spins begun, and those that caught their bytes, since creation.
    pub(crate) spun: u64,
    pub(crate) caught: u64,
}

impl Spin {
    /// A spinner with the full budget; one that never spins if this process
    /// may run on one CPU only.
    pub(crate) fn new() -> Spin {
        Spin {
            possible: super::os::cpus_available() > 1,
            budget: MAX_SPIN,
            caught_ns: 0,
            misses: 0,
            skip: 0,
            spun: 0,
            caught: 0,
        }
    }

    /// Checks `ready` until it says so, for at most the budget (and at
    /// most `limit`): whether it did. `false` without a check when this
    /// spinner is backing off or cannot pay; the caller then blocks.
    #[inline]
    pub(crate) fn wait(&mut self, limit: Option<Duration>, ready: impl FnMut() -> bool) -> bool {
        self.take_turn() && self.spin(limit, ready)
    }

    /// Whether this wait may spin: `false` where spinning cannot pay, and
    /// for each wait skipped after misses (counted here). A caller with
    /// more to check before it spins asks this first, then [`Spin::spin`].
    #[inline]
    pub(crate) fn take_turn(&mut self) -> bool {
        if !self.possible {
            return false;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        true
    }

    /// Spins on `ready` for at most the budget (and `limit`), after
    /// [`Spin::take_turn`] said it may: whether `ready` said so.
    pub(crate) fn spin(
        &mut self,
        limit: Option<Duration>,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        let budget = limit.map_or(self.budget, |l| l.min(self.budget));
        if budget.is_zero() {
            // Due now (a timer): no time to spin, and no miss either.
            return false;
        }
        self.spun += 1;
        let start = Instant::now();
        loop {
            if ready() {
                self.caught += 1;
                self.learn(start.elapsed());
                return true;
            }
            if start.elapsed() >= budget {
                self.missed();
                return false;
            }
            std::thread::yield_now();
        }
    }

    fn learn(&mut self, waited: Duration) {
        let ns = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.caught_ns = if self.caught_ns == 0 {
            ns
        } else {
            self.caught_ns - self.caught_ns / 8 + ns / 8
        };
        self.budget =
            Duration::from_nanos(self.caught_ns.saturating_mul(4)).clamp(MIN_SPIN, MAX_SPIN);
        self.misses = 0;
    }

    fn missed(&mut self) {
        self.misses = self.misses.saturating_add(1);
        self.skip = (1u32 << self.misses.min(MAX_BACKOFF)) - 1;
        // The next spin, if it comes, gets the whole budget back: what
        // was learned may have been too tight.
        self.budget = MAX_SPIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spinner() -> Spin {
        Spin {
            possible: true,
            ..Spin::new()
        }
    }

    #[test]
    fn misses_back_off_exponentially_and_a_catch_starts_over() {
        let mut s = spinner();
        let mut checks = 0;
        // Miss once: the next wait blocks at once, the one after spins.
        assert!(!s.wait(Some(Duration::from_micros(1)), || false));
        assert!(!s.wait(None, || {
            checks += 1;
            true
        }));
        assert_eq!(checks, 0, "a wait right after a miss does not spin");
        assert!(s.wait(None, || true));
        // Misses in a row skip 1, 3, 7... waits, up to 1,023.
        for n in 1..=12u32 {
            assert!(!s.wait(Some(Duration::from_nanos(1)), || false));
            let skipped = (0..2000).take_while(|_| !s.wait(None, || true)).count();
            assert_eq!(skipped as u32, (1u32 << n.min(MAX_BACKOFF)) - 1);
            assert!(skipped <= 1023);
            // The catch that ended the skipping started over, so misses
            // count from one again: undo that for the next round.
            s.misses = n;
        }
    }

    #[test]
    fn the_budget_follows_the_waits_caught_within_bounds() {
        let mut s = spinner();
        for _ in 0..64 {
            s.learn(Duration::from_micros(5));
        }
        assert_eq!(s.budget, Duration::from_micros(20));
        for _ in 0..64 {
            s.learn(Duration::from_nanos(100));
        }
        assert_eq!(s.budget, MIN_SPIN);
        for _ in 0..64 {
            s.learn(Duration::from_micros(40));
        }
        assert_eq!(s.budget, MAX_SPIN);
    }

    #[test]
    fn a_spin_stops_at_the_callers_limit_and_reports_a_catch() {
        let mut s = spinner();
        let mut n = 0;
        assert!(s.wait(None, || {
            n += 1;
            n == 3
        }));
        assert_eq!(n, 3);
        assert!(!s.wait(Some(Duration::from_nanos(1)), || false));
        // A limit of zero neither spins nor counts as a miss.
        assert!(!s.wait(Some(Duration::ZERO), || panic!("checked with no time")));
        assert_eq!(s.misses, 1);
    }

    #[test]
    fn one_cpu_never_spins() {
        let mut s = Spin {
            possible: false,
            ..Spin::new()
        };
        assert!(!s.wait(None, || panic!("checked while unable to pay")));
    }
}
