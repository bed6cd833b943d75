//! Pool-wide metrics and the shutdown report.

use std::fmt::Write as _;
use std::ops::{Add, AddAssign};
use std::time::Duration;

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

/// Buckets of a [`Latency`] histogram: bucket `i` holds durations in `[2^i, 2^(i+1))` ns
/// (bucket 0 also 0 ns), the last everything from about 2.1 s on.
pub const LATENCY_BUCKETS: usize = 32;

/// Handler latency of one worker, sampled into power-of-two buckets: one batch in
/// [`LATENCY_SAMPLE`] is timed, and its handlers' mean time is one sample (for a worker taking
/// one message at a time, exactly that call's time). Filled only with the `latency` feature;
/// empty otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latency {
    pub(crate) buckets: [u64; LATENCY_BUCKETS],
}

/// With the `latency` feature, one batch in this many is timed (two clock reads per timed
/// batch, nothing in the handler loop).
pub const LATENCY_SAMPLE: u32 = 64;

impl Default for Latency {
    fn default() -> Self {
        Self {
            buckets: [0; LATENCY_BUCKETS],
        }
    }
}

impl Latency {
    /// The bucket of a duration of `ns` nanoseconds.
    pub(crate) fn bucket(ns: u64) -> usize {
        ((u64::BITS - 1 - (ns | 1).leading_zeros()) as usize).min(LATENCY_BUCKETS - 1)
    }

    /// How many handler calls were timed.
    pub fn samples(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Each bucket's upper bound and count, from the shortest.
    pub fn buckets(&self) -> impl Iterator<Item = (Duration, u64)> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, &n)| (Duration::from_nanos(2u64 << i), n))
    }

    /// An upper bound of the `q` quantile (`0.0..=1.0`): the upper bound of the bucket that
    /// holds it. `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.samples();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        self.buckets().find_map(|(bound, n)| {
            seen += n;
            (seen >= rank).then_some(bound)
        })
    }

    /// Adds `other`'s samples.
    fn merge(&mut self, other: &Self) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
    }
}

/// One per-worker Prometheus series: name, type, help, and its value for a worker.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&WorkerMetrics) -> u64,
);

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
    /// Every worker's handler latency samples, merged.
    pub fn latency(&self) -> Latency {
        let mut all = Latency::default();
        self.workers.iter().for_each(|w| all.merge(&w.latency));
        all
    }

    /// The metrics in the Prometheus text exposition format (version 0.0.4), one series per
    /// worker (label `worker`): the counters `corelane_processed_total`,
    /// `corelane_dropped_total`, `corelane_panics_total`, `corelane_restarts_total`, the gauge
    /// `corelane_queued` (inbox and lanes; accepted = processed + dropped + queued), and, with
    /// the `latency` feature, the sampled histogram `corelane_handler_seconds`.
    ///
    /// # Examples
    /// ```
    /// use corelane_worker::{BoxError, Context, Pool, Worker};
    /// struct Nop;
    /// impl Worker for Nop {
    ///     type Message = ();
    ///     type State = ();
    ///     fn init(&mut self, _: &mut Context<'_, Self>) -> Result<(), BoxError> { Ok(()) }
    ///     fn handle(&mut self, _: &mut (), _: (), _: &mut Context<'_, Self>) {}
    /// }
    /// let pool = Pool::builder().workers(2).spawn(|_| Nop)?;
    /// let text = pool.metrics().to_prometheus();
    /// assert!(text.contains("corelane_processed_total{worker=\"1\"} 0"));
    /// # Ok::<(), corelane_worker::Error>(())
    /// ```
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let series: [Series; 5] = [
            (
                "processed_total",
                "counter",
                "Messages handed to the handler.",
                |w| w.counters.processed,
            ),
            (
                "dropped_total",
                "counter",
                "Messages dropped by an overflow policy.",
                |w| w.counters.dropped,
            ),
            ("panics_total", "counter", "Handler panics.", |w| {
                w.counters.panics
            }),
            (
                "restarts_total",
                "counter",
                "State rebuilds after a panic.",
                |w| w.counters.restarts,
            ),
            (
                "queued",
                "gauge",
                "Messages waiting in the inbox and the producer lanes.",
                |w| w.queued as u64,
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(
                out,
                "# HELP corelane_{name} {help}\n# TYPE corelane_{name} {kind}"
            );
            for w in &self.workers {
                let _ = writeln!(
                    out,
                    "corelane_{name}{{worker=\"{}\"}} {}",
                    w.index,
                    value(w)
                );
            }
        }
        if self.workers.iter().any(|w| w.latency.samples() > 0) {
            self.latency_prometheus(&mut out);
        }
        out
    }

    /// The `corelane_handler_seconds` histogram (cumulative buckets), per worker.
    fn latency_prometheus(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP corelane_handler_seconds Handler latency, one batch in {LATENCY_SAMPLE} timed.\n\
             # TYPE corelane_handler_seconds histogram"
        );
        for w in &self.workers {
            let mut cumulative = 0;
            let mut sum = 0.0;
            for (bound, n) in w.latency.buckets() {
                cumulative += n;
                // Each sample counted at its bucket's midpoint (1.5x the lower bound).
                sum += n as f64 * bound.as_secs_f64() * 0.75;
                let _ = writeln!(
                    out,
                    "corelane_handler_seconds_bucket{{worker=\"{}\",le=\"{:e}\"}} {cumulative}",
                    w.index,
                    bound.as_secs_f64()
                );
            }
            let _ = writeln!(
                out,
                "corelane_handler_seconds_bucket{{worker=\"{0}\",le=\"+Inf\"}} {cumulative}\n\
                 corelane_handler_seconds_sum{{worker=\"{0}\"}} {sum:e}\n\
                 corelane_handler_seconds_count{{worker=\"{0}\"}} {cumulative}",
                w.index
            );
        }
    }

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
