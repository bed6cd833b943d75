//! The public methods of sending and receiving endpoints, written once and stamped onto each
//! flavor's endpoint types. Each endpoint holds `chan: Arc<Chan<T, Ring>>` and, by its auto traits
//! and lack of `Clone`, upholds its ring's producer/consumer rule; that is the invariant every
//! `unsafe` call below relies on.

macro_rules! common_api {
    () => {
        /// Number of messages queued now (a snapshot; other threads may change it at once).
        pub fn len(&self) -> usize {
            self.chan.len()
        }
        /// Whether no message is ready to receive now (a snapshot, like [`len`](Self::len); a
        /// message whose sender is still writing it is not ready yet).
        ///
        /// Cheaper than `len() == 0` for a receiver that polls: it reads the slot the next
        /// receive would take, not the senders' index, so a poller does not pull that index's
        /// cache line away from the next sender.
        pub fn is_empty(&self) -> bool {
            !self.chan.has_item()
        }
        /// Whether the channel is at capacity now.
        pub fn is_full(&self) -> bool {
            self.chan.len() >= self.chan.capacity()
        }
        /// The number of slots: the requested capacity rounded up to a power of two.
        pub fn capacity(&self) -> usize {
            self.chan.capacity()
        }
        /// The wait strategy chosen at construction.
        pub fn wait_strategy(&self) -> $crate::WaitStrategy {
            self.chan.wait_strategy()
        }
    };
}

macro_rules! sender_api {
    () => {
        $crate::endpoint::common_api!();

        /// Whether every receiver is gone (sends will fail and hand their value back).
        pub fn is_disconnected(&self) -> bool {
            self.chan.is_disconnected_for_senders()
        }

        /// Sends `value` if there is room, without waiting.
        ///
        /// # Errors
        /// [`TrySendError::Full`](crate::TrySendError::Full) when the channel is full,
        /// [`TrySendError::Disconnected`](crate::TrySendError::Disconnected) when every receiver is
        /// gone; both hand `value` back.
        #[inline(always)]
        pub fn try_send(&self, value: T) -> Result<(), $crate::TrySendError<T>> {
            // SAFETY: this endpoint upholds the ring's producer rule (module docs).
            unsafe { self.chan.try_send(value) }
        }

        /// Sends `value`, waiting for room by the channel's [`WaitStrategy`](crate::WaitStrategy).
        ///
        /// # Errors
        /// [`SendError`](crate::SendError) with `value` when every receiver is gone, including
        /// when the last one drops while this call waits.
        #[inline(always)]
        pub fn send(&self, value: T) -> Result<(), $crate::SendError<T>> {
            // SAFETY: this endpoint upholds the ring's producer rule (module docs).
            unsafe { self.chan.send(value) }
        }

        /// Sends `value`, waiting at most `timeout` for room.
        ///
        /// # Errors
        /// [`SendTimeoutError::Timeout`](crate::SendTimeoutError::Timeout) or
        /// [`SendTimeoutError::Disconnected`](crate::SendTimeoutError::Disconnected), each with
        /// `value`.
        pub fn send_timeout(
            &self,
            value: T,
            timeout: std::time::Duration,
        ) -> Result<(), $crate::SendTimeoutError<T>> {
            // SAFETY: this endpoint upholds the ring's producer rule (module docs).
            unsafe {
                self.chan
                    .send_deadline(value, $crate::chan::deadline_after(timeout))
            }
        }

        /// Moves as many messages as fit from the front of `items` into the channel, in order,
        /// publishing them with one index update, without waiting. Returns how many moved; the
        /// rest stay in `items`.
        ///
        /// # Errors
        /// [`SendError`](crate::SendError) when every receiver is gone; `items` is left untouched.
        pub fn try_send_batch(&self, items: &mut Vec<T>) -> Result<usize, $crate::SendError<()>> {
            // SAFETY: this endpoint upholds the ring's producer rule (module docs).
            unsafe { self.chan.try_send_batch(items) }
        }

        /// Moves every message of `items` into the channel, in order, in as few index updates as
        /// room allows, waiting for room by the channel's wait strategy. `items` ends empty.
        ///
        /// # Errors
        /// [`SendError`](crate::SendError) when every receiver is gone; the messages not yet sent
        /// stay in `items`, in order.
        pub fn send_batch(&self, items: &mut Vec<T>) -> Result<(), $crate::SendError<()>> {
            // SAFETY: this endpoint upholds the ring's producer rule (module docs).
            unsafe { self.chan.send_batch(items) }
        }
    };
}

macro_rules! receiver_api {
    () => {
        $crate::endpoint::common_api!();

        /// Whether every sender is gone. Messages already queued can still be received.
        pub fn is_disconnected(&self) -> bool {
            self.chan.is_disconnected_for_receivers()
        }

        /// Receives the oldest message without waiting.
        ///
        /// # Errors
        /// [`TryRecvError::Empty`](crate::TryRecvError::Empty) when nothing is queued,
        /// [`TryRecvError::Disconnected`](crate::TryRecvError::Disconnected) when nothing is
        /// queued and every sender is gone.
        #[inline(always)]
        pub fn try_recv(&self) -> Result<T, $crate::TryRecvError> {
            // SAFETY: this endpoint upholds the ring's consumer rule (module docs).
            unsafe { self.chan.try_recv() }
        }

        /// Receives the oldest message, waiting by the channel's
        /// [`WaitStrategy`](crate::WaitStrategy).
        ///
        /// # Errors
        /// [`RecvError`](crate::RecvError) once the channel is empty and every sender is gone.
        #[inline(always)]
        pub fn recv(&self) -> Result<T, $crate::RecvError> {
            // SAFETY: this endpoint upholds the ring's consumer rule (module docs).
            unsafe { self.chan.recv() }
        }

        /// Receives the oldest message, waiting at most `timeout`.
        ///
        /// # Errors
        /// [`RecvTimeoutError::Timeout`](crate::RecvTimeoutError::Timeout) when nothing arrived in
        /// time, [`RecvTimeoutError::Disconnected`](crate::RecvTimeoutError::Disconnected) once the
        /// channel is empty and every sender is gone.
        pub fn recv_timeout(
            &self,
            timeout: std::time::Duration,
        ) -> Result<T, $crate::RecvTimeoutError> {
            // SAFETY: this endpoint upholds the ring's consumer rule (module docs).
            unsafe {
                self.chan
                    .recv_deadline($crate::chan::deadline_after(timeout))
            }
        }

        /// Appends up to `max` of the oldest messages to `out`, in order, freeing their slots
        /// with one index update, without waiting. Returns how many were appended (at least 1).
        ///
        /// # Errors
        /// As [`try_recv`](Self::try_recv), when nothing is queued.
        pub fn try_recv_batch(
            &self,
            out: &mut Vec<T>,
            max: usize,
        ) -> Result<usize, $crate::TryRecvError> {
            // SAFETY: this endpoint upholds the ring's consumer rule (module docs).
            unsafe { self.chan.try_recv_batch(out, max) }
        }

        /// Waits for at least one message, then appends up to `max` of the oldest to `out` as
        /// [`try_recv_batch`](Self::try_recv_batch) does. Returns 0 only when `max` is 0.
        ///
        /// # Errors
        /// [`RecvError`](crate::RecvError) once the channel is empty and every sender is gone.
        pub fn recv_batch(&self, out: &mut Vec<T>, max: usize) -> Result<usize, $crate::RecvError> {
            // SAFETY: this endpoint upholds the ring's consumer rule (module docs).
            unsafe { self.chan.recv_batch_deadline(out, max, None) }.map_err(|_| $crate::RecvError)
        }

        /// As [`recv_batch`](Self::recv_batch), waiting at most `timeout`.
        ///
        /// # Errors
        /// As [`recv_timeout`](Self::recv_timeout).
        pub fn recv_batch_timeout(
            &self,
            out: &mut Vec<T>,
            max: usize,
            timeout: std::time::Duration,
        ) -> Result<usize, $crate::RecvTimeoutError> {
            // SAFETY: this endpoint upholds the ring's consumer rule (module docs).
            unsafe {
                self.chan
                    .recv_batch_deadline(out, max, $crate::chan::deadline_after(timeout))
            }
        }
    };
}

/// `close(self)` for the single receiver of a channel (SPSC and MPSC).
macro_rules! close_api {
    () => {
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
    };
}

/// Implements `Debug` (without `T: Debug`) for an endpoint type.
macro_rules! debug_endpoint {
    ($ty:ident) => {
        impl<T> std::fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("len", &self.chan.len())
                    .field("capacity", &self.chan.capacity())
                    .finish_non_exhaustive()
            }
        }
    };
}

pub(crate) use {close_api, common_api, debug_endpoint, receiver_api, sender_api};
