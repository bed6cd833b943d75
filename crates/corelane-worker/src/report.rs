//! Pool-wide metrics and the shutdown report.

use crate::{Outcome, WorkerMetrics, WorkerReport};

/// Sums over workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Totals {
    /// Messages queued in inboxes and producer lanes now.
    pub queued: usize,
    /// Messages handed to handlers.
    pub processed: u64,
    /// Messages dropped by overflow policies.
    pub dropped: u64,
    /// Handler panics.
    pub panics: u64,
    /// State rebuilds after panics.
    pub restarts: u64,
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
        self.workers.iter().fold(Totals::default(), |t, w| Totals {
            queued: t.queued + w.queued,
            processed: t.processed + w.processed,
            dropped: t.dropped + w.dropped,
            panics: t.panics + w.panics,
            restarts: t.restarts + w.restarts,
        })
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
    /// Messages handled.
    pub fn processed(&self) -> u64 {
        self.workers.iter().map(|w| w.processed).sum()
    }
    /// Messages dropped by overflow policies.
    pub fn dropped(&self) -> u64 {
        self.workers.iter().map(|w| w.dropped).sum()
    }
    /// Messages accepted by any worker.
    pub fn accepted(&self) -> u64 {
        self.workers.iter().map(WorkerReport::accepted).sum()
    }
    /// Whether every worker drained and stopped cleanly: completed, nothing returned unprocessed,
    /// and no handler panicked (a restart loses the in-memory state).
    pub fn is_clean(&self) -> bool {
        self.workers
            .iter()
            .all(|w| w.outcome == Outcome::Completed && w.unprocessed.is_empty() && w.panics == 0)
    }
    /// Takes every message that was accepted but not handled, worker by worker, in order.
    pub fn into_unprocessed(self) -> Vec<M> {
        self.workers
            .into_iter()
            .flat_map(|w| w.unprocessed)
            .collect()
    }
}
