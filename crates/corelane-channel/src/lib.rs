//! Bounded, cache-padded channels for shared-nothing runtimes: SPSC, MPSC and MPMC flavors with
//! one API, batch operations, and a choice of wait strategy.
//!
//! ```
//! use corelane_channel::{spsc, Builder, TrySendError, WaitStrategy};
//!
//! // Default: bounded spin, then park (a blocked thread costs no CPU).
//! let (tx, rx) = spsc::channel::<String>(2);
//! tx.send("hello".to_string()).unwrap();
//! assert_eq!(rx.recv().unwrap(), "hello");
//!
//! // A full channel hands the message back.
//! let (tx, _rx) = Builder::new(1).wait_strategy(WaitStrategy::Park).mpsc::<u32>()?;
//! tx.try_send(1).unwrap();
//! assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
//!
//! // Batches publish many messages with one index update.
//! let (tx, rx) = spsc::channel::<u32>(8);
//! let mut items = vec![1, 2, 3];
//! tx.send_batch(&mut items).unwrap();
//! let mut out = Vec::new();
//! assert_eq!(rx.try_recv_batch(&mut out, 8), Ok(3));
//! assert_eq!(out, [1, 2, 3]);
//! # Ok::<(), corelane_channel::CapacityError>(())
//! ```
//!
//! # Flavors
//! | module | ring | sender | receiver |
//! |---|---|---|---|
//! | [`spsc`] | Lamport ring, cached indices, no CAS | `Send` | `Send` |
//! | [`mpsc`] | Vyukov array, CAS on send only | `Clone + Send + Sync` | `Send` |
//! | [`mpmc`] | Vyukov array, CAS on both sides | `Clone + Send + Sync` | `Clone + Send + Sync` |
//!
//! [`oneshot`] carries a single value (a reply): one allocation, a state word instead of a ring,
//! and no barrier when either end is dropped.
//!
//! # Semantics shared by every flavor
//! - Capacity is rounded up to a power of two; `capacity()` reports the real value. No allocation
//!   happens per message after construction.
//! - Dropping the last receiver drops every queued message at once; later sends fail and hand the
//!   value back. Dropping the last sender lets receivers drain what is queued, then report
//!   disconnected. Threads blocked on the other side wake on disconnect.
//! - Waking a sleeper never takes a lock when nobody sleeps (see [`WaitStrategy`]).

mod array;
mod chan;
mod endpoint;
mod error;
mod hint;
mod lamport;
pub mod mpmc;
pub mod mpsc;
pub mod oneshot;
pub mod spsc;
mod sync;
mod wait;

pub use endpoint::{Flavor, MultiConsumer, MultiProducer, Receiver, Sender, SingleConsumer};
pub use error::{
    CapacityError, Disconnected, RecvError, RecvTimeoutError, SendTimeoutError, TryRecvError,
    TrySendError,
};
pub use wait::{Doorbell, DoorbellReady, WaitStrategy, MAX_SPIN_BUDGET, SPIN_BUDGET};

/// Both ends of a new channel.
type Pair<T, F> = (Sender<T, F>, Receiver<T, F>);

/// The largest capacity a channel can have (after rounding up to a power of two).
pub const MAX_CAPACITY: usize = 1 << (usize::BITS - 2);

/// Configures and creates a channel of any flavor, returning a typed error for a bad capacity.
///
/// # Examples
/// ```
/// use corelane_channel::{Builder, CapacityError, WaitStrategy};
/// let (tx, rx) = Builder::new(1000).wait_strategy(WaitStrategy::Spin).spsc::<u8>()?;
/// assert_eq!(tx.capacity(), 1024);
/// assert_eq!(Builder::new(0).mpmc::<u8>().unwrap_err(), CapacityError::Zero);
/// # Ok::<(), CapacityError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Builder {
    capacity: usize,
    wait: WaitStrategy,
}

impl Builder {
    /// A builder for a channel of at least `capacity` slots, with the default wait strategy.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            wait: WaitStrategy::default(),
        }
    }

    /// Sets how blocked senders and receivers wait.
    pub fn wait_strategy(mut self, wait: WaitStrategy) -> Self {
        self.wait = wait;
        self
    }

    /// The capacity the channel will really have.
    ///
    /// # Errors
    /// [`CapacityError::Zero`] for 0; [`CapacityError::TooLarge`] past [`MAX_CAPACITY`].
    pub fn real_capacity(&self) -> Result<usize, CapacityError> {
        match self.capacity {
            0 => Err(CapacityError::Zero),
            c if c > MAX_CAPACITY => Err(CapacityError::TooLarge(c)),
            c => Ok(c.next_power_of_two()),
        }
    }

    /// Creates an [`spsc`] channel.
    ///
    /// # Errors
    /// As [`Builder::real_capacity`].
    pub fn spsc<T>(self) -> Result<(spsc::Sender<T>, spsc::Receiver<T>), CapacityError> {
        self.build()
    }

    /// Creates an [`mpsc`] channel.
    ///
    /// # Errors
    /// As [`Builder::real_capacity`].
    pub fn mpsc<T>(self) -> Result<(mpsc::Sender<T>, mpsc::Receiver<T>), CapacityError> {
        self.build()
    }

    /// Creates an [`mpmc`] channel.
    ///
    /// # Errors
    /// As [`Builder::real_capacity`].
    pub fn mpmc<T>(self) -> Result<(mpmc::Sender<T>, mpmc::Receiver<T>), CapacityError> {
        self.build()
    }

    /// Creates a channel of flavor `F`.
    fn build<T, F: Flavor>(self) -> Result<Pair<T, F>, CapacityError> {
        Ok(endpoint::pair(self.real_capacity()?, self.wait))
    }
}
