//! Single-thread producer handles with dedicated SPSC lanes.

use std::sync::Arc;

use corelane_partition::Partitioner;
use corelane_worker::internal::{self, Lane};
use corelane_worker::{AskError, Error, Peers, Reply, SendError, Worker};

/// A producer handle from [`Pool::producer`](crate::Pool::producer): one SPSC lane into every
/// worker, so its sends never contend with other producers (no CAS). Messages it sends to one
/// worker are handled in order; there is no order between its lanes and the pool's shared inbox.
///
/// `Send` but not `Sync` (each lane has one producer). Dropping it closes its lanes after the
/// workers drain them.
pub struct Producer<W: Worker, P> {
    lanes: Vec<Lane<W::Message>>,
    peers: Arc<Peers<W::Message>>,
    partitioner: Arc<P>,
}

impl<W: Worker, P> std::fmt::Debug for Producer<W, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("lanes", &self.lanes.len())
            .finish_non_exhaustive()
    }
}

impl<W: Worker, P> Producer<W, P> {
    pub(crate) fn new(peers: Arc<Peers<W::Message>>, partitioner: Arc<P>) -> Self {
        let lanes = peers
            .slots()
            .iter()
            .map(|s| internal::open_lane(s))
            .collect();
        Self {
            lanes,
            peers,
            partitioner,
        }
    }

    fn lane_send(
        &self,
        worker: usize,
        msg: W::Message,
        may_block: bool,
    ) -> Result<(), SendError<W::Message>> {
        match self.lanes.get(worker) {
            Some(lane) => lane.send(&self.peers.slots()[worker], msg, may_block),
            None => Err(SendError::Unroutable(msg)),
        }
    }

    /// Sends to the worker owning `key` by its overflow policy.
    ///
    /// # Errors
    /// As [`Pool::send_partitioned`](crate::Pool::send_partitioned).
    #[inline]
    pub fn send_partitioned<K: ?Sized>(
        &self,
        key: &K,
        msg: W::Message,
    ) -> Result<(), SendError<W::Message>>
    where
        P: Partitioner<K>,
    {
        self.lane_send(self.partitioner.partition(key), msg, true)
    }

    /// As [`Producer::send_partitioned`], never blocking.
    ///
    /// # Errors
    /// As [`Pool::try_send_partitioned`](crate::Pool::try_send_partitioned).
    #[inline]
    pub fn try_send_partitioned<K: ?Sized>(
        &self,
        key: &K,
        msg: W::Message,
    ) -> Result<(), SendError<W::Message>>
    where
        P: Partitioner<K>,
    {
        self.lane_send(self.partitioner.partition(key), msg, false)
    }

    /// Sends to worker `worker` by its overflow policy.
    ///
    /// # Errors
    /// As [`Pool::send_to`](crate::Pool::send_to).
    pub fn send_to(&self, worker: usize, msg: W::Message) -> Result<(), SendError<W::Message>> {
        self.lane_send(worker, msg, true)
    }

    /// As [`Pool::ask`](crate::Pool::ask), through this handle's lane (so it observes every
    /// earlier send of this handle to that worker).
    ///
    /// # Errors
    /// As [`Pool::ask`](crate::Pool::ask).
    pub fn ask<K: ?Sized, T>(
        &self,
        key: &K,
        make: impl FnOnce(Reply<T>) -> W::Message,
    ) -> Result<T, AskError<W::Message>>
    where
        P: Partitioner<K>,
    {
        let (reply, answer) = Reply::pair();
        self.send_partitioned(key, make(reply))
            .map_err(AskError::Send)?;
        answer.wait()
    }

    /// Returns once every message sent through this handle before the call has been handled.
    ///
    /// # Errors
    /// [`Error::ShutDown`] if a worker stopped without answering.
    pub fn flush(&self) -> Result<(), Error> {
        let slots = self.peers.slots();
        internal::flush_all(self.lanes.len(), |i, done| {
            self.lanes[i].flush_marker(&slots[i], done)
        })
    }
}
