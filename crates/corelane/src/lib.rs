//! corelane: a shared-nothing worker runtime for Rust.
//!
//! Implement [`Worker`]: per-worker state built on the worker's own thread, never shared. Build a
//! [`Pool`], pinning each worker to a core. Route with [`Pool::send_partitioned`]: the same key
//! always reaches the same worker, so its state needs no lock.
//!
//! ```
//! use std::collections::HashMap;
//! use corelane::prelude::*;
//!
//! struct Counter;
//! enum Cmd { Add(u64), Get(u64, Reply<u64>) }
//!
//! impl Worker for Counter {
//!     type Message = Cmd;
//!     type State = HashMap<u64, u64>;
//!     fn init(&mut self, _ctx: &mut Context<'_, Self>) -> Result<Self::State, BoxError> {
//!         Ok(HashMap::new())
//!     }
//!     fn handle(&mut self, state: &mut Self::State, msg: Cmd, _ctx: &mut Context<'_, Self>) {
//!         match msg {
//!             Cmd::Add(k) => *state.entry(k).or_default() += 1,
//!             Cmd::Get(k, reply) => reply.send(state.get(&k).copied().unwrap_or(0)),
//!         }
//!     }
//! }
//!
//! let pool = Pool::builder()
//!     .workers(2)
//!     .worker_config(|i| WorkerConfig::new().with_nth_core(i)) // core i of this process, if any
//!     .partitioner(HashPartitioner::new())
//!     .spawn(|_index| Counter)?;
//! for key in 0..100u64 {
//!     pool.send_partitioned(&key, Cmd::Add(key))?;
//! }
//! let n: u64 = pool.ask(&7u64, |reply| Cmd::Get(7, reply))?;
//! assert_eq!(n, 1);
//! let report = pool.shutdown()?;
//! assert_eq!(report.processed(), 101);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Crates: [`channel`](mod@channel) (SPSC/MPSC/MPMC rings), [`partition`] (key -> worker), [`worker`]
//! (workers, the pool, producers, single workers). With the `sim` feature, `corelane::sim`
//! runs your workers under seeded, replayable schedules (`docs/simulation.md`).

#![forbid(unsafe_code)]

pub use corelane_channel as channel;
#[cfg(feature = "nats")]
pub use corelane_nats as nats;
pub use corelane_partition as partition;
pub use corelane_worker as worker;
#[cfg(feature = "sim")]
pub use corelane_worker::sim;

#[cfg(feature = "signal")]
pub use corelane_worker::ShutdownSignals;
pub use corelane_worker::{
    AskError, AskErrorKind, BoxError, Context, Dispatch, Error, EventError, EventListener,
    EventMask, Idle, Outbox, Overflow, Placement, Reply, RestartPolicy, SendError, SendErrorKind,
    Wait, Worker, WorkerConfig, WorkerEvent,
};
pub use corelane_worker::{BatchingProducer, Pool, PoolBuilder, Producer, ShutdownReport};

/// The ids of the cores this process may run on (for `with_cpu_affinity`): its CPU affinity
/// mask, read once at the first call, before any worker is pinned; empty if unknown. See
/// [`worker::available_cores`].
pub fn available_cores() -> Vec<usize> {
    corelane_worker::available_cores()
}

/// Everything a typical user needs: `use corelane::prelude::*;`.
pub mod prelude {
    pub use crate::channel::WaitStrategy;
    pub use crate::partition::{
        ConsistentHashPartitioner, FnPartitioner, HashPartitioner, JumpPartitioner, Partitioner,
        RangePartitioner, RendezvousPartitioner, RoundRobinPartitioner, StableHashPartitioner,
    };
    // No `Error` or `Result` here: they would clash with `anyhow`'s or the user's own. The error
    // types keep their prefixed names; `corelane::Error` is one path away.
    pub use crate::worker::{
        spawn, AskError, BoxError, Context, Dispatch, Idle, Outbox, Outcome, Overflow, PanicAction,
        Placement, Reply, RestartPolicy, SendError, Worker, WorkerConfig, WorkerHandle,
        WorkerMetrics, WorkerReport, WorkerState,
    };
    pub use crate::worker::{
        BatchingProducer, Counters, Latency, Pool, PoolMetrics, Producer, ShutdownReport, Totals,
    };
}
