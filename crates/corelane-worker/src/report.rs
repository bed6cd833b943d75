//! Pool-wide metrics and the shutdown report.

use std::ops::{Add, AddAssign};

use crate::{Outcome, WorkerMetrics, WorkerReport};

/// A worker's message and supervision counters, or their sum over workers: the part that
/// [`WorkerMetrics`], [`WorkerReport`] and [`Totals`] share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Messages handed to `handle` (including those whose handler panicked).
    pub processed: u64,
    /// Messages dropped by an overflow policy.
    pub dropped: u64,
    /// Handler panics.
    pub panics: u64,
    /// State rebuilds after a panic.
    pub restarts: u64,
}

impl Add for Counters {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self {
            processed: self.processed + other.processed,
            dropped: self.dropped + other.dropped,
            panics: self.panics + other.panics,
            restarts: self.restarts + other.restarts,
        }
    }
}

impl AddAssign for Counters {
    fn add_assign(&mut self, other: Self) {
        *self = *self + other;
    }
}

impl std::iter::Sum for Counters {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), Add::add)
    }
}

/// Sums over workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Totals {
    /// Messages queued in inboxes and producer lanes now.
    pub queued: usize,
    /// The workers' counters, summed.
    pub counters: Counters,
}

/// A snapshot of every worker's counters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PoolMetrics {
    /// Per worker, in index order.
    pub workers: Vec<WorkerMetrics>,
}

impl PoolMetrics {
    /// Sums over all workers.
    pub fn total(&self) -> Totals {
        Totals {
            queued: self.workers.iter().map(|w| w.queued).sum(),
            counters: self.workers.iter().map(|w| w.counters).sum(),
        }
    }
}

/// What a shutdown did, per worker. Every accepted message is accounted for:
/// `accepted() = processed() + dropped() + unprocessed`.
#[derive(Debug)]
#[non_exhaustive]
pub struct ShutdownReport<M> {
    /// Per worker, in index order.
    pub workers: Vec<WorkerReport<M>>,
}

impl<M> ShutdownReport<M> {
    /// The workers' counters, summed.
    pub fn counters(&self) -> Counters {
        self.workers.iter().map(|w| w.counters).sum()
    }
    /// Messages handled.
    pub fn processed(&self) -> u64 {
        self.counters().processed
    }
    /// Messages dropped by overflow policies.
    pub fn dropped(&self) -> u64 {
        self.counters().dropped
    }
    /// Messages accepted by any worker.
    pub fn accepted(&self) -> u64 {
        self.workers.iter().map(WorkerReport::accepted).sum()
    }
    /// Whether every worker drained and stopped cleanly: completed, nothing returned unprocessed,
    /// and no handler panicked (a restart loses the in-memory state).
    pub fn is_clean(&self) -> bool {
        self.workers.iter().all(|w| {
            w.outcome == Outcome::Completed && w.unprocessed.is_empty() && w.counters.panics == 0
        })
    }
    /// Takes every message that was accepted but not handled, worker by worker, in order.
    pub fn into_unprocessed(self) -> Vec<M> {
        self.workers
            .into_iter()
            .flat_map(|w| w.unprocessed)
            .collect()
    }
}
