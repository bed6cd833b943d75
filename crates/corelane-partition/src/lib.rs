//! Partitioners decide which worker owns a key: on every send, so they cost a few nanoseconds;
//! for load balance, so they are as even as chance allows; and on resize, so they move as few
//! keys as possible.
//!
//! ```
//! use corelane_partition::{ConsistentHashPartitioner, HashPartitioner, Partitioner, RangePartitioner};
//!
//! let hash = HashPartitioner::with_partitions(4)?;
//! let p = hash.partition("user-42");
//! assert!(p < 4);
//! assert_eq!(p, hash.partition("user-42")); // same key, same partition, every run of this build
//!
//! let mut ring = ConsistentHashPartitioner::new(4)?;
//! let before = ring.partition(&7u64);
//! let added = ring.add();                 // a fifth member takes ~1/5 of the keys...
//! let after = ring.partition(&7u64);
//! assert!(after == before || after == added); // ...and every key that moves, moves to it
//!
//! let ranges = RangePartitioner::new(vec![10, 20])?; // (..10), [10, 20), [20..)
//! assert_eq!((ranges.partition(&5), ranges.partition(&10), ranges.partition(&25)), (0, 1, 2));
//! # Ok::<(), corelane_partition::PartitionError>(())
//! ```
//!
//! | partitioner | lookup | balance | on resize | removal of any member |
//! |---|---|---|---|---|
//! | [`HashPartitioner`] | hash + multiply | chance | almost every key moves | no |
//! | [`StableHashPartitioner`] | xxh3 + multiply | chance | almost every key moves | no |
//! | [`ConsistentHashPartitioner`] | hash + table read | chance + table quantization | minimal | yes |
//! | [`RingPartitioner`] (`hashring`) | hash + binary search | ~1.25 max/mean at 100 vnodes | minimal | yes |
//! | [`JumpPartitioner`] | hash + O(log n) loop | near perfect | minimal | last only |
//! | [`RendezvousPartitioner`] | O(n) scores | chance | minimal | yes |
//! | [`RangePartitioner`] | binary search | by your bounds | by your bounds | n/a |
//! | [`RoundRobinPartitioner`] | thread-local counter | perfect | n/a | n/a |
//!
//! Figures: `docs/partitioning.md`.

#![forbid(unsafe_code)]

use std::fmt;
use std::hash::{Hash, Hasher};

mod consistent;
mod hash;
mod range;
mod simple;

pub use consistent::{ConsistentHashPartitioner, RendezvousPartitioner, RingPartitioner};
pub use hash::{HashPartitioner, JumpPartitioner, KeyBytes, StableHashPartitioner};
pub use range::RangePartitioner;
pub use simple::{FnPartitioner, RoundRobinPartitioner};

/// A key of any hashable type, behind a reference: a partitioner that hashes its keys
/// (every hash-based one here) implements `Partitioner<AnyKey<'_>>` and puts an `AnyKey` where it
/// puts the key itself. So one object-safe partitioner, `dyn for<'a> Partitioner<AnyKey<'a>>`,
/// routes keys of every type.
///
/// # Examples
/// ```
/// use corelane_partition::{AnyKey, HashPartitioner, Partitioner};
/// let p = HashPartitioner::with_partitions(8)?;
/// let erased: &dyn for<'a> Partitioner<AnyKey<'a>> = &p;
/// for key in ["a", "b", "order-17"] {
///     // `str` is unsized: erase the `&str` (a reference hashes as what it points to).
///     assert_eq!(erased.partition(&AnyKey::new(&key)), p.partition(key));
/// }
/// assert_eq!(erased.partition(&AnyKey::new(&42u64)), p.partition(&42u64));
/// # Ok::<(), corelane_partition::PartitionError>(())
/// ```
#[derive(Clone, Copy)]
pub struct AnyKey<'a>(&'a dyn HashInto);

impl<'a> AnyKey<'a> {
    /// Erases `key`'s type. For an unsized key (`str`, a slice), erase a reference to it: a
    /// reference hashes exactly as what it points to.
    pub fn new<K: Hash>(key: &'a K) -> Self {
        Self(key)
    }
}

impl Hash for AnyKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The same calls on `state` as `K::hash` makes, through a `dyn Hasher`.
        self.0.hash_into(state);
    }
}

impl fmt::Debug for AnyKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AnyKey(..)")
    }
}

/// `Hash`, object-safe: what [`AnyKey`] holds.
trait HashInto {
    fn hash_into(&self, state: &mut dyn Hasher);
}

impl<K: Hash + ?Sized> HashInto for K {
    fn hash_into(&self, mut state: &mut dyn Hasher) {
        self.hash(&mut state);
    }
}

/// Maps keys to partitions `0..partitions()`.
pub trait Partitioner<K: ?Sized>: Send + Sync {
    /// The partition that owns `key`; always `< self.partitions()`.
    fn partition(&self, key: &K) -> usize;

    /// The number of partitions (one past the largest result [`Partitioner::partition`] can give).
    fn partitions(&self) -> usize;
}

/// Sizing a partitioner for a given number of partitions, independent of the key type, so a pool
/// can fit whatever partitioner it is given to its worker count.
pub trait Resize: Sized {
    /// This partitioner, sized for `n` partitions. Partitioners that can take any size
    /// ([`HashPartitioner`], [`JumpPartitioner`], [`StableHashPartitioner`],
    /// [`RoundRobinPartitioner`]) resize; the others accept only their own size.
    ///
    /// # Errors
    /// [`PartitionError::Zero`] for `n == 0`; [`PartitionError::Mismatch`] when this partitioner
    /// has a fixed size other than `n`.
    fn for_partitions(self, n: usize) -> Result<Self, PartitionError>;
}

/// `Resize` for fixed-size partitioners: accept `n` only if it is their size.
pub(crate) fn fixed_size<P>(p: P, have: usize, want: usize) -> Result<P, PartitionError> {
    match want {
        0 => Err(PartitionError::Zero),
        n if n == have => Ok(p),
        _ => Err(PartitionError::Mismatch { want, have }),
    }
}

impl<K: ?Sized> Resize for Box<dyn Partitioner<K>> {
    fn for_partitions(self, n: usize) -> Result<Self, PartitionError> {
        let have = self.partitions();
        fixed_size(self, have, n)
    }
}

impl<K: ?Sized, P: Partitioner<K> + ?Sized> Partitioner<K> for Box<P> {
    fn partition(&self, key: &K) -> usize {
        (**self).partition(key)
    }
    fn partitions(&self) -> usize {
        (**self).partitions()
    }
}

impl<K: ?Sized, P: Partitioner<K> + ?Sized> Partitioner<K> for std::sync::Arc<P> {
    fn partition(&self, key: &K) -> usize {
        (**self).partition(key)
    }
    fn partitions(&self) -> usize {
        (**self).partitions()
    }
}

/// Why a partitioner could not be built or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PartitionError {
    /// Zero partitions were requested; every key needs an owner.
    #[error("a partitioner needs at least one partition")]
    Zero,
    /// Range bounds must be strictly increasing; the bound at `index` is not above its predecessor.
    #[error("range bound {index} is not greater than bound {}: bounds must be sorted and distinct", index - 1)]
    Unsorted {
        /// Position of the first offending bound.
        index: usize,
    },
    /// A fixed-size partitioner was asked to serve another number of partitions.
    #[error("partitioner has {have} partitions but {want} are needed")]
    Mismatch {
        /// Partitions needed.
        want: usize,
        /// Partitions this partitioner has.
        have: usize,
    },
    /// The member is not part of this partitioner.
    #[error("member {0} is not in the partitioner")]
    UnknownMember(usize),
    /// Too many partitions for this scheme.
    #[error("{0} partitions are more than this partitioner supports")]
    TooMany(usize),
}

/// Maps a uniformly distributed 64-bit hash onto `0..n` without division (Lemire's
/// multiply-shift), with bias below `n / 2^64`.
#[inline(always)]
pub(crate) fn reduce(hash: u64, n: usize) -> usize {
    ((u128::from(hash) * n as u128) >> 64) as usize
}

/// A strong, fast, stable 64-bit mixer (the murmur3 / splitmix64 finalizer).
#[inline(always)]
pub(crate) fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}
