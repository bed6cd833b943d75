//! Deterministic simulation: a pool's workers (your real [`Worker`] impls: `init`, `handle`,
//! `on_stop`, [`Context`], [`Reply`]) and its clients (async closures) run on one thread, and a
//! seeded source of choices decides every step, so a schedule that breaks your invariants is
//! found, printed, and replayed exactly.
//!
//! ```
//! use corelane_worker::sim::Sim;
//! use corelane_worker::{BoxError, Context, Reply, Worker};
//!
//! #[derive(Debug)]
//! enum Cmd { Add(u64), Get(Reply<u64>) }
//! struct Counter;
//! impl Worker for Counter {
//!     type Message = Cmd;
//!     type State = u64;
//!     fn init(&mut self, _: &mut Context<'_, Self>) -> Result<u64, BoxError> { Ok(0) }
//!     fn handle(&mut self, n: &mut u64, cmd: Cmd, _: &mut Context<'_, Self>) {
//!         match cmd {
//!             Cmd::Add(k) => *n += k,
//!             Cmd::Get(reply) => reply.send(*n),
//!         }
//!     }
//! }
//!
//! let sim = Sim::new(2, |_| Counter).client(|c| async move {
//!     c.send(&7u64, Cmd::Add(1)).await.unwrap();
//!     // Read-after-write through the same inbox holds in every schedule.
//!     assert_eq!(c.ask(&7u64, Cmd::Get).await.unwrap(), 1);
//! });
//! let summary = sim.random(0..200).unwrap(); // Err(failure) prints seed, choices and trace
//! assert_eq!(summary.schedules, 200);
//! assert!(sim.exhaustive(10_000).is_ok());
//! ```
//!
//! # What a step is
//! Each step is one of: a worker handles the next message of one of its queues (its inbox, or a
//! producer's lane: which one is a choice, as the order of a real worker's gathers is); one of a
//! handler's effects (a reply becoming visible, or a send to a peer being pushed) is released,
//! in the handler's program order, as if the handler's thread reached it then; a client runs
//! until its next operation; a stopping worker seals its queues. Order within one queue is
//! never changed, and what is pushed after something else is behind it.
//!
//! A handler's send learns at once whether it is accepted (a full inbox answers `Full` by its
//! policy), so the room it needs is held from that moment until it is pushed; only a queue that
//! is full can tell the difference.
//!
//! # Faults
//! [`Faults`] sets, per mille, how often the simulation injects: a panic before or after a
//! handler, `init` failing on a restart, a dropped reply, a pause, a handler's `ctx.stop()`, and
//! a timed shutdown at any step. Each decision comes from the schedule's seed and is written to the trace.
//!
//! # Finding and replaying a failure
//! A client's failed assertion, a broken report balance (`accepted = processed + dropped +
//! unprocessed`), `on_stop` not run once, a client that waits while nothing can run (stuck), or
//! a step limit fails the schedule. The [`Failure`] names the seed and the choice string and
//! carries a readable trace; `CORELANE_SIM_SEED=<seed>` makes [`Sim::random`] and [`Sim::pct`]
//! run that seed alone, and [`Sim::replay`] replays a choice string. Every seed gives the same
//! trace on every run ([`Sim::trace`]).
//!
//! Not simulated: [`Worker::wait`] event loops and [`Context::outbox`] (a handler-only model),
//! pinning, and partitioners other than the default hash partitioner.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::{self, Debug};
use std::future::Future;
use std::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};

use corelane_partition::{HashPartitioner, Partitioner, Resize};

use crate::reply::Abort;
use crate::{
    AskError, Context, Error, Outcome, Overflow, Reply, RestartPolicy, SendError, Worker,
    WorkerConfig, WorkerReport,
};

mod engine;
mod explore;
mod net;

pub use explore::{Failure, Schedule, Summary};

/// How often faults are injected, in events per thousand (0 = never). All zero by default:
/// `Faults { panic_after: 20, ..Faults::none() }`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Per handled message: a panic instead of the handler (the message is lost to the panic).
    pub panic_before: u32,
    /// Per handled message: a panic after the handler returned (its state changes are lost).
    pub panic_after: u32,
    /// Per restart: `init` fails, so the worker fails.
    pub init_fails: u32,
    /// Per released reply: the reply is dropped unanswered (the asker gets `NoReply`).
    pub drop_reply: u32,
    /// Per handled message: the worker pauses for a few steps afterwards.
    pub pause: u32,
    /// Per handled message: the handler calls `ctx.stop()` (the worker drains and stops alone).
    pub stop: u32,
    /// Per step: a timed shutdown of the whole pool starts, with a deadline a few steps ahead.
    pub shutdown: u32,
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }
    /// Every fault at `per_mille`.
    pub fn all(per_mille: u32) -> Self {
        Self {
            panic_before: per_mille,
            panic_after: per_mille,
            init_fails: per_mille,
            drop_reply: per_mille,
            pause: per_mille,
            stop: per_mille,
            shutdown: per_mille,
        }
    }
}

type ClientFn<M> = Rc<dyn Fn(SimClient<M>) -> Pin<Box<dyn Future<Output = ()>>>>;

/// A simulated pool: its workers, their configuration, its clients and the faults to inject.
/// Build it once; every schedule builds fresh workers with the factory.
pub struct Sim<W: Worker> {
    workers: usize,
    factory: Rc<dyn Fn(usize) -> W>,
    config: Rc<dyn Fn(usize) -> WorkerConfig>,
    clients: Vec<ClientFn<W::Message>>,
    faults: Faults,
    max_steps: usize,
}

impl<W: Worker> Debug for Sim<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("workers", &self.workers)
            .field("clients", &self.clients.len())
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl<W: Worker> Sim<W>
where
    W::Message: Debug,
{
    /// A simulation of `workers` workers built by `factory(index)`, with the default
    /// configuration and no clients yet.
    ///
    /// # Panics
    /// If `workers` is 0.
    pub fn new(workers: usize, factory: impl Fn(usize) -> W + 'static) -> Self {
        assert!(workers > 0, "a simulated pool needs at least one worker");
        Self {
            workers,
            factory: Rc::new(factory),
            config: Rc::new(|_| WorkerConfig::new()),
            clients: Vec::new(),
            faults: Faults::none(),
            max_steps: 100_000,
        }
    }

    /// The configuration of worker `i`: its queue capacity, overflow policy and restart policy
    /// are simulated (one step is one millisecond of the restart window).
    pub fn config(mut self, config: impl Fn(usize) -> WorkerConfig + 'static) -> Self {
        self.config = Rc::new(config);
        self
    }

    /// Adds a client: `body(client)` runs as a task that the simulation interleaves with the
    /// workers and the other clients, one operation per step. A panic in it (a failed
    /// assertion) fails the schedule.
    pub fn client<F, Fut>(mut self, body: F) -> Self
    where
        F: Fn(SimClient<W::Message>) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.clients.push(Rc::new(move |c| {
            Box::pin(body(c)) as Pin<Box<dyn Future<Output = ()>>>
        }));
        self
    }

    /// The faults to inject (random and PCT exploration only; exhaustive exploration injects
    /// none).
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// The most steps one schedule may take before it fails (default 100,000).
    pub fn max_steps(mut self, steps: usize) -> Self {
        self.max_steps = steps;
        self
    }
}

/// Handles of the simulated pool for a client task. Every operation is one step.
pub struct SimClient<M> {
    id: usize,
    net: Rc<RefCell<net::Net<M>>>,
    turn: Rc<engine::Turn>,
    partitioner: HashPartitioner,
}

impl<M> Debug for SimClient<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimClient").field("id", &self.id).finish()
    }
}

impl<M: Debug + 'static> SimClient<M> {
    /// This client's index (in the order the clients were added).
    pub fn id(&self) -> usize {
        self.id
    }

    /// How many workers the pool has.
    pub fn workers(&self) -> usize {
        self.net.borrow().workers()
    }

    /// The worker that owns `key`.
    pub fn worker_for<K: Hash + ?Sized>(&self, key: &K) -> usize {
        self.partitioner.partition(key)
    }

    /// As `Pool::send_partitioned`: by the worker's overflow policy (`Block` waits).
    ///
    /// # Errors
    /// As `Pool::send_partitioned`, with the message handed back.
    pub async fn send<K: Hash + ?Sized>(&self, key: &K, msg: M) -> Result<(), SendError<M>> {
        self.send_to(self.worker_for(key), msg).await
    }

    /// As `Pool::send_to`.
    ///
    /// # Errors
    /// As `Pool::send_to`.
    pub async fn send_to(&self, worker: usize, msg: M) -> Result<(), SendError<M>> {
        self.turn.take().await;
        let item = net::Item::Msg(msg, None);
        self.deliver(worker, net::Queue::Inbox, item, "send")
            .await
            .map_err(|e| e.map(net::Item::into_msg))
    }

    /// As `Pool::try_send_to`: never waits.
    ///
    /// # Errors
    /// As `Pool::try_send_to`.
    pub async fn try_send_to(&self, worker: usize, msg: M) -> Result<(), SendError<M>> {
        self.turn.take().await;
        let item = net::Item::Msg(msg, None);
        let r = self.net.borrow_mut().client_send(
            self.id,
            worker,
            net::Queue::Inbox,
            item,
            false,
            "try_send",
        );
        match r {
            net::Sent::Done(r) => r.map_err(|e| e.map(net::Item::into_msg)),
            net::Sent::Wait(_) => unreachable!("a send that may not block never waits"),
        }
    }

    /// As `Pool::ask`: sends `make(reply)` to the worker owning `key` and waits for the answer.
    ///
    /// # Errors
    /// As `Pool::ask`.
    pub async fn ask<K: Hash + ?Sized, T: Send + 'static>(
        &self,
        key: &K,
        make: impl FnOnce(Reply<T>) -> M,
    ) -> Result<T, AskError<M>> {
        self.ask_to(self.worker_for(key), make).await
    }

    /// An ask to worker `worker`.
    ///
    /// # Errors
    /// As `Pool::ask`.
    pub async fn ask_to<T: Send + 'static>(
        &self,
        worker: usize,
        make: impl FnOnce(Reply<T>) -> M,
    ) -> Result<T, AskError<M>> {
        self.turn.take().await;
        self.ask_via(worker, net::Queue::Inbox, make).await
    }

    async fn ask_via<T: Send + 'static>(
        &self,
        worker: usize,
        queue: net::Queue,
        make: impl FnOnce(Reply<T>) -> M,
    ) -> Result<T, AskError<M>> {
        let (reply, cell) = ReplySlot::pair();
        let ticket = reply.ticket();
        let item = net::Item::Msg(make(reply), Some(ticket));
        self.deliver(worker, queue, item, "ask")
            .await
            .map_err(|e| AskError::Send(e.map(net::Item::into_msg)))?;
        let answered = cell.clone();
        self.turn.wait(move || answered.settled()).await;
        cell.take()
    }

    /// As `Pool::flush`: returns once everything this client sent to the inboxes before it was
    /// handled or dropped by policy.
    ///
    /// # Errors
    /// [`Error::Unflushed`] if a worker stopped first.
    pub async fn flush(&self) -> Result<(), Error> {
        self.turn.take().await;
        let workers = self.workers();
        self.flush_queues((0..workers).map(|w| (w, net::Queue::Inbox)).collect())
            .await
    }

    async fn flush_queues(&self, queues: Vec<(usize, net::Queue)>) -> Result<(), Error> {
        let id = self.net.borrow_mut().new_flush(queues.len());
        for (w, queue) in queues {
            let r = self.deliver(w, queue, net::Item::Flush(id), "flush").await;
            if r.is_err() {
                self.net.borrow_mut().flush_marker_failed(id, w);
            }
        }
        let net = self.net.clone();
        self.turn
            .wait(move || net.borrow().flush_done(id).is_some())
            .await;
        let done = self.net.borrow().flush_done(id).expect("settled");
        done
    }

    /// A producer handle: one lane per worker, as `Pool::producer`.
    pub fn producer(&self) -> SimProducer<'_, M> {
        let lane = self.net.borrow_mut().open_lanes();
        SimProducer { client: self, lane }
    }

    /// As `Pool::shutdown`: every worker drains its queues, runs `on_stop` and stops; returns
    /// the report once all have.
    pub async fn shutdown(&self) -> Vec<WorkerReport<M>> {
        self.shutdown_by(None).await
    }

    /// As `Pool::shutdown_timeout`, with the deadline `steps` simulation steps ahead.
    pub async fn shutdown_timeout(&self, steps: u64) -> Vec<WorkerReport<M>> {
        self.shutdown_by(Some(steps)).await
    }

    async fn shutdown_by(&self, steps: Option<u64>) -> Vec<WorkerReport<M>> {
        self.turn.take().await;
        self.net.borrow_mut().request_shutdown(steps, "client");
        let net = self.net.clone();
        self.turn.wait(move || net.borrow().all_ended()).await;
        let reports = self.net.borrow_mut().take_reports();
        reports
    }

    /// Gives the other tasks and workers a step without doing anything.
    pub async fn yield_now(&self) {
        self.turn.take().await;
    }

    /// Sends `item` to queue `queue` of worker `w`, waiting for room when the policy blocks.
    async fn deliver(
        &self,
        w: usize,
        queue: net::Queue,
        mut item: net::Item<M>,
        what: &'static str,
    ) -> Result<(), SendError<net::Item<M>>> {
        loop {
            let r = self
                .net
                .borrow_mut()
                .client_send(self.id, w, queue, item, true, what);
            match r {
                net::Sent::Done(r) => return r,
                net::Sent::Wait(back) => {
                    item = back;
                    let net = self.net.clone();
                    self.turn
                        .wait(move || net.borrow().has_room(w, queue))
                        .await;
                }
            }
        }
    }
}

/// A simulated producer handle (`Pool::producer`): its own lane into every worker. There is no
/// order between a producer's lanes and the inboxes.
pub struct SimProducer<'c, M> {
    client: &'c SimClient<M>,
    lane: usize,
}

impl<M> Debug for SimProducer<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimProducer")
            .field("lane", &self.lane)
            .finish()
    }
}

impl<M: Debug + 'static> SimProducer<'_, M> {
    /// As `Producer::send_partitioned`.
    ///
    /// # Errors
    /// As `Producer::send_partitioned`.
    pub async fn send<K: Hash + ?Sized>(&self, key: &K, msg: M) -> Result<(), SendError<M>> {
        let c = self.client;
        c.turn.take().await;
        let item = net::Item::Msg(msg, None);
        c.deliver(
            c.worker_for(key),
            net::Queue::Lane(self.lane),
            item,
            "lane send",
        )
        .await
        .map_err(|e| e.map(net::Item::into_msg))
    }

    /// As `Producer::ask`: through this producer's lane, so it observes every earlier send of
    /// this producer to that worker.
    ///
    /// # Errors
    /// As `Producer::ask`.
    pub async fn ask<K: Hash + ?Sized, T: Send + 'static>(
        &self,
        key: &K,
        make: impl FnOnce(Reply<T>) -> M,
    ) -> Result<T, AskError<M>> {
        let c = self.client;
        c.turn.take().await;
        c.ask_via(c.worker_for(key), net::Queue::Lane(self.lane), make)
            .await
    }

    /// As `Producer::flush`.
    ///
    /// # Errors
    /// [`Error::Unflushed`] if a worker stopped first.
    pub async fn flush(&self) -> Result<(), Error> {
        let c = self.client;
        c.turn.take().await;
        let workers = c.workers();
        c.flush_queues(
            (0..workers)
                .map(|w| (w, net::Queue::Lane(self.lane)))
                .collect(),
        )
        .await
    }
}

// ---- replies ----------------------------------------------------------------------------------

/// What a simulated ask's answer cell holds.
enum Answer<T> {
    Pending,
    /// Sent by the handler, not released yet.
    Staged(T),
    Ready(T),
    NoReply,
    Unprocessed,
    Taken,
}

struct AnswerCell<T>(Mutex<Answer<T>>);

impl<T> AnswerCell<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Answer<T>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn settled(&self) -> bool {
        matches!(
            *self.lock(),
            Answer::Ready(_) | Answer::NoReply | Answer::Unprocessed
        )
    }
    fn take<M>(&self) -> Result<T, AskError<M>> {
        match std::mem::replace(&mut *self.lock(), Answer::Taken) {
            Answer::Ready(v) => Ok(v),
            Answer::Unprocessed => Err(AskError::Unprocessed),
            _ => Err(AskError::NoReply),
        }
    }
}

/// A reply's effect, type-erased: released by the simulation in program order.
pub(crate) trait Release: Send + Sync {
    /// Makes the answer visible (or, with `deliver` false, drops it: `NoReply`).
    fn release(&self, deliver: bool);
    /// The request will not be handled.
    fn unprocessed(&self);
}

impl<T: Send> Release for AnswerCell<T> {
    fn release(&self, deliver: bool) {
        let mut a = self.lock();
        *a = match std::mem::replace(&mut *a, Answer::Taken) {
            Answer::Staged(v) if deliver => Answer::Ready(v),
            Answer::Staged(_) | Answer::Pending => Answer::NoReply,
            other => other,
        };
    }
    fn unprocessed(&self) {
        let mut a = self.lock();
        if matches!(*a, Answer::Pending) {
            *a = Answer::Unprocessed;
        }
    }
}

/// The simulated side of a [`Reply`]: sending stages the answer and records its release as an
/// effect of the running handler; dropping it unsent records a `NoReply`.
pub(crate) struct ReplySlot<T> {
    cell: Arc<AnswerCell<T>>,
    erased: Arc<dyn Release>,
    sent: bool,
}

impl<T: Send + 'static> ReplySlot<T> {
    fn pair() -> (Reply<T>, Arc<AnswerCell<T>>) {
        let cell = Arc::new(AnswerCell(Mutex::new(Answer::Pending)));
        let slot = Self {
            erased: cell.clone(),
            cell: cell.clone(),
            sent: false,
        };
        (Reply::simulated(slot), cell)
    }
}

impl<T> ReplySlot<T> {
    pub(crate) fn send(mut self, value: T) {
        self.sent = true;
        {
            let mut a = self.cell.lock();
            if matches!(*a, Answer::Pending) {
                *a = Answer::Staged(value);
            }
        }
        net::record_reply(self.erased.clone());
    }

    pub(crate) fn abort_handle(&self) -> SimAbort {
        SimAbort(self.erased.clone())
    }
}

impl<T> Drop for ReplySlot<T> {
    fn drop(&mut self) {
        if !self.sent {
            net::record_reply(self.erased.clone());
        }
    }
}

/// A simulated ask's ticket: tells the asker its request will not be handled.
pub(crate) struct SimAbort(Arc<dyn Release>);

impl Abort for SimAbort {
    fn abort(self: Box<Self>) {
        self.0.unprocessed();
    }
}

/// A context's route into the simulation.
pub(crate) trait Route<M> {
    fn workers(&self) -> usize;
    fn restarts(&self, worker: usize) -> u64;
    fn partitioner(&self) -> &HashPartitioner;
    fn send_to(&self, from: usize, to: usize, msg: M) -> Result<(), SendError<M>>;
}

/// A seeded generator (splitmix64): every choice and fault of a schedule comes from one.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// `true` with probability `per_mille / 1000`.
    pub(crate) fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.below(1000) < per_mille as usize
    }
}

fn partitioner(workers: usize) -> HashPartitioner {
    HashPartitioner::new()
        .for_partitions(workers)
        .expect("at least one worker")
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

fn noop_context() -> TaskContext<'static> {
    TaskContext::from_waker(Waker::noop())
}

fn restart_allowed(policy: RestartPolicy, history: &mut VecDeque<u64>, now: u64) -> bool {
    match policy {
        RestartPolicy::Stop => false,
        RestartPolicy::Restart {
            max_restarts,
            within,
        } => {
            let window = within.as_millis() as u64;
            while history.front().is_some_and(|t| now - t > window) {
                history.pop_front();
            }
            if history.len() >= max_restarts as usize {
                return false;
            }
            history.push_back(now);
            true
        }
    }
}

fn overflow_of(cfg: &WorkerConfig) -> Overflow {
    cfg.overflow
}

fn capacity_of(cfg: &WorkerConfig) -> usize {
    corelane_channel::Builder::new(cfg.queue_capacity)
        .real_capacity()
        .unwrap_or(1)
}

fn outcome_failed(reason: &str) -> Outcome {
    Outcome::Failed(reason.to_string())
}

thread_local! {
    /// Set while the simulation runs user code whose panics it reports itself.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, keeping the panic hook quiet for a panic on this thread meanwhile: the simulation
/// reports client panics in its [`Failure`] and handler panics in its trace, and thousands of
/// schedules would otherwise print thousands of them. Other threads' panics print as before.
pub(crate) fn quietly<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    r
}

fn poll_once(fut: &mut Pin<Box<dyn Future<Output = ()>>>) -> Result<bool, String> {
    let mut cx = noop_context();
    match quietly(|| fut.as_mut().poll(&mut cx)) {
        Ok(Poll::Ready(())) => Ok(true),
        Ok(Poll::Pending) => Ok(false),
        Err(p) => Err(panic_text(&*p)),
    }
}

fn new_context<W: Worker>(index: usize, route: &dyn Route<W::Message>) -> Context<'_, W> {
    Context::simulated(index, route)
}
