//! One schedule: the workers' state, the clients' tasks, the enabled steps and their effects.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

use corelane_partition::HashPartitioner;

use super::net::{self, Item, Net, Phase, Queue};
use super::{Faults, Rng, Route, Sim, SimClient};
use crate::{Context, Outcome, RestartPolicy, SendError, Worker};

/// A client task's turn: one operation per step, and what it waits for in between.
pub(crate) struct Turn {
    budget: Cell<bool>,
    waiting: RefCell<Option<Box<dyn Fn() -> bool>>>,
}

impl Turn {
    fn new() -> Self {
        Self {
            budget: Cell::new(false),
            waiting: RefCell::new(None),
        }
    }

    /// Ends the client's step unless this is its first operation in it.
    pub(crate) fn take(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |_| {
            if self.budget.replace(false) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    /// Waits (across steps) until `ready()`.
    pub(crate) fn wait(&self, ready: impl Fn() -> bool + 'static) -> impl Future<Output = ()> + '_ {
        let ready: Rc<dyn Fn() -> bool> = Rc::new(ready);
        std::future::poll_fn(move |_| {
            if ready() {
                *self.waiting.borrow_mut() = None;
                Poll::Ready(())
            } else {
                let r = ready.clone();
                *self.waiting.borrow_mut() = Some(Box::new(move || r()));
                Poll::Pending
            }
        })
    }

    fn can_run(&self) -> bool {
        self.waiting.borrow().as_ref().is_none_or(|ready| ready())
    }
}

/// A step of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// A client runs until its next operation.
    Client(usize),
    /// A worker handles the next item of one of its queues.
    Handle(usize, Queue),
    /// A worker's oldest unreleased effect becomes visible.
    Release(usize),
    /// A stopping worker seals its queues and stops.
    Seal(usize),
}

impl Action {
    /// The actor that takes this step (for PCT's priorities): clients first, then workers, then
    /// the workers' effect queues.
    pub(crate) fn actor(self, clients: usize, workers: usize) -> usize {
        match self {
            Action::Client(i) => i,
            Action::Handle(w, _) | Action::Seal(w) => clients + w,
            Action::Release(w) => clients + workers + w,
        }
    }
}

struct Actor<W: Worker> {
    worker: W,
    state: Option<W::State>,
    restart: RestartPolicy,
    history: VecDeque<u64>,
    on_stops: u32,
}

struct Client {
    task: Option<Pin<Box<dyn Future<Output = ()>>>>,
    turn: Rc<Turn>,
}

/// How a schedule ended.
pub(crate) enum End {
    Done,
    Failed(String),
}

/// One schedule of a [`Sim`].
pub(crate) struct Engine<W: Worker> {
    net: Rc<RefCell<Net<W::Message>>>,
    partitioner: HashPartitioner,
    actors: Vec<Actor<W>>,
    clients: Vec<Client>,
    faults: Faults,
    faults_rng: Rng,
    max_steps: usize,
}

struct SimRoute<'a, M> {
    net: &'a RefCell<Net<M>>,
    partitioner: &'a HashPartitioner,
}

impl<M: Debug> Route<M> for SimRoute<'_, M> {
    fn workers(&self) -> usize {
        self.net.borrow().workers()
    }
    fn restarts(&self, worker: usize) -> u64 {
        self.net.borrow().stations[worker].restarts
    }
    fn partitioner(&self) -> &HashPartitioner {
        self.partitioner
    }
    fn send_to(&self, from: usize, to: usize, msg: M) -> Result<(), SendError<M>> {
        self.net.borrow_mut().context_send(from, to, msg)
    }
}

impl<W: Worker> Engine<W>
where
    W::Message: Debug,
{
    /// Builds the workers (running `init`) and the client tasks of one schedule.
    pub(crate) fn new(sim: &Sim<W>, seed: u64, faults: bool, trace: bool) -> Result<Self, String> {
        let configs: Vec<_> = (0..sim.workers).map(|i| (sim.config)(i)).collect();
        let net = Rc::new(RefCell::new(Net::new(&configs, trace)));
        let partitioner = super::partitioner(sim.workers);
        let mut engine = Self {
            net: net.clone(),
            partitioner: partitioner.clone(),
            actors: Vec::with_capacity(sim.workers),
            clients: Vec::with_capacity(sim.clients.len()),
            faults: if faults { sim.faults } else { Faults::none() },
            faults_rng: Rng::new(seed.rotate_left(17) ^ 0xFA01),
            max_steps: sim.max_steps,
        };
        for (i, cfg) in configs.iter().enumerate() {
            let mut worker = (sim.factory)(i);
            let state = engine.init(i, &mut worker)?;
            engine.actors.push(Actor {
                worker,
                state: Some(state),
                restart: cfg.restart,
                history: VecDeque::new(),
                on_stops: 0,
            });
        }
        for (id, body) in sim.clients.iter().enumerate() {
            let turn = Rc::new(Turn::new());
            let client = SimClient {
                id,
                net: net.clone(),
                turn: turn.clone(),
                partitioner: partitioner.clone(),
            };
            engine.clients.push(Client {
                task: Some(body(client)),
                turn,
            });
        }
        Ok(engine)
    }

    /// Runs `init` of worker `w` with a simulated context.
    fn init(&self, w: usize, worker: &mut W) -> Result<W::State, String> {
        run_init(&self.net, &self.partitioner, w, worker)
    }

    pub(crate) fn clock(&self) -> u64 {
        self.net.borrow().clock
    }

    pub(crate) fn trace(&self) -> Vec<String> {
        self.net.borrow().trace.clone().unwrap_or_default()
    }

    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.clients.len(), self.actors.len())
    }

    /// The steps that can be taken now, in a fixed order.
    pub(crate) fn enabled(&self, out: &mut Vec<Action>) {
        out.clear();
        for (i, c) in self.clients.iter().enumerate() {
            if c.task.is_some() && c.turn.can_run() {
                out.push(Action::Client(i));
            }
        }
        let net = self.net.borrow();
        for (w, st) in net.stations.iter().enumerate() {
            let past = |d: Option<u64>| d.is_some_and(|d| net.clock >= d);
            let handles = match st.phase {
                Phase::Running => true,
                Phase::Stopping(d) => !past(d),
                Phase::Stopped | Phase::Failed => false,
            };
            if handles && st.paused_until <= net.clock {
                out.extend(st.ready().map(|q| Action::Handle(w, q)));
            }
            if !st.effects.is_empty() {
                out.push(Action::Release(w));
            }
            if let Phase::Stopping(d) = st.phase {
                if !st.has_reserved() && (past(d) || st.is_empty()) {
                    out.push(Action::Seal(w));
                }
            }
        }
    }

    /// Takes one step; `Err` fails the schedule.
    pub(crate) fn step(&mut self, action: Action) -> Result<(), String> {
        {
            let mut net = self.net.borrow_mut();
            net.clock += 1;
            if net.clock as usize > self.max_steps {
                return Err(format!("no end after {} steps", self.max_steps));
            }
        }
        self.shutdown_fault();
        match action {
            Action::Client(i) => self.run_client(i),
            Action::Handle(w, q) => {
                self.handle(w, q);
                Ok(())
            }
            Action::Release(w) => {
                let drop_reply = self.faults_rng.chance(self.faults.drop_reply);
                self.net.borrow_mut().release(w, drop_reply);
                Ok(())
            }
            Action::Seal(w) => {
                self.seal(w);
                Ok(())
            }
        }
    }

    /// With no step enabled: starts the final shutdown once every client is done, or reports
    /// how the schedule ended.
    pub(crate) fn idle(&mut self) -> Option<End> {
        // A paused worker resumes when the clock reaches its pause's end: let the time pass.
        {
            let mut net = self.net.borrow_mut();
            let clock = net.clock;
            let resume = net
                .stations
                .iter()
                .map(|st| st.paused_until)
                .filter(|&t| t > clock)
                .min();
            if let Some(t) = resume {
                net.clock = t;
                return None;
            }
        }
        if let Some(i) = self.clients.iter().position(|c| c.task.is_some()) {
            return Some(End::Failed(format!(
                "stuck: client {i} waits and nothing can run"
            )));
        }
        let mut net = self.net.borrow_mut();
        if !net.all_ended() {
            net.request_shutdown(None, "the end of the clients");
            return None;
        }
        drop(net);
        Some(match self.final_checks() {
            Ok(()) => End::Done,
            Err(e) => End::Failed(e),
        })
    }

    fn final_checks(&self) -> Result<(), String> {
        self.net.borrow().balance()?;
        for (w, a) in self.actors.iter().enumerate() {
            let stopped = self.net.borrow().stations[w].phase == Phase::Stopped;
            if a.on_stops > 1 || (stopped && a.on_stops != 1) {
                return Err(format!("worker {w}: on_stop ran {} times", a.on_stops));
            }
        }
        Ok(())
    }

    fn shutdown_fault(&mut self) {
        if self.faults_rng.chance(self.faults.shutdown) && !self.net.borrow().shutdown {
            let steps = self.faults_rng.below(10) as u64;
            self.net
                .borrow_mut()
                .request_shutdown(Some(steps), "fault (timed)");
        }
    }

    fn run_client(&mut self, i: usize) -> Result<(), String> {
        let client = &mut self.clients[i];
        client.turn.budget.set(true);
        let task = client.task.as_mut().expect("an enabled client has a task");
        let done = super::poll_once(task).map_err(|p| format!("client {i} panicked: {p}"))?;
        client.turn.budget.set(false);
        if done {
            client.task = None;
            self.net.borrow_mut().log(|| format!("client {i} done"));
        }
        Ok(())
    }

    fn handle(&mut self, w: usize, q: Queue) {
        let item = self.net.borrow_mut().take(w, q);
        match item {
            Some(Item::Flush(id)) => {
                let mut net = self.net.borrow_mut();
                net.log(|| format!("w{w} reaches flush marker {id} ({q:?})"));
                net.flush_reached(id);
            }
            Some(Item::Msg(msg, ticket)) => {
                drop(ticket); // the handler owns the reply now
                self.run_handler(w, q, msg);
            }
            None => unreachable!("only a queue with an item is handled"),
        }
        self.net.borrow_mut().answer_evicted_flushes(w);
    }

    fn run_handler(&mut self, w: usize, q: Queue, msg: W::Message) {
        let panic_before = self.faults_rng.chance(self.faults.panic_before);
        let panic_after = self.faults_rng.chance(self.faults.panic_after);
        let pause = self.faults_rng.chance(self.faults.pause);
        let stop_fault = self.faults_rng.chance(self.faults.stop);
        self.net
            .borrow_mut()
            .log(|| format!("w{w} handles ({q:?}) {msg:?}"));
        let route = SimRoute {
            net: &self.net,
            partitioner: &self.partitioner,
        };
        let actor = &mut self.actors[w];
        let state = actor
            .state
            .as_mut()
            .expect("a running worker has its state");
        net::start_recording();
        let kept = actor.worker.keep_for_dead_letter(&msg);
        let (result, stop) = if panic_before {
            drop(msg);
            (Err("a panic before the handler (fault)".to_string()), false)
        } else {
            let mut ctx: Context<'_, W> = super::new_context(w, &route);
            let worker = &mut actor.worker;
            let r = super::quietly(|| worker.handle(state, msg, &mut ctx));
            let r = r.map_err(|p| super::panic_text(&*p));
            match r {
                Ok(()) if panic_after => {
                    (Err("a panic after the handler (fault)".into()), ctx.stop)
                }
                other => (other, ctx.stop),
            }
        };
        let replies = net::stop_recording();
        {
            let mut net = self.net.borrow_mut();
            net.commit_effects(w, replies);
            let clock = net.clock;
            let st = &mut net.stations[w];
            st.processed += 1;
            if pause {
                st.paused_until = clock + 1 + (clock % 5);
            }
            if (stop || stop_fault) && st.phase == Phase::Running {
                st.phase = Phase::Stopping(None);
            }
            if pause {
                net.log(|| format!("w{w} pauses for a few steps (fault)"));
            }
            if stop_fault {
                net.log(|| format!("w{w} stops itself (fault: ctx.stop())"));
            }
        }
        if let Err(why) = result {
            self.panicked(w, &why, kept);
        }
    }

    /// Offers the message kept for it to the dead-letter hook, then applies the restart
    /// policy after a panic in worker `w`'s handler.
    fn panicked(&mut self, w: usize, why: &str, kept: Option<W::Message>) {
        let now = self.clock();
        {
            let mut net = self.net.borrow_mut();
            net.stations[w].panics += 1;
            net.log(|| format!("w{w} panicked: {why}"));
        }
        if let Some(msg) = kept {
            self.on_dead_letter(w, msg, why);
        }
        match self.on_panic(w, why) {
            crate::PanicAction::Keep => {
                self.net
                    .borrow_mut()
                    .log(|| format!("w{w} keeps its state (on_panic)"));
                return;
            }
            crate::PanicAction::Stop => return self.fail(w, "on_panic chose Stop"),
            crate::PanicAction::Rebuild => {}
        }
        let actor = &mut self.actors[w];
        let old = actor.state.take();
        let _ = super::quietly(move || drop(old));
        if !super::restart_allowed(actor.restart, &mut actor.history, now) {
            return self.fail(w, "the restart policy does not allow another restart");
        }
        if self.faults_rng.chance(self.faults.init_fails) {
            return self.fail(w, "init failed on restart (fault)");
        }
        self.net.borrow_mut().stations[w].restarts += 1;
        let actor = &mut self.actors[w];
        match run_init(&self.net, &self.partitioner, w, &mut actor.worker) {
            Ok(state) => {
                actor.state = Some(state);
                let mut net = self.net.borrow_mut();
                net.log(|| format!("w{w} restarted: state rebuilt by init, queue kept"));
            }
            Err(e) => self.fail(w, &format!("restart failed: {e}")),
        }
    }

    /// Hands worker `w` the message whose handler panicked; a panic there is ignored.
    fn on_dead_letter(&mut self, w: usize, msg: W::Message, why: &str) {
        let route = SimRoute {
            net: &self.net,
            partitioner: &self.partitioner,
        };
        net::start_recording();
        {
            let mut ctx: Context<'_, W> = super::new_context(w, &route);
            let worker = &mut self.actors[w].worker;
            let _ = super::quietly(|| worker.on_dead_letter(msg, why, &mut ctx));
        }
        let replies = net::stop_recording();
        self.net.borrow_mut().commit_effects(w, replies);
    }

    /// Asks worker `w` what follows a panic; a panic in `on_panic` itself means rebuild.
    fn on_panic(&mut self, w: usize, why: &str) -> crate::PanicAction {
        let route = SimRoute {
            net: &self.net,
            partitioner: &self.partitioner,
        };
        let actor = &mut self.actors[w];
        let Some(state) = actor.state.as_mut() else {
            return crate::PanicAction::Rebuild;
        };
        net::start_recording();
        let action = {
            let mut ctx: Context<'_, W> = super::new_context(w, &route);
            let worker = &mut actor.worker;
            super::quietly(|| worker.on_panic(state, why, &mut ctx))
                .unwrap_or(crate::PanicAction::Rebuild)
        };
        let replies = net::stop_recording();
        self.net.borrow_mut().commit_effects(w, replies);
        action
    }

    fn fail(&mut self, w: usize, why: &str) {
        let mut net = self.net.borrow_mut();
        net.log(|| format!("w{w} fails: {why}"));
        net.seal(w, Phase::Failed, super::outcome_failed(why));
    }

    /// A stopping worker seals its queues (what is left is returned), runs `on_stop` and stops.
    fn seal(&mut self, w: usize) {
        self.net
            .borrow_mut()
            .seal(w, Phase::Stopped, Outcome::Completed);
        let route = SimRoute {
            net: &self.net,
            partitioner: &self.partitioner,
        };
        let actor = &mut self.actors[w];
        if let Some(state) = actor.state.take() {
            actor.on_stops += 1;
            net::start_recording();
            let mut ctx: Context<'_, W> = super::new_context(w, &route);
            let worker = &mut actor.worker;
            let _ = super::quietly(|| worker.on_stop(state, &mut ctx));
            let replies = net::stop_recording();
            self.net.borrow_mut().commit_effects(w, replies);
        }
        self.net.borrow_mut().log(|| format!("w{w} stopped"));
    }
}

/// Runs `init` of worker `w` with a simulated context, recording what it sends.
fn run_init<W: Worker>(
    net: &RefCell<Net<W::Message>>,
    partitioner: &HashPartitioner,
    w: usize,
    worker: &mut W,
) -> Result<W::State, String>
where
    W::Message: Debug,
{
    let route = SimRoute { net, partitioner };
    net::start_recording();
    let result = {
        let mut ctx: Context<'_, W> = super::new_context(w, &route);
        super::quietly(|| worker.init(&mut ctx))
    };
    let replies = net::stop_recording();
    net.borrow_mut().commit_effects(w, replies);
    match result {
        Ok(Ok(state)) => Ok(state),
        Ok(Err(e)) => Err(format!("worker {w}: init failed: {e}")),
        Err(p) => Err(format!(
            "worker {w}: init panicked: {}",
            super::panic_text(&*p)
        )),
    }
}
