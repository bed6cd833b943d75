//! How a blocked operation waits: the strategies and the spin budget.

use std::time::Duration;

/// How a blocked sender or receiver waits for its channel to change.
///
/// Chosen once, at construction ([`Builder::wait_strategy`](crate::Builder::wait_strategy)).
/// A parked thread costs no CPU; a spinning one burns its core and, on machines whose cores are
/// shared (VMs, hyper-threads), can delay the very peer it waits for. Prefer the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum WaitStrategy {
    /// Busy-spin until the operation can complete. Lowest latency; burns a whole core while
    /// waiting. Only for threads pinned to a core of their own.
    Spin,
    /// Pause-spin through a short backoff ramp (about a microsecond), then call `yield_now`
    /// between attempts. Never sleeps.
    SpinThenYield,
    /// Spin (a short pause ramp, then `yield_now`) for the wait queue's learned budget, then
    /// park until woken. The budget starts at [`SPIN_BUDGET`] and adapts up to
    /// [`MAX_SPIN_BUDGET`] when parks keep ending sooner than it. Fast hand-offs stay in the
    /// spin phase; a long wait costs no CPU.
    #[default]
    SpinThenPark,
    /// Park at once whenever the operation cannot complete.
    Park,
}

/// How long [`WaitStrategy::SpinThenPark`] spins (and, past a short pause-spin, yields) before
/// parking, at first: long enough to cover a cross-core hand-off (hundreds of nanoseconds) many
/// times over, short enough that an idle thread goes to sleep almost at once.
///
/// The budget adapts per wait queue between this and [`MAX_SPIN_BUDGET`]: a park that ends sooner
/// than the budget (the peer came back almost at once, and paid a futex wake for it) doubles it; a
/// park longer than eight budgets halves it. A busy pipeline with short gaps so stops parking,
/// while an idle thread still parks within [`SPIN_BUDGET`] after a few long sleeps.
pub const SPIN_BUDGET: Duration = Duration::from_micros(20);

/// The most a learned spin budget grows to; see [`SPIN_BUDGET`].
pub const MAX_SPIN_BUDGET: Duration = Duration::from_millis(1);
