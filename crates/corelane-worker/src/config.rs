//! Per-worker configuration.

use std::time::Duration;

use corelane_channel::WaitStrategy;

use crate::Error;

/// Where a worker thread runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Placement {
    /// Wherever the OS schedules it.
    #[default]
    Unpinned,
    /// Pinned to this CPU core (as numbered by `core_affinity`); a core outside the process's
    /// affinity set fails the spawn with a typed error.
    Core(usize),
    /// Pinned to the n-th core of the process's affinity set ([`available_cores`]), counted
    /// from 0; unpinned when the set has fewer cores. Never fails: the one-line way to pin
    /// worker `i` to its own core where there is one ([`WorkerConfig::with_nth_core`]).
    ///
    /// [`available_cores`]: crate::available_cores
    NthCore(usize),
}

/// What a send does when the worker's inbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Wait for room (by the worker's idle strategy), or until shutdown hands the message back.
    #[default]
    Block,
    /// Fail at once with [`SendError::Full`](crate::SendError::Full), handing the message back.
    Reject,
    /// Evict the oldest queued message to make room; the eviction is counted as dropped.
    /// (On a [`producer`](crate::Pool::producer) lane, which only the worker may pop,
    /// this behaves as [`Overflow::DropNewest`].)
    DropOldest,
    /// Drop the new message, count it as dropped, and report success.
    DropNewest,
}

/// What happens when a handler panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestartPolicy {
    /// Stop the worker; its queued messages are returned in the shutdown report.
    Stop,
    /// Rebuild the state with `init` and go on with the queued messages, unless more than
    /// `max_restarts` restarts happened within `within`; then stop as with [`RestartPolicy::Stop`].
    Restart {
        /// Restarts allowed within the window.
        max_restarts: u32,
        /// The window.
        within: Duration,
    },
}

impl Default for RestartPolicy {
    /// Five restarts within ten seconds (OTP-style intensity).
    fn default() -> Self {
        Self::Restart {
            max_restarts: 5,
            within: Duration::from_secs(10),
        }
    }
}

/// Information about a message whose handler panicked, given to the dead-letter hook.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The worker whose handler panicked.
    pub worker: usize,
    /// The panic payload, if it was a string.
    pub panic: String,
}

/// A dead-letter hook: called on the worker thread for every message whose handler panicked.
pub type DeadLetterHook = std::sync::Arc<dyn Fn(&DeadLetter) + Send + Sync>;

/// How one worker runs. Built with `WorkerConfig::new()` and `with_*` methods.
///
/// # Examples
/// ```
/// use corelane_worker::{Overflow, WorkerConfig};
/// let cfg = WorkerConfig::new().with_cpu_affinity(0).with_queue_capacity(4096).with_overflow(Overflow::Reject);
/// assert_eq!(cfg.queue_capacity(), 4096);
/// ```
#[derive(Clone)]
pub struct WorkerConfig {
    pub(crate) name: Option<String>,
    pub(crate) placement: Placement,
    pub(crate) queue_capacity: usize,
    pub(crate) idle: WaitStrategy,
    pub(crate) overflow: Overflow,
    pub(crate) restart: RestartPolicy,
    pub(crate) stack_size: Option<usize>,
    pub(crate) batch_size: usize,
    pub(crate) dead_letter: Option<DeadLetterHook>,
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("name", &self.name)
            .field("placement", &self.placement)
            .field("queue_capacity", &self.queue_capacity)
            .field("idle", &self.idle)
            .field("overflow", &self.overflow)
            .field("restart", &self.restart)
            .field("stack_size", &self.stack_size)
            .field("batch_size", &self.batch_size)
            .field("dead_letter", &self.dead_letter.is_some())
            .finish()
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerConfig {
    /// Defaults: unpinned, 1024-slot inbox, [`WaitStrategy::SpinThenPark`] when idle,
    /// [`Overflow::Block`], [`RestartPolicy::default`], the platform's stack size, batches of 64.
    pub fn new() -> Self {
        Self {
            name: None,
            placement: Placement::Unpinned,
            queue_capacity: 1024,
            idle: WaitStrategy::SpinThenPark,
            overflow: Overflow::Block,
            restart: RestartPolicy::default(),
            stack_size: None,
            batch_size: 64,
            dead_letter: None,
        }
    }
    /// Names the worker thread (default `cl-w{index}`: Linux keeps 15 bytes of a thread name).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Pins the worker to the `n`-th core the process may run on ([`Placement::NthCore`]), or
    /// leaves it unpinned when there are fewer: `.worker_config(|i| WorkerConfig::new()
    /// .with_nth_core(i))` gives every worker a core of its own while cores last, and never
    /// fails.
    pub fn with_nth_core(mut self, n: usize) -> Self {
        self.placement = Placement::NthCore(n);
        self
    }

    /// Pins the worker to CPU core `core` ([`Placement::Core`]): a core the process may not run
    /// on is an [`Error::InvalidConfig`] at spawn. See [`with_nth_core`](Self::with_nth_core) for
    /// the form that cannot fail.
    pub fn with_cpu_affinity(mut self, core: usize) -> Self {
        self.placement = Placement::Core(core);
        self
    }
    /// Sets the placement.
    pub fn with_placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }
    /// Inbox slots (rounded up to a power of two; 0 is an error at spawn).
    pub fn with_queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }
    /// How the worker waits for messages, and blocked senders for room.
    pub fn with_idle_strategy(mut self, idle: WaitStrategy) -> Self {
        self.idle = idle;
        self
    }
    /// What a send does on a full inbox.
    pub fn with_overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }
    /// What happens when a handler panics.
    pub fn with_restart(mut self, restart: RestartPolicy) -> Self {
        self.restart = restart;
        self
    }
    /// The worker thread's stack size in bytes.
    pub fn with_stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }
    /// Most messages taken from the inbox per batch (0 is an error at spawn).
    pub fn with_batch_size(mut self, batch: usize) -> Self {
        self.batch_size = batch;
        self
    }
    /// Calls `hook` on the worker thread for every message whose handler panicked.
    pub fn with_dead_letter(mut self, hook: impl Fn(&DeadLetter) + Send + Sync + 'static) -> Self {
        self.dead_letter = Some(std::sync::Arc::new(hook));
        self
    }

    /// The configured inbox capacity (before rounding).
    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity
    }
    /// The configured placement.
    pub fn placement(&self) -> Placement {
        self.placement
    }
    /// The configured overflow policy.
    pub fn overflow(&self) -> Overflow {
        self.overflow
    }

    /// Checks the configuration against this machine; returns the core to pin to, if any.
    pub(crate) fn validate(&self, index: usize) -> Result<Option<core_affinity::CoreId>, Error> {
        let bad = |what: String| Err(Error::InvalidConfig(format!("worker {index}: {what}")));
        if self.queue_capacity == 0 {
            return bad("queue capacity must be at least 1".into());
        }
        if let Err(e) = corelane_channel::Builder::new(self.queue_capacity).real_capacity() {
            return bad(e.to_string());
        }
        if self.batch_size == 0 {
            return bad("batch size must be at least 1".into());
        }
        if let RestartPolicy::Restart { within, .. } = self.restart {
            if within.is_zero() {
                return bad("restart window must be longer than zero".into());
            }
        }
        match self.placement {
            Placement::Unpinned => Ok(None),
            Placement::NthCore(n) => Ok(crate::available_cores()
                .get(n)
                .map(|&id| core_affinity::CoreId { id })),
            Placement::Core(core) => {
                let cores = crate::available_cores();
                if cores.contains(&core) {
                    Ok(Some(core_affinity::CoreId { id: core }))
                } else {
                    bad(format!(
                        "core {core} does not exist; available cores: {cores:?}"
                    ))
                }
            }
        }
    }
}
