//! Wait strategies and the sleeper signal every blocking operation parks on.
//!
//! # Wake-up protocol
//! A [`Signal`] has a sleeper count, a mutex and a condvar. A thread that wants to park takes the
//! mutex, raises the count, runs [`heavy_barrier`], re-checks its condition and only then waits.
//! A thread that changed the channel (pushed or popped) runs [`light_barrier`] and reads the count;
//! only when it is non-zero does it take the mutex and notify. So when nobody sleeps, the hot path
//! costs one compiler fence and one load of a read-mostly cache line, and never a lock.

use std::time::{Duration, Instant};

use crate::sync::{
    heavy_barrier, light_barrier, spin_hint, yield_now, AtomicUsize, Condvar, Mutex, MutexGuard,
    Ordering,
};

/// How a blocked sender or receiver waits for its channel to change.
///
/// Chosen once, at construction ([`Builder::wait_strategy`](crate::Builder::wait_strategy)).
/// A parked thread costs no CPU; a spinning one burns its core and, on machines whose cores are
/// shared (VMs, hyper-threads), can delay the very peer it waits for. Prefer the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum WaitStrategy {
    /// Busy-spin until the operation can complete. Lowest latency; burns a whole core while
    /// waiting. Only for threads pinned to a core of their own.
    Spin,
    /// Spin for [`SPIN_BUDGET`], then call `yield_now` between attempts. Never sleeps.
    SpinThenYield,
    /// Spin for [`SPIN_BUDGET`], then park until woken. Fast hand-offs stay in the spin phase; a
    /// long wait costs no CPU.
    #[default]
    SpinThenPark,
    /// Park at once whenever the operation cannot complete.
    Park,
}

/// How long [`WaitStrategy::SpinThenPark`] and [`WaitStrategy::SpinThenYield`] spin before
/// parking or yielding: long enough to cover a cross-core hand-off (hundreds of nanoseconds) many
/// times over, short enough that an idle thread goes to sleep almost at once.
pub const SPIN_BUDGET: Duration = Duration::from_micros(20);

/// Attempts between two clock reads while spinning.
const SPINS_PER_CLOCK_READ: u32 = 64;

/// Where threads blocked in one direction of a channel sleep.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    /// Threads between "raised the count" and "returned from the condvar". Written by sleepers
    /// (under `lock`), read by notifiers after [`light_barrier`].
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    cond: Condvar,
}

impl Signal {
    /// Wakes every sleeper if there is one. Call after the change the sleepers wait for is
    /// published (its Release store is the one `light_barrier` orders before the count load).
    #[inline]
    pub(crate) fn notify(&self) {
        light_barrier();
        self.notify_after_barrier();
    }

    /// [`Signal::notify`] for a caller that has just run [`light_barrier`] itself.
    #[inline]
    pub(crate) fn notify_after_barrier(&self) {
        // Under loom the SeqCst fence pair is not modeled faithfully, so the model always takes the
        // lock; the skip below is then verified by the Dekker argument in the module docs.
        if cfg!(corelane_loom) || self.sleepers.load(Ordering::Relaxed) != 0 {
            self.notify_all();
        }
    }

    /// Wakes every sleeper unconditionally (disconnection).
    pub(crate) fn notify_all(&self) {
        let _guard = lock(&self.lock);
        self.cond.notify_all();
    }

    /// Parks until notified, `ready()` holds, or `deadline` passes. May return spuriously; the
    /// caller re-tries its operation either way.
    fn park(&self, ready: &dyn Fn() -> bool, deadline: Option<Instant>) {
        let guard = lock(&self.lock);
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        // Pairs with the notifier's `light_barrier`: either the notifier now sees our count, or we
        // now see its publication in `ready()`.
        heavy_barrier();
        if !ready() {
            match deadline {
                None => drop(self.cond.wait(guard).unwrap_or_else(|e| e.into_inner())),
                Some(deadline) => {
                    let now = Instant::now();
                    if now < deadline {
                        drop(wait_timeout(&self.cond, guard, deadline - now));
                    }
                }
            }
        }
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lock(m: &Mutex<()>) -> MutexGuard<'_, ()> {
    // The mutex guards no data, so a poisoned lock is as good as a clean one.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(not(corelane_loom))]
fn wait_timeout<'a>(c: &Condvar, g: MutexGuard<'a, ()>, d: Duration) -> MutexGuard<'a, ()> {
    c.wait_timeout(g, d).unwrap_or_else(|e| e.into_inner()).0
}

#[cfg(corelane_loom)]
fn wait_timeout<'a>(c: &Condvar, g: MutexGuard<'a, ()>, _d: Duration) -> MutexGuard<'a, ()> {
    // loom has no clock: a timed wait is modeled as an untimed one.
    c.wait(g).unwrap_or_else(|e| e.into_inner())
}

/// Runs `attempt` until it returns `Some`, waiting between tries by `strategy` on `signal`.
/// Returns `None` if `deadline` passed first. `ready` is a cheap read-only check that the attempt
/// may now succeed (it must become true once the awaited change is published).
pub(crate) fn block_on<R>(
    strategy: WaitStrategy,
    signal: &Signal,
    deadline: Option<Instant>,
    mut attempt: impl FnMut() -> Option<R>,
    ready: &dyn Fn() -> bool,
) -> Option<R> {
    if let Some(r) = attempt() {
        return Some(r);
    }
    let past = |now: Instant| deadline.is_some_and(|d| now >= d);
    if strategy != WaitStrategy::Park {
        let spin_until = Instant::now() + SPIN_BUDGET;
        let mut spins = 0u32;
        loop {
            spin_hint();
            if let Some(r) = attempt() {
                return Some(r);
            }
            spins = spins.wrapping_add(1);
            if spins % SPINS_PER_CLOCK_READ == 0 {
                let now = Instant::now();
                if past(now) {
                    return None;
                }
                if strategy != WaitStrategy::Spin && now >= spin_until {
                    break;
                }
            }
        }
    }
    loop {
        if strategy == WaitStrategy::SpinThenYield {
            yield_now();
        } else {
            signal.park(ready, deadline);
        }
        if let Some(r) = attempt() {
            return Some(r);
        }
        if past(Instant::now()) {
            return None;
        }
    }
}
