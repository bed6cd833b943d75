//! Wait strategies and the sleeper signal every blocking operation parks on.
//!
//! # Wake-up protocol
//! A [`Signal`] has a state word (a sleeper count and two flags), an epoch under a mutex, and a
//! condvar. A thread that wants to park takes the mutex, raises the count, runs [`heavy_barrier`],
//! re-checks its condition and only then waits. A thread that changed the channel (pushed or
//! popped) runs [`light_barrier`] and reads the word; only when it is non-zero does it go to the
//! slow path, which takes the mutex, zeroes the count, bumps the epoch and notifies if the count
//! is non-zero. So when nobody sleeps, the hot path costs one compiler fence and one load of a
//! read-mostly cache line, and never a lock.
//!
//! The flags make that one load answer every question the hot path has: [`FENCED`] (set for good
//! where [`light_barrier`] alone does not pair with [`heavy_barrier`]) sends every publisher to the
//! slow path, which runs `fence(SeqCst)` and reads the word again; [`STICKY`] (set for good by
//! [`Signal::stick`], when a channel's last receiver is gone) tells a sender that its value may
//! have to be taken back, without a second load of a closed flag per send.
//!
//! A task can wait too ([`Doorbell::ready`]): it registers its `Waker` under the same mutex and is
//! counted in the same sleeper count, so a notify that finds sleepers wakes it as well.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::sync::{
    asymmetric_barriers, fence, heavy_barrier, init_barriers, light_barrier, spin_hint, yield_now,
    AtomicU32, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering,
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
    /// Pause-spin through a short backoff ramp (about a microsecond), then call `yield_now`
    /// between attempts. Never sleeps.
    SpinThenYield,
    /// Spin (a short pause ramp, then `yield_now`) for the wait queue's learned budget, then
    /// park until woken. The budget starts at [`SPIN_BUDGET`] and adapts up to
    /// [`MAX_SPIN_BUDGET`] when parks keep ending sooner than it. Fast hand-offs stay in the
    /// spin phase; a long wait costs no CPU.
    #[default]
    SpinThenPark,
    /// Park at once whenever the operation cannot complete.
    Park,
}

/// How long [`WaitStrategy::SpinThenPark`] spins (and, past a short pause-spin, yields) before
/// parking, at first: long enough to cover a cross-core hand-off (hundreds of nanoseconds) many
/// times over, short enough that an idle thread goes to sleep almost at once.
///
/// The budget adapts per wait queue between this and [`MAX_SPIN_BUDGET`]: a park that ends sooner
/// than the budget (the peer came back almost at once, and paid a futex wake for it) doubles it; a
/// park longer than eight budgets halves it. A busy pipeline with short gaps so stops parking,
/// while an idle thread still parks within [`SPIN_BUDGET`] after a few long sleeps.
pub const SPIN_BUDGET: Duration = Duration::from_micros(20);

/// The most a learned spin budget grows to; see [`SPIN_BUDGET`].
pub const MAX_SPIN_BUDGET: Duration = Duration::from_millis(1);

/// The most pause instructions between two attempts while spinning.
const MAX_PAUSES: u32 = 64;

/// Attempts with a single pause between them before the exponential ramp starts.
const TIGHT_ATTEMPTS: u32 = 32;

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
    /// The task waiting through [`Doorbell::ready`], if any. `Some` exactly while that task is
    /// counted in the state's count: registering raises it, and a notify (which zeroes it) or a
    /// cancellation takes the waker out.
    waker: Option<Waker>,
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
            let task = parked.waker.take();
            drop(parked);
            if let Some(task) = task {
                task.wake();
            }
        }
    }

    /// Registers the task of `cx` as a sleeper unless `ready()` holds once it is counted; the
    /// async twin of [`Signal::park`]. Pending until a notify wakes the task (which then polls
    /// again).
    fn poll_park(&self, cx: &mut Context<'_>, ready: &dyn Fn() -> bool) -> Poll<()> {
        let mut parked = lock(&self.parked);
        match &mut parked.waker {
            // Still counted since an earlier poll (whose barrier ordered the count before its
            // check): a notifier will see the count; only the waker may have changed.
            Some(task) => task.clone_from(cx.waker()),
            None => {
                parked.waker = Some(cx.waker().clone());
                self.state.fetch_add(1, Ordering::Relaxed);
                // Pairs with the notifier's `light_barrier`, as in `park`.
                heavy_barrier();
            }
        }
        if ready() {
            self.unregister(&mut parked);
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Takes a registered task off the sleepers (a dropped or finished [`DoorbellReady`]).
    fn cancel(&self) {
        self.unregister(&mut lock(&self.parked));
    }

    /// Takes the registered task, if a notify has not already, off the sleepers (under the lock).
    fn unregister(&self, parked: &mut Parked) {
        if parked.waker.take().is_some() {
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
    fn paced<R>(
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
    fn budget(&self) -> Duration {
        match self.hints.budget_us.load(Ordering::Relaxed) {
            0 => SPIN_BUDGET,
            us => Duration::from_micros(us.into()),
        }
    }

    /// Adapts the spin budget to a park that lasted `slept`.
    fn learn(&self, slept: Duration) {
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
    fn park(&self, ready: &dyn Fn() -> bool, deadline: Option<Instant>) {
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

/// A wake-up primitive for a thread that waits on several sources at once (for example a worker
/// with an inbox and several lanes): producers [`ring`](Doorbell::ring) it after publishing to any
/// source; the consumer [`wait`](Doorbell::wait)s until its own readiness check holds.
///
/// It uses the channels' protocol: ringing costs a compiler fence and one load when nobody
/// sleeps, and takes a lock only to wake a sleeper.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use corelane_channel::{Doorbell, WaitStrategy};
///
/// let bell = Arc::new(Doorbell::new());
/// let flag = Arc::new(AtomicBool::new(false));
/// let (b, f) = (bell.clone(), flag.clone());
/// let waiter = std::thread::spawn(move || {
///     b.wait(WaitStrategy::SpinThenPark, None, &|| f.load(Ordering::Acquire))
/// });
/// flag.store(true, Ordering::Release);
/// bell.ring();
/// assert!(waiter.join().unwrap());
/// ```
#[derive(Debug, Default)]
pub struct Doorbell {
    pub(crate) signal: Signal,
}

impl Doorbell {
    /// A doorbell nobody waits on yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes the waiter, if any. Call after publishing what its readiness check looks at.
    #[inline]
    pub fn ring(&self) {
        self.signal.notify();
    }

    /// Waits by `strategy` until `ready()` returns true (checked before every sleep and after
    /// every wake-up) or `deadline` passes. Returns whether `ready()` held.
    pub fn wait(
        &self,
        strategy: WaitStrategy,
        deadline: Option<Instant>,
        ready: &dyn Fn() -> bool,
    ) -> bool {
        block_on(
            strategy,
            &self.signal,
            deadline,
            || ready().then_some(()),
            ready,
            &|| None,
        )
        .is_some()
    }

    /// A future that resolves once `ready()` holds: the awaiting task is woken by
    /// [`ring`](Doorbell::ring), like a parked thread. For a thread that runs an event loop (an
    /// executor driving sockets and timers) and must also notice the producers of its queues.
    ///
    /// One task at a time may wait on a doorbell (a second registration replaces the first's
    /// waker). Dropping the future before it resolves unregisters the task.
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use corelane_channel::Doorbell;
    ///
    /// let bell = Arc::new(Doorbell::new());
    /// let flag = Arc::new(AtomicBool::new(false));
    /// let (b, f) = (bell.clone(), flag.clone());
    /// std::thread::spawn(move || {
    ///     f.store(true, Ordering::Release);
    ///     b.ring();
    /// });
    /// let ready = || flag.load(Ordering::Acquire);
    /// futures_executor_block_on(bell.ready(&ready));
    /// assert!(flag.load(Ordering::Acquire));
    /// # fn futures_executor_block_on(f: impl std::future::Future<Output = ()>) {
    /// #     struct Unpark(std::thread::Thread);
    /// #     impl std::task::Wake for Unpark {
    /// #         fn wake(self: Arc<Self>) { self.0.unpark() }
    /// #     }
    /// #     let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     while f.as_mut().poll(&mut cx).is_pending() { std::thread::park() }
    /// # }
    /// ```
    pub fn ready<'a>(&'a self, ready: &'a (dyn Fn() -> bool + 'a)) -> DoorbellReady<'a> {
        DoorbellReady {
            signal: &self.signal,
            ready,
            registered: false,
        }
    }
}

/// The future of [`Doorbell::ready`].
#[must_use = "a future does nothing unless polled"]
pub struct DoorbellReady<'a> {
    signal: &'a Signal,
    ready: &'a (dyn Fn() -> bool + 'a),
    /// Whether a poll registered the task (so resolving or dropping must take it off again).
    registered: bool,
}

impl std::fmt::Debug for DoorbellReady<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoorbellReady").finish_non_exhaustive()
    }
}

impl Future for DoorbellReady<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if (self.ready)() {
            // The common case of a busy worker: no lock, nothing registered.
            if std::mem::take(&mut self.registered) {
                self.signal.cancel();
            }
            return Poll::Ready(());
        }
        self.registered = true;
        let done = self.signal.poll_park(cx, self.ready);
        if done.is_ready() {
            self.registered = false; // `poll_park` took the task off itself
        }
        done
    }
}

impl Drop for DoorbellReady<'_> {
    fn drop(&mut self) {
        if self.registered {
            self.signal.cancel();
        }
    }
}
