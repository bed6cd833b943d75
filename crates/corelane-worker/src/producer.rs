//! Single-thread producer handles with dedicated SPSC lanes.

use std::sync::Arc;

use corelane_partition::Partitioner;

use crate::context::Peers;
use crate::slot::{Lane, LaneBatch};
use crate::{AskError, Error, Reply, SendError, Worker};

/// A producer handle from [`Pool::producer`](crate::Pool::producer): one SPSC lane into every
/// worker, so its sends never contend with other producers (no CAS). Messages it sends to one
/// worker are handled in order; there is no order between its lanes and the pool's shared inbox.
///
/// `Send` but not `Sync` (each lane has one producer). Dropping it closes its lanes after the
/// workers drain them.
pub struct Producer<W: Worker, P> {
    lanes: Vec<Lane<W::Message>>,
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
        let lanes = peers.slots().iter().map(|slot| slot.open_lane()).collect();
        Self { lanes, partitioner }
    }

    #[inline]
    fn lane_send(
        &self,
        worker: usize,
        msg: W::Message,
        may_block: bool,
    ) -> Result<(), SendError<W::Message>> {
        match self.lanes.get(worker) {
            Some(lane) => lane.send(msg, crate::slot::Wait::from_flag(may_block)),
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

    /// As [`Producer::send_partitioned`], but under `Block` waits at most `timeout` for room.
    ///
    /// # Errors
    /// As [`Pool::send_timeout`](crate::Pool::send_timeout).
    pub fn send_timeout<K: ?Sized>(
        &self,
        key: &K,
        msg: W::Message,
        timeout: std::time::Duration,
    ) -> Result<(), SendError<W::Message>>
    where
        P: Partitioner<K>,
    {
        let deadline = std::time::Instant::now().checked_add(timeout);
        match self.lanes.get(self.partitioner.partition(key)) {
            Some(lane) => lane.send(msg, crate::slot::Wait::Until(deadline)),
            None => Err(SendError::Unroutable(msg)),
        }
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
    pub fn ask<K: ?Sized, T: Send + 'static>(
        &self,
        key: &K,
        make: impl FnOnce(Reply<T>) -> W::Message,
    ) -> Result<T, AskError<W::Message>>
    where
        P: Partitioner<K>,
    {
        self.lanes[self.partitioner.partition(key)]
            .ask(make, Reply::pair())
            .map_err(AskError::Send)?
            .wait()
    }

    /// Turns this handle into a [`BatchingProducer`] that holds up to `batch` messages per worker
    /// and publishes them to that worker's lane together.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `batch` is 0.
    ///
    /// # Examples
    /// ```
    /// use corelane_worker::{BoxError, Context, Pool, Worker};
    ///
    /// struct Sum;
    /// impl Worker for Sum {
    ///     type Message = u64;
    ///     type State = u64;
    ///     fn init(&mut self, _: &mut Context<'_, Self>) -> Result<u64, BoxError> { Ok(0) }
    ///     fn handle(&mut self, sum: &mut u64, v: u64, _: &mut Context<'_, Self>) { *sum += v }
    /// }
    ///
    /// let pool = Pool::builder().workers(2).spawn(|_| Sum)?;
    /// let mut producer = pool.producer().batching(64)?;
    /// for v in 0..1000u64 {
    ///     producer.send_partitioned(&v, v).map_err(|e| e.to_string())?;
    /// }
    /// assert!(producer.pending() > 0); // the last partial batches wait for a publish
    /// producer.flush().map_err(|e| e.to_string())?; // publishes them, waits until handled
    /// assert_eq!(producer.pending(), 0);
    /// drop(producer);
    /// assert_eq!(pool.shutdown()?.processed(), 1000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn batching(self, batch: usize) -> Result<BatchingProducer<W, P>, Error> {
        if batch == 0 {
            return Err(Error::InvalidConfig(
                "a batching producer needs a batch of at least 1".into(),
            ));
        }
        let pending = (0..self.lanes.len())
            .map(|_| LaneBatch::with_capacity(batch))
            .collect();
        Ok(BatchingProducer {
            producer: self,
            batch,
            pending,
        })
    }

    /// Returns once every message sent through this handle before the call has been handled or
    /// dropped by an overflow policy.
    ///
    /// # Errors
    /// [`Error::Unflushed`] if a worker stopped (shut down, failed, or past its stop deadline)
    /// before handling them: what it did not handle is in its report.
    pub fn flush(&self) -> Result<(), Error> {
        crate::envelope::flush_all(self.lanes.len(), |i, marker| {
            self.lanes[i].flush_marker(marker)
        })
    }
}

/// A [`Producer`] that batches: from [`Producer::batching`]. Its sends append to a per-worker
/// batch, and a worker's batch is published to its lane (one index store and one doorbell ring
/// for the lot, when the lane has room for it) when it holds `batch` messages, or on
/// [`publish`](Self::publish), [`flush`](Self::flush), [`ask`](Self::ask) or drop. The worker and
/// its peers see fewer, larger hand-offs, as Seastar's cross-core queues batch theirs; the price
/// is that a message waits in the batch until one of those happens, so call `publish` when a
/// burst ends.
///
/// Order is kept per worker, as with [`Producer`]. Errors hand back every message of the
/// worker's batch that was not published (a `Vec`, oldest first), so nothing is lost silently;
/// only dropping the handle cannot hand anything back: messages a stopped worker refuses then are
/// dropped (publish or flush before dropping if that matters).
pub struct BatchingProducer<W: Worker, P> {
    producer: Producer<W, P>,
    batch: usize,
    /// One batch per worker; `pending[i]` holds fewer than `batch` messages between calls.
    pending: Vec<LaneBatch<W::Message>>,
}

impl<W: Worker, P> std::fmt::Debug for BatchingProducer<W, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchingProducer")
            .field("batch", &self.batch)
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}

impl<W: Worker, P> BatchingProducer<W, P> {
    /// Appends `msg` to worker `worker`'s batch and publishes the batch once it is full.
    #[inline]
    fn push(
        &mut self,
        worker: usize,
        msg: W::Message,
        may_block: bool,
    ) -> Result<(), SendError<Vec<W::Message>>> {
        let Some(batch) = self.pending.get_mut(worker) else {
            return Err(SendError::Unroutable(vec![msg]));
        };
        if batch.push(msg) < self.batch {
            return Ok(());
        }
        self.publish_one(worker, may_block)
    }

    /// Publishes worker `worker`'s batch (out of line: once per batch).
    #[inline(never)]
    fn publish_one(
        &mut self,
        worker: usize,
        may_block: bool,
    ) -> Result<(), SendError<Vec<W::Message>>> {
        self.producer.lanes[worker].send_batch(&mut self.pending[worker], may_block)
    }

    /// Adds `msg` to the batch of the worker owning `key`; a full batch is published by the
    /// worker's overflow policy (`Block` waits for room).
    ///
    /// # Errors
    /// When publishing fails: [`SendError::Closed`] (the worker stopped), [`SendError::Full`]
    /// under `Reject`, with every message of that batch not published.
    #[inline]
    pub fn send_partitioned<K: ?Sized>(
        &mut self,
        key: &K,
        msg: W::Message,
    ) -> Result<(), SendError<Vec<W::Message>>>
    where
        P: Partitioner<K>,
    {
        let worker = self.producer.partitioner.partition(key);
        self.push(worker, msg, true)
    }

    /// As [`BatchingProducer::send_partitioned`], never blocking: a full batch that does not fit
    /// in the lane is handed back as [`SendError::Full`] (what fit is published).
    ///
    /// # Errors
    /// As [`BatchingProducer::send_partitioned`], plus [`SendError::Full`] under `Block`.
    #[inline]
    pub fn try_send_partitioned<K: ?Sized>(
        &mut self,
        key: &K,
        msg: W::Message,
    ) -> Result<(), SendError<Vec<W::Message>>>
    where
        P: Partitioner<K>,
    {
        let worker = self.producer.partitioner.partition(key);
        self.push(worker, msg, false)
    }

    /// Adds `msg` to worker `worker`'s batch, as [`BatchingProducer::send_partitioned`].
    ///
    /// # Errors
    /// [`SendError::Unroutable`] for an index out of range; otherwise as
    /// [`BatchingProducer::send_partitioned`].
    pub fn send_to(
        &mut self,
        worker: usize,
        msg: W::Message,
    ) -> Result<(), SendError<Vec<W::Message>>> {
        self.push(worker, msg, true)
    }

    /// Messages waiting in the batches, not yet published.
    pub fn pending(&self) -> usize {
        self.pending.iter().map(LaneBatch::len).sum()
    }

    /// Publishes every worker's batch by its overflow policy (`Block` waits for room).
    ///
    /// # Errors
    /// The first worker whose batch could not be published, with its unpublished messages; the
    /// batches of the workers after it stay pending (call again to publish them).
    pub fn publish(&mut self) -> Result<(), SendError<Vec<W::Message>>> {
        for worker in 0..self.pending.len() {
            if !self.pending[worker].is_empty() {
                self.publish_one(worker, true)?;
            }
        }
        Ok(())
    }

    /// Publishes every batch, then returns once every message sent through this handle has been
    /// handled.
    ///
    /// # Errors
    /// As [`BatchingProducer::publish`]; [`SendError::Closed`] with no messages if a worker
    /// stopped before answering (everything published to it is in its shutdown report).
    pub fn flush(&mut self) -> Result<(), SendError<Vec<W::Message>>> {
        self.publish()?;
        self.producer
            .flush()
            .map_err(|_| SendError::Closed(Vec::new()))
    }

    /// Sends the request `make(reply)` to the worker owning `key` behind that worker's batch
    /// (publishing both) and waits for the answer: it observes every earlier send of this handle
    /// to that worker.
    ///
    /// # Errors
    /// [`AskError::Send`] with the unpublished messages (the request last) if publishing failed;
    /// otherwise as [`Pool::ask`](crate::Pool::ask).
    pub fn ask<K: ?Sized, T: Send + 'static>(
        &mut self,
        key: &K,
        make: impl FnOnce(Reply<T>) -> W::Message,
    ) -> Result<T, AskError<Vec<W::Message>>>
    where
        P: Partitioner<K>,
    {
        let worker = self.producer.partitioner.partition(key);
        let answer = self.pending[worker].push_ask(make, Reply::pair());
        self.publish_one(worker, true).map_err(AskError::Send)?;
        answer.wait()
    }
}

impl<W: Worker, P> Drop for BatchingProducer<W, P> {
    /// Publishes what is pending (`Block` waits for room); a stopped worker's refusals are
    /// dropped.
    fn drop(&mut self) {
        for worker in 0..self.pending.len() {
            if !self.pending[worker].is_empty() {
                let _ = self.publish_one(worker, true);
            }
        }
    }
}
