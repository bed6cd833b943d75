//! What a handler can see and do beyond its own state.

use std::any::Any;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use corelane_partition::{AnyKey, Partitioner};

use crate::slot::Slot;
use crate::{SendError, Worker, WorkerMetrics};

/// Every worker's slot, shared by the pool and by every worker's [`Context`], plus the pool's
/// partitioner behind an object-safe trait, for [`Context::send_partitioned`].
pub(crate) struct Peers<M> {
    pub(crate) slots: Vec<Arc<Slot<M>>>,
    routing: Routing,
}

/// The pool's partitioner as a context reaches it: through `dyn Partitioner`, whatever its type.
pub(crate) enum Routing {
    /// A hash-based partitioner: one object routes keys of every hashable type.
    Hashed(Arc<dyn for<'a> Partitioner<AnyKey<'a>>>),
    /// A partitioner over keys of one type `K`: an `Arc<dyn Partitioner<K>>`, which a send finds
    /// again by its key's type (`Any` only recovers that type; routing is the `dyn Partitioner`).
    Typed(Box<dyn Any + Send + Sync>),
}

impl Routing {
    /// The routing of a hash-based partitioner.
    pub(crate) fn hashed<P: for<'a> Partitioner<AnyKey<'a>> + 'static>(p: Arc<P>) -> Self {
        Self::Hashed(p)
    }

    /// The routing of a partitioner over keys of type `K`.
    pub(crate) fn typed<P: Partitioner<K> + 'static, K: ?Sized + 'static>(p: Arc<P>) -> Self {
        let p: Arc<dyn Partitioner<K>> = p;
        Self::Typed(Box::new(p))
    }

    /// The worker owning `key`; `None` for a key of another type than a typed partitioner's.
    fn partition<K: Hash + ?Sized + 'static>(&self, key: &K) -> Option<usize> {
        match self {
            Self::Hashed(p) => Some(p.partition(&AnyKey::new(&key))),
            Self::Typed(p) => p
                .downcast_ref::<Arc<dyn Partitioner<K>>>()
                .map(|p| p.partition(key)),
        }
    }
}

impl<M> std::fmt::Debug for Peers<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("workers", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl<M> Peers<M> {
    /// The routing table of a pool: its slots, in index order, and its partitioner.
    pub fn new(slots: Vec<Arc<Slot<M>>>, routing: Routing) -> Self {
        Self { slots, routing }
    }

    /// The slot of worker `index`.
    pub fn slot(&self, index: usize) -> Option<&Arc<Slot<M>>> {
        self.slots.get(index)
    }

    /// All slots, in index order.
    pub fn slots(&self) -> &[Arc<Slot<M>>] {
        &self.slots
    }

    /// A snapshot of every worker's counters, in index order.
    pub fn metrics(&self) -> Vec<WorkerMetrics> {
        self.slots.iter().map(|s| s.metrics()).collect()
    }

    /// Sends `msg` to worker `worker` without blocking (the send of [`Context::send_to`] and
    /// [`Outbox::send_to`]).
    fn try_send_to(&self, worker: usize, msg: M) -> Result<(), SendError<M>> {
        match self.slots.get(worker) {
            Some(slot) => slot.try_send(msg),
            None => Err(SendError::Unroutable(msg)),
        }
    }

    /// Sends `msg` without blocking to the worker owning `key` (see [`Peers::worker_for`]).
    fn try_send_partitioned<K: Hash + ?Sized + 'static>(
        &self,
        key: &K,
        msg: M,
    ) -> Result<(), SendError<M>> {
        match self.worker_for(key) {
            Some(worker) => self.try_send_to(worker, msg),
            None => Err(SendError::Unroutable(msg)),
        }
    }

    /// The worker owning `key` under the pool's partitioner; `None` when the pool was built with
    /// a partitioner over keys of another type ([`PoolBuilder::partitioner_for`]).
    ///
    /// [`PoolBuilder::partitioner_for`]: crate::PoolBuilder::partitioner_for
    pub fn worker_for<K: Hash + ?Sized + 'static>(&self, key: &K) -> Option<usize> {
        self.routing.partition(key)
    }
}

/// A handler's view of the runtime: which worker it runs on, how to reach the others, and how to
/// stop. Sends from a context never block (a worker waiting on its own full inbox, or two workers
/// on each other's, would deadlock): under `Block` and `Reject` a full inbox hands the message
/// back as [`SendError::Full`].
pub struct Context<'a, W: Worker> {
    index: usize,
    core: Option<usize>,
    route: Route<'a, W::Message>,
    pub(crate) stop: bool,
    _worker: PhantomData<fn(&W)>,
}

/// Where a context's sends go: the pool's slots, or a simulation's recorder.
enum Route<'a, M> {
    Pool(&'a Arc<Peers<M>>),
    #[cfg(feature = "sim")]
    Sim(&'a dyn crate::sim::Route<M>),
}

impl<W: Worker> std::fmt::Debug for Context<'_, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("index", &self.index)
            .field("core", &self.core)
            .field("workers", &self.workers())
            .finish_non_exhaustive()
    }
}

impl<'a, W: Worker> Context<'a, W> {
    pub(crate) fn new(
        index: usize,
        core: Option<usize>,
        peers: &'a Arc<Peers<W::Message>>,
    ) -> Self {
        Self {
            index,
            core,
            route: Route::Pool(peers),
            stop: false,
            _worker: PhantomData,
        }
    }

    /// A context whose sends a simulation records (see [`crate::sim`]).
    #[cfg(feature = "sim")]
    pub(crate) fn simulated(index: usize, route: &'a dyn crate::sim::Route<W::Message>) -> Self {
        Self {
            index,
            core: None,
            route: Route::Sim(route),
            stop: false,
            _worker: PhantomData,
        }
    }

    /// This worker's index in its pool (0 for a lone worker).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The core this worker is pinned to, if any.
    pub fn core(&self) -> Option<usize> {
        self.core
    }

    /// How many times this worker's state was rebuilt after a panic: 0 in the first `init`.
    pub fn restarts(&self) -> u64 {
        match &self.route {
            Route::Pool(peers) => peers.slots[self.index]
                .stats
                .restarts
                .load(std::sync::atomic::Ordering::Relaxed),
            #[cfg(feature = "sim")]
            Route::Sim(sim) => sim.restarts(self.index),
        }
    }

    /// How many workers the pool has.
    pub fn workers(&self) -> usize {
        match &self.route {
            Route::Pool(peers) => peers.slots.len(),
            #[cfg(feature = "sim")]
            Route::Sim(sim) => sim.workers(),
        }
    }

    /// Sends `msg` to worker `worker` (possibly this one) without blocking.
    ///
    /// # Errors
    /// [`SendError::Unroutable`] for an index out of range, [`SendError::Full`] on a full inbox
    /// (unless the target drops by policy), [`SendError::Closed`] if the target stopped.
    pub fn send_to(&self, worker: usize, msg: W::Message) -> Result<(), SendError<W::Message>> {
        match &self.route {
            Route::Pool(peers) => peers.try_send_to(worker, msg),
            #[cfg(feature = "sim")]
            Route::Sim(sim) => sim.send_to(self.index, worker, msg),
        }
    }

    /// Sends `msg` to the worker owning `key` under the pool's partitioner, without blocking.
    ///
    /// Every partitioner the pool can be built with routes here: a hash-based one
    /// ([`PoolBuilder::partitioner`](crate::PoolBuilder::partitioner)) keys of every type, one
    /// over keys of type `K` ([`PoolBuilder::partitioner_for`](crate::PoolBuilder::partitioner_for))
    /// keys of that type.
    ///
    /// # Errors
    /// As [`Context::send_to`]; [`SendError::Unroutable`] also for a key of another type than
    /// the one the pool's partitioner was given for.
    pub fn send_partitioned<K: Hash + ?Sized + 'static>(
        &self,
        key: &K,
        msg: W::Message,
    ) -> Result<(), SendError<W::Message>> {
        match &self.route {
            Route::Pool(peers) => peers.try_send_partitioned(key, msg),
            #[cfg(feature = "sim")]
            Route::Sim(sim) => sim.send_to(self.index, sim.partitioner().partition(key), msg),
        }
    }

    /// An owned handle to every worker of the pool, for code this worker runs outside a handler
    /// call: the tasks of an event loop driven from [`Worker::wait`], or helper threads.
    ///
    /// # Panics
    /// In a simulation ([`crate::sim`]), which runs handlers only (no event loops, no threads).
    pub fn outbox(&self) -> Outbox<W::Message> {
        match &self.route {
            Route::Pool(peers) => Outbox {
                peers: Arc::clone(peers),
            },
            #[cfg(feature = "sim")]
            Route::Sim(_) => panic!("a simulated worker has no outbox: it runs handlers only"),
        }
    }

    /// Asks this worker to stop gracefully after the current message: it drains its inbox, runs
    /// `on_stop`, and exits; the rest of the pool keeps running.
    pub fn stop(&mut self) {
        self.stop = true;
    }
}

/// An owned, cloneable handle for sending to the workers of a pool from code a worker runs
/// outside a handler call (see [`Context::outbox`]). Its sends never block, like a context's.
pub struct Outbox<M> {
    peers: Arc<Peers<M>>,
}

impl<M> Clone for Outbox<M> {
    fn clone(&self) -> Self {
        Self {
            peers: Arc::clone(&self.peers),
        }
    }
}

impl<M> std::fmt::Debug for Outbox<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("workers", &self.peers.slots.len())
            .finish()
    }
}

impl<M> Outbox<M> {
    /// How many workers the pool has.
    pub fn workers(&self) -> usize {
        self.peers.slots.len()
    }

    /// The worker owning `key` under the pool's partitioner; `None` for a key of another type
    /// than the one the pool's partitioner was given for (see [`Context::send_partitioned`]).
    pub fn worker_for<K: Hash + ?Sized + 'static>(&self, key: &K) -> Option<usize> {
        self.peers.worker_for(key)
    }

    /// Sends `msg` to worker `worker` (possibly the caller's own) without blocking.
    ///
    /// # Errors
    /// As [`Context::send_to`].
    pub fn send_to(&self, worker: usize, msg: M) -> Result<(), SendError<M>> {
        self.peers.try_send_to(worker, msg)
    }

    /// Sends `msg` to the worker owning `key` without blocking.
    ///
    /// # Errors
    /// As [`Context::send_partitioned`].
    pub fn send_partitioned<K: Hash + ?Sized + 'static>(
        &self,
        key: &K,
        msg: M,
    ) -> Result<(), SendError<M>> {
        self.peers.try_send_partitioned(key, msg)
    }

    /// A snapshot of every worker's counters, in index order.
    pub fn metrics(&self) -> Vec<WorkerMetrics> {
        self.peers.metrics()
    }
}
