//! Waiting by a strategy: the spin phase (a paced first re-try, tight attempts, an exponential
//! pause ramp, then yields) and the park phase.

use std::time::Instant;

use super::signal::Signal;
use super::strategy::WaitStrategy;
use crate::sync::{spin_hint, yield_now};

/// The most pause instructions between two attempts while spinning.
const MAX_PAUSES: u32 = 64;

/// Attempts with a single pause between them before the exponential ramp starts.
const TIGHT_ATTEMPTS: u32 = 32;

/// Runs `attempt` until it returns `Some`, waiting between tries by `strategy` on `signal`.
/// Returns `None` if `deadline` passed first. `ready` is a cheap read-only check that the attempt
/// may now succeed (it must become true once the awaited change is published). `backlog` reports
/// what the peer has left for the waiter and the ring's capacity; it tunes the pace
/// ([`Signal::paced`]).
///
/// The spin phase first re-tries once after the learned pace ([`Signal::pace`]), then makes
/// [`TIGHT_ATTEMPTS`] attempts one pause apart, then pause-spins through an
/// exponential backoff ramp (127 pauses), without reading the clock (most waits end there). After it, `SpinThenPark` and
/// `SpinThenYield` yield between attempts, so a thread sharing this core (common on 2-vCPU
/// machines) gets to run instead of watching us spin; `Spin` keeps pause-spinning.
pub(crate) fn block_on<R>(
    strategy: WaitStrategy,
    signal: &Signal,
    deadline: Option<Instant>,
    mut attempt: impl FnMut() -> Option<R>,
    ready: &dyn Fn() -> bool,
    backlog: &dyn Fn() -> Option<(usize, usize)>,
) -> Option<R> {
    if let Some(r) = attempt() {
        return Some(r);
    }
    if strategy != WaitStrategy::Park {
        match spin(strategy, signal, deadline, &mut attempt, backlog) {
            Spun::Got(r) => return Some(r),
            Spun::TimedOut => return None,
            Spun::Park => {}
        }
    }
    park(strategy, signal, deadline, &mut attempt, ready)
}

/// How the spin phase of [`block_on`] ended.
enum Spun<R> {
    Got(R),
    TimedOut,
    /// `SpinThenPark` spent its budget: park.
    Park,
}

/// The spin phase of [`block_on`]: the paced first re-try, the tight attempts, the exponential
/// ramp, then (for `SpinThenPark` and `SpinThenYield`) attempts between yields until the spin
/// budget is spent.
fn spin<R>(
    strategy: WaitStrategy,
    signal: &Signal,
    deadline: Option<Instant>,
    attempt: &mut impl FnMut() -> Option<R>,
    backlog: &dyn Fn() -> Option<(usize, usize)>,
) -> Spun<R> {
    if let Some(r) = signal.paced(&mut *attempt, backlog) {
        return Spun::Got(r);
    }
    let budget = signal.budget();
    let mut started: Option<Instant> = None;
    let mut yielding = false;
    // Exponential backoff (1, 2, 4, .. MAX_PAUSES pause instructions between attempts): a
    // waiter that re-reads the peer's index on every pause steals its cache line on every
    // publish and locks both sides into one transfer per message.
    let mut pauses = 1u32;
    let mut attempts = 0u32;
    loop {
        if yielding {
            yield_now();
        } else {
            for _ in 0..pauses {
                spin_hint();
            }
        }
        if let Some(r) = attempt() {
            return Spun::Got(r);
        }
        attempts += 1;
        if strategy == WaitStrategy::Spin {
            // Latency first: one pause between attempts, a clock read only for a deadline.
            if deadline.is_none() || attempts % 64 != 0 {
                continue;
            }
        } else if attempts <= TIGHT_ATTEMPTS {
            // A short tight phase catches a hand-off that is already under way.
            continue;
        } else if pauses < MAX_PAUSES {
            // Then an exponential ramp; neither reads the clock: most waits end here.
            pauses *= 2;
            continue;
        }
        // Each attempt now costs MAX_PAUSES pauses or a yield; a clock read is noise beside it.
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Spun::TimedOut;
        }
        let spent = now - *started.get_or_insert(now);
        if strategy != WaitStrategy::Spin {
            if strategy == WaitStrategy::SpinThenPark && spent >= budget {
                return Spun::Park;
            }
            yielding = true;
        }
    }
}

/// The park phase of [`block_on`] (`SpinThenYield` yields instead): parks on `signal` until
/// `ready`, re-tries, and learns the spin budget from parks that ended in a hand-off.
fn park<R>(
    strategy: WaitStrategy,
    signal: &Signal,
    deadline: Option<Instant>,
    attempt: &mut impl FnMut() -> Option<R>,
    ready: &dyn Fn() -> bool,
) -> Option<R> {
    loop {
        let parked = if strategy == WaitStrategy::SpinThenYield {
            yield_now();
            None
        } else {
            let at = Instant::now();
            signal.park(ready, deadline);
            Some(at)
        };
        if let Some(r) = attempt() {
            // Learn only from a park that ended in a hand-off (not from a timeout or a spurious
            // wake-up, which say nothing about how soon the peer comes back).
            if let (WaitStrategy::SpinThenPark, Some(at)) = (strategy, parked) {
                signal.learn(at.elapsed());
            }
            return Some(r);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
    }
}
