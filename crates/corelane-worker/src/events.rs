//! Worker events: a listener asks for the kinds it cares about and blocks (or awaits) until one
//! happens, with a timeout and cancellation. Only listeners whose mask holds an event's kind are
//! woken; with no listener for a kind, emitting it costs one relaxed load.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Something that happened to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerEvent {
    /// `init` succeeded; the worker handles messages.
    Started,
    /// The worker paused (messages queue up).
    Paused,
    /// The worker resumed after a pause.
    Resumed,
    /// The worker found nothing to do and is about to wait.
    Idle,
    /// A handler panicked and `init` rebuilt the state; `reason` is the panic's text.
    Restarted {
        /// The panic's text.
        reason: String,
    },
    /// The worker stopped on its own (panics past the restart policy, a failed `init`) or missed
    /// its stop deadline; no event follows.
    Failed {
        /// Why.
        reason: String,
    },
    /// The worker stopped gracefully; no event follows.
    Stopped,
}

impl WorkerEvent {
    /// The event's kind, as a one-kind mask.
    pub fn kind(&self) -> EventMask {
        match self {
            Self::Started => EventMask::STARTED,
            Self::Paused => EventMask::PAUSED,
            Self::Resumed => EventMask::RESUMED,
            Self::Idle => EventMask::IDLE,
            Self::Restarted { .. } => EventMask::RESTARTED,
            Self::Failed { .. } => EventMask::FAILED,
            Self::Stopped => EventMask::STOPPED,
        }
    }
}

/// A set of [`WorkerEvent`] kinds, combined with `|`.
///
/// # Examples
/// ```
/// use corelane_worker::EventMask;
/// let ends = EventMask::STOPPED | EventMask::FAILED;
/// assert!(ends.contains(EventMask::FAILED) && !ends.contains(EventMask::IDLE));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EventMask(u8);

impl EventMask {
    /// No kind.
    pub const NONE: Self = Self(0);
    /// [`WorkerEvent::Started`].
    pub const STARTED: Self = Self(1);
    /// [`WorkerEvent::Paused`].
    pub const PAUSED: Self = Self(1 << 1);
    /// [`WorkerEvent::Resumed`].
    pub const RESUMED: Self = Self(1 << 2);
    /// [`WorkerEvent::Idle`].
    pub const IDLE: Self = Self(1 << 3);
    /// [`WorkerEvent::Restarted`].
    pub const RESTARTED: Self = Self(1 << 4);
    /// [`WorkerEvent::Failed`].
    pub const FAILED: Self = Self(1 << 5);
    /// [`WorkerEvent::Stopped`].
    pub const STOPPED: Self = Self(1 << 6);
    /// Every kind.
    pub const ALL: Self = Self((1 << 7) - 1);

    /// Whether every kind of `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether `self` and `other` share a kind.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for EventMask {
    type Output = Self;
    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// Why a wait for an event ended without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The timeout passed first.
    #[error("no event came before the timeout")]
    TimedOut,
    /// [`EventCanceler::cancel`] was called.
    #[error("the wait was canceled")]
    Canceled,
    /// The worker has stopped and every event of the listener was taken: no more will come.
    #[error("the worker has stopped: no more events")]
    Closed,
}

/// One worker's event source, shared by the worker's slot and its listeners.
#[derive(Debug, Default)]
pub(crate) struct Events {
    /// The union of the listeners' masks: an event of another kind is not even built.
    interest: AtomicU8,
    /// The live listeners, and whether the worker has ended (no event will follow).
    listeners: Mutex<Listeners>,
}

#[derive(Debug, Default)]
struct Listeners {
    live: Vec<Arc<Listener>>,
    closed: bool,
}

/// What one listener has been sent, and who waits for it.
#[derive(Debug)]
struct Listener {
    mask: EventMask,
    inbox: Mutex<Inbox>,
    cond: Condvar,
}

#[derive(Debug, Default)]
struct Inbox {
    queue: VecDeque<WorkerEvent>,
    closed: bool,
    canceled: bool,
    /// The task awaiting [`EventListener::next`], if any.
    task: Option<Waker>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Listener {
    /// Queues `event` (or marks the end) and wakes whoever waits.
    fn deliver(&self, change: impl FnOnce(&mut Inbox)) {
        let mut inbox = lock(&self.inbox);
        change(&mut inbox);
        let task = inbox.task.take();
        drop(inbox);
        self.cond.notify_all();
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl Events {
    /// Emits the event `make()` builds, if a listener wants its `kind`: the worker's thread
    /// calls this, so its cost when nobody listens is one relaxed load.
    #[inline]
    pub(crate) fn emit(&self, kind: EventMask, make: impl FnOnce() -> WorkerEvent) {
        // Relaxed: a listener registered before whatever caused this event (a pause request, a
        // spawn) is ordered before it by that cause's own synchronization.
        if self.interest.load(Ordering::Relaxed) & kind.0 != 0 {
            self.emit_slow(kind, make());
        }
    }

    #[cold]
    fn emit_slow(&self, kind: EventMask, event: WorkerEvent) {
        let listeners = lock(&self.listeners);
        for l in listeners.live.iter().filter(|l| l.mask.intersects(kind)) {
            l.deliver(|inbox| inbox.queue.push_back(event.clone()));
        }
    }

    /// The worker has ended: listeners get what is queued, then [`EventError::Closed`].
    pub(crate) fn close(&self) {
        let mut listeners = lock(&self.listeners);
        listeners.closed = true;
        for l in &listeners.live {
            l.deliver(|inbox| inbox.closed = true);
        }
    }

    /// A listener for the kinds of `mask`, receiving every such event from now on.
    pub(crate) fn listen(self: &Arc<Self>, mask: EventMask) -> EventListener {
        let listener = Arc::new(Listener {
            mask,
            inbox: Mutex::new(Inbox::default()),
            cond: Condvar::new(),
        });
        let mut listeners = lock(&self.listeners);
        listener.deliver(|inbox| inbox.closed = listeners.closed);
        listeners.live.push(listener.clone());
        self.interest.fetch_or(mask.0, Ordering::Relaxed);
        drop(listeners);
        EventListener {
            events: self.clone(),
            listener,
        }
    }

    /// Takes `listener` off the list and narrows the interest to the remaining masks.
    fn unlisten(&self, listener: &Arc<Listener>) {
        let mut listeners = lock(&self.listeners);
        listeners.live.retain(|l| !Arc::ptr_eq(l, listener));
        let interest = listeners.live.iter().fold(0, |acc, l| acc | l.mask.0);
        self.interest.store(interest, Ordering::Relaxed);
    }
}

/// Receives the events of one worker whose kinds are in its mask, from its creation on
/// ([`Pool::listen`](crate::Pool::listen), [`WorkerHandle::listen`](crate::WorkerHandle::listen)).
/// Events queue up until taken. Dropping it stops the delivery.
#[derive(Debug)]
pub struct EventListener {
    events: Arc<Events>,
    listener: Arc<Listener>,
}

impl EventListener {
    /// Waits for the next event, for at most `timeout`.
    ///
    /// # Errors
    /// [`EventError::TimedOut`], [`EventError::Canceled`] (see [`EventListener::canceler`]), or
    /// [`EventError::Closed`] once the worker ended and every event was taken.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<WorkerEvent, EventError> {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    /// Waits for the next event with no time limit.
    ///
    /// # Errors
    /// [`EventError::Canceled`] or [`EventError::Closed`], as for
    /// [`wait_timeout`](Self::wait_timeout).
    pub fn wait(&self) -> Result<WorkerEvent, EventError> {
        self.wait_until(None)
    }

    /// The next event if one is queued, without waiting.
    ///
    /// # Errors
    /// [`EventError::TimedOut`] when none is queued; otherwise as
    /// [`wait_timeout`](Self::wait_timeout).
    pub fn try_next(&self) -> Result<WorkerEvent, EventError> {
        take(&mut lock(&self.listener.inbox)).unwrap_or(Err(EventError::TimedOut))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<WorkerEvent, EventError> {
        let mut inbox = lock(&self.listener.inbox);
        loop {
            if let Some(result) = take(&mut inbox) {
                return result;
            }
            inbox = match deadline {
                None => self
                    .listener
                    .cond
                    .wait(inbox)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(EventError::TimedOut);
                    }
                    self.listener
                        .cond
                        .wait_timeout(inbox, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Awaits the next event without blocking the thread (any executor). Dropping the future
    /// cancels the wait; wrap it in your runtime's timeout for a time limit.
    ///
    /// # Errors
    /// [`EventError::Canceled`] or [`EventError::Closed`], as for
    /// [`wait_timeout`](Self::wait_timeout).
    pub fn next(&self) -> NextEvent<'_> {
        NextEvent { listener: self }
    }

    /// A handle that cancels this listener's waits from another thread or task.
    pub fn canceler(&self) -> EventCanceler {
        EventCanceler {
            listener: self.listener.clone(),
        }
    }
}

/// The next result for a waiter: an event, or why none will come; `None` to keep waiting.
fn take(inbox: &mut Inbox) -> Option<Result<WorkerEvent, EventError>> {
    if inbox.canceled {
        return Some(Err(EventError::Canceled));
    }
    if let Some(event) = inbox.queue.pop_front() {
        return Some(Ok(event));
    }
    inbox.closed.then_some(Err(EventError::Closed))
}

impl Drop for EventListener {
    fn drop(&mut self) {
        self.events.unlisten(&self.listener);
    }
}

/// The future of [`EventListener::next`].
#[derive(Debug)]
#[must_use = "a future does nothing unless polled"]
pub struct NextEvent<'a> {
    listener: &'a EventListener,
}

impl Future for NextEvent<'_> {
    type Output = Result<WorkerEvent, EventError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut inbox = lock(&self.listener.listener.inbox);
        match take(&mut inbox) {
            Some(result) => Poll::Ready(result),
            None => {
                inbox.task = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Cancels the waits of one [`EventListener`]: from [`EventListener::canceler`]. `Clone`,
/// `Send`, `Sync`.
#[derive(Debug, Clone)]
pub struct EventCanceler {
    listener: Arc<Listener>,
}

impl EventCanceler {
    /// Ends the listener's current wait, and every later one, with [`EventError::Canceled`].
    pub fn cancel(&self) {
        self.listener.deliver(|inbox| inbox.canceled = true);
    }
}
