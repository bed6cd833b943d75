//! What one shard's connection tasks share.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use corelane::prelude::*;
use tokio::sync::{watch, Notify};

use super::group::Group;
use crate::resp::Resp;
use crate::shard::{Op, Req, Store};

/// What one shard's connection tasks share. It lives on the shard's thread: `Rc` and `RefCell`,
/// never a lock.
pub(super) struct Front {
    pub(super) me: usize,
    pub(super) outbox: Outbox<Req>,
    pub(super) store: RefCell<Store>,
    pub(super) max_bulk: usize,
    pub(super) started: Instant,
    /// The remote operations connections submitted since the flusher last ran (see [`flusher`]).
    pub(super) group: RefCell<Group>,
    /// Wakes the flusher when the first connection joins an empty group.
    pub(super) flush: Notify,
    /// Groups sent to other shards whose answers have not been handed back yet.
    pub(super) in_flight: Rc<Cell<usize>>,
    /// Wakes the keep-warm task when a group goes out.
    pub(super) sent: Notify,
    /// Raised by [`Req::Drain`]: connections stop reading new requests.
    pub(super) stop: watch::Sender<bool>,
    /// Connection tasks alive.
    pub(super) connections: Cell<usize>,
}

impl Front {
    pub(super) fn shards(&self) -> usize {
        self.outbox.workers()
    }

    pub(super) fn shard_of(&self, key: &[u8]) -> usize {
        // The pool's partitioner is a hash partitioner, which the outbox can always apply.
        self.outbox.worker_for(key).unwrap_or(0)
    }

    /// Applies this shard's own operations, in order.
    pub(super) fn apply(&self, ops: impl Iterator<Item = Op>) -> Vec<Option<Resp>> {
        let answers = self.store.borrow_mut().apply_all(ops);
        answers.into_iter().map(Some).collect()
    }
}

/// Counts a connection task while it lives (aborted or not).
pub(super) struct Alive(pub(super) Rc<Front>);

impl Alive {
    pub(super) fn new(front: Rc<Front>) -> Self {
        front.connections.set(front.connections.get() + 1);
        Self(front)
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.connections.set(self.0.connections.get() - 1);
    }
}
