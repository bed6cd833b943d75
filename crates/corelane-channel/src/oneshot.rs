//! One-shot channel: at most one value, from one sender to one receiver (the reply half of a
//! request/response).
//!
//! Algorithm: a state word and the value's slot share one allocation with the receiver's
//! wake-up signal. The sender writes the slot, then moves the state `EMPTY -> FULL` by CAS; a sender
//! dropped unused moves it `EMPTY -> CLOSED`; a receiver dropped early swaps in `GONE`, so a
//! later send fails and hands its value back; a [`Canceler`] (a third handle, held by whoever
//! queues the request that carries the sender) moves it `EMPTY -> CANCELED` to tell the receiver
//! the value will never come while the sender itself is kept elsewhere. Every transition out of
//! `EMPTY` happens once, so
//! the owner of the value is always known without a lock, and dropping either end never needs a
//! barrier (unlike closing a ring, which must drain racing pushes). The receiver waits with the
//! channels' spin-then-park protocol (`wait.rs`). The shape is the classic one (tokio's and
//! futures' `oneshot` use a state word the same way); this one is synchronous and shares
//! corelane's wake-up protocol.
//!
//! ```
//! let (tx, rx) = corelane_channel::oneshot::channel();
//! std::thread::spawn(move || tx.send(42).unwrap());
//! assert_eq!(rx.recv(), Ok(42));
//! ```

use std::fmt;
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

use crate::chan::deadline_after;
use crate::sync::{Arc, AtomicU32, Ordering, UnsafeCell};
use crate::wait::{block_on, Signal, WaitStrategy};
use crate::{Disconnected, RecvError, RecvTimeoutError, TryRecvError};

/// Nothing sent yet, both ends alive.
const EMPTY: u32 = 0;
/// The value is in the slot and belongs to the receiver.
const FULL: u32 = 1;
/// The sender went away without sending.
const CLOSED: u32 = 2;
/// The receiver took the value, or went away; the slot is empty for good.
const GONE: u32 = 3;
/// A [`Canceler`] declared that no value will come; a later send fails and hands its value back.
const CANCELED: u32 = 4;

struct Inner<T> {
    /// Written by the sender (`EMPTY -> FULL | CLOSED`, by CAS) and by the receiver (`FULL ->
    /// GONE` after taking the value, or a swap to `GONE` when it is dropped). Release on the
    /// sender's CAS pairs with the receiver's Acquire loads: the slot write happens-before the
    /// receiver's read.
    state: AtomicU32,
    /// Written once by the sender before its CAS to `FULL`; read once by whoever moves the state
    /// out of `FULL`.
    slot: UnsafeCell<MaybeUninit<T>>,
    /// Where the receiver parks; the sender notifies after its CAS.
    signal: Signal,
}

impl<T> Inner<T> {
    /// The receiver's take: the value if it has arrived. Only the receiver calls it.
    fn take(&self) -> Result<T, TryRecvError> {
        // Acquire pairs with the sender's Release CAS.
        match self.state.load(Ordering::Acquire) {
            FULL => {
                // SAFETY: `FULL` means an initialized value that belongs to the receiver (our
                // caller); moving the state to `GONE` right after marks the slot empty for good,
                // so it is read once.
                let value = self.slot.with(|p| unsafe { (*p).assume_init_read() });
                self.state.store(GONE, Ordering::Relaxed);
                Ok(value)
            }
            EMPTY => Err(TryRecvError::Empty),
            _ => Err(TryRecvError::Disconnected),
        }
    }
}

impl<T> Drop for Inner<T> {
    fn drop(&mut self) {
        // Both ends are gone (the `Arc` ordered their last accesses before this). The receiver's
        // drop takes a `FULL` value out, so one can remain only if it was never dropped, which an
        // `Arc` it holds rules out; handle it anyway rather than leak.
        if self.state.load(Ordering::Acquire) == FULL {
            // SAFETY: `FULL` means the slot holds an initialized value nobody took.
            self.slot.with_mut(|p| unsafe { (*p).assume_init_drop() });
        }
    }
}

/// The sending half of [`channel`]. `Send + Sync` but not `Clone`: one value, one sender.
pub struct Sender<T> {
    inner: Arc<Inner<T>>,
    /// Set by [`Sender::send`] so that `Drop` does not report the sender as gone unsent.
    used: bool,
}

/// The receiving half of [`channel`]. `Send + Sync` but not `Clone`.
pub struct Receiver<T> {
    inner: Arc<Inner<T>>,
    wait: WaitStrategy,
}

// SAFETY: the value crosses from the sender's thread to the receiver's exactly once, handed over
// by the state word (Release/Acquire), so `T: Send` suffices; neither end is `Clone` or usable
// through a shared reference concurrently (every method takes `self` or `&mut self`).
unsafe impl<T: Send> Send for Sender<T> {}
// SAFETY: as for `Sender`.
unsafe impl<T: Send> Send for Receiver<T> {}
// SAFETY: through a shared reference an end only reads the state word (`Sender::is_closed`,
// `Receiver::is_canceled`) or clones the `Arc` (`Sender::canceler`); everything that touches
// the value's slot takes `self` or `&mut self`. Sharing an end across threads therefore shares
// no access to a `T`, and `T: Send` covers the one hand-over. This makes an error or message
// that carries a reply handle `Sync`, as `Box<dyn Error + Send + Sync>` and `anyhow` require.
unsafe impl<T: Send> Sync for Sender<T> {}
// SAFETY: as for `Sender`'s `Sync`.
unsafe impl<T: Send> Sync for Receiver<T> {}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("oneshot::Sender(..)")
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("oneshot::Receiver(..)")
    }
}

/// A one-shot channel whose receiver waits by the default strategy
/// ([`WaitStrategy::SpinThenPark`]).
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    with_wait_strategy(WaitStrategy::default())
}

/// A one-shot channel whose receiver waits by `wait`.
pub fn with_wait_strategy<T>(wait: WaitStrategy) -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Inner {
        state: AtomicU32::new(EMPTY),
        slot: UnsafeCell::new(MaybeUninit::uninit()),
        signal: Signal::default(),
    });
    (
        Sender {
            inner: inner.clone(),
            used: false,
        },
        Receiver { inner, wait },
    )
}

impl<T> Sender<T> {
    /// Sends the value, waking the receiver if it waits.
    ///
    /// # Errors
    /// [`Disconnected`] with the value if the receiver is gone.
    pub fn send(mut self, value: T) -> Result<(), Disconnected<T>> {
        self.used = true;
        // SAFETY: the state is not `FULL` (only this call, once, sets it), so nobody reads the
        // slot; the receiver reads it only after seeing `FULL`, which our CAS publishes below.
        self.inner.slot.with_mut(|p| unsafe { (*p).write(value) });
        // Release pairs with the receiver's Acquire loads in `try_recv` and `drop`.
        match self
            .inner
            .state
            .compare_exchange(EMPTY, FULL, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => {
                self.inner.signal.notify();
                Ok(())
            }
            // The receiver is gone (`GONE`) or the channel canceled: the value never became
            // visible; take it back.
            // SAFETY: we wrote the slot above and nobody else reads it unless the state is `FULL`.
            Err(_) => Err(Disconnected(
                self.inner.slot.with(|p| unsafe { (*p).assume_init_read() }),
            )),
        }
    }

    /// Whether the receiver is gone or the channel canceled (a send would fail).
    pub fn is_closed(&self) -> bool {
        matches!(self.inner.state.load(Ordering::Relaxed), GONE | CANCELED)
    }

    /// A handle that can declare, in the sender's place, that no value will come (see
    /// [`Canceler::cancel`]); the sender stays usable until then.
    pub fn canceler(&self) -> Canceler<T> {
        Canceler {
            inner: self.inner.clone(),
        }
    }
}

/// Cancels a one-shot channel without its [`Sender`]: from [`Sender::canceler`]. A runtime that
/// holds a request (and so the sender inside it) which it will never deliver cancels it, so the
/// receiver stops waiting at once ([`Receiver::is_canceled`]) instead of when the request is
/// finally dropped.
pub struct Canceler<T> {
    inner: Arc<Inner<T>>,
}

// SAFETY: a canceler never touches the value's slot, only the state word and the signal (both
// `Sync`); it may move to any thread whatever `T` is, but is `Send` only with `T: Send` to keep
// the `Arc<Inner<T>>` it drops on another thread sound.
unsafe impl<T: Send> Send for Canceler<T> {}
// SAFETY: `cancel` takes `self`; a shared canceler gives no access at all.
unsafe impl<T: Send> Sync for Canceler<T> {}

impl<T> fmt::Debug for Canceler<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("oneshot::Canceler(..)")
    }
}

impl<T> Canceler<T> {
    /// Declares that no value will come: a receiver waiting now, or later, gets
    /// [`RecvError`] and [`Receiver::is_canceled`] says why; a later [`Sender::send`] fails and
    /// hands its value back. Returns `false` (and changes nothing) if the value was already sent,
    /// the sender dropped, or the receiver gone.
    pub fn cancel(self) -> bool {
        // Release pairs with the receiver's Acquire loads, as the sender's CAS does.
        let canceled = self
            .inner
            .state
            .compare_exchange(EMPTY, CANCELED, Ordering::Release, Ordering::Relaxed)
            .is_ok();
        if canceled {
            self.inner.signal.notify();
        }
        canceled
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if !self.used
            && self
                .inner
                .state
                .compare_exchange(EMPTY, CLOSED, Ordering::Release, Ordering::Relaxed)
                .is_ok()
        {
            self.inner.signal.notify();
        }
    }
}

impl<T> Receiver<T> {
    /// Takes the value if it has arrived.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] if nothing was sent yet; [`TryRecvError::Disconnected`] if the
    /// sender went away without sending, or the value was already received.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.inner.take()
    }

    /// Whether a [`Canceler`] declared that no value will come.
    pub fn is_canceled(&self) -> bool {
        // Acquire pairs with the canceler's Release CAS.
        self.inner.state.load(Ordering::Acquire) == CANCELED
    }

    /// Waits for the value by the channel's wait strategy.
    ///
    /// # Errors
    /// [`RecvError`] if the sender went away without sending, or the channel was canceled.
    pub fn recv(mut self) -> Result<T, RecvError> {
        self.recv_deadline(None).map_err(|_| RecvError)
    }

    /// As [`Receiver::recv`], waiting at most `timeout`; the receiver stays usable after a
    /// timeout.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] when `timeout` passed first; [`RecvTimeoutError::Disconnected`]
    /// as for [`Receiver::recv`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_deadline(deadline_after(timeout))
    }

    fn recv_deadline(&mut self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let inner = &*self.inner;
        let ready = || inner.state.load(Ordering::Relaxed) != EMPTY;
        let attempt = || match inner.take() {
            Ok(v) => Some(Ok(v)),
            Err(TryRecvError::Disconnected) => Some(Err(RecvTimeoutError::Disconnected)),
            Err(TryRecvError::Empty) => None,
        };
        block_on(self.wait, &inner.signal, deadline, attempt, &ready, &|| {
            None
        })
        .unwrap_or(Err(RecvTimeoutError::Timeout))
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // Acquire pairs with the sender's Release CAS: a value it sent is visible to drop here.
        if self.inner.state.swap(GONE, Ordering::Acquire) == FULL {
            // SAFETY: `FULL` meant a value nobody took; the swap made us its only owner.
            drop(self.inner.slot.with(|p| unsafe { (*p).assume_init_read() }));
        }
    }
}
