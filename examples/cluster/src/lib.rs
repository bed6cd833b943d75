//! A keyed counter spread over machines: every node runs a corelane pool of [`Counter`]
//! workers behind the deployment's NATS JetStream partitions (see `corelane_nats`).
//!
//! Each published [`Event`] carries its key's own sequence number `n` (0, 1, 2, ...). A worker
//! counts the events of each key (a node that takes a partition replays it to rebuild the
//! counts, and forgets those of a partition it gives up) and, when given a log, writes one line
//! per applied event:
//! `key n partition stream-sequence epoch`. The cluster tests read those lines to check that
//! every event was applied, in order per key, and to count what a takeover applied twice. With
//! snapshots on (`Topology::with_snapshot_interval`), a node that takes a partition starts from
//! the counts of its last snapshot instead of replaying it.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{LineWriter, Write};
use std::sync::{Arc, Mutex};

use corelane::prelude::*;
use corelane_nats::{Delivery, KeyState, Remote, Snapshot};
use serde::{Deserialize, Serialize};

/// One event of a key: the key's `n`-th.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The key.
    pub key: String,
    /// Its sequence number among the key's events.
    pub n: u64,
}

/// What a worker receives.
#[derive(Debug)]
pub enum Msg {
    /// An event delivered from a partition.
    Apply(Event, Delivery),
    /// How many events of the key were applied (answered through NATS).
    Count(String, Reply<u64>),
    /// The node gave the partition up: forget its keys.
    Forget(u32),
    /// The counts of the partition's keys, for its snapshot.
    Snapshot(u32, Reply<Snapshot>),
    /// One key's count from a snapshot of a partition the node took.
    Restore(KeyState),
}

/// Where applied events are logged, shared by a node's workers.
pub type Log = Arc<Mutex<LineWriter<File>>>;

/// The counter worker.
#[derive(Debug, Clone, Default)]
pub struct Counter {
    /// The log of applied events, if any.
    pub log: Option<Log>,
    /// A key whose every event makes the handler panic (a handler bug, to watch the node
    /// publish those events to the dead-letter stream while the partition goes on).
    pub panic_on: Option<String>,
    /// An event (key and `n`) whose handler sleeps this long first (a slow handler, to watch a
    /// node keep its partitions through a stall longer than its lease).
    pub stall: Option<(String, u64, std::time::Duration)>,
}

/// A worker's counts, and each key's partition.
#[derive(Debug, Default)]
pub struct Counts {
    per_key: HashMap<String, (u32, u64)>,
}

impl Counts {
    /// The counts of partition `p`'s keys.
    fn snapshot(&self, p: u32) -> Snapshot {
        let mut part = Snapshot::new();
        for (key, (_, count)) in self.per_key.iter().filter(|(_, (q, _))| *q == p) {
            part.insert(key.as_bytes(), count)
                .expect("a count always serializes");
        }
        part
    }

    /// Takes one key's count from a snapshot (a key that is not UTF-8 or a count that does not
    /// decode was never written by [`Counts::snapshot`]: it is skipped).
    fn restore(&mut self, state: &KeyState) {
        if let (Ok(key), Ok(count)) = (std::str::from_utf8(state.key()), state.decode::<u64>()) {
            self.per_key
                .insert(key.to_owned(), (state.partition(), count));
        }
    }
}

impl Worker for Counter {
    type Message = Msg;
    type State = Counts;

    fn init(&mut self, _: &mut Context<'_, Self>) -> Result<Counts, BoxError> {
        Ok(Counts::default())
    }

    fn handle(&mut self, counts: &mut Counts, msg: Msg, _: &mut Context<'_, Self>) {
        match msg {
            Msg::Apply(event, at) => {
                if self.panic_on.as_ref() == Some(&event.key) {
                    panic!("cannot count {:?} (event {})", event.key, event.n);
                }
                if let Some((key, n, pause)) = &self.stall {
                    if (key, *n) == (&event.key, event.n) {
                        std::thread::sleep(*pause);
                    }
                }
                counts
                    .per_key
                    .entry(event.key.clone())
                    .or_insert((at.partition, 0))
                    .1 += 1;
                if let Some(log) = &self.log {
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    let _ = writeln!(
                        log,
                        "{} {} {} {} {}",
                        event.key, event.n, at.partition, at.sequence, at.epoch
                    );
                }
            }
            Msg::Count(key, reply) => reply.send(counts.per_key.get(&key).map_or(0, |c| c.1)),
            Msg::Forget(p) => counts.per_key.retain(|_, (partition, _)| *partition != p),
            Msg::Snapshot(p, reply) => reply.send(counts.snapshot(p)),
            Msg::Restore(state) => counts.restore(&state),
        }
    }

    /// The handler panics only before it changes anything: the counts stay.
    fn on_panic(&mut self, _: &mut Counts, _: &str, _: &mut Context<'_, Self>) -> PanicAction {
        PanicAction::Keep
    }
}

impl Remote for Counter {
    type Wire = Event;
    type Answer = u64;

    fn delivered(event: Event, delivery: Delivery) -> Msg {
        Msg::Apply(event, delivery)
    }

    fn asked(event: Event, reply: Reply<u64>) -> Msg {
        Msg::Count(event.key, reply)
    }

    fn revoked(partition: u32) -> Option<Msg> {
        Some(Msg::Forget(partition))
    }

    fn snapshot(partition: u32, reply: Reply<Snapshot>) -> Option<Msg> {
        Some(Msg::Snapshot(partition, reply))
    }

    fn restore(state: KeyState) -> Option<Msg> {
        Some(Msg::Restore(state))
    }
}
