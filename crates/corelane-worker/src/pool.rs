//! The pool and its builder.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use corelane_partition::{AnyKey, HashPartitioner, Partitioner, Resize};

use crate::context::{Peers, Routing};
use crate::dispatch::sealed::Sealed;
use crate::dispatch::{ask_via, send_via};
use crate::runtime::{collect_reports, start};
use crate::slot::Slot;
use crate::{
    Answer, AskError, Dispatch, Error, EventListener, EventMask, Outcome, PoolMetrics, Producer,
    Reply, SendError, ShutdownReport, Wait, Worker, WorkerConfig, WorkerReport,
};

/// Configures a [`Pool`] of workers `W`; from [`Pool::builder`] (`W` is inferred from
/// [`spawn`](Self::spawn)'s factory). Validates everything at `spawn`.
pub struct PoolBuilder<W, P = HashPartitioner> {
    workers: Option<usize>,
    config: Box<dyn Fn(usize) -> WorkerConfig>,
    partitioner: P,
    /// How a [`Context`] reaches the partitioner (chosen by the method that set it).
    routing: fn(Arc<P>) -> Routing,
    _workers: PhantomData<fn() -> W>,
}

impl<W, P> std::fmt::Debug for PoolBuilder<W, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl<W: Worker> PoolBuilder<W> {
    /// A builder with the defaults: one worker per available core, [`WorkerConfig::new`] for
    /// each, and the [`HashPartitioner`].
    fn new() -> Self {
        Self {
            workers: None,
            config: Box::new(|_| WorkerConfig::new()),
            partitioner: HashPartitioner::new(),
            routing: Routing::hashed,
            _workers: PhantomData,
        }
    }
}

impl<W: Worker, P: Resize + Send + Sync + 'static> PoolBuilder<W, P> {
    /// Number of workers (default: one per available core).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// The configuration of worker `i`, e.g. `|i| WorkerConfig::new().with_nth_core(i)`.
    pub fn worker_config(mut self, config: impl Fn(usize) -> WorkerConfig + 'static) -> Self {
        self.config = Box::new(config);
        self
    }

    /// A hash-based partitioner (default [`HashPartitioner`]), which maps keys of every hashable
    /// type; resized to the worker count if it can be, else its size must equal the worker
    /// count. For a partitioner over keys of one type (a range, a function, the stable hash),
    /// use [`partitioner_for`](Self::partitioner_for).
    pub fn partitioner<Q>(self, partitioner: Q) -> PoolBuilder<W, Q>
    where
        Q: Resize + for<'a> Partitioner<AnyKey<'a>> + 'static,
    {
        self.with_partitioner(partitioner, Routing::hashed)
    }

    /// A partitioner over keys of type `K`, such as a
    /// [`RangePartitioner`](corelane_partition::RangePartitioner) or an
    /// [`FnPartitioner`](corelane_partition::FnPartitioner): the pool and its workers'
    /// [`Context::send_partitioned`](crate::Context::send_partitioned) route keys of type `K` by it. Sized as
    /// [`partitioner`](Self::partitioner) says.
    pub fn partitioner_for<K, Q>(self, partitioner: Q) -> PoolBuilder<W, Q>
    where
        K: ?Sized + 'static,
        Q: Resize + Partitioner<K> + 'static,
    {
        self.with_partitioner(partitioner, Routing::typed::<Q, K>)
    }

    fn with_partitioner<Q>(
        self,
        partitioner: Q,
        routing: fn(Arc<Q>) -> Routing,
    ) -> PoolBuilder<W, Q> {
        PoolBuilder {
            workers: self.workers,
            config: self.config,
            partitioner,
            routing,
            _workers: PhantomData,
        }
    }

    /// Builds the workers with `factory(index)` and starts them, each on its own thread, pinned
    /// as configured, running `init` there. Returns once every `init` succeeded.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for zero workers, a core that does not exist (naming the cores
    /// that do), a bad capacity, or a partitioner of the wrong size; [`Error::Init`] or
    /// [`Error::InitPanic`] if an `init` fails (workers already started are stopped first);
    /// [`Error::Spawn`].
    pub fn spawn(self, factory: impl FnMut(usize) -> W) -> Result<Pool<W, P>, Error> {
        let n = match self.workers {
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if n == 0 {
            return Err(Error::InvalidConfig(
                "a pool needs at least one worker".into(),
            ));
        }
        let partitioner = Arc::new(
            self.partitioner
                .for_partitions(n)
                .map_err(|e| Error::InvalidConfig(format!("partitioner: {e}")))?,
        );
        let configs: Vec<WorkerConfig> = (0..n).map(|i| (self.config)(i)).collect();
        let (slots, pins) = slots(&configs)?;
        let peers = Arc::new(Peers::new(slots, (self.routing)(partitioner.clone())));
        let (reports_tx, reports) = flume::unbounded();
        let threads = start_all(&configs, pins, &peers, factory, &reports_tx)?;
        Ok(Pool {
            inner: Arc::new(Inner {
                peers,
                partitioner,
                threads: Mutex::new(Some(threads)),
                reports,
            }),
        })
    }
}

/// The workers' slots and the core each pins to.
type Slots<M> = (Vec<Arc<Slot<M>>>, Vec<Option<core_affinity::CoreId>>);

/// Validates every configuration and builds the workers' slots, with the core each pins to.
fn slots<M>(configs: &[WorkerConfig]) -> Result<Slots<M>, Error> {
    let mut slots = Vec::with_capacity(configs.len());
    let mut pins = Vec::with_capacity(configs.len());
    for (i, cfg) in configs.iter().enumerate() {
        let (slot, pin) = Slot::new(i, cfg)?;
        slots.push(slot);
        pins.push(pin);
    }
    Ok((slots, pins))
}

/// Starts every worker in turn; if one fails to start, stops those already running first.
fn start_all<W: Worker>(
    configs: &[WorkerConfig],
    pins: Vec<Option<core_affinity::CoreId>>,
    peers: &Arc<Peers<W::Message>>,
    mut factory: impl FnMut(usize) -> W,
    reports: &flume::Sender<WorkerReport<W::Message>>,
) -> Result<Vec<JoinHandle<()>>, Error> {
    let mut threads = Vec::with_capacity(configs.len());
    for (i, (cfg, pin)) in configs.iter().zip(pins).enumerate() {
        let slot = peers.slots()[i].clone();
        match start(factory(i), cfg, slot, peers.clone(), pin, reports.clone()) {
            Ok(t) => threads.push(t),
            Err(e) => {
                for slot in &peers.slots()[..i] {
                    slot.request_stop(None);
                }
                threads.into_iter().for_each(|t| drop(t.join()));
                return Err(e);
            }
        }
    }
    Ok(threads)
}

struct Inner<W: Worker, P> {
    peers: Arc<Peers<W::Message>>,
    partitioner: Arc<P>,
    /// Taken by the first shutdown.
    threads: Mutex<Option<Vec<JoinHandle<()>>>>,
    reports: flume::Receiver<WorkerReport<W::Message>>,
}

impl<W: Worker, P> Inner<W, P> {
    fn shutdown(&self, deadline: Option<Instant>) -> Result<ShutdownReport<W::Message>, Error> {
        let threads = self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or(Error::ShutDown)?;
        let slots = self.peers.slots();
        crate::trace::shutdown(slots.len(), deadline.is_some());
        for slot in slots {
            slot.request_stop(deadline);
        }
        let reports = collect_reports(slots, &self.reports, deadline);
        let mut workers = Vec::with_capacity(slots.len());
        for (report, thread) in reports.into_iter().zip(threads) {
            let report = report.ok_or(Error::ShutDown)?;
            // A worker that timed out is left to finish on its own.
            if report.outcome != Outcome::TimedOut {
                let _ = thread.join();
            }
            workers.push(report);
        }
        Ok(ShutdownReport { workers })
    }
}

impl<W: Worker, P> Drop for Inner<W, P> {
    fn drop(&mut self) {
        let _ = self.shutdown(None);
    }
}

/// A pool of workers. Cheap to clone, `Send + Sync`: any number of client threads route through
/// it. Dropping the last clone shuts the pool down gracefully.
pub struct Pool<W: Worker, P = HashPartitioner> {
    inner: Arc<Inner<W, P>>,
}

impl<W: Worker, P> Clone for Pool<W, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<W: Worker, P> std::fmt::Debug for Pool<W, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.inner.peers.slots().len())
            .finish_non_exhaustive()
    }
}

impl<W: Worker> Pool<W> {
    /// Starts configuring a pool; the worker type is inferred from
    /// [`spawn`](PoolBuilder::spawn)'s factory.
    pub fn builder() -> PoolBuilder<W> {
        PoolBuilder::new()
    }
}

impl<W: Worker, P: Send + Sync + 'static> Pool<W, P> {
    /// The slot of the worker that owns `key`.
    #[inline]
    fn slot_for<K: ?Sized>(&self, key: &K) -> &Arc<Slot<W::Message>>
    where
        P: Partitioner<K>,
    {
        &self.inner.peers.slots()[self.inner.partitioner.partition(key)]
    }

    /// Sends one copy of `msg` to every worker. Every worker is tried even if one fails.
    ///
    /// # Errors
    /// The first failure, with the copy it handed back.
    pub fn broadcast(&self, msg: W::Message) -> Result<(), SendError<W::Message>>
    where
        W::Message: Clone,
    {
        let (last, rest) = self
            .inner
            .peers
            .slots()
            .split_last()
            .expect("a pool has at least one worker");
        let mut first_err = None;
        for slot in rest {
            if let Err(e) = slot.send_msg(msg.clone(), Wait::Forever) {
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = last.send_msg(msg, Wait::Forever) {
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }

    /// As [`Dispatch::send_partitioned`], for async code: under `Block` a full inbox leaves the
    /// future pending (woken when the worker frees room) instead of blocking the executor's
    /// thread. Dropping the future before it completes drops the message unsent.
    ///
    /// # Errors
    /// As [`Dispatch::send_partitioned`].
    pub async fn send_async<K: ?Sized>(
        &self,
        key: &K,
        msg: W::Message,
    ) -> Result<(), SendError<W::Message>>
    where
        P: Partitioner<K>,
    {
        self.slot_for(key).send_msg_async(msg).await
    }

    /// As [`Dispatch::send_to`], waiting for room as [`Pool::send_async`] does.
    ///
    /// # Errors
    /// As [`Dispatch::send_to`].
    pub async fn send_to_async(
        &self,
        worker: usize,
        msg: W::Message,
    ) -> Result<(), SendError<W::Message>> {
        match self.inner.peers.slot(worker) {
            Some(slot) => slot.send_msg_async(msg).await,
            None => Err(SendError::Unroutable(msg)),
        }
    }

    /// As [`Dispatch::ask`], for async code: the request waits for room as
    /// [`Pool::send_async`] does and the answer is awaited; the executor's thread never blocks.
    ///
    /// # Errors
    /// As [`Dispatch::ask`].
    pub async fn ask_async<K: ?Sized, T: Send + 'static>(
        &self,
        key: &K,
        make: impl FnOnce(Reply<T>) -> W::Message,
    ) -> Result<T, AskError<W::Message>>
    where
        P: Partitioner<K>,
    {
        self.ask_to_async(self.worker_for(key), make).await
    }

    /// As [`Dispatch::ask_to`], awaiting as [`Pool::ask_async`] does.
    ///
    /// # Errors
    /// As [`Dispatch::ask_to`].
    pub async fn ask_to_async<T: Send + 'static>(
        &self,
        worker: usize,
        make: impl FnOnce(Reply<T>) -> W::Message,
    ) -> Result<T, AskError<W::Message>> {
        let Some(slot) = self.inner.peers.slot(worker) else {
            return Err(AskError::Send(SendError::Unroutable(make(Reply::pair().0))));
        };
        slot.ask_async(make, Reply::pair_async())
            .await
            .map_err(AskError::Send)?
            .wait_async()
            .await
    }

    /// Returns once every message this thread sent through the pool's shared inboxes before the
    /// call has been handled or dropped by an overflow policy.
    ///
    /// # Errors
    /// [`Error::Unflushed`] if a worker stopped (shut down, failed, or past its stop deadline)
    /// before handling them: what it did not handle is in its report.
    pub fn flush(&self) -> Result<(), Error> {
        crate::envelope::flush_all(self.inner.peers.slots().len(), |i, marker| {
            self.inner.peers.slots()[i].flush_marker(marker)
        })
    }

    /// Pauses every worker after its current message: each parks (no CPU) and sends still
    /// queue by the overflow policy.
    pub fn pause(&self) {
        self.inner
            .peers
            .slots()
            .iter()
            .for_each(|s| s.set_paused(true));
    }

    /// Resumes every paused worker.
    pub fn resume(&self) {
        self.inner
            .peers
            .slots()
            .iter()
            .for_each(|s| s.set_paused(false));
    }

    /// A listener for worker `worker`'s events of the kinds in `mask`, from now on; `None` for
    /// an index out of range. Only listeners whose mask holds an event's kind are woken for it.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use corelane_worker::{BoxError, Context, EventMask, Pool, Worker, WorkerEvent};
    ///
    /// struct Nop;
    /// impl Worker for Nop {
    ///     type Message = ();
    ///     type State = ();
    ///     fn init(&mut self, _: &mut Context<'_, Self>) -> Result<(), BoxError> { Ok(()) }
    ///     fn handle(&mut self, _: &mut (), _: (), _: &mut Context<'_, Self>) {}
    /// }
    ///
    /// let pool = Pool::builder().workers(1).spawn(|_| Nop)?;
    /// let events = pool.listen(0, EventMask::PAUSED | EventMask::RESUMED).unwrap();
    /// pool.pause();
    /// assert_eq!(events.wait_timeout(Duration::from_secs(5))?, WorkerEvent::Paused);
    /// pool.resume();
    /// assert_eq!(events.wait_timeout(Duration::from_secs(5))?, WorkerEvent::Resumed);
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// ```
    pub fn listen(&self, worker: usize, mask: EventMask) -> Option<EventListener> {
        self.inner.peers.slot(worker).map(|slot| slot.listen(mask))
    }

    /// Pauses worker `worker` (as [`Pool::pause`]); `false` for an index out of range.
    pub fn pause_worker(&self, worker: usize) -> bool {
        self.inner
            .peers
            .slot(worker)
            .map(|s| s.set_paused(true))
            .is_some()
    }

    /// Resumes worker `worker`; `false` for an index out of range.
    pub fn resume_worker(&self, worker: usize) -> bool {
        self.inner
            .peers
            .slot(worker)
            .map(|s| s.set_paused(false))
            .is_some()
    }

    /// A snapshot of every worker's counters.
    pub fn metrics(&self) -> PoolMetrics {
        PoolMetrics {
            workers: self.inner.peers.metrics(),
        }
    }

    /// A single-thread producer handle with a dedicated SPSC lane into every worker: no CAS on
    /// its send path. `Send` but not `Sync`: one per producing thread.
    pub fn producer(&self) -> Producer<W, P> {
        Producer::new(self.inner.peers.clone(), self.inner.partitioner.clone())
    }

    /// Graceful shutdown: stops intake (later sends fail and hand their message back), lets
    /// every worker handle everything queued, runs `on_stop`, joins all threads, and reports.
    /// Other clones of this pool see it shut down too.
    ///
    /// # Errors
    /// [`Error::ShutDown`] if the pool was already shut down.
    pub fn shutdown(self) -> Result<ShutdownReport<W::Message>, Error> {
        self.inner.shutdown(None)
    }

    /// As [`Pool::shutdown`], but workers stop handling messages at `timeout`; what they did
    /// not handle is returned in the report. A worker still in a handler
    /// [`STOP_GRACE`](crate::STOP_GRACE) (20 ms) past the deadline is reported
    /// as [`Outcome::TimedOut`]: its queues are sealed (blocked senders get their message back),
    /// what they held is returned, and its thread is left to finish on its own. Returns within
    /// `timeout` plus that grace.
    ///
    /// # Errors
    /// As [`Pool::shutdown`].
    pub fn shutdown_timeout(self, timeout: Duration) -> Result<ShutdownReport<W::Message>, Error> {
        self.inner.shutdown(Instant::now().checked_add(timeout))
    }
}

impl<W: Worker, P> Sealed for Pool<W, P> {}

/// Sends go into the workers' shared inboxes: the pool is `Sync`, any number of threads send
/// through it.
impl<W: Worker, P: Send + Sync + 'static> Dispatch for Pool<W, P> {
    type Message = W::Message;
    type Partitioner = P;
    type Unsent = W::Message;

    fn workers(&self) -> usize {
        self.inner.peers.slots().len()
    }

    fn partitioner(&self) -> &P {
        &self.inner.partitioner
    }

    #[inline]
    fn send_with(
        &self,
        worker: usize,
        msg: W::Message,
        wait: Wait,
    ) -> Result<(), SendError<W::Message>> {
        send_via(self.inner.peers.slot(worker).map(|s| &**s), msg, wait)
    }

    fn ask_with<T: Send + 'static>(
        &self,
        worker: usize,
        make: impl FnOnce(Reply<T>) -> W::Message,
    ) -> Result<Answer<T>, SendError<W::Message>> {
        ask_via(self.inner.peers.slot(worker).map(|s| &**s), make)
    }
}
