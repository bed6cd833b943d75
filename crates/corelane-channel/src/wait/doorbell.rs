//! The public doorbell: one wake-up source for a thread or task that waits on several.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use super::backoff::block_on;
use super::signal::{Registration, Signal};
use super::strategy::WaitStrategy;

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
    /// Any number of tasks may wait on one doorbell; a ring wakes them all. Dropping the future
    /// before it resolves unregisters its task.
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
            registration: Registration::default(),
        }
    }
}

/// The future of [`Doorbell::ready`].
#[must_use = "a future does nothing unless polled"]
pub struct DoorbellReady<'a> {
    signal: &'a Signal,
    ready: &'a (dyn Fn() -> bool + 'a),
    /// The task's place among the sleepers, once a poll registered it.
    registration: Registration,
}

impl std::fmt::Debug for DoorbellReady<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoorbellReady").finish_non_exhaustive()
    }
}

impl Future for DoorbellReady<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if (this.ready)() {
            // The common case of a busy worker: no lock, nothing registered.
            this.signal.cancel(&mut this.registration);
            return Poll::Ready(());
        }
        this.signal
            .poll_park(cx, this.ready, &mut this.registration)
    }
}

impl Drop for DoorbellReady<'_> {
    fn drop(&mut self) {
        self.signal.cancel(&mut self.registration);
    }
}
