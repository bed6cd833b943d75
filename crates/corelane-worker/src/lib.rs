//! Workers and the pool: isolated state owned by one thread each (pinned to a core if you
//! like), fed by messages routed by key, supervised, and stopped without losing a message.
//!
//! A [`Pool`] runs N workers and routes each key to the same worker; [`spawn`] runs a single
//! one. Most users reach this crate through the facade (`corelane`).
//!
//! ```
//! use std::collections::HashMap;
//! use corelane_worker::{BoxError, Context, Dispatch, Pool, Reply, Worker, WorkerConfig};
//!
//! struct Counter;
//! enum Cmd { Add(u64), Get(u64, Reply<u64>) }
//!
//! impl Worker for Counter {
//!     type Message = Cmd;
//!     type State = HashMap<u64, u64>; // built on the worker's thread; need not be Send
//!     fn init(&mut self, _: &mut Context<'_, Self>) -> Result<Self::State, BoxError> {
//!         Ok(HashMap::new())
//!     }
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
//! // Read-after-write: every earlier send of this thread to that worker is applied first.
//! assert_eq!(pool.ask(&1u64, |reply| Cmd::Get(1, reply))?, 2);
//! let report = pool.shutdown()?;
//! assert_eq!(report.processed(), 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod config;
mod context;
mod dispatch;
mod envelope;
mod error;
mod events;
mod handle;
mod idle;
mod pool;
mod producer;
mod reply;
mod report;
mod runtime;
#[cfg(feature = "signal")]
mod signal;
#[cfg(feature = "sim")]
pub mod sim;
mod slot;
mod trace;

pub use config::{DeadLetter, DeadLetterHook, Overflow, Placement, RestartPolicy, WorkerConfig};
pub use context::{Context, Outbox};
pub use dispatch::{Dispatch, Wait};
pub use error::{AskError, AskErrorKind, BoxError, Error, SendError, SendErrorKind};
pub use events::{EventCanceler, EventError, EventListener, EventMask, NextEvent, WorkerEvent};
pub use handle::{spawn, WorkerHandle};
pub use idle::Idle;
pub use pool::{Pool, PoolBuilder};
pub use producer::{BatchingProducer, Producer};
pub use reply::{Answer, Reply};
pub use report::{
    Counters, Latency, PoolMetrics, ShutdownReport, Totals, LATENCY_BUCKETS, LATENCY_SAMPLE,
};
pub use runtime::{Outcome, WorkerReport, STOP_GRACE};
#[cfg(feature = "signal")]
pub use signal::ShutdownSignals;
pub use slot::{WorkerMetrics, WorkerState};

/// A worker: isolated per-worker state built on the worker's own thread, and a handler.
///
/// The state is created by [`Worker::init`] on the worker thread after pinning, so it need not be
/// `Send` (it may hold `Rc`s, thread-locals, NUMA-local memory). Messages from one sender to one
/// worker are handled in send order.
pub trait Worker: Send + Sized + 'static {
    /// What the worker receives.
    type Message: Send + 'static;
    /// The state `init` builds and every handler call mutates.
    type State;

    /// Builds the state, on the worker's thread. Called again to rebuild it after a handler
    /// panic (see [`Worker::on_panic`] and [`RestartPolicy`]); [`Context::restarts`] tells a
    /// first start (0) from a rebuild.
    ///
    /// # Errors
    /// Any error fails the spawn (or, on a restart, stops the worker).
    fn init(&mut self, ctx: &mut Context<'_, Self>) -> Result<Self::State, BoxError>;

    /// Handles one message. A panic is caught: the message is counted, offered to the
    /// dead-letter hooks, and the state is rebuilt per the restart policy; queued messages stay.
    fn handle(&mut self, state: &mut Self::State, msg: Self::Message, ctx: &mut Context<'_, Self>);

    /// A copy of `msg` to hand to [`Worker::on_dead_letter`] should its handler panic: the
    /// handler consumes the message, so it can only be given back if it was kept before. Called
    /// before every [`Worker::handle`]; the default keeps nothing and costs nothing. Override it
    /// (typically `Some(msg.clone())`, or only for the messages worth keeping) to receive the
    /// messages that panicked.
    fn keep_for_dead_letter(&self, msg: &Self::Message) -> Option<Self::Message> {
        let _ = msg;
        None
    }

    /// Receives a message whose handler panicked (the copy [`Worker::keep_for_dead_letter`]
    /// kept) with the panic's text, before [`Worker::on_panic`] decides what follows: store it,
    /// forward it to a dead-letter queue, or retry it later. A panic here is caught and ignored.
    fn on_dead_letter(&mut self, msg: Self::Message, panic: &str, ctx: &mut Context<'_, Self>) {
        let _ = (msg, panic, ctx);
    }

    /// Decides what follows a panic of [`Worker::handle`], [`Worker::on_idle`] or
    /// [`Worker::wait`] (`panic` is its message), as Erlang's and ractor's supervisors let you.
    /// The default, [`PanicAction::Rebuild`], is the safe choice when a handler stopped halfway
    /// may leave the state inconsistent; it loses everything the state held in memory (counts
    /// acknowledged to clients included). A panic here counts as [`PanicAction::Rebuild`].
    fn on_panic(
        &mut self,
        state: &mut Self::State,
        panic: &str,
        ctx: &mut Context<'_, Self>,
    ) -> PanicAction {
        let _ = (state, panic, ctx);
        PanicAction::Rebuild
    }

    /// Called when the inbox is empty, before the worker waits.
    fn on_idle(&mut self, state: &mut Self::State, ctx: &mut Context<'_, Self>) {
        let _ = (state, ctx);
    }

    /// Waits for work, after [`Worker::on_idle`]; must return soon after `idle` becomes ready
    /// (a message, or a stop or pause request). The default parks by the worker's idle strategy
    /// ([`Idle::park`]).
    ///
    /// A worker that also serves I/O on its thread (its own sockets and timers: thread-per-core)
    /// overrides it to run its event loop until [`Idle::ready`] resolves, for example with a tokio
    /// current-thread runtime and a `LocalSet` kept in the state:
    /// `state.rt.block_on(state.tasks.run_until(idle.ready()))`. The tasks of that loop reach
    /// other workers through an [`Outbox`] ([`Context::outbox`]). The loop runs only while the
    /// inbox is empty, so keep handlers short: a worker whose inbox never empties starves its I/O.
    /// A panic here is treated like a handler panic.
    fn wait(&mut self, state: &mut Self::State, ctx: &mut Context<'_, Self>, idle: &Idle<'_>) {
        let _ = (state, ctx);
        idle.park();
    }

    /// Called once after a graceful stop has drained the inbox; consumes the state.
    fn on_stop(&mut self, state: Self::State, ctx: &mut Context<'_, Self>) {
        let _ = (state, ctx);
    }
}

/// What a worker does after one of its handlers panicked ([`Worker::on_panic`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PanicAction {
    /// Keep the state as the handler left it and go on with the next message (no restart is
    /// counted).
    Keep,
    /// Drop the state and rebuild it with [`Worker::init`] (which sees
    /// [`Context::restarts`] > 0), within the [`RestartPolicy`]; the queue is kept.
    Rebuild,
    /// Stop: the worker fails and its queue is returned in its report.
    Stop,
}

/// The ids of the cores this process may run on (for `with_cpu_affinity`); empty if unknown.
///
/// This is the process's CPU affinity mask (what `taskset` or a cgroup cpuset allows), read once,
/// at the first call, and kept: pinning a worker later does not change it. On Linux it is the
/// `Cpus_allowed_list` of `/proc/self/status` (the main thread's mask, so a pool built from a
/// thread that is itself pinned still sees every allowed core), restricted to the online cores.
/// Elsewhere it is the calling thread's mask at the first call (`core_affinity`): call it before
/// pinning anything.
pub fn available_cores() -> Vec<usize> {
    static CORES: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    CORES.get_or_init(read_available_cores).clone()
}

fn read_available_cores() -> Vec<usize> {
    let allowed = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .and_then(parse_cpu_list)
        });
    if let Some(mut cores) = allowed {
        let online = std::fs::read_to_string("/sys/devices/system/cpu/online").ok();
        if let Some(online) = online.as_deref().and_then(parse_cpu_list) {
            cores.retain(|c| online.contains(c));
        }
        return cores;
    }
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// Parses a kernel CPU list such as `0-3,8,10-11`.
fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cores = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                cores.extend(a.trim().parse::<usize>().ok()?..=b.trim().parse::<usize>().ok()?)
            }
            None => cores.push(part.trim().parse().ok()?),
        }
    }
    (!cores.is_empty()).then_some(cores)
}

#[cfg(test)]
mod tests {
    /// Run under `taskset -c 0` by [`available_cores_follow_the_process_mask`].
    #[test]
    fn child_reports_available_cores() {
        if let Ok(want) = std::env::var("CORELANE_EXPECT_CORES") {
            assert_eq!(format!("{:?}", super::available_cores()), want);
        }
    }

    #[test]
    fn available_cores_follow_the_process_mask() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("taskset")
            .args(["-c", "0"])
            .arg(exe)
            .args([
                "--exact",
                "tests::child_reports_available_cores",
                "--nocapture",
            ])
            .env("CORELANE_EXPECT_CORES", "[0]")
            .output()
            .expect("taskset (util-linux) runs the test binary");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "under taskset -c 0: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(
            super::parse_cpu_list("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(super::parse_cpu_list("0\n"), Some(vec![0]));
        assert_eq!(super::parse_cpu_list("x"), None);
    }
}
