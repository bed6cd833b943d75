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

#![forbid(unsafe_code)]

pub mod resp;
mod server;
pub mod shard;

pub use server::{Config, Server};
