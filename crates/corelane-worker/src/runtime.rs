//! The worker thread: pin, `init`, the receive loop, supervision, and the lossless stop.

use std::any::Any;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use corelane_channel::spsc;

use crate::slot::{Envelope, Stats};
use crate::{Context, Error, Idle, Peers, RestartPolicy, Slot, Worker, WorkerConfig, WorkerState};

/// How a worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// It drained its inbox, ran `on_stop` and exited.
    Completed,
    /// It stopped on its own: `init` failed on a restart, or panics exceeded the restart policy.
    Failed(String),
    /// It did not finish before the shutdown deadline; its thread was left to finish alone and its
    /// queued messages could not be collected.
    TimedOut,
}

/// What one worker did, returned by shutdown. `accepted() = processed + dropped + unprocessed`.
#[derive(Debug)]
#[non_exhaustive]
pub struct WorkerReport<M> {
    /// The worker's index.
    pub index: usize,
    /// How it ended.
    pub outcome: Outcome,
    /// Messages handed to `handle` (including those whose handler panicked).
    pub processed: u64,
    /// Messages dropped by an overflow policy.
    pub dropped: u64,
    /// Handler panics.
    pub panics: u64,
    /// State rebuilds after a panic.
    pub restarts: u64,
    /// Messages accepted but not handled (deadline passed, or the worker failed), in order.
    pub unprocessed: Vec<M>,
}

impl<M> WorkerReport<M> {
    /// Every message this worker accepted: processed, dropped by policy, or returned unprocessed.
    pub fn accepted(&self) -> u64 {
        self.processed + self.dropped + self.unprocessed.len() as u64
    }

    pub(crate) fn timed_out<N>(slot: &Slot<N>) -> Self {
        let m = slot.metrics();
        Self {
            index: slot.index,
            outcome: Outcome::TimedOut,
            processed: m.processed,
            dropped: m.dropped,
            panics: m.panics,
            restarts: m.restarts,
            unprocessed: Vec::new(),
        }
    }
}

/// Starts worker `slot.index` on its own thread and waits until its `init` finished.
///
/// # Errors
/// [`Error::Spawn`], [`Error::Init`] or [`Error::InitPanic`].
pub fn start<W: Worker>(
    worker: W,
    cfg: &WorkerConfig,
    slot: Arc<Slot<W::Message>>,
    peers: Arc<Peers<W::Message>>,
    pin: Option<core_affinity::CoreId>,
    reports: flume::Sender<WorkerReport<W::Message>>,
) -> Result<std::thread::JoinHandle<()>, Error> {
    let index = slot.index;
    let mut builder = std::thread::Builder::new().name(
        cfg.name
            .clone()
            .unwrap_or_else(|| format!("corelane-worker-{index}")),
    );
    if let Some(bytes) = cfg.stack_size {
        builder = builder.stack_size(bytes);
    }
    let (ready_tx, ready_rx) = flume::bounded(1);
    let runner = Runner {
        worker,
        restart: cfg.restart,
        batch: cfg.batch_size,
        dead_letter: cfg.dead_letter.clone(),
        slot,
        peers,
        lanes: Vec::new(),
        restarts: VecDeque::new(),
        unprocessed: Vec::new(),
    };
    let handle = builder
        .spawn(move || {
            if let Some(core) = pin {
                if !core_affinity::set_for_current(core) {
                    let _ = ready_tx.send(Err(Error::InvalidConfig(format!(
                        "worker {index}: could not pin to core {} (outside this process's CPU set?)",
                        core.id
                    ))));
                    let _ = reports.send(runner.fail("could not pin".into(), Vec::new()));
                    return;
                }
            }
            let report = runner.run(ready_tx);
            let _ = reports.send(report);
        })
        .map_err(|source| Error::Spawn {
            worker: index,
            source,
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => {
            let _ = handle.join();
            Err(Error::InitPanic {
                worker: index,
                panic: "the worker thread exited during init".into(),
            })
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

struct Runner<W: Worker> {
    worker: W,
    restart: RestartPolicy,
    batch: usize,
    dead_letter: Option<crate::config::DeadLetterHook>,
    slot: Arc<Slot<W::Message>>,
    peers: Arc<Peers<W::Message>>,
    lanes: Vec<spsc::Consumer<Envelope<W::Message>>>,
    restarts: VecDeque<Instant>,
    unprocessed: Vec<W::Message>,
}

/// Why a batch could not be finished.
enum Halt<M> {
    /// The worker must stop: panics beyond the restart policy, or `init` failed on restart.
    Fatal(String, Vec<Envelope<M>>),
    /// The stop deadline passed; these were not processed.
    Deadline(Vec<Envelope<M>>),
}

impl<W: Worker> Runner<W> {
    fn run(mut self, ready: flume::Sender<Result<(), Error>>) -> WorkerReport<W::Message> {
        self.slot.stats.set_state(WorkerState::Starting);
        let state = match self.init() {
            Ok(state) => state,
            Err(e) => {
                let _ = ready.send(Err(e));
                return self.fail("init failed".into(), Vec::new());
            }
        };
        let _ = ready.send(Ok(()));
        self.slot.stats.set_state(WorkerState::Running);
        let mut state = Some(state);
        let mut buf = Vec::with_capacity(self.batch);
        loop {
            self.adopt_lanes();
            // Acquire pairs with `request_stop`'s Release store.
            if self.slot.control.stop.load(Ordering::Acquire) {
                return self.finish(state, buf);
            }
            if self.slot.control.paused.load(Ordering::Acquire) {
                self.slot.stats.set_state(WorkerState::Paused);
                let control = &self.slot.control;
                self.slot.doorbell.wait(self.slot.idle, None, &|| {
                    !control.paused.load(Ordering::Acquire) || control.stop.load(Ordering::Acquire)
                });
                self.slot.stats.set_state(WorkerState::Running);
                continue;
            }
            self.gather(&mut buf);
            if buf.is_empty() {
                if let Err(halt) = self.idle(&mut state) {
                    return self.halt(halt);
                }
                continue;
            }
            if let Err(halt) = self.process(&mut state, &mut buf, None) {
                return self.halt(halt);
            }
        }
    }

    /// Runs `init` on this thread, catching a panic.
    fn init(&mut self) -> Result<W::State, Error> {
        let index = self.slot.index;
        let mut ctx = Context::new(index, self.slot.core, &self.peers);
        let worker = &mut self.worker;
        match catch_unwind(AssertUnwindSafe(|| worker.init(&mut ctx))) {
            Ok(Ok(state)) => Ok(state),
            Ok(Err(source)) => Err(Error::Init {
                worker: index,
                source,
            }),
            Err(p) => Err(Error::InitPanic {
                worker: index,
                panic: panic_message(&*p),
            }),
        }
    }

    /// Takes the lanes producer handles opened since the last look.
    fn adopt_lanes(&mut self) {
        // Acquire pairs with `open_lane`'s Release store.
        if self
            .slot
            .control
            .lanes_pending
            .swap(false, Ordering::Acquire)
        {
            let mut new = self
                .slot
                .control
                .new_lanes
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.lanes.append(&mut new);
        }
    }

    /// Fills `buf` with up to `batch` envelopes from the inbox, then the lanes. Drops lanes whose
    /// producer is gone once they are empty.
    fn gather(&mut self, buf: &mut Vec<Envelope<W::Message>>) {
        let _ = self.slot.rx.try_recv_batch(buf, self.batch);
        self.lanes.retain(|lane| {
            let room = self.batch.saturating_sub(buf.len());
            let got = if room > 0 {
                lane.try_recv_batch(buf, room)
            } else {
                Ok(0)
            };
            !matches!(got, Err(corelane_channel::TryRecvError::Disconnected))
        });
    }

    /// Runs `on_idle`, then `wait` until there is work, treating a panic in either like a
    /// handler panic.
    fn idle(&mut self, state: &mut Option<W::State>) -> Result<(), Halt<W::Message>> {
        let (slot, lanes) = (&self.slot, &self.lanes);
        // `is_empty` reads the slot the next receive takes, not the senders' index: the poll
        // leaves that index's line with the senders (one line transfer less per message to an
        // idle worker).
        let ready = || {
            !slot.rx.is_empty()
                || lanes.iter().any(|l| !l.is_empty())
                || slot.control.stop.load(Ordering::Acquire)
                || slot.control.paused.load(Ordering::Acquire)
                || slot.control.lanes_pending.load(Ordering::Acquire)
        };
        let idle = Idle::new(&slot.doorbell, slot.idle, &ready);
        let Some(st) = state.as_mut() else {
            idle.park();
            return Ok(());
        };
        let mut ctx = Context::new(slot.index, slot.core, &self.peers);
        let worker = &mut self.worker;
        let result = catch_unwind(AssertUnwindSafe(|| {
            worker.on_idle(st, &mut ctx);
            if !ctx.stop {
                worker.wait(st, &mut ctx, &idle);
            }
        }));
        let stop = ctx.stop;
        if stop {
            self.slot.control.stop.store(true, Ordering::Release);
        }
        match result {
            Ok(()) => Ok(()),
            Err(p) => self
                .panicked(state, &*p)
                .map_err(|reason| Halt::Fatal(reason, Vec::new())),
        }
    }

    /// The deadline of the requested stop (`None`: drain everything).
    fn stop_deadline(&self) -> Option<Instant> {
        *self
            .slot
            .control
            .deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Handles every envelope of `buf` (emptying it), applying the restart policy to panics.
    /// Stops at `deadline`, or, when `None`, at the deadline of a stop requested meanwhile (a
    /// timed shutdown must not wait for a whole batch gathered before it).
    fn process(
        &mut self,
        state: &mut Option<W::State>,
        buf: &mut Vec<Envelope<W::Message>>,
        mut deadline: Option<Instant>,
    ) -> Result<(), Halt<W::Message>> {
        let mut stopping = deadline.is_some();
        let mut drain = buf.drain(..);
        while let Some(env) = drain.next() {
            // Acquire pairs with `request_stop`'s Release store (the deadline is written before).
            if !stopping && self.slot.control.stop.load(Ordering::Acquire) {
                stopping = true;
                deadline = self.stop_deadline();
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let mut rest = vec![env];
                rest.extend(drain);
                return Err(Halt::Deadline(rest));
            }
            let Some(msg) = env.into_msg() else { continue };
            let st = state.as_mut().expect("a running worker has its state");
            let mut ctx = Context::new(self.slot.index, self.slot.core, &self.peers);
            let worker = &mut self.worker;
            let result = catch_unwind(AssertUnwindSafe(|| worker.handle(st, msg, &mut ctx)));
            let stop = ctx.stop;
            Stats::bump(&self.slot.stats.processed);
            if stop {
                self.slot.control.stop.store(true, Ordering::Release);
            }
            if let Err(p) = result {
                if let Err(reason) = self.panicked(state, &*p) {
                    return Err(Halt::Fatal(reason, drain.collect()));
                }
            }
        }
        Ok(())
    }

    /// Counts a panic, offers it to the dead-letter hook, and rebuilds the state if the restart
    /// policy allows. `Err` means the worker must stop.
    fn panicked(
        &mut self,
        state: &mut Option<W::State>,
        payload: &(dyn Any + Send),
    ) -> Result<(), String> {
        Stats::bump(&self.slot.stats.panics);
        if let Some(hook) = &self.dead_letter {
            let letter = crate::DeadLetter {
                worker: self.slot.index,
                panic: panic_message(payload),
            };
            let _ = catch_unwind(AssertUnwindSafe(|| hook(&letter)));
        }
        // The state may be half-updated: drop it (its Drop may panic too) and rebuild.
        let old = state.take();
        let _ = catch_unwind(AssertUnwindSafe(move || drop(old)));
        let (max, within) = match self.restart {
            RestartPolicy::Stop => {
                return Err("a handler panicked and the restart policy is Stop".into())
            }
            RestartPolicy::Restart {
                max_restarts,
                within,
            } => (max_restarts, within),
        };
        let now = Instant::now();
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > within)
        {
            self.restarts.pop_front();
        }
        if self.restarts.len() >= max as usize {
            return Err(format!("more than {max} restarts within {within:?}"));
        }
        self.restarts.push_back(now);
        Stats::bump(&self.slot.stats.restarts);
        *state = Some(self.init().map_err(|e| format!("restart failed: {e}"))?);
        Ok(())
    }

    fn halt(self, halt: Halt<W::Message>) -> WorkerReport<W::Message> {
        match halt {
            Halt::Fatal(reason, rest) => self.fail(reason, rest),
            Halt::Deadline(rest) => self.seal(Outcome::Completed, rest, WorkerState::Stopped),
        }
    }

    /// Graceful stop: handle everything queued (until the deadline), seal the inbox and lanes,
    /// handle what raced in, run `on_stop`.
    fn finish(
        mut self,
        mut state: Option<W::State>,
        mut buf: Vec<Envelope<W::Message>>,
    ) -> WorkerReport<W::Message> {
        self.slot.stats.set_state(WorkerState::Stopping);
        let deadline = self.stop_deadline();
        loop {
            self.adopt_lanes();
            self.gather(&mut buf);
            if buf.is_empty() {
                break;
            }
            if let Err(halt) = self.process(&mut state, &mut buf, deadline) {
                return self.halt(halt);
            }
        }
        // Seal: from here sends fail and hand their message back; what raced in is returned here.
        let mut rest = self.slot.rx.close_all();
        self.adopt_lanes();
        for lane in self.lanes.drain(..) {
            rest.extend(lane.close());
        }
        if let Err(halt) = self.process(&mut state, &mut rest, deadline) {
            return self.halt(halt);
        }
        if let Some(st) = state {
            let mut ctx = Context::new(self.slot.index, self.slot.core, &self.peers);
            let worker = &mut self.worker;
            if catch_unwind(AssertUnwindSafe(|| worker.on_stop(st, &mut ctx))).is_err() {
                Stats::bump(&self.slot.stats.panics);
            }
        }
        self.seal(Outcome::Completed, Vec::new(), WorkerState::Stopped)
    }

    fn fail(self, reason: String, rest: Vec<Envelope<W::Message>>) -> WorkerReport<W::Message> {
        self.seal(Outcome::Failed(reason), rest, WorkerState::Failed)
    }

    /// Seals inbox and lanes, keeps every message not handled, and builds the report.
    fn seal(
        mut self,
        outcome: Outcome,
        rest: Vec<Envelope<W::Message>>,
        end: WorkerState,
    ) -> WorkerReport<W::Message> {
        let mut left = rest;
        left.extend(self.slot.rx.close_all());
        self.adopt_lanes();
        for lane in self.lanes.drain(..) {
            left.extend(lane.close());
        }
        self.unprocessed
            .extend(left.into_iter().filter_map(Envelope::into_msg));
        self.slot.stats.set_state(end);
        let m = self.slot.metrics();
        WorkerReport {
            index: self.slot.index,
            outcome,
            processed: m.processed,
            dropped: m.dropped,
            panics: m.panics,
            restarts: m.restarts,
            unprocessed: self.unprocessed,
        }
    }
}
