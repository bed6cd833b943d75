//! Multi-producer multi-consumer channel.
//!
//! Algorithm: Vyukov's bounded array queue (see `array.rs`), producers and consumers both claiming
//! positions by CAS. Each message is received by exactly one receiver.
//!
//! [`Sender`] and [`Receiver`] are both `Clone + Send + Sync`.
//!
//! # Examples
//! ```
//! let (tx, rx) = corelane_channel::mpmc::channel::<u64>(64);
//! let workers: Vec<_> = (0..2)
//!     .map(|_| {
//!         let rx = rx.clone();
//!         std::thread::spawn(move || rx.recv().into_iter().chain(std::iter::from_fn(|| rx.recv().ok())).sum::<u64>())
//!     })
//!     .collect();
//! drop(rx);
//! (1..=100).for_each(|i| tx.send(i).unwrap());
//! drop(tx);
//! let total: u64 = workers.into_iter().map(|h| h.join().unwrap()).sum();
//! assert_eq!(total, 5050);
//! ```

use crate::array::ArrayRing;
use crate::chan::Chan;
use crate::endpoint::{debug_endpoint, receiver_api, sender_api};
use crate::sync::Arc;
use crate::WaitStrategy;

type Shared<T> = Arc<Chan<T, ArrayRing<T, true>>>;

/// Creates a channel of at least `capacity` slots (rounded up to a power of two) with the default
/// [`WaitStrategy::SpinThenPark`]. Use [`Builder`](crate::Builder) for another strategy or a typed
/// capacity error.
///
/// # Panics
/// If `capacity` is 0 or rounds up past [`MAX_CAPACITY`](crate::MAX_CAPACITY).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    crate::Builder::new(capacity)
        .mpmc()
        .unwrap_or_else(|e| panic!("mpmc::channel: {e}"))
}

pub(crate) fn with_wait<T>(capacity: usize, wait: WaitStrategy) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Chan::new(capacity, wait));
    (Sender { chan: chan.clone() }, Receiver { chan })
}

/// A sending end of an [`mpmc`](self) channel. `Clone + Send + Sync`.
pub struct Sender<T> {
    chan: Shared<T>,
}

/// A receiving end of an [`mpmc`](self) channel. `Clone + Send + Sync`.
pub struct Receiver<T> {
    chan: Shared<T>,
}

impl<T> Sender<T> {
    sender_api!();
}
impl<T> Receiver<T> {
    receiver_api!();

    /// Closes the channel for every sender, even while other receivers exist, and returns every
    /// message still queued, in order. Later sends fail and hand their message back; a send racing
    /// with the close either fails that way or its message is in the returned `Vec`. Other
    /// receivers can still take what arrives in that race, then see an empty channel. Only the
    /// first call drains: a later one returns an empty `Vec` (what raced in after the first goes
    /// back to its sender).
    pub fn close_all(&self) -> Vec<T> {
        let mut rest = Vec::new();
        // SAFETY: the MPMC ring has no consumer rule.
        unsafe { self.chan.seal(&mut |v| rest.push(v)) };
        rest
    }
}
debug_endpoint!(Sender);
debug_endpoint!(Receiver);

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.add_sender();
        Self {
            chan: self.chan.clone(),
        }
    }
}
impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.chan.add_receiver();
        Self {
            chan: self.chan.clone(),
        }
    }
}
impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.chan.drop_sender();
    }
}
impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.chan.drop_receiver();
    }
}
