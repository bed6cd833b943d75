//! Hash-based partitioners: per-build ahash, portable xxh3, and jump consistent hashing.

use std::hash::Hash;

use crate::{reduce, PartitionError, Partitioner, Resize};

/// Fixed ahash seeds: the same key hashes the same in every run of the same build.
const SEEDS: [u64; 4] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
];

/// The key hash shared by [`HashPartitioner`], [`JumpPartitioner`] and the consistent partitioners.
#[derive(Clone)]
pub(crate) struct KeyHasher(ahash::RandomState);

impl Default for KeyHasher {
    fn default() -> Self {
        Self(ahash::RandomState::with_seeds(
            SEEDS[0], SEEDS[1], SEEDS[2], SEEDS[3],
        ))
    }
}

impl KeyHasher {
    #[inline(always)]
    pub(crate) fn hash<K: Hash + ?Sized>(&self, key: &K) -> u64 {
        self.0.hash_one(key)
    }
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(ahash, fixed seeds)")
    }
}

/// `hash(key)` mapped onto `0..n` by multiply-shift: the fastest even spread, but nearly every key
/// moves when `n` changes.
///
/// # Stability
/// The hash is ahash with fixed seeds: the same key maps to the same partition in every run of
/// the same build. ahash does not promise the same output across its versions, CPU features
/// (AES-NI or not) or platforms, and `Hash` impls may change across Rust versions. For placement
/// that must agree across machines, versions or languages, use [`StableHashPartitioner`].
///
/// # Examples
/// ```
/// use corelane_partition::{HashPartitioner, Partitioner, Resize};
/// let p = HashPartitioner::new().for_partitions(8)?;
/// assert!(p.partition(&"key") < 8);
/// # Ok::<(), corelane_partition::PartitionError>(())
/// ```
#[derive(Debug, Clone)]
pub struct HashPartitioner {
    hasher: KeyHasher,
    partitions: usize,
}

impl HashPartitioner {
    /// A hash partitioner with one partition; a pool (or [`Resize::for_partitions`]) sizes it.
    pub fn new() -> Self {
        Self {
            hasher: KeyHasher::default(),
            partitions: 1,
        }
    }

    /// A hash partitioner over `n` partitions.
    ///
    /// # Errors
    /// [`PartitionError::Zero`] for `n == 0`.
    pub fn with_partitions(n: usize) -> Result<Self, PartitionError> {
        Self::new().for_partitions(n)
    }
}

impl Resize for HashPartitioner {
    fn for_partitions(self, n: usize) -> Result<Self, PartitionError> {
        if n == 0 {
            return Err(PartitionError::Zero);
        }
        Ok(Self {
            partitions: n,
            ..self
        })
    }
}

impl Default for HashPartitioner {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + ?Sized> Partitioner<K> for HashPartitioner {
    #[inline]
    fn partition(&self, key: &K) -> usize {
        reduce(self.hasher.hash(key), self.partitions)
    }
    fn partitions(&self) -> usize {
        self.partitions
    }
}

/// Keys with a canonical byte form, for hashes that must agree across machines and versions.
/// Integers use their little-endian bytes (`usize`/`isize` as 64-bit); strings their UTF-8.
pub trait KeyBytes {
    /// Calls `f` with the key's canonical bytes.
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R;
}

impl KeyBytes for [u8] {
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self)
    }
}
impl KeyBytes for str {
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self.as_bytes())
    }
}
impl KeyBytes for String {
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self.as_bytes())
    }
}
impl KeyBytes for Vec<u8> {
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self)
    }
}
impl<T: KeyBytes + ?Sized> KeyBytes for &T {
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        (**self).with_bytes(f)
    }
}
macro_rules! int_key_bytes {
    ($($t:ty => $as:ty),*) => {$(
        impl KeyBytes for $t {
            fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
                f(&(*self as $as).to_le_bytes())
            }
        }
    )*};
}
int_key_bytes!(u8 => u8, u16 => u16, u32 => u32, u64 => u64, u128 => u128, usize => u64,
               i8 => i8, i16 => i16, i32 => i32, i64 => i64, i128 => i128, isize => i64);

/// XXH3-64 (seed 0) of the key's canonical bytes ([`KeyBytes`]), mapped onto `0..n` by
/// multiply-shift. XXH3's output is specified and stable across platforms and versions, so the
/// same key maps to the same partition everywhere, for the same `n`.
///
/// # Examples
/// ```
/// use corelane_partition::{Partitioner, StableHashPartitioner};
/// let p = StableHashPartitioner::with_partitions(16)?;
/// assert_eq!(p.partition("user-42"), p.partition(&"user-42".to_string()));
/// # Ok::<(), corelane_partition::PartitionError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct StableHashPartitioner {
    partitions: usize,
}

impl StableHashPartitioner {
    /// A stable hash partitioner over `n` partitions.
    ///
    /// # Errors
    /// [`PartitionError::Zero`] for `n == 0`.
    pub fn with_partitions(n: usize) -> Result<Self, PartitionError> {
        if n == 0 {
            return Err(PartitionError::Zero);
        }
        Ok(Self { partitions: n })
    }

    /// The portable 64-bit hash this partitioner uses: XXH3-64 with seed 0 over the key's bytes.
    pub fn hash<K: KeyBytes + ?Sized>(key: &K) -> u64 {
        key.with_bytes(xxhash_rust::xxh3::xxh3_64)
    }
}

impl Resize for StableHashPartitioner {
    fn for_partitions(self, n: usize) -> Result<Self, PartitionError> {
        Self::with_partitions(n)
    }
}

impl<K: KeyBytes + ?Sized> Partitioner<K> for StableHashPartitioner {
    #[inline]
    fn partition(&self, key: &K) -> usize {
        reduce(Self::hash(key), self.partitions)
    }
    fn partitions(&self) -> usize {
        self.partitions
    }
}

/// Jump consistent hash (Lamping & Veach, 2014): no memory, near-perfect balance, and on growth
/// from `n` to `n + 1` exactly the keys that move go to the new partition (about `1/(n+1)`).
/// Partitions are `0..n`; only the last one can be removed.
///
/// # Examples
/// ```
/// use corelane_partition::{JumpPartitioner, Partitioner};
/// let (a, b) = (JumpPartitioner::with_partitions(10)?, JumpPartitioner::with_partitions(11)?);
/// let (x, y) = (a.partition(&1234u64), b.partition(&1234u64));
/// assert!(x == y || y == 10);
/// # Ok::<(), corelane_partition::PartitionError>(())
/// ```
#[derive(Debug, Clone)]
pub struct JumpPartitioner {
    hasher: KeyHasher,
    partitions: usize,
}

impl JumpPartitioner {
    /// Largest supported number of partitions (the algorithm works on 31-bit buckets).
    pub const MAX_PARTITIONS: usize = i32::MAX as usize;

    /// A jump partitioner over `n` partitions.
    ///
    /// # Errors
    /// [`PartitionError::Zero`] for 0; [`PartitionError::TooMany`] above
    /// [`JumpPartitioner::MAX_PARTITIONS`].
    pub fn with_partitions(n: usize) -> Result<Self, PartitionError> {
        match n {
            0 => Err(PartitionError::Zero),
            n if n > Self::MAX_PARTITIONS => Err(PartitionError::TooMany(n)),
            n => Ok(Self {
                hasher: KeyHasher::default(),
                partitions: n,
            }),
        }
    }

    /// The jump function itself, over a 64-bit key hash.
    #[inline]
    pub fn jump(mut hash: u64, n: usize) -> usize {
        let (mut b, mut j) = (-1i64, 0i64);
        while j < n as i64 {
            b = j;
            hash = hash.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
            j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((hash >> 33) + 1) as f64)) as i64;
        }
        b as usize
    }
}

impl Resize for JumpPartitioner {
    fn for_partitions(self, n: usize) -> Result<Self, PartitionError> {
        Self::with_partitions(n)
    }
}

impl<K: Hash + ?Sized> Partitioner<K> for JumpPartitioner {
    #[inline]
    fn partition(&self, key: &K) -> usize {
        Self::jump(self.hasher.hash(key), self.partitions)
    }
    fn partitions(&self) -> usize {
        self.partitions
    }
}
