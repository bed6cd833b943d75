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
use crate::endpoint::{sealed, Flavor, MultiConsumer, MultiProducer};

/// The MPMC flavor: many senders, many receivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mpmc {}

impl sealed::Flavor for Mpmc {
    type Ring<T> = ArrayRing<T, true>;
    type SendRule = ();
    type RecvRule = ();
    const NAME: &'static str = "mpmc";
}
impl Flavor for Mpmc {}
impl MultiProducer for Mpmc {}
impl MultiConsumer for Mpmc {}

/// A sending end of an [`mpmc`](self) channel. `Clone + Send + Sync`.
pub type Sender<T> = crate::Sender<T, Mpmc>;

/// A receiving end of an [`mpmc`](self) channel. `Clone + Send + Sync`; see
/// [`Receiver::close_all`](crate::Receiver::close_all).
pub type Receiver<T> = crate::Receiver<T, Mpmc>;

/// Creates a channel of at least `capacity` slots (rounded up to a power of two) with the default
/// [`WaitStrategy::SpinThenPark`](crate::WaitStrategy::SpinThenPark). Use
/// [`Builder`](crate::Builder) for another strategy or a typed capacity error.
///
/// # Panics
/// If `capacity` is 0 or rounds up past [`MAX_CAPACITY`](crate::MAX_CAPACITY).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    crate::Builder::new(capacity)
        .mpmc()
        .unwrap_or_else(|e| panic!("mpmc::channel: {e}"))
}
