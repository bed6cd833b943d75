//! The shared half of a worker: its inbox, lanes, doorbell, control flags and counters. Senders
//! (pool handles, producer lanes, other workers' contexts) hold an `Arc<Slot>`; the worker thread
//! holds one too.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use corelane_channel::{mpmc, spsc, Builder, Doorbell, TrySendError, WaitStrategy};
use crossbeam_utils::CachePadded;

use crate::{Error, Overflow, SendError, WorkerConfig};

/// What travels in an inbox or lane.
pub(crate) enum Envelope<M> {
    /// A user message.
    Msg(M),
    /// A flush marker: answered once everything queued before it is processed.
    Flush(flume::Sender<()>),
}

impl<M> Envelope<M> {
    /// The user message, or `None` after answering a flush marker (a marker that is not going to
    /// be reached is answered at once: everything before it is processed, dropped or returned).
    pub(crate) fn into_msg(self) -> Option<M> {
        match self {
            Self::Msg(m) => Some(m),
            Self::Flush(done) => {
                let _ = done.send(());
                None
            }
        }
    }
}

/// Lifecycle of a worker, as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerState {
    /// Running `init`.
    Starting,
    /// Handling messages or waiting for them.
    Running,
    /// Paused by [`WorkerHandle::pause`](crate::WorkerHandle::pause); messages queue up.
    Paused,
    /// Draining after a stop request.
    Stopping,
    /// Stopped after a graceful drain.
    Stopped,
    /// Stopped because a handler panicked past the restart policy or `init` failed.
    Failed,
}

impl WorkerState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Starting,
            1 => Self::Running,
            2 => Self::Paused,
            3 => Self::Stopping,
            4 => Self::Stopped,
            _ => Self::Failed,
        }
    }
}

/// Counters of one worker. `processed`, `panics`, `restarts` and `state` are written only by the
/// worker thread; `dropped` by senders that apply a drop policy. All Relaxed: they are statistics,
/// read as a snapshot.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) processed: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) restarts: AtomicU64,
    pub(crate) state: AtomicU8,
}

impl Stats {
    /// Single-writer increment (the worker thread): a load and a store, no locked RMW.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
    pub(crate) fn set_state(&self, s: WorkerState) {
        self.state.store(s as u8, Ordering::Release);
    }
}

/// Requests from outside to the worker thread. Each change is followed by a doorbell ring.
#[derive(Debug)]
pub(crate) struct Control<M> {
    /// Set once by a stop request (or by the worker itself); read by the worker every loop.
    pub(crate) stop: AtomicBool,
    /// The stop deadline, written before `stop` is set (Release) and read after (Acquire).
    pub(crate) deadline: Mutex<Option<Instant>>,
    pub(crate) paused: AtomicBool,
    /// Lanes created by producer handles, waiting for the worker to adopt them.
    pub(crate) new_lanes: Mutex<Vec<spsc::Consumer<Envelope<M>>>>,
    pub(crate) lanes_pending: AtomicBool,
}

/// A snapshot of one worker's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerMetrics {
    /// The worker's index.
    pub index: usize,
    /// The core it is pinned to, if any.
    pub core: Option<usize>,
    /// Its lifecycle state.
    pub state: WorkerState,
    /// Messages waiting in its inbox now (lanes not included).
    pub queued: usize,
    /// Messages handed to `handle` (including those whose handler panicked).
    pub processed: u64,
    /// Messages dropped by an overflow policy.
    pub dropped: u64,
    /// Handler panics.
    pub panics: u64,
    /// State rebuilds after a panic.
    pub restarts: u64,
}

/// The shared half of one worker.
pub struct Slot<M> {
    pub(crate) index: usize,
    pub(crate) core: Option<usize>,
    tx: mpmc::Sender<Envelope<M>>,
    /// Popped by the worker thread, and by `DropOldest` senders to evict (CAS-safe: MPMC).
    pub(crate) rx: mpmc::Receiver<Envelope<M>>,
    overflow: Overflow,
    pub(crate) idle: WaitStrategy,
    lane_capacity: usize,
    pub(crate) doorbell: CachePadded<Doorbell>,
    pub(crate) control: Control<M>,
    pub(crate) stats: CachePadded<Stats>,
}

impl<M> std::fmt::Debug for Slot<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("index", &self.index)
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl<M> Slot<M> {
    /// Validates `cfg` for worker `index` and builds its slot; returns the core to pin to.
    pub(crate) fn new(
        index: usize,
        cfg: &WorkerConfig,
    ) -> Result<(Arc<Self>, Option<core_affinity::CoreId>), Error> {
        let pin = cfg.validate(index)?;
        let (tx, rx) = Builder::new(cfg.queue_capacity)
            .wait_strategy(cfg.idle)
            .mpmc()
            .map_err(|e| Error::InvalidConfig(format!("worker {index}: {e}")))?;
        let slot = Self {
            index,
            core: pin.map(|c| c.id),
            tx,
            rx,
            overflow: cfg.overflow,
            idle: cfg.idle,
            lane_capacity: cfg.queue_capacity,
            doorbell: CachePadded::new(Doorbell::new()),
            control: Control {
                stop: AtomicBool::new(false),
                deadline: Mutex::new(None),
                paused: AtomicBool::new(false),
                new_lanes: Mutex::new(Vec::new()),
                lanes_pending: AtomicBool::new(false),
            },
            stats: CachePadded::new(Stats::default()),
        };
        Ok((Arc::new(slot), pin))
    }

    /// Sends by the worker's overflow policy (`Block` may wait).
    ///
    /// # Errors
    /// [`SendError::Full`] under `Reject`, [`SendError::Closed`] once the worker is stopped.
    #[inline]
    pub fn send(&self, msg: M) -> Result<(), SendError<M>> {
        self.deliver(Envelope::Msg(msg), true)
            .map_err(|e| e.map(unwrap_msg))
    }

    /// Sends without ever blocking: as [`Slot::send`], but `Block` fails with
    /// [`SendError::Full`] instead of waiting.
    ///
    /// # Errors
    /// As [`Slot::send`].
    #[inline]
    pub fn try_send(&self, msg: M) -> Result<(), SendError<M>> {
        self.deliver(Envelope::Msg(msg), false)
            .map_err(|e| e.map(unwrap_msg))
    }

    #[inline]
    fn deliver(&self, env: Envelope<M>, may_block: bool) -> Result<(), SendError<Envelope<M>>> {
        let result = match self.overflow {
            Overflow::Block if may_block => self.tx.send(env).map_err(|e| SendError::Closed(e.0)),
            Overflow::Block | Overflow::Reject => self.tx.try_send(env).map_err(from_try),
            Overflow::DropNewest => match self.tx.try_send(env) {
                Err(TrySendError::Full(env)) => {
                    self.dropped(env);
                    Ok(())
                }
                other => other.map_err(from_try),
            },
            Overflow::DropOldest => self.send_evicting(env),
        };
        if result.is_ok() {
            self.doorbell.ring();
        }
        result
    }

    fn send_evicting(&self, mut env: Envelope<M>) -> Result<(), SendError<Envelope<M>>> {
        loop {
            match self.tx.try_send(env) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(back)) => {
                    env = back;
                    if let Ok(oldest) = self.rx.try_recv() {
                        self.dropped(oldest);
                    }
                }
                Err(TrySendError::Disconnected(back)) => return Err(SendError::Closed(back)),
            }
        }
    }

    /// Accounts for an envelope dropped by an overflow policy.
    fn dropped(&self, env: Envelope<M>) {
        if env.into_msg().is_some() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues a flush marker (waiting for room whatever the policy); `done` is answered once every
    /// message queued before it is handled (or dropped/returned).
    pub(crate) fn flush_marker(&self, done: flume::Sender<()>) {
        match self.tx.send(Envelope::Flush(done)) {
            Ok(()) => self.doorbell.ring(),
            // Closed: nothing queued before the marker will be handled; answer at once.
            Err(e) => drop(e.0.into_msg()),
        }
    }

    /// A new SPSC lane into this worker, for a single-thread producer handle.
    pub(crate) fn open_lane(&self) -> Lane<M> {
        let (tx, rx) = Builder::new(self.lane_capacity)
            .wait_strategy(self.idle)
            .spsc()
            .expect("lane capacity was validated with the inbox's");
        self.control
            .new_lanes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(rx);
        // Release pairs with the worker's Acquire load before it takes the lanes.
        self.control.lanes_pending.store(true, Ordering::Release);
        self.doorbell.ring();
        Lane { tx }
    }

    /// Asks the worker to drain and stop, processing until `deadline` (forever if `None`).
    pub(crate) fn request_stop(&self, deadline: Option<Instant>) {
        *self
            .control
            .deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = deadline;
        // Release pairs with the worker's Acquire load of `stop`.
        self.control.stop.store(true, Ordering::Release);
        self.doorbell.ring();
    }

    /// Pauses (`true`) or resumes (`false`) the worker.
    pub(crate) fn set_paused(&self, paused: bool) {
        self.control.paused.store(paused, Ordering::Release);
        self.doorbell.ring();
    }

    /// The worker's lifecycle state.
    pub fn state(&self) -> WorkerState {
        WorkerState::from_u8(self.stats.state.load(Ordering::Acquire))
    }

    /// A snapshot of the worker's counters.
    pub fn metrics(&self) -> WorkerMetrics {
        let s = &self.stats;
        WorkerMetrics {
            index: self.index,
            core: self.core,
            state: self.state(),
            queued: self.rx.len(),
            processed: s.processed.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            panics: s.panics.load(Ordering::Relaxed),
            restarts: s.restarts.load(Ordering::Relaxed),
        }
    }
}

fn unwrap_msg<M>(env: Envelope<M>) -> M {
    match env {
        Envelope::Msg(m) => m,
        Envelope::Flush(_) => unreachable!("user sends only carry messages"),
    }
}

fn from_try<M>(e: TrySendError<Envelope<M>>) -> SendError<Envelope<M>> {
    match e {
        TrySendError::Full(v) => SendError::Full(v),
        TrySendError::Disconnected(v) => SendError::Closed(v),
    }
}

/// A dedicated SPSC lane from one producer handle into one worker.
pub struct Lane<M> {
    tx: spsc::Producer<Envelope<M>>,
}

impl<M> std::fmt::Debug for Lane<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("queued", &self.tx.len())
            .finish()
    }
}

impl<M> Lane<M> {
    /// Sends by the worker's policy (`DropOldest` acts as `DropNewest`: only the worker pops a
    /// lane).
    #[inline]
    pub fn send(&self, slot: &Slot<M>, msg: M, may_block: bool) -> Result<(), SendError<M>> {
        let env = Envelope::Msg(msg);
        let result = match slot.overflow {
            Overflow::Block if may_block => self.tx.send(env).map_err(|e| SendError::Closed(e.0)),
            Overflow::Block | Overflow::Reject => self.tx.try_send(env).map_err(from_try),
            Overflow::DropNewest | Overflow::DropOldest => match self.tx.try_send(env) {
                Err(TrySendError::Full(env)) => {
                    slot.dropped(env);
                    Ok(())
                }
                other => other.map_err(from_try),
            },
        };
        if result.is_ok() {
            slot.doorbell.ring();
        }
        result.map_err(|e| e.map(unwrap_msg))
    }

    /// Publishes every message of `batch` (oldest first) by the worker's policy, with one index
    /// store and one doorbell ring per run of free slots (one of each when the lane has room for
    /// the lot), and empties `batch`.
    ///
    /// # Errors
    /// `Block` with `may_block` waits for room and fails only with [`SendError::Closed`];
    /// otherwise what does not fit is [`SendError::Full`] (`Block`, `Reject`) or dropped and
    /// counted (`DropNewest`, `DropOldest`). The error hands back every message not published,
    /// in order.
    pub fn send_batch(
        &self,
        slot: &Slot<M>,
        batch: &mut LaneBatch<M>,
        may_block: bool,
    ) -> Result<(), SendError<Vec<M>>> {
        let wait = may_block && matches!(slot.overflow, Overflow::Block);
        let result = loop {
            match self.tx.try_send_batch(&mut batch.envs) {
                Err(_) => break Err(()),
                // Ring after every run published: the worker may have looked at this lane just
                // before it and gone to sleep on its doorbell.
                Ok(n) if n > 0 => slot.doorbell.ring(),
                Ok(_) => {}
            }
            if batch.envs.is_empty() || !wait {
                break Ok(());
            }
            // The lane is full: wait for room by sending the oldest message left on its own
            // (a blocking send of one), ring, and go on with the rest.
            let oldest = batch.envs.remove(0);
            match self.tx.send(oldest) {
                Ok(()) => slot.doorbell.ring(),
                Err(e) => {
                    batch.envs.insert(0, e.0);
                    break Err(());
                }
            }
        };
        let envs = &mut batch.envs;
        match result {
            Err(()) => Err(SendError::Closed(envs.drain(..).map(unwrap_msg).collect())),
            Ok(()) if envs.is_empty() => Ok(()),
            Ok(()) => match slot.overflow {
                Overflow::DropNewest | Overflow::DropOldest => {
                    envs.drain(..).for_each(|env| slot.dropped(env));
                    Ok(())
                }
                Overflow::Block | Overflow::Reject => {
                    Err(SendError::Full(envs.drain(..).map(unwrap_msg).collect()))
                }
            },
        }
    }

    /// Queues a flush marker on this lane.
    pub fn flush_marker(&self, slot: &Slot<M>, done: flume::Sender<()>) {
        match self.tx.send(Envelope::Flush(done)) {
            Ok(()) => slot.doorbell.ring(),
            Err(e) => drop(e.0.into_msg()),
        }
    }
}

/// Messages a batching producer holds for one lane until [`Lane::send_batch`] publishes them.
pub struct LaneBatch<M> {
    envs: Vec<Envelope<M>>,
}

impl<M> std::fmt::Debug for LaneBatch<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneBatch")
            .field("len", &self.envs.len())
            .finish()
    }
}

impl<M> LaneBatch<M> {
    /// An empty batch with room for `capacity` messages.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            envs: Vec::with_capacity(capacity),
        }
    }
    /// Appends `msg`; returns how many messages the batch now holds.
    #[inline]
    pub fn push(&mut self, msg: M) -> usize {
        self.envs.push(Envelope::Msg(msg));
        self.envs.len()
    }
    /// How many messages wait in the batch.
    pub fn len(&self) -> usize {
        self.envs.len()
    }
    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.envs.is_empty()
    }
}
