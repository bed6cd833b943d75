//! The worker thread: pin, `init`, the receive loop, supervision, and the lossless stop.

use std::any::Any;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::context::Peers;
use crate::envelope::Envelope;
use crate::slot::Slot;
use crate::slot::Stats;
use crate::trace;
use crate::{
    Context, Counters, Error, EventMask, Idle, RestartPolicy, Worker, WorkerConfig, WorkerEvent,
    WorkerState,
};

/// How a worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// It drained its inbox (or stopped at the shutdown deadline, returning the rest), ran
    /// `on_stop` and exited.
    Completed,
    /// It stopped on its own: `init` failed on a restart, or panics exceeded the restart policy.
    Failed(String),
    /// Its handler was still running past the shutdown deadline (and a grace period): the
    /// shutdown sealed its queues, returned what they held, and left the thread to finish alone
    /// (see [`WorkerReport::abandoned`]).
    TimedOut,
}

/// What one worker did, returned by shutdown. `accepted() = processed + dropped +
/// unprocessed + abandoned`.
#[derive(Debug)]
#[non_exhaustive]
pub struct WorkerReport<M> {
    /// The worker's index.
    pub index: usize,
    /// How it ended.
    pub outcome: Outcome,
    /// Its counters when it stopped.
    pub counters: Counters,
    /// Messages accepted but not handled (deadline passed, or the worker failed), in order.
    pub unprocessed: Vec<M>,
    /// Messages the worker thread still held when the shutdown gave up on it
    /// ([`Outcome::TimedOut`]): the one in its handler and the rest of the batch it had taken.
    /// The thread drops them when its handler returns (asks among them fail with
    /// [`AskError::Unprocessed`](crate::AskError::Unprocessed)); 0 for every other outcome.
    pub abandoned: u64,
}

impl<M> WorkerReport<M> {
    /// Every message this worker accepted: processed, dropped by policy, returned unprocessed, or
    /// abandoned in a handler that missed the deadline.
    pub fn accepted(&self) -> u64 {
        self.counters.processed
            + self.counters.dropped
            + self.unprocessed.len() as u64
            + self.abandoned
    }
}

/// Whether to time this batch: one in [`LATENCY_SAMPLE`](crate::LATENCY_SAMPLE) with the
/// `latency` feature, never without it (then the timed path is compiled out).
#[inline(always)]
fn sample_due(tick: &mut u32) -> bool {
    #[cfg(feature = "latency")]
    {
        *tick = tick.wrapping_add(1);
        *tick % crate::LATENCY_SAMPLE == 0
    }
    #[cfg(not(feature = "latency"))]
    {
        let _ = tick;
        false
    }
}

/// The start of a timed batch and how many messages it holds: the latency sample is the
/// batch's mean handler time. `None` for a batch of flush markers only (no handler runs). Out of
/// line: it runs for one batch in [`LATENCY_SAMPLE`](crate::LATENCY_SAMPLE).
#[cold]
#[inline(never)]
fn start_timing<M>(buf: &[Envelope<M>]) -> Option<(Instant, u32)> {
    match buf.iter().filter(|e| e.is_message()).count() {
        0 => None,
        n => Some((Instant::now(), u32::try_from(n).unwrap_or(u32::MAX))),
    }
}

/// How long a timed stop waits past its deadline for a handler in progress to return before it
/// gives up on that worker and reports for it ([`Outcome::TimedOut`]): a timed stop returns
/// within its timeout plus this bound (plus the time to seal the queues).
pub const STOP_GRACE: Duration = Duration::from_millis(20);

/// Collects the reports of the workers of `slots` (sent on `reports`, in any order) after their
/// stop was requested with `deadline`, in slot order. With a deadline, a worker whose report has
/// not come by `deadline + STOP_GRACE` is abandoned ([`Slot::abandon`]). `None` for a worker whose
/// thread ended without a report.
pub(crate) fn collect_reports<M>(
    slots: &[Arc<Slot<M>>],
    reports: &flume::Receiver<WorkerReport<M>>,
    deadline: Option<Instant>,
) -> Vec<Option<WorkerReport<M>>> {
    let mut out: Vec<Option<WorkerReport<M>>> = slots.iter().map(|_| None).collect();
    let mut missing = slots.len();
    let give_up = deadline.map(|d| d + STOP_GRACE);
    while missing > 0 {
        let got = match give_up {
            Some(d) => reports.recv_deadline(d).ok(),
            None => reports.recv().ok(),
        };
        let Some(r) = got else { break };
        let i = r.index;
        missing -= usize::from(out[i].is_none());
        out[i] = Some(r);
    }
    if missing == 0 || give_up.is_none() {
        return out;
    }
    // Past the grace: report for the late workers, except those whose own report is on its way.
    let mut coming = 0;
    for (i, slot) in slots.iter().enumerate() {
        if out[i].is_none() {
            match slot.abandon() {
                Some(r) => out[i] = Some(r),
                None => coming += 1,
            }
        }
    }
    for _ in 0..coming {
        let Ok(r) = reports.recv() else { break };
        let i = r.index;
        out[i] = Some(r);
    }
    out
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
    let mut builder = std::thread::Builder::new()
        .name(cfg.name.clone().unwrap_or_else(|| format!("cl-w{index}")));
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
        restarts: VecDeque::new(),
        tick: 0,
        timing: None,
    };
    let handle = builder
        .spawn(move || runner.run_thread(pin, ready_tx, reports))
        .map_err(|source| Error::Spawn {
            worker: index,
            source,
        })?;
    await_init(index, handle, &ready_rx)
}

/// Waits until the worker's `init` finished; joins its thread if it failed.
fn await_init(
    index: usize,
    handle: std::thread::JoinHandle<()>,
    ready: &flume::Receiver<Result<(), Error>>,
) -> Result<std::thread::JoinHandle<()>, Error> {
    match ready.recv() {
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
    restarts: VecDeque<Instant>,
    /// Batches since the last timed one (the `latency` feature's sampling).
    tick: u32,
    /// The start of the batch being timed and its message count, if one is.
    timing: Option<(Instant, u32)>,
}

/// Why a batch could not be finished.
enum Halt<M> {
    /// The worker must stop: panics beyond the restart policy, or `init` failed on restart.
    Fatal(String, Vec<Envelope<M>>),
    /// The stop deadline passed; these were not processed.
    Deadline(Vec<Envelope<M>>),
}

impl<W: Worker> Runner<W> {
    /// The body of the worker's thread: pin, run, send the report.
    fn run_thread(
        self,
        pin: Option<core_affinity::CoreId>,
        ready: flume::Sender<Result<(), Error>>,
        reports: flume::Sender<WorkerReport<W::Message>>,
    ) {
        let index = self.slot.index;
        if let Some(core) = pin {
            if !core_affinity::set_for_current(core) {
                let _ = ready.send(Err(Error::InvalidConfig(format!(
                    "worker {index}: could not pin to core {} (outside this process's CPU set?)",
                    core.id
                ))));
                if let Some(r) = self.fail(None, "could not pin".into(), Vec::new()) {
                    let _ = reports.send(r);
                }
                return;
            }
        }
        if let Some(report) = self.run(ready) {
            let _ = reports.send(report);
        }
    }

    /// The worker's life; `None` if the pool gave up on it and reported for it.
    fn run(mut self, ready: flume::Sender<Result<(), Error>>) -> Option<WorkerReport<W::Message>> {
        self.slot.stats.set_state(WorkerState::Starting);
        let state = match self.init() {
            Ok(state) => state,
            Err(e) => {
                let _ = ready.send(Err(e));
                return self.fail(None, "init failed".into(), Vec::new());
            }
        };
        let _ = ready.send(Ok(()));
        self.slot.stats.set_state(WorkerState::Running);
        self.slot
            .events
            .emit(EventMask::STARTED, || WorkerEvent::Started);
        trace::started(self.slot.index, self.slot.core);
        let mut state = Some(state);
        let mut buf = Vec::with_capacity(self.batch);
        loop {
            self.slot.answer_evicted_flushes();
            // Acquire pairs with `request_stop`'s Release store.
            if self.slot.control.stop.load(Ordering::Acquire) {
                return self.finish(state, buf);
            }
            if self.slot.control.paused.load(Ordering::Acquire) {
                self.pause();
                continue;
            }
            if !self.slot.gather(&mut buf, self.batch) {
                return self.finish(state, buf);
            }
            let step = if buf.is_empty() {
                self.idle(&mut state)
            } else {
                self.process(&mut state, &mut buf, None)
            };
            if let Err(halt) = step {
                return self.halt(state, halt);
            }
        }
    }

    /// Parks until resumed or asked to stop.
    fn pause(&self) {
        self.slot.stats.set_state(WorkerState::Paused);
        let events = &self.slot.events;
        events.emit(EventMask::PAUSED, || WorkerEvent::Paused);
        trace::paused(self.slot.index, true);
        let control = &self.slot.control;
        self.slot.doorbell().wait(self.slot.idle, None, &|| {
            !control.paused.load(Ordering::Acquire) || control.stop.load(Ordering::Acquire)
        });
        self.slot.stats.set_state(WorkerState::Running);
        events.emit(EventMask::RESUMED, || WorkerEvent::Resumed);
        trace::paused(self.slot.index, false);
    }

    /// Offers a panic to the configured dead-letter hook, and the message kept for it to
    /// [`Worker::on_dead_letter`]; a panic of either is caught and ignored.
    fn dead_letter(&mut self, text: &str, kept: Option<W::Message>) {
        if let Some(hook) = &self.dead_letter {
            let letter = crate::DeadLetter {
                worker: self.slot.index,
                panic: text.to_owned(),
            };
            let _ = catch_unwind(AssertUnwindSafe(|| hook(&letter)));
        }
        if let Some(msg) = kept {
            let mut ctx = Context::new(self.slot.index, self.slot.core, &self.peers);
            let worker = &mut self.worker;
            let _ = catch_unwind(AssertUnwindSafe(|| {
                worker.on_dead_letter(msg, text, &mut ctx)
            }));
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

    /// Runs `on_idle`, then `wait` until there is work, treating a panic in either like a
    /// handler panic.
    fn idle(&mut self, state: &mut Option<W::State>) -> Result<(), Halt<W::Message>> {
        let slot = &self.slot;
        slot.events.emit(EventMask::IDLE, || WorkerEvent::Idle);
        let ready = || slot.has_work();
        let idle = Idle::new(slot.doorbell(), slot.idle, &ready);
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
                .panicked(state, &*p, None)
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
        if sample_due(&mut self.tick) {
            self.timing = start_timing(buf);
        }
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
            let Some(msg) = env.open() else { continue };
            let st = state.as_mut().expect("a running worker has its state");
            let mut ctx = Context::new(self.slot.index, self.slot.core, &self.peers);
            let worker = &mut self.worker;
            let kept = worker.keep_for_dead_letter(&msg);
            let result = catch_unwind(AssertUnwindSafe(|| worker.handle(st, msg, &mut ctx)));
            let stop = ctx.stop;
            Stats::bump(&self.slot.stats.processed);
            if stop {
                self.slot.control.stop.store(true, Ordering::Release);
            }
            if let Err(p) = result {
                if let Err(reason) = self.panicked(state, &*p, kept) {
                    return Err(Halt::Fatal(reason, drain.collect()));
                }
            }
        }
        if self.timing.is_some() {
            self.end_timing();
        }
        Ok(())
    }

    /// Ends a timed batch: its mean handler time is one latency sample.
    #[cold]
    #[inline(never)]
    fn end_timing(&mut self) {
        if let Some((started, messages)) = self.timing.take() {
            self.slot.stats.record_latency(started.elapsed() / messages);
        }
    }

    /// Counts a panic, offers it (with the message `kept` for it, if any) to the dead-letter
    /// hooks, and rebuilds the state if the restart policy allows. `Err` means the worker must
    /// stop.
    fn panicked(
        &mut self,
        state: &mut Option<W::State>,
        payload: &(dyn Any + Send),
        kept: Option<W::Message>,
    ) -> Result<(), String> {
        Stats::bump(&self.slot.stats.panics);
        let text = panic_message(payload);
        trace::panicked(self.slot.index, &text);
        self.dead_letter(&text, kept);
        match self.on_panic(state, &text) {
            crate::PanicAction::Keep => return Ok(()),
            crate::PanicAction::Stop => {
                return Err(format!(
                    "a handler panicked ({text}) and on_panic chose Stop"
                ))
            }
            crate::PanicAction::Rebuild => {}
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
        trace::restarted(
            self.slot.index,
            self.slot.stats.restarts.load(Ordering::Relaxed),
        );
        self.slot
            .events
            .emit(EventMask::RESTARTED, || WorkerEvent::Restarted {
                reason: text,
            });
        Ok(())
    }

    /// Asks the worker what follows a panic; a panic in `on_panic` itself means rebuild.
    fn on_panic(&mut self, state: &mut Option<W::State>, text: &str) -> crate::PanicAction {
        let Some(st) = state.as_mut() else {
            return crate::PanicAction::Rebuild;
        };
        let mut ctx = Context::new(self.slot.index, self.slot.core, &self.peers);
        let worker = &mut self.worker;
        catch_unwind(AssertUnwindSafe(|| worker.on_panic(st, text, &mut ctx)))
            .unwrap_or(crate::PanicAction::Rebuild)
    }

    /// Ends the worker after a halt: a missed deadline stops gracefully (what was not handled
    /// is returned), a fatal panic fails it.
    fn halt(
        self,
        state: Option<W::State>,
        halt: Halt<W::Message>,
    ) -> Option<WorkerReport<W::Message>> {
        match halt {
            Halt::Fatal(reason, rest) => self.fail(state, reason, rest),
            Halt::Deadline(mut rest) => {
                self.slot.stats.set_state(WorkerState::Stopping);
                rest.extend(self.slot.seal());
                self.stop(state, Outcome::Completed, rest, WorkerState::Stopped)
            }
        }
    }

    /// Graceful stop: handle everything queued (until the deadline), seal the inbox and lanes,
    /// handle what raced in, run `on_stop`.
    fn finish(
        mut self,
        mut state: Option<W::State>,
        mut buf: Vec<Envelope<W::Message>>,
    ) -> Option<WorkerReport<W::Message>> {
        self.slot.stats.set_state(WorkerState::Stopping);
        let deadline = self.stop_deadline();
        loop {
            if let Err(halt) = self.process(&mut state, &mut buf, deadline) {
                return self.halt(state, halt);
            }
            self.slot.answer_evicted_flushes();
            if !self.slot.gather(&mut buf, self.batch) || buf.is_empty() {
                break;
            }
        }
        // Seal: from here sends fail and hand their message back; what raced in is handled here.
        let mut rest = self.slot.seal();
        if let Err(halt) = self.process(&mut state, &mut rest, deadline) {
            return self.halt(state, halt);
        }
        self.slot.answer_evicted_flushes();
        self.stop(state, Outcome::Completed, Vec::new(), WorkerState::Stopped)
    }

    /// Fails the worker: its state becomes `Failed` before anything it held is returned.
    fn fail(
        self,
        state: Option<W::State>,
        reason: String,
        mut rest: Vec<Envelope<W::Message>>,
    ) -> Option<WorkerReport<W::Message>> {
        self.slot.stats.set_state(WorkerState::Failed);
        rest.extend(self.slot.seal());
        self.stop(state, Outcome::Failed(reason), rest, WorkerState::Failed)
    }

    /// Runs `on_stop` (if the state survived), and builds the report with `rest` returned
    /// unprocessed; `None` (with `rest` dropped and its asks failed) if the pool reported for
    /// this worker already.
    fn stop(
        mut self,
        state: Option<W::State>,
        outcome: Outcome,
        rest: Vec<Envelope<W::Message>>,
        end: WorkerState,
    ) -> Option<WorkerReport<W::Message>> {
        if let Some(st) = state {
            let mut ctx = Context::new(self.slot.index, self.slot.core, &self.peers);
            let worker = &mut self.worker;
            if catch_unwind(AssertUnwindSafe(|| worker.on_stop(st, &mut ctx))).is_err() {
                Stats::bump(&self.slot.stats.panics);
            }
        }
        let unprocessed = rest
            .into_iter()
            .filter_map(Envelope::into_unprocessed)
            .collect();
        let report = self.slot.report(outcome, unprocessed);
        self.slot.stats.set_state(end);
        report
    }
}
