//! The shared half of a worker: its inbox, lanes, doorbell, control flags and counters. Senders
//! (pool handles, producer lanes, other workers' contexts) hold an `Arc<Slot>`; the worker thread
//! holds one too.
//!
//! Who may build the report is decided once ([`Control::report`]): the worker thread when it
//! ends, or the pool when the worker missed its stop deadline ([`Slot::abandon`]). Both seal the
//! same way, and the drop ledger ([`DropLedger`]) makes every drop by an overflow policy land
//! before the report's count, or fail its send.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use corelane_channel::{
    mpmc, spsc, Builder, Doorbell, SendTimeoutError, TrySendError, WaitStrategy,
};
use crossbeam_utils::CachePadded;

use crate::dispatch::Queue;
use crate::envelope::{Asked, Envelope, FlushMarker};
use crate::events::Events;
use crate::report::LATENCY_BUCKETS;
use crate::runtime::{Outcome, WorkerReport};
use crate::{
    Answer, Counters, Error, EventListener, EventMask, Latency, Overflow, Reply, SendError, Wait,
    WorkerConfig, WorkerEvent,
};

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

/// The count of messages dropped by an overflow policy, linearized with the report.
///
/// One word: bit 63 `FINAL` (the report took the count), bits 48..63 the evictions in flight,
/// bits 0..48 the count. A drop counts itself only while `FINAL` is clear, and fails its send
/// otherwise (the channel is sealed by then), so every `Ok` send that dropped a message is in the
/// report's `dropped`. An eviction (`DropOldest`) registers before it pops and counts after, and
/// the report waits for the registered ones, so a message popped by an eviction is either counted
/// or still in the queue for the seal. Every access is SeqCst: these are the slow paths.
#[derive(Debug, Default)]
pub(crate) struct DropLedger(AtomicU64);

const FINAL: u64 = 1 << 63;
const EVICTING: u64 = 1 << 48;
const COUNT_MASK: u64 = EVICTING - 1;
const EVICTING_MASK: u64 = (FINAL - 1) & !COUNT_MASK;

impl DropLedger {
    /// Counts one dropped message; `false` once the report has taken the count.
    fn count(&self) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                (v & FINAL == 0).then_some(v + 1)
            })
            .is_ok()
    }

    /// Registers an eviction about to pop; `false` once the report has taken the count.
    fn begin_eviction(&self) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                (v & FINAL == 0).then_some(v + EVICTING)
            })
            .is_ok()
    }

    /// Ends a registered eviction, counting the message it dropped, if any.
    fn end_eviction(&self, dropped: bool) {
        // One add: +1 for the drop (if any) and -EVICTING for the registration (wrapping).
        self.0
            .fetch_add(u64::from(dropped).wrapping_sub(EVICTING), Ordering::SeqCst);
    }

    /// Whether no eviction is in flight.
    fn idle(&self) -> bool {
        self.0.load(Ordering::SeqCst) & EVICTING_MASK == 0
    }

    /// Closes the ledger and returns the final count, once the evictions in flight are counted.
    /// Called after the queues are sealed (so an eviction still registered pops at most what the
    /// seal left: values senders are taking back).
    fn finish(&self) -> u64 {
        let mut v = self.0.fetch_or(FINAL, Ordering::SeqCst);
        while v & EVICTING_MASK != 0 {
            std::thread::yield_now();
            v = self.0.load(Ordering::SeqCst);
        }
        v & COUNT_MASK
    }

    /// The count so far (a statistic).
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed) & COUNT_MASK
    }
}

/// Counters of one worker. `processed`, `taken`, `panics`, `restarts` and `state` are written
/// only by the worker thread; `drops` by senders that apply a drop policy. Relaxed, except the
/// ledger and `state`: they are statistics, read as a snapshot.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) processed: AtomicU64,
    /// Messages the worker thread took from its queues (written under the lanes lock).
    taken: AtomicU64,
    /// Written by senders under a drop policy: on a line of its own, away from the worker's.
    drops: CachePadded<DropLedger>,
    pub(crate) panics: AtomicU64,
    pub(crate) restarts: AtomicU64,
    state: AtomicU8,
    /// Sampled handler latency ([`Latency`]), written by the worker thread alone.
    latency: [AtomicU64; LATENCY_BUCKETS],
}

impl Stats {
    /// Single-writer increment (the worker thread): a load and a store, no locked RMW.
    pub(crate) fn bump(counter: &AtomicU64) {
        Self::add(counter, 1);
    }
    fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
    pub(crate) fn set_state(&self, s: WorkerState) {
        self.state.store(s as u8, Ordering::Release);
    }
    /// Counts one timed handler call (the worker thread only).
    pub(crate) fn record_latency(&self, took: std::time::Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        Self::bump(&self.latency[Latency::bucket(ns)]);
    }
    fn latency(&self) -> Latency {
        let mut snapshot = Latency::default();
        for (to, from) in snapshot.buckets.iter_mut().zip(&self.latency) {
            *to = from.load(Ordering::Relaxed);
        }
        snapshot
    }
}

/// Nobody has built the report yet.
const REPORT_OPEN: u8 = 0;
/// The worker thread builds the report (it is on its way to the pool).
const REPORT_BY_WORKER: u8 = 1;
/// The pool built it after the worker missed its deadline; the worker thread discards its own.
const REPORT_ABANDONED: u8 = 2;

/// Requests from outside to the worker thread. Each change is followed by a doorbell ring.
#[derive(Debug)]
pub(crate) struct Control {
    /// Set once by a stop request (or by the worker itself); read by the worker every loop.
    pub(crate) stop: AtomicBool,
    /// The stop deadline, written before `stop` is set (Release) and read after (Acquire).
    pub(crate) deadline: Mutex<Option<Instant>>,
    pub(crate) paused: AtomicBool,
    /// Who builds the report: `REPORT_OPEN`, then `REPORT_BY_WORKER` or `REPORT_ABANDONED`.
    report: AtomicU8,
    /// Set when `evicted_flushes` holds markers for the worker to answer.
    flushes_pending: AtomicBool,
}

/// The worker's producer lanes, shared so that a seal by the pool can reach them.
struct Lanes<M> {
    active: Vec<spsc::Receiver<Envelope<M>>>,
    /// No lane may be added: a lane opened now is closed at once (its sends fail).
    sealed: bool,
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
    /// Messages waiting in its inbox and its producer lanes now.
    pub queued: usize,
    /// Its counters now.
    pub counters: Counters,
    /// Its sampled handler latency (empty without the `latency` feature).
    pub latency: Latency,
}

/// The shared half of one worker. The fields every send reads come first and are written only at
/// construction; what the worker thread writes (the lanes lock, on every gather; the control
/// flags; the counters) lives on cache lines of its own, so a send never waits for a line the
/// worker just wrote.
pub(crate) struct Slot<M> {
    pub(crate) index: usize,
    pub(crate) core: Option<usize>,
    tx: mpmc::Sender<Envelope<M>>,
    /// Popped by the worker thread, and by `DropOldest` senders to evict (CAS-safe: MPMC).
    rx: mpmc::Receiver<Envelope<M>>,
    overflow: Overflow,
    pub(crate) idle: WaitStrategy,
    lane_capacity: usize,
    pub(crate) control: CachePadded<Control>,
    lanes: CachePadded<Mutex<Lanes<M>>>,
    /// Flush markers that a `DropOldest` eviction popped: answered by the worker between batches.
    evicted_flushes: Mutex<Vec<FlushMarker>>,
    pub(crate) stats: CachePadded<Stats>,
    /// The worker's event source ([`Slot::listen`]).
    pub(crate) events: Arc<Events>,
}

impl<M> std::fmt::Debug for Slot<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("index", &self.index)
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

/// Where a send that found its queue full goes next.
enum FullAt<'a, M> {
    Inbox,
    Lane(&'a spsc::Sender<Envelope<M>>),
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
            control: CachePadded::new(Control {
                stop: AtomicBool::new(false),
                deadline: Mutex::new(None),
                paused: AtomicBool::new(false),
                report: AtomicU8::new(REPORT_OPEN),
                flushes_pending: AtomicBool::new(false),
            }),
            lanes: CachePadded::new(Mutex::new(Lanes {
                active: Vec::new(),
                sealed: false,
            })),
            evicted_flushes: Mutex::new(Vec::new()),
            stats: CachePadded::new(Stats::default()),
            events: Arc::default(),
        };
        Ok((Arc::new(slot), pin))
    }

    // ---- sending ------------------------------------------------------------------------------

    /// Sends by the worker's overflow policy (`Block` may wait).
    ///
    /// # Errors
    /// [`SendError::Full`] under `Reject`, [`SendError::Closed`] once the worker is stopped.
    #[inline]
    pub fn send(&self, msg: M) -> Result<(), SendError<M>> {
        self.send_msg(msg, Wait::Forever)
    }

    /// As [`Slot::send`], but `Block` waits at most until `deadline`.
    ///
    /// # Errors
    /// As [`Slot::send`], plus [`SendError::Timeout`].
    pub fn send_until(&self, msg: M, deadline: Option<Instant>) -> Result<(), SendError<M>> {
        self.send_msg(msg, deadline.map_or(Wait::Forever, Wait::Until))
    }

    /// Sends without ever blocking: as [`Slot::send`], but `Block` fails with
    /// [`SendError::Full`] instead of waiting.
    ///
    /// # Errors
    /// As [`Slot::send`].
    #[inline]
    pub fn try_send(&self, msg: M) -> Result<(), SendError<M>> {
        self.send_msg(msg, Wait::Never)
    }

    /// Sends a user message, waiting as `wait` says when the inbox is full under `Block`.
    #[inline]
    pub(crate) fn send_msg(&self, msg: M, wait: Wait) -> Result<(), SendError<M>> {
        self.deliver(Envelope::Msg(msg), wait)
            .map_err(|e| e.map(Envelope::into_returned))
    }

    /// Sends the request `make(reply)` by the worker's overflow policy and returns the answer to
    /// wait on. If the worker stops before handling it, the answer fails at once with
    /// [`AskError::Unprocessed`](crate::AskError::Unprocessed).
    ///
    /// # Errors
    /// As [`Slot::send`], with the request handed back.
    pub fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> M,
        reply: (Reply<T>, Answer<T>),
    ) -> Result<Answer<T>, SendError<M>> {
        ask_via(make, reply, |env| self.deliver(env, Wait::Forever))
    }

    /// As [`Slot::send_msg`] with [`Wait::Forever`], but `Block` waits for room as a task: the
    /// future is pending while the inbox is full and never blocks its thread.
    pub(crate) async fn send_msg_async(&self, msg: M) -> Result<(), SendError<M>> {
        self.deliver_async(Envelope::Msg(msg))
            .await
            .map_err(|e| e.map(Envelope::into_returned))
    }

    /// As [`Slot::ask`], waiting for room as [`Slot::send_msg_async`] does.
    pub(crate) async fn ask_async<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> M,
        reply: (Reply<T>, Answer<T>),
    ) -> Result<Answer<T>, SendError<M>> {
        let (reply, answer) = reply;
        self.deliver_async(ask_envelope(make, reply))
            .await
            .map(|()| answer)
            .map_err(|e| e.map(Envelope::into_returned))
    }

    /// As [`Slot::deliver`] with [`Wait::Forever`], waiting for room as a task.
    async fn deliver_async(&self, env: Envelope<M>) -> Result<(), SendError<Envelope<M>>> {
        match self.tx.try_send(env) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(env)) => Err(SendError::Closed(env)),
            Err(TrySendError::Full(env)) if matches!(self.overflow, Overflow::Block) => self
                .tx
                .send_async(env)
                .await
                .map_err(|e| SendError::Closed(e.0)),
            Err(TrySendError::Full(env)) => self.on_full(env, Wait::Never, FullAt::Inbox),
        }
    }

    /// Queues `env` in the inbox. No doorbell ring: the worker sleeps on the inbox's own doorbell
    /// ([`Slot::doorbell`]), which the push rings.
    #[inline]
    fn deliver(&self, env: Envelope<M>, wait: Wait) -> Result<(), SendError<Envelope<M>>> {
        match self.tx.try_send(env) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(env)) => Err(SendError::Closed(env)),
            Err(TrySendError::Full(env)) => self.on_full(env, wait, FullAt::Inbox),
        }
    }

    /// The doorbell the worker sleeps on: its inbox's. An inbox send rings it by itself; lanes,
    /// control requests and new lanes ring it after they publish.
    pub(crate) fn doorbell(&self) -> &Doorbell {
        self.tx.doorbell()
    }

    /// The overflow policy, in one place: what a send whose queue was full does with `env`.
    #[cold]
    fn on_full(
        &self,
        env: Envelope<M>,
        wait: Wait,
        queue: FullAt<'_, M>,
    ) -> Result<(), SendError<Envelope<M>>> {
        match (self.overflow, queue, wait) {
            (Overflow::Block, FullAt::Inbox, Wait::Forever) => {
                self.tx.send(env).map_err(|e| SendError::Closed(e.0))
            }
            (Overflow::Block, FullAt::Lane(tx), Wait::Forever) => {
                tx.send(env).map_err(|e| SendError::Closed(e.0))
            }
            (Overflow::Block, FullAt::Inbox, Wait::Until(d)) => self
                .tx
                .send_timeout(env, d.saturating_duration_since(Instant::now()))
                .map_err(from_timeout),
            (Overflow::Block, FullAt::Lane(tx), Wait::Until(d)) => tx
                .send_timeout(env, d.saturating_duration_since(Instant::now()))
                .map_err(from_timeout),
            (Overflow::Block | Overflow::Reject, _, _) => Err(SendError::Full(env)),
            (Overflow::DropOldest, FullAt::Inbox, _) => self.send_evicting(env),
            // Only the worker pops a lane: `DropOldest` drops the newest there.
            (Overflow::DropNewest | Overflow::DropOldest, _, _) => self.drop_new(env),
        }
    }

    /// Drops `env` by policy, counted; once the report has its count, hands it back instead.
    fn drop_new(&self, env: Envelope<M>) -> Result<(), SendError<Envelope<M>>> {
        if self.stats.drops.count() {
            drop(env);
            Ok(())
        } else {
            Err(SendError::Closed(env))
        }
    }

    /// `DropOldest`: evicts the oldest queued item until `env` fits.
    fn send_evicting(&self, mut env: Envelope<M>) -> Result<(), SendError<Envelope<M>>> {
        loop {
            match self.tx.try_send(env) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(back)) => return Err(SendError::Closed(back)),
                Err(TrySendError::Full(back)) => env = back,
            }
            if !self.stats.drops.begin_eviction() {
                return Err(SendError::Closed(env));
            }
            let dropped = match self.rx.try_recv() {
                Ok(Envelope::Flush(marker)) => {
                    self.pass_evicted_flush(marker);
                    false
                }
                Ok(oldest) => {
                    drop(oldest);
                    true
                }
                Err(_) => false,
            };
            self.stats.drops.end_eviction(dropped);
        }
    }

    /// A flush marker is never dropped by a policy: an eviction that pops one hands it to the
    /// worker, which answers it after its current batch, once no eviction is in flight
    /// ([`Slot::answer_evicted_flushes`]).
    fn pass_evicted_flush(&self, marker: FlushMarker) {
        lock(&self.evicted_flushes).push(marker);
        // Release pairs with the worker's Acquire swap in `answer_evicted_flushes`.
        self.control.flushes_pending.store(true, Ordering::Release);
        self.doorbell().ring();
    }

    /// Queues a flush marker (waiting for room whatever the policy); `done` is answered once every
    /// message queued before it is handled or dropped by policy, or told which worker stopped
    /// first.
    pub(crate) fn flush_marker(&self, marker: FlushMarker) {
        // A refused marker is dropped here, which fails its flush. The push rings the doorbell.
        let _ = self.tx.send(Envelope::Flush(marker));
    }

    /// A new SPSC lane into this worker, for a single-thread producer handle. Once the worker is
    /// sealed, the lane comes closed (its sends fail and hand the message back).
    pub(crate) fn open_lane(self: &Arc<Self>) -> Lane<M> {
        let (tx, rx) = Builder::new(self.lane_capacity)
            .wait_strategy(self.idle)
            .spsc()
            .expect("lane capacity was validated with the inbox's");
        let mut lanes = lock(&self.lanes);
        if lanes.sealed {
            drop(lanes);
            drop(rx);
        } else {
            lanes.active.push(rx);
            drop(lanes);
            self.doorbell().ring();
        }
        Lane {
            tx,
            slot: self.clone(),
        }
    }

    // ---- control ------------------------------------------------------------------------------

    /// Asks the worker to drain and stop, processing until `deadline` (forever if `None`).
    pub(crate) fn request_stop(&self, deadline: Option<Instant>) {
        *lock(&self.control.deadline) = deadline;
        // Release pairs with the worker's Acquire load of `stop`.
        self.control.stop.store(true, Ordering::Release);
        self.doorbell().ring();
    }

    /// Pauses (`true`) or resumes (`false`) the worker.
    pub(crate) fn set_paused(&self, paused: bool) {
        self.control.paused.store(paused, Ordering::Release);
        self.doorbell().ring();
    }

    /// A listener for this worker's events of the kinds in `mask`, from now on.
    pub(crate) fn listen(&self, mask: EventMask) -> EventListener {
        self.events.listen(mask)
    }

    /// The worker's lifecycle state.
    pub fn state(&self) -> WorkerState {
        WorkerState::from_u8(self.stats.state.load(Ordering::Acquire))
    }

    /// A snapshot of the worker's counters.
    pub fn metrics(&self) -> WorkerMetrics {
        WorkerMetrics {
            index: self.index,
            core: self.core,
            state: self.state(),
            queued: self.rx.len()
                + lock(&self.lanes)
                    .active
                    .iter()
                    .map(|l| l.len())
                    .sum::<usize>(),
            counters: self.counters(),
            latency: self.stats.latency(),
        }
    }

    /// The worker's counters now.
    pub(crate) fn counters(&self) -> Counters {
        let s = &self.stats;
        Counters {
            processed: s.processed.load(Ordering::Relaxed),
            dropped: s.drops.get(),
            panics: s.panics.load(Ordering::Relaxed),
            restarts: s.restarts.load(Ordering::Relaxed),
        }
    }

    // ---- the worker thread's side -------------------------------------------------------------

    /// Fills `buf` with up to `max` envelopes from the inbox, then the lanes; drops lanes whose
    /// producer is gone once they are empty. `false` if the pool has abandoned this worker (it
    /// must take nothing more).
    pub(crate) fn gather(&self, buf: &mut Vec<Envelope<M>>, max: usize) -> bool {
        let mut lanes = lock(&self.lanes);
        if self.control.report.load(Ordering::Relaxed) == REPORT_ABANDONED {
            return false;
        }
        let start = buf.len();
        let _ = self.rx.try_recv_batch(buf, max);
        lanes.active.retain(|lane| {
            let room = max.saturating_sub(buf.len() - start);
            let got = if room > 0 {
                lane.try_recv_batch(buf, room)
            } else {
                Ok(0)
            };
            !matches!(got, Err(corelane_channel::TryRecvError::Disconnected))
        });
        self.took(&buf[start..]);
        true
    }

    /// Counts the messages among `envs`, just taken by the worker thread (under the lanes lock).
    fn took(&self, envs: &[Envelope<M>]) {
        let n = envs.iter().filter(|e| e.is_message()).count();
        if n > 0 {
            Stats::add(&self.stats.taken, n as u64);
        }
    }

    /// Whether the worker has something to do: for its idle poll. Reads the slot the next
    /// receive takes (`is_empty`), not the senders' index, so the poll leaves that index's line
    /// with the senders.
    pub(crate) fn has_work(&self) -> bool {
        let c = &self.control;
        !self.rx.is_empty()
            || c.stop.load(Ordering::Acquire)
            || c.paused.load(Ordering::Acquire)
            || c.flushes_pending.load(Ordering::Acquire)
            || match self.lanes.try_lock() {
                Ok(lanes) => lanes.active.iter().any(|l| !l.is_empty()),
                // Someone is opening a lane or sealing: look again.
                Err(_) => true,
            }
    }

    /// Answers the flush markers evictions handed over. Called between batches: everything the
    /// worker popped before the marker's position is handled, and once no eviction is in flight
    /// everything evicted before it is dropped and counted.
    pub(crate) fn answer_evicted_flushes(&self) {
        // A plain load first: the swap (a locked RMW) only when an eviction passed a marker.
        // Acquire pairs with `pass_evicted_flush`'s Release store.
        if !self.control.flushes_pending.load(Ordering::Relaxed)
            || !self.control.flushes_pending.swap(false, Ordering::Acquire)
        {
            return;
        }
        let markers = std::mem::take(&mut *lock(&self.evicted_flushes));
        while !self.stats.drops.idle() {
            std::thread::yield_now();
        }
        // Under the lanes lock, which `abandon` holds while it decides and seals: if the pool
        // abandoned this worker, its seal may have taken messages queued before a marker (they
        // are in the pool's report, unhandled), so the markers fail instead.
        let _lanes = lock(&self.lanes);
        if self.control.report.load(Ordering::Relaxed) == REPORT_ABANDONED {
            return;
        }
        markers.into_iter().for_each(FlushMarker::reached);
    }

    /// Seals the inbox and the lanes: from here sends fail and hand their message back. Returns
    /// what was queued (counted as taken by the worker thread).
    pub(crate) fn seal(&self) -> Vec<Envelope<M>> {
        let mut lanes = lock(&self.lanes);
        let rest = self.seal_locked(&mut lanes);
        self.took(&rest);
        rest
    }

    fn seal_locked(&self, lanes: &mut MutexGuard<'_, Lanes<M>>) -> Vec<Envelope<M>> {
        lanes.sealed = true;
        let mut rest = self.rx.close_all();
        for lane in lanes.active.drain(..) {
            rest.extend(lane.close());
        }
        rest
    }

    /// The worker thread's report: `None` if the pool built one already ([`Slot::abandon`]).
    /// The queues must be sealed ([`Slot::seal`]).
    pub(crate) fn report(&self, outcome: Outcome, unprocessed: Vec<M>) -> Option<WorkerReport<M>> {
        self.control
            .report
            .compare_exchange(
                REPORT_OPEN,
                REPORT_BY_WORKER,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .ok()?;
        let processed = self.stats.processed.load(Ordering::Relaxed);
        Some(self.build_report(outcome, unprocessed, processed, 0))
    }

    /// The pool's report of a worker that missed its stop deadline: seals the queues (waking every
    /// blocked sender with its message), returns what they held, and counts what the worker
    /// thread still holds (the message in its handler, the rest of its batch) as `abandoned`; the
    /// thread drops those when it returns, failing their asks. `None` if the worker's own report
    /// is already on its way.
    pub fn abandon(&self) -> Option<WorkerReport<M>> {
        let mut lanes = lock(&self.lanes);
        self.control
            .report
            .compare_exchange(
                REPORT_OPEN,
                REPORT_ABANDONED,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .ok()?;
        let mut rest = self.seal_locked(&mut lanes);
        // Under the lanes lock the worker thread takes nothing, so `taken` is final.
        let taken = self.stats.taken.load(Ordering::Relaxed);
        drop(lanes);
        rest.extend(
            std::mem::take(&mut *lock(&self.evicted_flushes))
                .into_iter()
                .map(Envelope::Flush),
        );
        let unprocessed: Vec<M> = rest
            .into_iter()
            .filter_map(Envelope::into_unprocessed)
            .collect();
        let processed = self.stats.processed.load(Ordering::Relaxed);
        let abandoned = taken.saturating_sub(processed);
        Some(self.build_report(Outcome::TimedOut, unprocessed, processed, abandoned))
    }

    fn build_report(
        &self,
        outcome: Outcome,
        unprocessed: Vec<M>,
        processed: u64,
        abandoned: u64,
    ) -> WorkerReport<M> {
        let dropped = self.stats.drops.finish();
        // Markers evictions passed after the worker's last look: their flush fails.
        drop(std::mem::take(&mut *lock(&self.evicted_flushes)));
        let (kind, reason) = match &outcome {
            Outcome::Completed => (EventMask::STOPPED, None),
            Outcome::Failed(reason) => (EventMask::FAILED, Some(reason.clone())),
            Outcome::TimedOut => (
                EventMask::FAILED,
                Some("still in a handler past its stop deadline".to_owned()),
            ),
        };
        self.events.emit(kind, || match reason {
            Some(reason) => WorkerEvent::Failed { reason },
            None => WorkerEvent::Stopped,
        });
        self.events.close();
        crate::trace::stopped(self.index, &outcome, processed);
        WorkerReport {
            index: self.index,
            outcome,
            counters: Counters {
                processed,
                dropped,
                ..self.counters()
            },
            unprocessed,
            abandoned,
        }
    }
}

/// Builds an ask's envelope: the request and the ticket that tells the asker if it is not
/// handled.
fn ask_envelope<M, T: Send + 'static>(
    make: impl FnOnce(Reply<T>) -> M,
    reply: Reply<T>,
) -> Envelope<M> {
    let ticket = reply.ticket();
    Envelope::Ask(Box::new(Asked {
        msg: make(reply),
        ticket,
    }))
}

/// Sends an ask's envelope through `deliver` and returns the answer to wait on, or hands the
/// request back.
fn ask_via<M, T: Send + 'static>(
    make: impl FnOnce(Reply<T>) -> M,
    reply: (Reply<T>, Answer<T>),
    deliver: impl FnOnce(Envelope<M>) -> Result<(), SendError<Envelope<M>>>,
) -> Result<Answer<T>, SendError<M>> {
    let (reply, answer) = reply;
    deliver(ask_envelope(make, reply))
        .map(|()| answer)
        .map_err(|e| e.map(Envelope::into_returned))
}

/// Locks `m`, ignoring poisoning (no user code runs under these locks).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<M> Queue<M> for Slot<M> {
    #[inline]
    fn send(&self, msg: M, wait: Wait) -> Result<(), SendError<M>> {
        self.send_msg(msg, wait)
    }
    fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> M,
        reply: (Reply<T>, Answer<T>),
    ) -> Result<Answer<T>, SendError<M>> {
        Slot::ask(self, make, reply)
    }
}

impl<M> Queue<M> for Lane<M> {
    #[inline]
    fn send(&self, msg: M, wait: Wait) -> Result<(), SendError<M>> {
        Lane::send(self, msg, wait)
    }
    fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> M,
        reply: (Reply<T>, Answer<T>),
    ) -> Result<Answer<T>, SendError<M>> {
        Lane::ask(self, make, reply)
    }
}

/// Why a batch publish stopped before its end.
enum Stopped {
    Closed,
    TimedOut,
}

/// A dedicated SPSC lane from one producer handle into one worker; holds its worker's slot.
pub(crate) struct Lane<M> {
    tx: spsc::Sender<Envelope<M>>,
    slot: Arc<Slot<M>>,
}

impl<M> std::fmt::Debug for Lane<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("worker", &self.slot.index)
            .field("queued", &self.tx.len())
            .finish()
    }
}

impl<M> Lane<M> {
    /// Sends by the worker's policy (`DropOldest` acts as `DropNewest`: only the worker pops a
    /// lane).
    ///
    /// # Errors
    /// As [`Slot::send`].
    #[inline]
    pub fn send(&self, msg: M, wait: Wait) -> Result<(), SendError<M>> {
        self.deliver(Envelope::Msg(msg), wait)
            .map_err(|e| e.map(Envelope::into_returned))
    }

    /// As [`Slot::ask`], through this lane.
    ///
    /// # Errors
    /// As [`Slot::send`], with the request handed back.
    pub fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> M,
        reply: (Reply<T>, Answer<T>),
    ) -> Result<Answer<T>, SendError<M>> {
        ask_via(make, reply, |env| self.deliver(env, Wait::Forever))
    }

    #[inline]
    fn deliver(&self, env: Envelope<M>, wait: Wait) -> Result<(), SendError<Envelope<M>>> {
        let slot = &*self.slot;
        let result = match self.tx.try_send(env) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(env)) => Err(SendError::Closed(env)),
            Err(TrySendError::Full(env)) => slot.on_full(env, wait, FullAt::Lane(&self.tx)),
        };
        if result.is_ok() {
            slot.doorbell().ring();
        }
        result
    }

    /// Publishes every message of `batch` (oldest first) by the worker's policy, with one index
    /// store and one doorbell ring per run of free slots (one of each when the lane has room for
    /// the lot), and empties `batch`.
    ///
    /// # Errors
    /// `Block` waits for room as `wait` says and fails with [`SendError::Closed`] or
    /// [`SendError::Timeout`]; otherwise what does not fit is [`SendError::Full`] (`Block`,
    /// `Reject`) or dropped and counted (`DropNewest`, `DropOldest`). The error hands back every
    /// message not published, in order.
    pub fn send_batch(
        &self,
        batch: &mut LaneBatch<M>,
        wait: Wait,
    ) -> Result<(), SendError<Vec<M>>> {
        let slot = &*self.slot;
        let wait = match slot.overflow {
            Overflow::Block => wait,
            _ => Wait::Never,
        };
        let stopped = loop {
            match self.tx.try_send_batch(&mut batch.envs) {
                Err(_) => break Some(Stopped::Closed),
                // Ring after every run published: the worker may have looked at this lane just
                // before it and gone to sleep on its doorbell.
                Ok(n) if n > 0 => slot.doorbell().ring(),
                Ok(_) => {}
            }
            if batch.envs.is_empty() || wait == Wait::Never {
                break None;
            }
            // The lane is full: wait for room by sending the oldest message left on its own
            // (a blocking send of one), ring, and go on with the rest.
            if let Some(stopped) = self.send_oldest(&mut batch.envs, wait) {
                break Some(stopped);
            }
        };
        // Drained in place: the batch keeps its capacity for the next one.
        if batch.envs.is_empty() {
            return Ok(());
        }
        let mut rest = || batch.envs.drain(..).map(Envelope::into_returned).collect();
        match stopped {
            Some(Stopped::Closed) => Err(SendError::Closed(rest())),
            Some(Stopped::TimedOut) => Err(SendError::Timeout(rest())),
            None => self.overflow_rest(batch.envs.drain(..)),
        }
    }

    /// Sends the first of `envs` on its own, waiting for room as `wait` says, and rings; `None`
    /// once it is sent, else why not (the message is back at the front of `envs`).
    fn send_oldest(&self, envs: &mut Vec<Envelope<M>>, wait: Wait) -> Option<Stopped> {
        let oldest = envs.remove(0);
        let sent = match wait {
            Wait::Until(d) => self
                .tx
                .send_timeout(oldest, d.saturating_duration_since(Instant::now()))
                .map_err(|e| match e {
                    SendTimeoutError::Timeout(env) => (env, Stopped::TimedOut),
                    SendTimeoutError::Disconnected(env) => (env, Stopped::Closed),
                }),
            _ => self.tx.send(oldest).map_err(|e| (e.0, Stopped::Closed)),
        };
        match sent {
            Ok(()) => {
                self.slot.doorbell().ring();
                None
            }
            Err((env, stopped)) => {
                envs.insert(0, env);
                Some(stopped)
            }
        }
    }

    /// What a batch publish does with the messages that did not fit, by the worker's policy.
    fn overflow_rest(
        &self,
        envs: impl Iterator<Item = Envelope<M>>,
    ) -> Result<(), SendError<Vec<M>>> {
        let mut refused = Vec::new();
        let mut full = false;
        for env in envs {
            match self.slot.on_full(env, Wait::Never, FullAt::Lane(&self.tx)) {
                Ok(()) => {}
                Err(SendError::Full(env)) => {
                    full = true;
                    refused.push(env);
                }
                Err(e) => refused.push(e.into_inner()),
            }
        }
        match (refused.is_empty(), full) {
            (true, _) => Ok(()),
            (false, true) => Err(SendError::Full(returned(refused))),
            (false, false) => Err(SendError::Closed(returned(refused))),
        }
    }

    /// Queues a flush marker on this lane (waiting for room whatever the policy).
    pub(crate) fn flush_marker(&self, marker: FlushMarker) {
        // A refused marker is dropped here, which fails its flush.
        if self.tx.send(Envelope::Flush(marker)).is_ok() {
            self.slot.doorbell().ring();
        }
    }
}

fn from_timeout<M>(e: SendTimeoutError<Envelope<M>>) -> SendError<Envelope<M>> {
    match e {
        SendTimeoutError::Timeout(env) => SendError::Timeout(env),
        SendTimeoutError::Disconnected(env) => SendError::Closed(env),
    }
}

fn returned<M>(envs: Vec<Envelope<M>>) -> Vec<M> {
    envs.into_iter().map(Envelope::into_returned).collect()
}

/// Messages a batching producer holds for one lane until [`Lane::send_batch`] publishes them.
pub(crate) struct LaneBatch<M> {
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
    /// Appends the request `make(reply)` of an ask and returns the answer to wait on once the
    /// batch is published.
    pub fn push_ask<T: Send + 'static>(
        &mut self,
        make: impl FnOnce(Reply<T>) -> M,
        reply: (Reply<T>, Answer<T>),
    ) -> Answer<T> {
        let (reply, answer) = reply;
        self.envs.push(ask_envelope(make, reply));
        answer
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
