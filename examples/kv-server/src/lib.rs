//! corelane-kv: a Redis-protocol (RESP2) key-value server whose keyspace is split over corelane
//! shard workers, one per core, each owning its part without locks.
//!
//! ```no_run
//! let server = corelane_kv::Server::start(corelane_kv::Config::default())?;
//! println!("listening on {}", server.local_addr());
//! let report = server.shutdown()?;
//! println!("processed {}", report.processed());
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! ```

#![deny(missing_docs, missing_debug_implementations, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod resp;
mod server;
pub mod shard;

pub use server::{Config, Server};
