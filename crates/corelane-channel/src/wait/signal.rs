//! The signal sleepers park on (see the wake-up protocol in the parent module).

use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::strategy::{MAX_SPIN_BUDGET, SPIN_BUDGET};
use crate::sync::{
    asymmetric_barriers, fence, heavy_barrier, init_barriers, light_barrier, spin_hint, AtomicU32,
    AtomicUsize, Condvar, Mutex, MutexGuard, Ordering,
};

/// The longest learned delay (in pause instructions) before a waiter's first re-try; see
/// [`Signal::pace`]. Under loom a pause is a scheduler yield, so the model keeps it at 1.
const MAX_PACE: u32 = if cfg!(corelane_loom) { 1 } else { 256 };

/// Where threads blocked in one direction of a channel sleep.
#[derive(Debug)]
pub(crate) struct Signal {
    /// In the bits of [`COUNT`]: threads parked (or about to park) that no notify has reached
    /// yet. Raised by a sleeper under `parked`'s lock; reset to 0 by a notifier under the same
    /// lock (an RMW that keeps the flags); read without the lock by notifiers after
    /// [`light_barrier`]. Resetting it means one notify per park, not one per message while the
    /// woken thread is still being scheduled. Plus the flags [`FENCED`] (set at construction)
    /// and [`STICKY`] (set by [`Signal::stick`], by an RMW outside the lock); neither is ever
    /// cleared.
    state: AtomicUsize,
    /// The waiters' learned pacing, on a line of its own: waiters store to it while they stream,
    /// and the notifiers' hot-path load of `state` must not miss on their account.
    hints: CachePadded<Hints>,
    /// The epoch and the registered task; see [`Parked`].
    parked: Mutex<Parked>,
    cond: Condvar,
}

/// [`Signal::state`] flag: this process has no asymmetric barriers, so a notifier must run
/// `fence(SeqCst)` and read the state again before trusting it. Set at construction, never
/// cleared (so every notify takes the slow path, as the fence requires).
const FENCED: usize = 1 << (usize::BITS - 1);
/// [`Signal::state`] flag set by [`Signal::stick`]; [`Signal::notify`] reports it.
const STICKY: usize = 1 << (usize::BITS - 2);
/// The bits of [`Signal::state`] that count sleepers.
const COUNT: usize = STICKY - 1;

impl Default for Signal {
    fn default() -> Self {
        Self::new()
    }
}

/// A waiter's learned pacing ([`Signal::paced`], [`Signal::budget`]); read and written only by
/// the threads that wait on the signal, on their slow path.
#[derive(Debug)]
struct Hints {
    /// Pauses a waiter spends before its first re-try: doubled (up to [`MAX_PACE`]) each time
    /// that first re-try succeeds while little was waiting, halved when more than half the ring
    /// was ([`Signal::paced`]), reset to 1 when the re-try fails. Streaming, where the peer
    /// publishes again within nanoseconds, drives it up: the waiter then stays off the cache
    /// lines the peer is writing and comes back to a batch, instead of pulling every message
    /// across on its own (the near-empty/near-full lockstep of Lamport rings). Request/response
    /// waits are longer than one pause and keep it at 1, so latency is unchanged. Read and written
    /// only by waiters, on their slow path, and stored only when it changes. A hint: racing
    /// waiters may lose an update, which is harmless.
    pace: AtomicU32,
    /// The learned spin budget in microseconds (0 until the first park: [`SPIN_BUDGET`]); see
    /// [`SPIN_BUDGET`]. Written only by waiters after a park, and only when it changes; a hint
    /// like `pace`.
    budget_us: AtomicU32,
}

/// What a [`Signal`]'s mutex guards.
#[derive(Debug, Default)]
struct Parked {
    /// Bumped by every notify that found sleepers; a sleeper whose epoch did not move when it
    /// returns (timeout, spurious wake-up, ready at once) takes itself off the count.
    epoch: u64,
    /// The tasks waiting (through [`Doorbell::ready`](super::Doorbell::ready) or an async send),
    /// each under the id its registration got. A task is in the list exactly while it is counted
    /// in the state's count: registering raises the count, and a notify (which zeroes it) or a
    /// cancellation takes the task out.
    tasks: Vec<(u64, Waker)>,
    /// The id of the next registration.
    next_id: u64,
}

/// A task's place among a signal's sleepers, kept by its future between polls.
#[derive(Debug, Default)]
pub(crate) struct Registration(Option<u64>);

impl Registration {
    /// Whether a poll registered the task (so finishing or dropping must cancel it).
    pub(crate) fn is_registered(&self) -> bool {
        self.0.is_some()
    }
}

impl Signal {
    /// A signal nobody waits on; decides the process's fence pair first if nothing has yet.
    pub(crate) fn new() -> Self {
        init_barriers();
        let flags = if asymmetric_barriers() { 0 } else { FENCED };
        Self {
            state: AtomicUsize::new(flags),
            hints: CachePadded::new(Hints {
                pace: AtomicU32::new(0),
                budget_us: AtomicU32::new(0),
            }),
            parked: Mutex::default(),
            cond: Condvar::default(),
        }
    }

    /// Wakes every sleeper if there is one, and returns whether the signal is stuck
    /// ([`Signal::stick`]). Call after the change the sleepers wait for is published (its store
    /// is the one [`light_barrier`] orders before the state load).
    #[inline(always)]
    pub(crate) fn notify(&self) -> bool {
        light_barrier();
        // Pairs with the `heavy_barrier` of `park`, `poll_park` and the sticker: either they see
        // our publication, or we see their count or flag here.
        match self.state.load(Ordering::Relaxed) {
            0 => false,
            state => self.notify_slow(state),
        }
    }

    /// The part of [`Signal::notify`] for a non-zero state, given the `state` it loaded.
    #[cold]
    #[inline(never)]
    fn notify_slow(&self, mut state: usize) -> bool {
        if state & FENCED != 0 {
            // No asymmetric barriers: the load above may have run before our publication was
            // visible. This fence pairs with the sleeper's (then also a SeqCst fence).
            fence(Ordering::SeqCst);
            state = self.state.load(Ordering::Relaxed);
        }
        // Under loom the SeqCst fence pair is not modeled faithfully, so the model always takes
        // the lock; the skip is then verified by the Dekker argument in the module docs.
        if cfg!(corelane_loom) || state & COUNT != 0 {
            self.notify_all();
        }
        state & STICKY != 0
    }

    /// Sets the sticky flag for good: every later [`Signal::notify`] reports it, and so does any
    /// notify whose state load this call's `heavy_barrier` orders after it. Does not wake anyone.
    pub(crate) fn stick(&self) {
        self.state.fetch_or(STICKY, Ordering::Relaxed);
        // Pairs with the notifiers' `light_barrier` (and their fence, when FENCED).
        heavy_barrier();
    }

    /// Wakes every sleeper (also used unconditionally on disconnection).
    #[cold]
    pub(crate) fn notify_all(&self) {
        let mut parked = lock(&self.parked);
        if self.state.load(Ordering::Relaxed) & COUNT != 0 {
            // An RMW, not a store: `stick` may set its flag meanwhile, outside the lock.
            self.state.fetch_and(!COUNT, Ordering::Relaxed);
            parked.epoch = parked.epoch.wrapping_add(1);
            self.cond.notify_all();
            let tasks = std::mem::take(&mut parked.tasks);
            drop(parked);
            for (_, task) in tasks {
                task.wake();
            }
        }
    }

    /// Registers the task of `cx` as a sleeper unless `ready()` holds once it is counted; the
    /// async twin of [`Signal::park`]. Pending until a notify wakes the task (which then polls
    /// again). Any number of tasks may wait, each with its own `registration`.
    pub(crate) fn poll_park(
        &self,
        cx: &mut Context<'_>,
        ready: &dyn Fn() -> bool,
        registration: &mut Registration,
    ) -> Poll<()> {
        let mut parked = lock(&self.parked);
        let counted = registration
            .0
            .and_then(|id| parked.tasks.iter_mut().find(|(at, _)| *at == id));
        match counted {
            // Still counted since an earlier poll (whose barrier ordered the count before its
            // check): a notifier will see the count; only the waker may have changed.
            Some((_, task)) => task.clone_from(cx.waker()),
            None => {
                let id = parked.next_id;
                parked.next_id = id.wrapping_add(1);
                parked.tasks.push((id, cx.waker().clone()));
                registration.0 = Some(id);
                self.state.fetch_add(1, Ordering::Relaxed);
                // Pairs with the notifier's `light_barrier`, as in `park`.
                heavy_barrier();
            }
        }
        if ready() {
            self.unregister(&mut parked, registration);
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Takes a registered task off the sleepers (a dropped or finished future).
    pub(crate) fn cancel(&self, registration: &mut Registration) {
        if registration.is_registered() {
            self.unregister(&mut lock(&self.parked), registration);
        }
    }

    /// Takes the registered task, if a notify has not already, off the sleepers (under the lock).
    fn unregister(&self, parked: &mut Parked, registration: &mut Registration) {
        let Some(id) = registration.0.take() else {
            return;
        };
        if let Some(at) = parked.tasks.iter().position(|(task, _)| *task == id) {
            parked.tasks.swap_remove(at);
            self.state.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Waits the learned [`Signal::pace`], re-tries once and adapts the pace to the outcome.
    ///
    /// `backlog()` reports, before the re-try, how much the peer left for us (values ready to
    /// receive, or free slots to send into) and the ring's capacity. The pace aims that at a band:
    /// doubled while less than 1/16 of the ring is waiting (we came back too soon: lockstep
    /// territory), halved once more than half is (the peer was about to run dry and wait on us),
    /// kept in between. Without a backlog (a doorbell) it doubles on every successful re-try.
    /// A failed re-try resets it to 1: the peer is not streaming, and latency comes first.
    #[inline]
    pub(super) fn paced<R>(
        &self,
        attempt: &mut impl FnMut() -> Option<R>,
        backlog: &dyn Fn() -> Option<(usize, usize)>,
    ) -> Option<R> {
        let pace = self.hints.pace.load(Ordering::Relaxed).max(1);
        for _ in 0..pace {
            spin_hint();
        }
        let waiting = backlog();
        let result = attempt();
        let next = match (result.is_some(), waiting) {
            (false, _) => 1,
            (true, Some((ready, capacity))) if ready * 2 > capacity => (pace / 2).max(1),
            (true, Some((ready, capacity))) if ready * 16 >= capacity => pace,
            (true, _) => (pace * 2).min(MAX_PACE),
        };
        if next != pace {
            self.hints.pace.store(next, Ordering::Relaxed);
        }
        result
    }

    /// The spin budget to use now.
    pub(super) fn budget(&self) -> Duration {
        match self.hints.budget_us.load(Ordering::Relaxed) {
            0 => SPIN_BUDGET,
            us => Duration::from_micros(us.into()),
        }
    }

    /// Adapts the spin budget to a park that lasted `slept`.
    pub(super) fn learn(&self, slept: Duration) {
        if cfg!(corelane_loom) {
            return; // loom has no clock; keep the model deterministic
        }
        let budget = self.budget();
        let next = if slept < budget {
            (budget * 2).min(MAX_SPIN_BUDGET)
        } else if slept > budget * 8 {
            (budget / 2).max(SPIN_BUDGET)
        } else {
            budget
        };
        if next != budget {
            let us = u32::try_from(next.as_micros()).unwrap_or(u32::MAX);
            self.hints.budget_us.store(us, Ordering::Relaxed);
        }
    }

    /// Parks until notified, `ready()` holds, or `deadline` passes. May return spuriously; the
    /// caller re-tries its operation either way.
    #[cold]
    pub(super) fn park(&self, ready: &dyn Fn() -> bool, deadline: Option<Instant>) {
        let mut parked = lock(&self.parked);
        let parked_at = parked.epoch;
        self.state.fetch_add(1, Ordering::Relaxed);
        // Pairs with the notifier's `light_barrier`: either the notifier now sees our count, or we
        // now see its publication in `ready()`.
        heavy_barrier();
        if !ready() {
            parked = match deadline {
                None => self.cond.wait(parked).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now < deadline {
                        wait_timeout(&self.cond, parked, deadline - now)
                    } else {
                        parked
                    }
                }
            };
        }
        if parked.epoch == parked_at {
            // No notify counted us out; do it ourselves.
            self.state.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The epoch and waker stay consistent under any panic (each is one store), so a poisoned lock
    // is as good as a clean one.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(not(corelane_loom))]
fn wait_timeout<'a>(c: &Condvar, g: MutexGuard<'a, Parked>, d: Duration) -> MutexGuard<'a, Parked> {
    c.wait_timeout(g, d).unwrap_or_else(|e| e.into_inner()).0
}

#[cfg(corelane_loom)]
fn wait_timeout<'a>(
    c: &Condvar,
    g: MutexGuard<'a, Parked>,
    _d: Duration,
) -> MutexGuard<'a, Parked> {
    // loom has no clock: a timed wait is modeled as an untimed one.
    c.wait(g).unwrap_or_else(|e| e.into_inner())
}
