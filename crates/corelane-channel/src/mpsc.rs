//! Multi-producer single-consumer channel.
//!
//! Algorithm: Vyukov's bounded array queue (see `array.rs`), with producers claiming slots by CAS
//! and the single consumer popping with plain loads and stores (no CAS on the receive path).
//!
//! [`Sender`] is `Clone + Send + Sync`; [`Receiver`] is `Send` but neither `Sync` nor `Clone`.
//!
//! # Examples
//! ```
//! let (tx, rx) = corelane_channel::mpsc::channel::<(usize, u32)>(256);
//! let producers: Vec<_> = (0..2)
//!     .map(|p| {
//!         let tx = tx.clone();
//!         std::thread::spawn(move || (0..1000).for_each(|i| tx.send((p, i)).unwrap()))
//!     })
//!     .collect();
//! drop(tx);
//! let mut next = [0u32; 2];
//! while let Ok((p, i)) = rx.recv() {
//!     assert_eq!(i, next[p]); // per-producer FIFO
//!     next[p] += 1;
//! }
//! producers.into_iter().for_each(|h| h.join().unwrap());
//! assert_eq!(next, [1000, 1000]);
//! ```

use std::cell::Cell;
use std::marker::PhantomData;

use crate::array::ArrayRing;
use crate::chan::Chan;
use crate::endpoint::{close_api, debug_endpoint, receiver_api, sender_api};
use crate::sync::Arc;
use crate::WaitStrategy;

type Shared<T> = Arc<Chan<T, ArrayRing<T, false>>>;

/// Creates a channel of at least `capacity` slots (rounded up to a power of two) with the default
/// [`WaitStrategy::SpinThenPark`]. Use [`Builder`](crate::Builder) for another strategy or a typed
/// capacity error.
///
/// # Panics
/// If `capacity` is 0 or rounds up past [`MAX_CAPACITY`](crate::MAX_CAPACITY).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    crate::Builder::new(capacity)
        .mpsc()
        .unwrap_or_else(|e| panic!("mpsc::channel: {e}"))
}

pub(crate) fn with_wait<T>(capacity: usize, wait: WaitStrategy) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Chan::new(capacity, wait));
    (
        Sender { chan: chan.clone() },
        Receiver {
            chan,
            _not_sync: PhantomData,
        },
    )
}

/// A sending end of an [`mpsc`](self) channel. `Clone + Send + Sync`.
pub struct Sender<T> {
    chan: Shared<T>,
}

/// The receiving end of an [`mpsc`](self) channel. `Send`, not `Sync`, not `Clone`.
pub struct Receiver<T> {
    chan: Shared<T>,
    /// Makes the type `!Sync`: the ring's consumer side admits one popping thread.
    _not_sync: PhantomData<Cell<()>>,
}

impl<T> Sender<T> {
    sender_api!();
}
impl<T> Receiver<T> {
    receiver_api!();
    close_api!();
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
