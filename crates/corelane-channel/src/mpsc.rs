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

use crate::array::ArrayRing;
use crate::endpoint::{sealed, Flavor, MultiProducer, OneThread, SingleConsumer};

/// The MPSC flavor: many senders, one receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mpsc {}

impl sealed::Flavor for Mpsc {
    type Ring<T> = ArrayRing<T, false>;
    type SendRule = ();
    type RecvRule = OneThread;
    const NAME: &'static str = "mpsc";
}
impl Flavor for Mpsc {}
impl MultiProducer for Mpsc {}
impl SingleConsumer for Mpsc {}

/// A sending end of an [`mpsc`](self) channel. `Clone + Send + Sync`.
pub type Sender<T> = crate::Sender<T, Mpsc>;

/// The receiving end of an [`mpsc`](self) channel. `Send`, not `Sync`, not `Clone`.
pub type Receiver<T> = crate::Receiver<T, Mpsc>;

/// Creates a channel of at least `capacity` slots (rounded up to a power of two) with the default
/// [`WaitStrategy::SpinThenPark`](crate::WaitStrategy::SpinThenPark). Use
/// [`Builder`](crate::Builder) for another strategy or a typed capacity error.
///
/// # Panics
/// If `capacity` is 0 or rounds up past [`MAX_CAPACITY`](crate::MAX_CAPACITY).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    crate::Builder::new(capacity)
        .mpsc()
        .unwrap_or_else(|e| panic!("mpsc::channel: {e}"))
}
