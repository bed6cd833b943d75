//! The endpoints every flavor shares: one [`Sender`] and one [`Receiver`] over the flavor's ring.
//! Each flavor module names its pair with type aliases (`mpsc::Sender<T>` is
//! `Sender<T, Mpsc>`).
//!
//! # The access rules
//! Every `unsafe` call below relies on the endpoint upholding its ring's producer and consumer
//! rules. A flavor whose ring admits one pushing (popping) thread at a time gives its sender
//! (receiver) a `!Sync` marker ([`sealed::Flavor::SendRule`], [`sealed::Flavor::RecvRule`]) and
//! no `Clone` (only [`MultiProducer`] senders and [`MultiConsumer`] receivers are `Clone`). So
//! that endpoint is reachable from one thread at a time: the rule holds.

use std::cell::Cell;
use std::marker::PhantomData;
use std::time::Duration;

use crate::chan::{deadline_after, Chan};
use crate::error::{
    Disconnected, RecvError, RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError,
};
use crate::sync::Arc;
use crate::{Doorbell, WaitStrategy};

pub(crate) mod sealed {
    /// What a flavor is made of. Private to the crate, so no other crate can add a flavor (and
    /// with it a ring whose access rules the endpoints do not uphold).
    pub trait Flavor: 'static {
        /// The ring.
        type Ring<T>: crate::chan::Ring<T>;
        /// `Cell<()>` (making the sender `!Sync`) where the ring admits one pushing thread at a
        /// time; `()` where any number may push.
        type SendRule;
        /// As `SendRule`, for popping and the receiver.
        type RecvRule;
        /// The module name, for `Debug`.
        const NAME: &'static str;
    }
}

/// One channel flavor: [`Spsc`](crate::spsc::Spsc), [`Mpsc`](crate::mpsc::Mpsc) or
/// [`Mpmc`](crate::mpmc::Mpmc). Sealed: only this crate defines flavors.
pub trait Flavor: sealed::Flavor {}

/// A flavor whose senders are `Clone + Sync`: any number of threads may send.
pub trait MultiProducer: Flavor {}

/// A flavor whose receivers are `Clone + Sync`: any number of threads may receive.
pub trait MultiConsumer: Flavor {}

/// A flavor with one receiver, which can [`close`](Receiver::close) the channel and take back
/// what is queued.
pub trait SingleConsumer: Flavor {}

/// The `!Sync` marker of an endpoint whose ring admits one thread on its side at a time.
pub(crate) type OneThread = Cell<()>;

/// A sending end of a channel of flavor `F`; named per flavor as `spsc::Sender<T>`,
/// `mpsc::Sender<T>` and `mpmc::Sender<T>`. `Send`; `Clone + Sync` for [`MultiProducer`] flavors.
pub struct Sender<T, F: Flavor> {
    chan: Arc<Chan<T, F::Ring<T>>>,
    _rule: PhantomData<F::SendRule>,
}

/// A receiving end of a channel of flavor `F`; named per flavor as `spsc::Receiver<T>`,
/// `mpsc::Receiver<T>` and `mpmc::Receiver<T>`. `Send`; `Clone + Sync` for [`MultiConsumer`]
/// flavors.
pub struct Receiver<T, F: Flavor> {
    chan: Arc<Chan<T, F::Ring<T>>>,
    _rule: PhantomData<F::RecvRule>,
}

/// A new channel of flavor `F` with exactly `capacity` slots (validated by the builder).
pub(crate) fn pair<T, F: Flavor>(
    capacity: usize,
    wait: WaitStrategy,
) -> (Sender<T, F>, Receiver<T, F>) {
    let chan = Arc::new(Chan::new(capacity, wait));
    (
        Sender {
            chan: chan.clone(),
            _rule: PhantomData,
        },
        Receiver {
            chan,
            _rule: PhantomData,
        },
    )
}

impl<T, F: Flavor> Sender<T, F> {
    /// Number of messages queued now (a snapshot; other threads may change it at once).
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether nothing is queued now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.chan.len() == 0
    }

    /// Whether the channel is at capacity now (a snapshot).
    pub fn is_full(&self) -> bool {
        self.chan.len() >= self.chan.capacity()
    }

    /// The number of slots: the requested capacity rounded up to a power of two.
    pub fn capacity(&self) -> usize {
        self.chan.capacity()
    }

    /// The wait strategy chosen at construction.
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.chan.wait_strategy()
    }

    /// Whether every receiver is gone (sends will fail and hand their value back).
    pub fn is_disconnected(&self) -> bool {
        self.chan.is_disconnected_for_senders()
    }

    /// The doorbell the receivers sleep on; every send rings it. A consumer that waits on this
    /// channel and on other sources at once waits on it ([`Doorbell::wait`]) and has the other
    /// sources' producers [`ring`](Doorbell::ring) it, so a send here wakes it with one
    /// notification.
    pub fn doorbell(&self) -> &Doorbell {
        self.chan.doorbell()
    }

    /// Sends `value` if there is room, without waiting.
    ///
    /// # Errors
    /// [`TrySendError::Full`] when the channel is full, [`TrySendError::Disconnected`] when every
    /// receiver is gone; both hand `value` back.
    #[inline(always)]
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        // SAFETY: this endpoint upholds the ring's producer rule (module docs).
        unsafe { self.chan.try_send(value) }
    }

    /// Sends `value`, waiting for room by the channel's [`WaitStrategy`].
    ///
    /// # Errors
    /// [`Disconnected`] with `value` when every receiver is gone, including when the last one
    /// drops while this call waits.
    #[inline(always)]
    pub fn send(&self, value: T) -> Result<(), Disconnected<T>> {
        // SAFETY: this endpoint upholds the ring's producer rule (module docs).
        unsafe { self.chan.send(value) }
    }

    /// Sends `value`, waiting for room as a task: the future is pending while the channel is
    /// full and never blocks the thread (for senders inside an async executor). Any number of
    /// tasks may wait at once. Dropping the future before it completes drops `value` unsent.
    ///
    /// # Errors
    /// [`Disconnected`] with `value` when every receiver is gone.
    pub async fn send_async(&self, value: T) -> Result<(), Disconnected<T>> {
        // SAFETY: this endpoint upholds the ring's producer rule (module docs), and the future
        // borrows it for as long as it lives.
        unsafe { self.chan.send_async(value) }.await
    }

    /// Sends `value`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`SendTimeoutError::Timeout`] or [`SendTimeoutError::Disconnected`], each with `value`.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        // SAFETY: this endpoint upholds the ring's producer rule (module docs).
        unsafe { self.chan.send_deadline(value, deadline_after(timeout)) }
    }

    /// Moves as many messages as fit from the front of `items` into the channel, in order,
    /// publishing them with one index update, without waiting. Returns how many moved; the rest
    /// stay in `items`.
    ///
    /// # Errors
    /// [`Disconnected`] when every receiver is gone; `items` is left untouched.
    pub fn try_send_batch(&self, items: &mut Vec<T>) -> Result<usize, Disconnected<()>> {
        // SAFETY: this endpoint upholds the ring's producer rule (module docs).
        unsafe { self.chan.try_send_batch(items) }
    }

    /// Moves every message of `items` into the channel, in order, in as few index updates as
    /// room allows, waiting for room by the channel's wait strategy. `items` ends empty.
    ///
    /// # Errors
    /// [`Disconnected`] when every receiver is gone; the messages not yet sent stay in `items`,
    /// in order.
    pub fn send_batch(&self, items: &mut Vec<T>) -> Result<(), Disconnected<()>> {
        // SAFETY: this endpoint upholds the ring's producer rule (module docs).
        unsafe { self.chan.send_batch(items) }
    }
}

impl<T, F: Flavor> Receiver<T, F> {
    /// Number of messages queued now (a snapshot; other threads may change it at once).
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether no message is ready to receive now (a snapshot, like [`len`](Self::len); a message
    /// whose sender is still writing it is not ready yet).
    ///
    /// Cheaper than `len() == 0` for a receiver that polls: it reads the slot the next receive
    /// would take, not the senders' index, so a poller does not pull that index's cache line away
    /// from the next sender.
    pub fn is_empty(&self) -> bool {
        !self.chan.has_item()
    }

    /// The number of slots: the requested capacity rounded up to a power of two.
    pub fn capacity(&self) -> usize {
        self.chan.capacity()
    }

    /// Whether every sender is gone. Messages already queued can still be received.
    pub fn is_disconnected(&self) -> bool {
        self.chan.is_disconnected_for_receivers()
    }

    /// The doorbell this receiver sleeps on; see [`Sender::doorbell`].
    pub fn doorbell(&self) -> &Doorbell {
        self.chan.doorbell()
    }

    /// Receives the oldest message without waiting.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] when nothing is queued, [`TryRecvError::Disconnected`] when nothing
    /// is queued and every sender is gone.
    #[inline(always)]
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        // SAFETY: this endpoint upholds the ring's consumer rule (module docs).
        unsafe { self.chan.try_recv() }
    }

    /// Receives the oldest message, waiting by the channel's [`WaitStrategy`].
    ///
    /// # Errors
    /// [`RecvError`] once the channel is empty and every sender is gone.
    #[inline(always)]
    pub fn recv(&self) -> Result<T, RecvError> {
        // SAFETY: this endpoint upholds the ring's consumer rule (module docs).
        unsafe { self.chan.recv() }
    }

    /// Receives the oldest message, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] when nothing arrived in time,
    /// [`RecvTimeoutError::Disconnected`] once the channel is empty and every sender is gone.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        // SAFETY: this endpoint upholds the ring's consumer rule (module docs).
        unsafe { self.chan.recv_deadline(deadline_after(timeout)) }
    }

    /// Appends up to `max` of the oldest messages to `out`, in order, freeing their slots with one
    /// index update, without waiting. Returns how many were appended (at least 1).
    ///
    /// # Errors
    /// As [`try_recv`](Self::try_recv), when nothing is queued.
    pub fn try_recv_batch(&self, out: &mut Vec<T>, max: usize) -> Result<usize, TryRecvError> {
        // SAFETY: this endpoint upholds the ring's consumer rule (module docs).
        unsafe { self.chan.try_recv_batch(out, max) }
    }

    /// Waits for at least one message, then appends up to `max` of the oldest to `out` as
    /// [`try_recv_batch`](Self::try_recv_batch) does. Returns 0 only when `max` is 0.
    ///
    /// # Errors
    /// [`RecvError`] once the channel is empty and every sender is gone.
    pub fn recv_batch(&self, out: &mut Vec<T>, max: usize) -> Result<usize, RecvError> {
        // SAFETY: this endpoint upholds the ring's consumer rule (module docs).
        unsafe { self.chan.recv_batch_deadline(out, max, None) }.map_err(|_| RecvError)
    }

    /// As [`recv_batch`](Self::recv_batch), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn recv_batch_timeout(
        &self,
        out: &mut Vec<T>,
        max: usize,
        timeout: Duration,
    ) -> Result<usize, RecvTimeoutError> {
        // SAFETY: this endpoint upholds the ring's consumer rule (module docs).
        unsafe {
            self.chan
                .recv_batch_deadline(out, max, deadline_after(timeout))
        }
    }
}

impl<T, F: SingleConsumer> Receiver<T, F> {
    /// Closes the channel from the receiving side and returns every message still queued, in
    /// order. Senders fail from now on and hand their message back; a send racing with the close
    /// either fails that way or its message is in the returned `Vec`, so nothing is lost. This is
    /// how a consumer shuts down without dropping accepted work.
    pub fn close(self) -> Vec<T> {
        let mut rest = Vec::new();
        self.chan.close_receiver(&mut |v| rest.push(v));
        // The close above already released this endpoint's count; skip `Drop`.
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so the `Arc` is moved out exactly once
        // and its count is released here.
        drop(unsafe { std::ptr::read(&this.chan) });
        rest
    }
}

impl<T, F: MultiConsumer> Receiver<T, F> {
    /// Closes the channel for every sender, even while other receivers exist, and returns every
    /// message still queued, in order. Later sends fail and hand their message back; a send racing
    /// with the close either fails that way or its message is in the returned `Vec`. Other
    /// receivers can still take what arrives in that race, then see an empty channel. Only the
    /// first call drains: a later one returns an empty `Vec` (what raced in after the first goes
    /// back to its sender).
    pub fn close_all(&self) -> Vec<T> {
        let mut rest = Vec::new();
        // SAFETY: a multi-consumer ring has no consumer rule.
        unsafe { self.chan.seal(&mut |v| rest.push(v)) };
        rest
    }
}

impl<T, F: MultiProducer> Clone for Sender<T, F> {
    fn clone(&self) -> Self {
        self.chan.add_sender();
        Self {
            chan: self.chan.clone(),
            _rule: PhantomData,
        }
    }
}

impl<T, F: MultiConsumer> Clone for Receiver<T, F> {
    fn clone(&self) -> Self {
        self.chan.add_receiver();
        Self {
            chan: self.chan.clone(),
            _rule: PhantomData,
        }
    }
}

impl<T, F: Flavor> Drop for Sender<T, F> {
    fn drop(&mut self) {
        self.chan.drop_sender();
    }
}

impl<T, F: Flavor> Drop for Receiver<T, F> {
    fn drop(&mut self) {
        self.chan.drop_receiver();
    }
}

impl<T, F: Flavor> std::fmt::Debug for Sender<T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_endpoint(f, F::NAME, "Sender", self.len(), self.capacity())
    }
}

impl<T, F: Flavor> std::fmt::Debug for Receiver<T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_endpoint(f, F::NAME, "Receiver", self.len(), self.capacity())
    }
}

/// The `Debug` of an endpoint, without `T: Debug`.
fn debug_endpoint(
    f: &mut std::fmt::Formatter<'_>,
    flavor: &str,
    end: &str,
    len: usize,
    capacity: usize,
) -> std::fmt::Result {
    f.debug_struct(&format!("{flavor}::{end}"))
        .field("len", &len)
        .field("capacity", &capacity)
        .finish_non_exhaustive()
}
