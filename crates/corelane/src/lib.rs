//! corelane: a shared-nothing worker runtime for Rust.
//!
//! ```
//! let (tx, rx) = corelane::channel::spsc::channel::<u32>(16);
//! tx.send(7).unwrap();
//! assert_eq!(rx.recv(), Ok(7));
//! ```

#![deny(missing_docs, missing_debug_implementations, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub use corelane_channel as channel;
pub use corelane_partition as partition;
