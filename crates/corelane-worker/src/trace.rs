//! `tracing` events for the lifecycle (feature `tracing`): start, pause, resume, panic, restart,
//! stop and shutdown, under the target `corelane`. Without the feature each of these is empty.

#[cfg(feature = "tracing")]
use tracing::{info, warn};

use crate::Outcome;

/// A worker's `init` succeeded.
#[inline]
pub(crate) fn started(worker: usize, core: Option<usize>) {
    #[cfg(feature = "tracing")]
    info!(target: "corelane", worker, core, "worker started");
    let _ = (worker, core);
}

/// A worker paused (`true`) or resumed (`false`).
#[inline]
pub(crate) fn paused(worker: usize, paused: bool) {
    #[cfg(feature = "tracing")]
    info!(target: "corelane", worker, paused, "worker {}", if paused { "paused" } else { "resumed" });
    let _ = (worker, paused);
}

/// A handler (or `on_idle`, `wait`) panicked.
#[inline]
pub(crate) fn panicked(worker: usize, panic: &str) {
    #[cfg(feature = "tracing")]
    warn!(target: "corelane", worker, panic, "handler panicked");
    let _ = (worker, panic);
}

/// A worker's state was rebuilt after a panic.
#[inline]
pub(crate) fn restarted(worker: usize, restarts: u64) {
    #[cfg(feature = "tracing")]
    info!(target: "corelane", worker, restarts, "worker state rebuilt by init");
    let _ = (worker, restarts);
}

/// A worker ended, as `outcome` says.
#[inline]
pub(crate) fn stopped(worker: usize, outcome: &Outcome, processed: u64) {
    #[cfg(feature = "tracing")]
    match outcome {
        Outcome::Completed => info!(target: "corelane", worker, processed, "worker stopped"),
        Outcome::Failed(reason) => {
            warn!(target: "corelane", worker, processed, reason, "worker failed")
        }
        Outcome::TimedOut => {
            warn!(target: "corelane", worker, processed, "worker missed its stop deadline")
        }
    }
    let _ = (worker, outcome, processed);
}

/// A pool's shutdown began (`deadline`: whether it is timed).
#[inline]
pub(crate) fn shutdown(workers: usize, timed: bool) {
    #[cfg(feature = "tracing")]
    info!(target: "corelane", workers, timed, "pool shutting down");
    let _ = (workers, timed);
}
