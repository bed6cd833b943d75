//! Single-producer single-consumer channel.
//!
//! Algorithm: Lamport's bounded ring buffer (L. Lamport, "Specifying Concurrent Program Modules",
//! 1983) with cached opposite indices, as in rigtorp's SPSCQueue and the `rtrb` crate: the
//! producer owns `tail`, the consumer owns `head`, each on its own cache line, and each side keeps
//! a private copy of the other's index, reloading it (Acquire) only when the copy says full/empty.
//! A publish is one Release store; nothing is ever compare-and-swapped. Each side's private
//! copies (its own index and its cache of the peer's) sit on a third and fourth line that the
//! peer never touches, so the hot path never reads a line the peer is polling (rtrb keeps them
//! in its endpoints for the same reason). Each side asks for the slot line it will touch eight
//! lines ahead once that line is its own (x86_64): the consumer for reading once the line is
//! published, the producer for writing (`prefetchw`) once the consumer has freed it. So the
//! transfer of a line between the cores overlaps the messages before it instead of stalling one
//! of them, which is what rigtorp's and rtrb's rings pay per line.
//!
//! The endpoints encode the topology: [`Sender`] and [`Receiver`] are `Send` but neither `Sync`
//! nor `Clone`, so at most one thread pushes and one pops at any time:
//! ```compile_fail
//! let (tx, _rx) = corelane_channel::spsc::channel::<u8>(4);
//! let _second = tx.clone(); // no second producer
//! ```
//! ```compile_fail
//! fn shared<T: Sync>(_: &T) {}
//! let (tx, _rx) = corelane_channel::spsc::channel::<u8>(4);
//! shared(&tx); // no pushing through a shared reference from two threads
//! ```
//! ```compile_fail
//! fn shared<T: Sync>(_: &T) {}
//! let (_tx, rx) = corelane_channel::mpsc::channel::<u8>(4);
//! shared(&rx); // the MPSC receiver is single-consumer too
//! ```
//!
//! # Examples
//! ```
//! let (tx, rx) = corelane_channel::spsc::channel::<u64>(1024);
//! let consumer = std::thread::spawn(move || {
//!     let mut sum = 0;
//!     while let Ok(v) = rx.recv() {
//!         sum += v;
//!     }
//!     sum
//! });
//! for i in 0..10_000 {
//!     tx.send(i).unwrap();
//! }
//! drop(tx); // the consumer drains what is queued, then sees the disconnect
//! assert_eq!(consumer.join().unwrap(), (0..10_000).sum::<u64>());
//! ```

use crate::endpoint::{sealed, Flavor, OneThread, SingleConsumer};
use crate::lamport::SpscRing;

/// The SPSC flavor: one sender, one receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spsc {}

impl sealed::Flavor for Spsc {
    type Ring<T> = SpscRing<T>;
    type SendRule = OneThread;
    type RecvRule = OneThread;
    const NAME: &'static str = "spsc";
}
impl Flavor for Spsc {}
impl SingleConsumer for Spsc {}

/// The sending end of an [`spsc`](self) channel. `Send`, not `Sync`, not `Clone`.
pub type Sender<T> = crate::Sender<T, Spsc>;

/// The receiving end of an [`spsc`](self) channel. `Send`, not `Sync`, not `Clone`.
pub type Receiver<T> = crate::Receiver<T, Spsc>;

/// Creates a channel of at least `capacity` slots (rounded up to a power of two) with the default
/// [`WaitStrategy::SpinThenPark`](crate::WaitStrategy::SpinThenPark). Use
/// [`Builder`](crate::Builder) for another strategy or a typed capacity error.
///
/// # Panics
/// If `capacity` is 0 or rounds up past [`MAX_CAPACITY`](crate::MAX_CAPACITY).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    crate::Builder::new(capacity)
        .spsc()
        .unwrap_or_else(|e| panic!("spsc::channel: {e}"))
}
