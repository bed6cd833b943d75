//! The worker pool: N workers (pinned if configured), a partitioner that maps keys to workers,
//! and the handles client threads route messages through.
//!
//! ```
//! use std::collections::HashMap;
//! use corelane_router::Pool;
//! use corelane_worker::{BoxError, Context, Reply, Worker, WorkerConfig};
//!
//! struct Counter;
//! enum Cmd { Add(u64), Get(u64, Reply<u64>) }
//! impl Worker for Counter {
//!     type Message = Cmd;
//!     type State = HashMap<u64, u64>;
//!     fn init(&mut self, _: &mut Context<'_, Self>) -> Result<Self::State, BoxError> { Ok(HashMap::new()) }
//!     fn handle(&mut self, state: &mut Self::State, msg: Cmd, _: &mut Context<'_, Self>) {
//!         match msg {
//!             Cmd::Add(k) => *state.entry(k).or_default() += 1,
//!             Cmd::Get(k, reply) => reply.send(state.get(&k).copied().unwrap_or(0)),
//!         }
//!     }
//! }
//!
//! let pool = Pool::builder().workers(2).worker_config(|_| WorkerConfig::new()).spawn(|_| Counter)?;
//! for key in [1u64, 2, 1] {
//!     pool.send_partitioned(&key, Cmd::Add(key))?;
//! }
//! assert_eq!(pool.ask(&1u64, |reply| Cmd::Get(1, reply))?, 2);
//! let report = pool.shutdown()?;
//! assert_eq!(report.processed(), 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs, missing_debug_implementations, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod pool;
mod producer;
mod report;

pub use pool::{NoWorker, Pool, PoolBuilder};
pub use producer::{BatchingProducer, Producer};
pub use report::{PoolMetrics, ShutdownReport, Totals};
