//! Range partitioning over sorted split points.

use crate::{fixed_size, PartitionError, Partitioner, Resize};

/// Splits an ordered key space at sorted, distinct bounds: with bounds `[b0, b1, ..]`, keys below
/// `b0` go to partition 0, keys in `[b0, b1)` to 1, and so on: `bounds.len() + 1` partitions.
/// Lookup is a binary search; partition numbers never decrease as the key grows.
///
/// # Examples
/// ```
/// use corelane_partition::{PartitionError, Partitioner, RangePartitioner};
/// let p = RangePartitioner::new(vec!["g", "p"])?;
/// assert_eq!((p.partition(&"apple"), p.partition(&"grape"), p.partition(&"zucchini")), (0, 1, 2));
/// assert_eq!(RangePartitioner::new(vec![3, 1]).unwrap_err(), PartitionError::Unsorted { index: 1 });
/// # Ok::<(), PartitionError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RangePartitioner<K> {
    bounds: Vec<K>,
}

impl<K: Ord> RangePartitioner<K> {
    /// A range partitioner from split points.
    ///
    /// # Errors
    /// [`PartitionError::Unsorted`] naming the first bound that is not strictly greater than the
    /// one before it (unsorted or duplicate).
    pub fn new(bounds: Vec<K>) -> Result<Self, PartitionError> {
        if let Some(i) = bounds.windows(2).position(|w| w[0] >= w[1]) {
            return Err(PartitionError::Unsorted { index: i + 1 });
        }
        Ok(Self { bounds })
    }

    /// The split points.
    pub fn bounds(&self) -> &[K] {
        &self.bounds
    }
}

impl<K: Ord + Send + Sync> Partitioner<K> for RangePartitioner<K> {
    #[inline]
    fn partition(&self, key: &K) -> usize {
        self.bounds.partition_point(|b| b <= key)
    }
    fn partitions(&self) -> usize {
        self.bounds.len() + 1
    }
}

impl<K> Resize for RangePartitioner<K> {
    fn for_partitions(self, n: usize) -> Result<Self, PartitionError> {
        let have = self.bounds.len() + 1;
        fixed_size(self, have, n)
    }
}
