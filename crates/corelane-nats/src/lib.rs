//! corelane past one machine: the same [`Worker`](corelane_worker::Worker) behind NATS JetStream
//! partitions. Also `corelane::nats` with the facade's `nats` feature.
//!
//! A deployment ([`Topology`]) has `P` partitions, each a JetStream stream. [`Client::send`]
//! publishes a keyed message to its key's partition; [`Node`]s, each running a local corelane
//! [`Pool`](corelane_worker::Pool), share the partitions (each owned by exactly one live node,
//! at most ceil(P / N) per node) and deliver each one's messages in stream order into their
//! pool, by key. What the workers applied is committed per partition (an offset, after a flush of
//! the pool); a node that takes a partition over starts after the last commit, so a crash never
//! loses a message and never reorders a key: messages applied after the last commit are applied
//! again, in order (at-least-once; [`Delivery::sequence`] lets a worker drop them). Taking a
//! partition bumps its epoch with a compare-and-set, which refuses the old owner's commits.
//!
//! A node that takes a partition rebuilds its state by replaying it from the start
//! ([`NodeConfig::replay_from_start`]) or from the workers' last [`Snapshot`] and what came
//! after ([`Remote::snapshot`], [`Remote::restore`], [`Topology::with_snapshot_interval`]).
//! A message that does not decode, or whose handler panics while holding its [`Delivery`], goes
//! to the dead-letter stream ([`Topology::dead_letter_subject`]) and its partition goes on.
//!
//! ```no_run
//! use corelane_worker::{BoxError, Context, Pool, Reply, Worker};
//! use corelane_nats::{Client, Delivery, Node, NodeConfig, Remote, Topology};
//!
//! /// Counts per key.
//! struct Counter;
//! enum Msg { Add(String), Get(String, Reply<u64>) }
//! impl Worker for Counter {
//!     type Message = Msg;
//!     type State = std::collections::HashMap<String, u64>;
//!     fn init(&mut self, _: &mut Context<'_, Self>) -> Result<Self::State, BoxError> { Ok(Default::default()) }
//!     fn handle(&mut self, counts: &mut Self::State, msg: Msg, _: &mut Context<'_, Self>) {
//!         match msg {
//!             Msg::Add(key) => *counts.entry(key).or_default() += 1,
//!             Msg::Get(key, reply) => reply.send(counts.get(&key).copied().unwrap_or(0)),
//!         }
//!     }
//! }
//! impl Remote for Counter {
//!     type Wire = String; // the key
//!     type Answer = u64;
//!     fn delivered(key: String, _: Delivery) -> Msg { Msg::Add(key) }
//!     fn asked(key: String, reply: Reply<u64>) -> Msg { Msg::Get(key, reply) }
//! }
//!
//! let topology = Topology::new("counts", 8)?;
//! let pool = Pool::builder().workers(2).spawn(|_| Counter)?;
//! let node = Node::start(
//!     NodeConfig {
//!         id: "a".into(),
//!         servers: "nats://127.0.0.1:4222".into(),
//!         topology: topology.clone(),
//!         replay_from_start: true, // the counts live only in the workers
//!     },
//!     pool,
//! )?;
//! let rt = tokio::runtime::Runtime::new()?;
//! rt.block_on(async {
//!     let client = Client::connect("nats://127.0.0.1:4222", topology).await?;
//!     let sent = client.send(b"apples", &"apples".to_string()).await?;
//!     let n: u64 = client
//!         .ask(b"apples", &"apples".to_string(), Some(sent), std::time::Duration::from_secs(5))
//!         .await?;
//!     assert!(n >= 1);
//!     Ok::<(), corelane_nats::NatsError>(())
//! })?;
//! node.stop();
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! ```

#![forbid(unsafe_code)]

mod client;
mod dead;
mod error;
mod node;
mod partition;
mod snapshot;
mod topology;
mod wire;

pub use client::{Client, Published};
pub use error::NatsError;
pub use node::{Delivery, Node, NodeConfig, Remote};
pub use snapshot::{KeyState, Snapshot};
pub use topology::Topology;
