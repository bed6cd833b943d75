//! Wait strategies and the sleeper signal every blocking operation parks on.
//!
//! # Wake-up protocol
//! A [`Signal`] has a state word (a sleeper count and two flags), an epoch under a mutex, and a
//! condvar. A thread that wants to park takes the mutex, raises the count, runs [`heavy_barrier`],
//! re-checks its condition and only then waits. A thread that changed the channel (pushed or
//! popped) runs [`light_barrier`] and reads the word; only when it is non-zero does it go to the
//! slow path, which takes the mutex, zeroes the count, bumps the epoch and notifies if the count
//! is non-zero. So when nobody sleeps, the hot path costs one compiler fence and one load of a
//! read-mostly cache line, and never a lock.
//!
//! The flags make that one load answer every question the hot path has: [`FENCED`] (set for good
//! where [`light_barrier`] alone does not pair with [`heavy_barrier`]) sends every publisher to the
//! slow path, which runs `fence(SeqCst)` and reads the word again; [`STICKY`] (set for good by
//! [`Signal::stick`], when a channel's last receiver is gone) tells a sender that its value may
//! have to be taken back, without a second load of a closed flag per send.
//!
//! A task can wait too ([`Doorbell::ready`]): it registers its `Waker` under the same mutex and is
//! counted in the same sleeper count, so a notify that finds sleepers wakes it as well.

mod backoff;
mod doorbell;
mod signal;
mod strategy;

pub(crate) use backoff::block_on;
pub use doorbell::{Doorbell, DoorbellReady};
pub(crate) use signal::{Registration, Signal};
pub use strategy::{WaitStrategy, MAX_SPIN_BUDGET, SPIN_BUDGET};
