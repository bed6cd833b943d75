//! Single-thread producer handles with dedicated SPSC lanes.

use std::cell::RefCell;
use std::sync::Arc;

use crate::context::Peers;
use crate::dispatch::sealed::Sealed;
use crate::dispatch::{ask_via, send_via};
use crate::slot::{Lane, LaneBatch};
use crate::{Answer, Dispatch, Error, Reply, SendError, Wait, Worker};

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

    /// Turns this handle into a [`BatchingProducer`] that holds up to `batch` messages per worker
    /// and publishes them to that worker's lane together.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `batch` is 0.
    ///
    /// # Examples
    /// ```
    /// use corelane_worker::{BoxError, Context, Dispatch, Pool, Worker};
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
            pending: RefCell::new(pending),
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
    /// One batch per worker; `pending[i]` holds fewer than `batch` messages between calls. In a
    /// `RefCell` so that sends take `&self` like every other handle's: the handle is not `Sync`,
    /// and no borrow is held across a call out of this module.
    pending: RefCell<Vec<LaneBatch<W::Message>>>,
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
    /// Publishes worker `worker`'s batch (out of line: once per batch).
    #[inline(never)]
    fn publish_one(&self, worker: usize, wait: Wait) -> Result<(), SendError<Vec<W::Message>>> {
        let mut pending = self.pending.borrow_mut();
        self.producer.lanes[worker].send_batch(&mut pending[worker], wait)
    }

    /// Messages waiting in the batches, not yet published.
    pub fn pending(&self) -> usize {
        self.pending.borrow().iter().map(LaneBatch::len).sum()
    }

    /// Publishes every worker's batch by its overflow policy (`Block` waits for room).
    ///
    /// # Errors
    /// The first worker whose batch could not be published, with its unpublished messages; the
    /// batches of the workers after it stay pending (call again to publish them).
    pub fn publish(&self) -> Result<(), SendError<Vec<W::Message>>> {
        for worker in 0..self.producer.lanes.len() {
            if !self.pending.borrow()[worker].is_empty() {
                self.publish_one(worker, Wait::Forever)?;
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
    pub fn flush(&self) -> Result<(), SendError<Vec<W::Message>>> {
        self.publish()?;
        self.producer
            .flush()
            .map_err(|_| SendError::Closed(Vec::new()))
    }
}

impl<W: Worker, P> Drop for BatchingProducer<W, P> {
    /// Publishes what is pending (`Block` waits for room); a stopped worker's refusals are
    /// dropped.
    fn drop(&mut self) {
        for worker in 0..self.producer.lanes.len() {
            if !self.pending.borrow()[worker].is_empty() {
                let _ = self.publish_one(worker, Wait::Forever);
            }
        }
    }
}

impl<W: Worker, P> Sealed for Producer<W, P> {}

/// Sends go into this handle's own lane to each worker: no other sender touches it.
impl<W: Worker, P: Send + Sync> Dispatch for Producer<W, P> {
    type Message = W::Message;
    type Partitioner = P;
    type Unsent = W::Message;

    fn workers(&self) -> usize {
        self.lanes.len()
    }

    fn partitioner(&self) -> &P {
        &self.partitioner
    }

    #[inline]
    fn send_with(
        &self,
        worker: usize,
        msg: W::Message,
        wait: Wait,
    ) -> Result<(), SendError<W::Message>> {
        send_via(self.lanes.get(worker), msg, wait)
    }

    fn ask_with<T: Send + 'static>(
        &self,
        worker: usize,
        make: impl FnOnce(Reply<T>) -> W::Message,
    ) -> Result<Answer<T>, SendError<W::Message>> {
        ask_via(self.lanes.get(worker), make)
    }
}

impl<W: Worker, P> Sealed for BatchingProducer<W, P> {}

/// Sends append to the worker's batch; a full batch is published to the handle's lane by the
/// worker's overflow policy (waiting for room as the send's [`Wait`] says). An ask is appended
/// and its batch published at once. Errors hand back every message of the batch that was not
/// published (the request last, for an ask).
impl<W: Worker, P: Send + Sync> Dispatch for BatchingProducer<W, P> {
    type Message = W::Message;
    type Partitioner = P;
    type Unsent = Vec<W::Message>;

    fn workers(&self) -> usize {
        self.producer.lanes.len()
    }

    fn partitioner(&self) -> &P {
        &self.producer.partitioner
    }

    #[inline]
    fn send_with(
        &self,
        worker: usize,
        msg: W::Message,
        wait: Wait,
    ) -> Result<(), SendError<Vec<W::Message>>> {
        let full = match self.pending.borrow_mut().get_mut(worker) {
            Some(batch) => batch.push(msg) >= self.batch,
            None => return Err(SendError::Unroutable(vec![msg])),
        };
        if full {
            self.publish_one(worker, wait)
        } else {
            Ok(())
        }
    }

    fn ask_with<T: Send + 'static>(
        &self,
        worker: usize,
        make: impl FnOnce(Reply<T>) -> W::Message,
    ) -> Result<Answer<T>, SendError<Vec<W::Message>>> {
        let answer = match self.pending.borrow_mut().get_mut(worker) {
            Some(batch) => batch.push_ask(make, Reply::pair()),
            None => return Err(SendError::Unroutable(vec![make(Reply::pair().0)])),
        };
        self.publish_one(worker, Wait::Forever)?;
        Ok(answer)
    }
}
