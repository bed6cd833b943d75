//! The state every flavor shares: a ring, the two sleeper signals, endpoint counts and the
//! disconnect flags. Blocking, timeouts, batching and disconnection are written here once; the
//! flavors (`spsc`, `mpsc`, `mpmc`) differ only in their [`Ring`].

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::error::{
    Disconnected, RecvError, RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError,
};
use crate::sync::{AtomicBool, AtomicUsize, Mutex, Ordering};
use crate::wait::{block_on, Doorbell, Registration, Signal, WaitStrategy};

/// A bounded ring buffer. Methods marked `unsafe` carry the flavor's access rule: a
/// single-producer ring's `push*` may run on one thread at a time, a single-consumer ring's `pop*`
/// likewise. The endpoint types enforce this (`!Sync`, not `Clone`).
pub trait Ring<T> {
    /// Builds a ring of exactly `capacity` slots (a power of two, already validated).
    fn with_capacity(capacity: usize) -> Self;
    /// Appends `value` and returns its position, or hands it back when full.
    ///
    /// # Safety
    /// The caller honors the ring's producer rule.
    unsafe fn push(&self, value: T) -> Result<usize, T>;
    /// Moves as many values as fit from the front of `items`, publishing them with one index
    /// update, and returns the first position and how many moved.
    ///
    /// # Safety
    /// The caller honors the ring's producer rule.
    unsafe fn push_batch(&self, items: &mut Vec<T>) -> (usize, usize);
    /// Removes the oldest value.
    ///
    /// # Safety
    /// The caller honors the ring's consumer rule.
    unsafe fn pop(&self) -> Option<T>;
    /// Appends up to `max` of the oldest values to `out` with one index update; returns how many.
    ///
    /// # Safety
    /// The caller honors the ring's consumer rule.
    unsafe fn pop_batch(&self, out: &mut Vec<T>, max: usize) -> usize;
    /// Removes every value below the last position claimed when it starts, in order, passing
    /// each with its position to `f`; waits for positions claimed but not yet written. Values
    /// claimed after it starts stay (their senders take them back in [`Chan::reclaim`]).
    ///
    /// # Safety
    /// The close lock is held, and the ring's consumer rule holds (for single-consumer rings: no
    /// receiver is left; multi-consumer rings may have concurrent poppers).
    unsafe fn drain(&self, f: &mut dyn FnMut(usize, T));
    /// Whether a pop may now succeed (a hint: may be stale, but true once a push is published).
    fn has_item(&self) -> bool;
    /// Whether a push may now succeed (a hint, like [`Ring::has_item`]).
    fn has_space(&self) -> bool;
    /// Number of values in the ring (approximate while other threads operate on it).
    fn len(&self) -> usize;
    /// Number of slots.
    fn capacity(&self) -> usize;
}

/// Endpoint bookkeeping, read on every operation but written only when an endpoint is cloned or
/// dropped, so it lives on its own cache line.
#[derive(Debug)]
struct Ends {
    /// Live sending endpoints. Written by clone/drop of a sender.
    senders: AtomicUsize,
    /// Live receiving endpoints. Written by clone/drop of a receiver.
    receivers: AtomicUsize,
    /// Set (Release) by the last sender's drop; read (Acquire) by a receiver that found the ring
    /// empty, so every value pushed before the drop is visible to its next pop.
    tx_closed: AtomicBool,
    /// Set by the last receiver's drop (or `close_all`) before its drain, together with
    /// `not_empty`'s sticky flag; read by senders before a push. After a push, a sender learns of
    /// the close from that flag instead (see [`Chan::published`]).
    rx_closed: AtomicBool,
}

/// The shared state behind a channel's endpoints.
#[derive(Debug)]
pub(crate) struct Chan<T, R> {
    ring: R,
    wait: WaitStrategy,
    ends: CachePadded<Ends>,
    /// Receivers sleep here; a push notifies it. A doorbell, so that a consumer waiting on
    /// other sources too sleeps on it and a send notifies once ([`Chan::doorbell`]).
    not_empty: CachePadded<Doorbell>,
    /// Senders sleep here; a pop notifies it.
    not_full: CachePadded<Signal>,
    /// Serializes the draining of a closed channel (the sealing receiver's drain and the reclaims
    /// of senders that found it closed right after their push) and holds, by position, values a
    /// reclaim drained on behalf of other senders that are about to reclaim them.
    closed: Mutex<Vec<(usize, T)>>,
    _values: PhantomData<fn(T) -> T>,
}

impl<T, R: Ring<T>> Chan<T, R> {
    pub(crate) fn new(capacity: usize, wait: WaitStrategy) -> Self {
        Self {
            ring: R::with_capacity(capacity),
            wait,
            ends: CachePadded::new(Ends {
                senders: AtomicUsize::new(1),
                receivers: AtomicUsize::new(1),
                tx_closed: AtomicBool::new(false),
                rx_closed: AtomicBool::new(false),
            }),
            not_empty: CachePadded::new(Doorbell::new()),
            not_full: CachePadded::new(Signal::default()),
            closed: Mutex::new(Vec::new()),
            _values: PhantomData,
        }
    }

    // ---- endpoint lifecycle -------------------------------------------------------------------

    pub(crate) fn add_sender(&self) {
        self.ends.senders.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_receiver(&self) {
        self.ends.receivers.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops one sender; the last one closes the channel for receivers and wakes them.
    pub(crate) fn drop_sender(&self) {
        // AcqRel: every sender's earlier pushes happen-before the last decrement, and so before
        // the `tx_closed` store below.
        if self.ends.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.ends.tx_closed.store(true, Ordering::Release);
            self.not_empty.signal.notify_all();
        }
    }

    /// Drops one receiver; the last one drops every queued value at once and wakes senders.
    ///
    /// A send racing with the close either sees `rx_closed` without pushing (a full ring, or a
    /// batch's check up front) and fails, or pushes and then sees `not_empty`'s sticky flag behind
    /// `light_barrier` (and takes its value back in [`Chan::reclaim`]), or claimed its position
    /// before the seal's drain started, in which case that drain takes and drops its value (the
    /// send linearizes before the close). No value is ever accepted by a closed channel.
    pub(crate) fn drop_receiver(&self) {
        self.close_receiver(&mut |v| drop(v));
    }

    /// Drops one receiver like [`Chan::drop_receiver`], but hands every queued value to `sink`
    /// instead of dropping it (when this is the last receiver).
    pub(crate) fn close_receiver(&self, sink: &mut dyn FnMut(T)) {
        if self.ends.receivers.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        // Acquire pairs with the AcqRel decrement in `drop_sender`: with no sender left, none can
        // appear (only a sender clones a sender), so nothing races the drain and the barrier and
        // lock of `seal` are not needed. This is the common case of a one-shot reply channel.
        if self.ends.senders.load(Ordering::Acquire) == 0 {
            self.ends.rx_closed.store(true, Ordering::Relaxed);
            self.not_empty.signal.stick();
            // SAFETY: no receiver and no sender is left; this thread is the only one touching the
            // ring.
            unsafe { self.ring.drain(&mut |_, v| sink(v)) };
            return;
        }
        // SAFETY: no receiver is left, so the drain pops alone.
        unsafe { self.seal(sink) };
    }

    /// Closes the channel for every sender (sends fail and hand their value back from now on)
    /// and hands every queued value to `sink`. Sends racing with it either fail that way or
    /// their value reaches `sink` (or the drain of a later reclaim), never both. Only the first
    /// seal drains: a later one hands nothing to `sink`.
    ///
    /// # Safety
    /// The ring's consumer rule holds for the drain: single-consumer rings have no other receiver
    /// popping meanwhile.
    pub(crate) unsafe fn seal(&self, sink: &mut dyn FnMut(T)) {
        // The lock is taken before the flag is raised: a sender reclaims only after seeing the
        // flag, so it waits here until this drain has taken every value accepted before the
        // close, and what it finds afterwards belongs to senders that saw the flag too.
        let guard = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        // Relaxed: every store of the flag that a sealer can race with is made under this lock.
        if self.ends.rx_closed.load(Ordering::Relaxed) {
            // Sealed before: that seal took every value accepted before the close, so whatever
            // the ring holds now was pushed by a sender that saw the flag and takes it back in
            // `reclaim`. Draining it here would make that send report success for a value it
            // never delivered (kept by a second `close_all`, or dropped by the last receiver).
            return;
        }
        self.ends.rx_closed.store(true, Ordering::Relaxed);
        // Its barrier pairs with the senders' `light_barrier` after their push (see `published`):
        // a sender either sees the flag after its push, or this drain sees its value.
        self.not_empty.signal.stick();
        // SAFETY: the close lock is held; the consumer rule is forwarded from the caller.
        unsafe { self.ring.drain(&mut |_, v| sink(v)) };
        drop(guard);
        self.not_full.notify_all();
    }

    /// Called after a push of positions `[first, first + n)`. Wakes a sleeping receiver and, if the
    /// last receiver closed meanwhile, takes back those values still queued (in order).
    #[inline(always)]
    fn published(&self, first: usize, n: usize) -> Option<Vec<T>> {
        // One load of `not_empty`'s state after our publication answers both questions: is a
        // receiver asleep (then it is woken), and has the last receiver closed the channel (its
        // seal sticks the signal before draining: then the values may be ours to take back).
        if self.not_empty.signal.notify() {
            return Some(self.reclaim(first, n));
        }
        None
    }

    /// Drains a closed channel, returning the values at positions `[first, first + n)` and dropping
    /// the rest. Values of that range already drained by the closer are not returned (their send
    /// completed before the close).
    #[cold]
    #[inline(never)]
    fn reclaim(&self, first: usize, n: usize) -> Vec<T> {
        let mine_at = |pos: usize| pos.wrapping_sub(first) < n;
        let mut stash = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: `rx_closed` is set: no receiver is left, or (multi-consumer rings, after
        // `seal`) the remaining ones pop by CAS; the close lock excludes other drains.
        unsafe { self.ring.drain(&mut |pos, v| stash.push((pos, v))) };
        // Values of other senders stay stashed: each of them saw the close too (or its value
        // would have been drained by the seal) and takes its own back here.
        let mut mine = Vec::new();
        let mut i = 0;
        while i < stash.len() {
            if mine_at(stash[i].0) {
                mine.push(stash.remove(i));
            } else {
                i += 1;
            }
        }
        mine.sort_by_key(|&(pos, _)| pos.wrapping_sub(first));
        mine.into_iter().map(|(_, v)| v).collect()
    }

    // ---- sending ------------------------------------------------------------------------------

    /// # Safety
    /// The caller honors the ring's producer rule.
    #[inline(always)]
    pub(crate) unsafe fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        // No closed check before the push: `published` makes it after the push anyway (a value
        // pushed into a closed channel is taken back there), so the common case reads the flag
        // once, not twice.
        // SAFETY: forwarded from the caller.
        match unsafe { self.ring.push(value) } {
            Ok(pos) => match self.published(pos, 1).and_then(|mut back| back.pop()) {
                None => Ok(()),
                Some(v) => Err(TrySendError::Disconnected(v)),
            },
            Err(v) if self.ends.rx_closed.load(Ordering::Relaxed) => {
                Err(TrySendError::Disconnected(v))
            }
            Err(v) => Err(TrySendError::Full(v)),
        }
    }

    /// # Safety
    /// The caller honors the ring's producer rule.
    pub(crate) unsafe fn send_deadline(
        &self,
        value: T,
        deadline: Option<Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        let mut slot = Some(value);
        let ready = || self.ring.has_space() || self.ends.rx_closed.load(Ordering::Relaxed);
        let attempt = || {
            let v = slot
                .take()
                .expect("the value is put back after every failed attempt");
            // SAFETY: forwarded from the caller.
            match unsafe { self.try_send(v) } {
                Ok(()) => Some(Ok(())),
                Err(TrySendError::Disconnected(v)) => Some(Err(SendTimeoutError::Disconnected(v))),
                Err(TrySendError::Full(v)) => {
                    slot = Some(v);
                    None
                }
            }
        };
        match block_on(
            self.wait,
            &self.not_full,
            deadline,
            attempt,
            &ready,
            &|| self.free_backlog(),
        ) {
            Some(result) => result,
            None => Err(SendTimeoutError::Timeout(
                slot.take().expect("a timed-out send still holds its value"),
            )),
        }
    }

    /// # Safety
    /// The caller honors the ring's producer rule.
    #[inline(always)]
    pub(crate) unsafe fn send(&self, value: T) -> Result<(), Disconnected<T>> {
        // Fast path first: most sends find room, and need none of the waiting machinery.
        // SAFETY: forwarded from the caller.
        let value = match unsafe { self.try_send(value) } {
            Ok(()) => return Ok(()),
            Err(TrySendError::Disconnected(v)) => return Err(Disconnected(v)),
            Err(TrySendError::Full(v)) => v,
        };
        // SAFETY: forwarded from the caller.
        unsafe { self.send_slow(value) }
    }

    /// The waiting part of [`Chan::send`], kept out of line so the fast path inlines small.
    ///
    /// # Safety
    /// The caller honors the ring's producer rule.
    #[cold]
    #[inline(never)]
    unsafe fn send_slow(&self, value: T) -> Result<(), Disconnected<T>> {
        // SAFETY: forwarded from the caller.
        match unsafe { self.send_deadline(value, None) } {
            Ok(()) => Ok(()),
            Err(e) => Err(Disconnected(e.into_inner())),
        }
    }

    /// # Safety
    /// The caller honors the ring's producer rule.
    pub(crate) unsafe fn try_send_batch(
        &self,
        items: &mut Vec<T>,
    ) -> Result<usize, Disconnected<()>> {
        if self.ends.rx_closed.load(Ordering::Relaxed) {
            return Err(Disconnected(()));
        }
        // SAFETY: forwarded from the caller.
        let (first, n) = unsafe { self.ring.push_batch(items) };
        if n == 0 {
            return Ok(0);
        }
        match self.published(first, n) {
            None => Ok(n),
            Some(back) => {
                // Put the values taken back in front of the unsent ones, in order.
                items.splice(0..0, back);
                Err(Disconnected(()))
            }
        }
    }

    /// # Safety
    /// The caller honors the ring's producer rule.
    pub(crate) unsafe fn send_batch(&self, items: &mut Vec<T>) -> Result<(), Disconnected<()>> {
        let ready = || self.ring.has_space() || self.ends.rx_closed.load(Ordering::Relaxed);
        let attempt = || {
            // SAFETY: forwarded from the caller.
            match unsafe { self.try_send_batch(items) } {
                Err(e) => Some(Err(e)),
                Ok(_) if items.is_empty() => Some(Ok(())),
                Ok(_) => None,
            }
        };
        block_on(self.wait, &self.not_full, None, attempt, &ready, &|| {
            self.free_backlog()
        })
        .expect("an untimed wait only ends with a result")
    }

    /// A send that waits for room as a task: pending while the ring is full, woken by the
    /// receive that frees a slot. Never blocks the thread.
    ///
    /// # Safety
    /// The caller honors the ring's producer rule for as long as the future lives.
    pub(crate) unsafe fn send_async(&self, value: T) -> SendAsync<'_, T, R> {
        SendAsync {
            chan: self,
            value: Some(value),
            registration: Registration::default(),
        }
    }

    // ---- receiving ----------------------------------------------------------------------------

    /// # Safety
    /// The caller honors the ring's consumer rule.
    #[inline(always)]
    pub(crate) unsafe fn try_recv(&self) -> Result<T, TryRecvError> {
        // SAFETY: forwarded from the caller.
        if let Some(v) = unsafe { self.ring.pop() } {
            self.not_full.notify();
            return Ok(v);
        }
        if !self.ends.tx_closed.load(Ordering::Acquire) {
            return Err(TryRecvError::Empty);
        }
        // Every sender is gone and, by the Acquire above, all their pushes are visible.
        // SAFETY: forwarded from the caller.
        unsafe { self.ring.pop() }.ok_or(TryRecvError::Disconnected)
    }

    /// # Safety
    /// The caller honors the ring's consumer rule.
    pub(crate) unsafe fn recv_deadline(
        &self,
        deadline: Option<Instant>,
    ) -> Result<T, RecvTimeoutError> {
        // SAFETY: forwarded from the caller.
        self.wait_to_receive(deadline, || unsafe { self.try_recv() })
    }

    /// Runs `try_op` (a receive) until it gets something or reports disconnection, waiting on
    /// `not_empty` by the channel's strategy in between, until `deadline`.
    fn wait_to_receive<V>(
        &self,
        deadline: Option<Instant>,
        mut try_op: impl FnMut() -> Result<V, TryRecvError>,
    ) -> Result<V, RecvTimeoutError> {
        let ready = || self.ring.has_item() || self.ends.tx_closed.load(Ordering::Relaxed);
        let attempt = || match try_op() {
            Ok(v) => Some(Ok(v)),
            Err(TryRecvError::Disconnected) => Some(Err(RecvTimeoutError::Disconnected)),
            Err(TryRecvError::Empty) => None,
        };
        block_on(
            self.wait,
            &self.not_empty.signal,
            deadline,
            attempt,
            &ready,
            &|| self.ready_backlog(),
        )
        .unwrap_or(Err(RecvTimeoutError::Timeout))
    }

    /// # Safety
    /// The caller honors the ring's consumer rule.
    #[inline(always)]
    pub(crate) unsafe fn recv(&self) -> Result<T, RecvError> {
        // Fast path first, as in `send`.
        // SAFETY: forwarded from the caller.
        match unsafe { self.try_recv() } {
            Ok(v) => return Ok(v),
            Err(TryRecvError::Disconnected) => return Err(RecvError),
            Err(TryRecvError::Empty) => {}
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.recv_slow() }
    }

    /// The waiting part of [`Chan::recv`], kept out of line so the fast path inlines small.
    ///
    /// # Safety
    /// The caller honors the ring's consumer rule.
    #[cold]
    #[inline(never)]
    unsafe fn recv_slow(&self) -> Result<T, RecvError> {
        // SAFETY: forwarded from the caller.
        unsafe { self.recv_deadline(None) }.map_err(|_| RecvError)
    }

    /// # Safety
    /// The caller honors the ring's consumer rule.
    pub(crate) unsafe fn try_recv_batch(
        &self,
        out: &mut Vec<T>,
        max: usize,
    ) -> Result<usize, TryRecvError> {
        if max == 0 {
            return Ok(0);
        }
        // SAFETY: forwarded from the caller.
        let n = unsafe { self.ring.pop_batch(out, max) };
        if n > 0 {
            self.not_full.notify();
            return Ok(n);
        }
        if !self.ends.tx_closed.load(Ordering::Acquire) {
            return Err(TryRecvError::Empty);
        }
        // SAFETY: forwarded from the caller.
        match unsafe { self.ring.pop_batch(out, max) } {
            0 => Err(TryRecvError::Disconnected),
            n => Ok(n),
        }
    }

    /// # Safety
    /// The caller honors the ring's consumer rule.
    pub(crate) unsafe fn recv_batch_deadline(
        &self,
        out: &mut Vec<T>,
        max: usize,
        deadline: Option<Instant>,
    ) -> Result<usize, RecvTimeoutError> {
        if max == 0 {
            return Ok(0);
        }
        // SAFETY: forwarded from the caller.
        self.wait_to_receive(deadline, || unsafe { self.try_recv_batch(out, max) })
    }

    /// Free slots and capacity, for a blocked sender's pace ([`block_on`]).
    fn free_backlog(&self) -> Option<(usize, usize)> {
        let capacity = self.ring.capacity();
        Some((capacity - self.ring.len().min(capacity), capacity))
    }

    /// Queued values and capacity, for a blocked receiver's pace ([`block_on`]).
    fn ready_backlog(&self) -> Option<(usize, usize)> {
        Some((self.ring.len(), self.ring.capacity()))
    }

    // ---- inspection ---------------------------------------------------------------------------

    pub(crate) fn doorbell(&self) -> &Doorbell {
        &self.not_empty
    }
    pub(crate) fn has_item(&self) -> bool {
        self.ring.has_item()
    }
    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }
    pub(crate) fn capacity(&self) -> usize {
        self.ring.capacity()
    }
    pub(crate) fn wait_strategy(&self) -> WaitStrategy {
        self.wait
    }
    pub(crate) fn is_disconnected_for_senders(&self) -> bool {
        self.ends.rx_closed.load(Ordering::Acquire)
    }
    pub(crate) fn is_disconnected_for_receivers(&self) -> bool {
        self.ends.tx_closed.load(Ordering::Acquire)
    }
}

/// The future of [`Chan::send_async`]. Dropping it before it completes drops the value unsent.
pub(crate) struct SendAsync<'a, T, R: Ring<T>> {
    chan: &'a Chan<T, R>,
    /// `None` once sent (or handed back).
    value: Option<T>,
    /// The task's place among `not_full`'s sleepers while it waits.
    registration: Registration,
}

// The value is moved in and out by value, never pinned in place.
impl<T, R: Ring<T>> Unpin for SendAsync<'_, T, R> {}

impl<T, R: Ring<T>> Future for SendAsync<'_, T, R> {
    type Output = Result<(), Disconnected<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let chan = this.chan;
        let ready = || chan.ring.has_space() || chan.ends.rx_closed.load(Ordering::Relaxed);
        loop {
            let value = this
                .value
                .take()
                .expect("a send future is not polled after it completed");
            // SAFETY: `Chan::send_async`'s caller honors the producer rule while this future lives.
            match unsafe { chan.try_send(value) } {
                Ok(()) => break,
                Err(TrySendError::Disconnected(v)) => {
                    chan.not_full.cancel(&mut this.registration);
                    return Poll::Ready(Err(Disconnected(v)));
                }
                Err(TrySendError::Full(v)) => this.value = Some(v),
            }
            if chan
                .not_full
                .poll_park(cx, &ready, &mut this.registration)
                .is_pending()
            {
                return Poll::Pending;
            }
        }
        chan.not_full.cancel(&mut this.registration);
        Poll::Ready(Ok(()))
    }
}

impl<T, R: Ring<T>> Drop for SendAsync<'_, T, R> {
    fn drop(&mut self) {
        self.chan.not_full.cancel(&mut self.registration);
    }
}

/// Turns a timeout into a deadline, treating one too large to represent as "never".
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}
