//! The simulated queues, effects, flushes and counters of a pool, shared by the engine, the
//! clients and the handlers' contexts (one thread: `Rc<RefCell<Net>>`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt::Debug;
use std::sync::Arc;

use super::Release;
use crate::reply::AskTicket;
use crate::{Counters, Error, Outcome, Overflow, SendError, WorkerConfig, WorkerReport};

/// Replies recorded by a handler, each with its place in the handler's program order.
pub(super) type Recorded = Vec<(u64, Arc<dyn Release>)>;

thread_local! {
    /// The replies the running handler sent or dropped.
    static RECORDER: RefCell<Option<Recorded>> = const { RefCell::new(None) };
    /// Program order across a handler's replies and sends.
    static SEQ: Cell<u64> = const { Cell::new(0) };
}

fn next_seq() -> u64 {
    SEQ.with(|s| {
        let v = s.get();
        s.set(v + 1);
        v
    })
}

/// Records a reply's release as an effect of the running handler; outside a handler (a client
/// dropping a refused request, a report dropped) it takes effect at once.
pub(super) fn record_reply(r: Arc<dyn Release>) {
    let recorded = RECORDER.with(|rec| match rec.borrow_mut().as_mut() {
        Some(effects) => {
            effects.push((next_seq(), r.clone()));
            true
        }
        None => false,
    });
    if !recorded {
        r.release(true);
    }
}

/// Starts recording the replies of a handler (or `init`, `on_stop`).
pub(super) fn start_recording() {
    RECORDER.with(|r| *r.borrow_mut() = Some(Vec::new()));
}

/// Stops recording; returns what was recorded.
pub(super) fn stop_recording() -> Recorded {
    RECORDER.with(|r| r.borrow_mut().take().unwrap_or_default())
}

/// Which queue of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queue {
    Inbox,
    /// The lane of producer `n`.
    Lane(usize),
}

/// One queued item.
pub(crate) enum Item<M> {
    Msg(M, Option<AskTicket>),
    Flush(usize),
}

impl<M> Item<M> {
    pub(crate) fn into_msg(self) -> M {
        match self {
            Item::Msg(m, _) => m,
            _ => unreachable!("only messages are handed back"),
        }
    }
    fn is_message(&self) -> bool {
        !matches!(self, Item::Flush(_))
    }
}

/// What a client's send came to.
pub(crate) enum Sent<M> {
    Done(Result<(), SendError<Item<M>>>),
    /// The queue is full and the send waits for room (the item comes back to retry).
    Wait(Item<M>),
}

/// A handler's effect, released in program order.
pub(super) enum Effect<M> {
    Reply(Arc<dyn Release>),
    Send {
        to: usize,
        msg: M,
        /// A `DropOldest` eviction took its place: released, it is dropped and counted.
        evicted: bool,
    },
}

/// A worker's lifecycle in the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Running,
    /// Draining; handling stops at the deadline step, if any.
    Stopping(Option<u64>),
    Stopped,
    Failed,
}

/// One worker's queues and counters.
pub(super) struct Station<M> {
    pub(super) inbox: VecDeque<Item<M>>,
    pub(super) lanes: Vec<VecDeque<Item<M>>>,
    capacity: usize,
    overflow: Overflow,
    pub(super) effects: VecDeque<Effect<M>>,
    /// Room held in the inbox for handlers' sends not released yet.
    reserved: usize,
    pub(super) phase: Phase,
    pub(super) processed: u64,
    dropped: u64,
    unprocessed: Vec<M>,
    unprocessed_count: u64,
    evicted_flushes: Vec<usize>,
    pub(super) paused_until: u64,
    pub(super) panics: u64,
    pub(super) restarts: u64,
    outcome: Option<Outcome>,
}

impl<M> Station<M> {
    fn queue(&mut self, q: Queue) -> &mut VecDeque<Item<M>> {
        match q {
            Queue::Inbox => &mut self.inbox,
            Queue::Lane(p) => &mut self.lanes[p],
        }
    }
    fn sealed(&self) -> bool {
        matches!(self.phase, Phase::Stopped | Phase::Failed)
    }
    /// Every queue of this worker, the inbox first.
    pub(super) fn queues(&self) -> impl Iterator<Item = (Queue, &VecDeque<Item<M>>)> {
        std::iter::once((Queue::Inbox, &self.inbox)).chain(
            self.lanes
                .iter()
                .enumerate()
                .map(|(p, l)| (Queue::Lane(p), l)),
        )
    }
    /// Queues whose next item can be taken.
    pub(super) fn ready(&self) -> impl Iterator<Item = Queue> + '_ {
        self.queues().filter(|(_, q)| !q.is_empty()).map(|(q, _)| q)
    }
    pub(super) fn has_reserved(&self) -> bool {
        self.reserved > 0
    }
    /// Items queued on `q` plus, for the inbox, the room held for unreleased sends.
    fn used(&self, q: Queue) -> usize {
        match q {
            Queue::Inbox => self.inbox.len() + self.reserved,
            Queue::Lane(p) => self.lanes[p].len(),
        }
    }
    pub(super) fn is_empty(&self) -> bool {
        self.queues().all(|(_, q)| q.is_empty())
    }
}

struct FlushState {
    left: usize,
    failed: Option<usize>,
}

/// The simulated pool's shared state.
pub(crate) struct Net<M> {
    pub(super) stations: Vec<Station<M>>,
    lanes: usize,
    pub(super) clock: u64,
    /// Every `Ok` send (clients' and handlers').
    accepted: u64,
    flushes: Vec<FlushState>,
    /// Sends recorded by the running handler, with their place in its program order.
    pub(super) sends: Vec<(u64, Effect<M>)>,
    pub(super) trace: Option<Vec<String>>,
    pub(super) shutdown: bool,
}

impl<M: Debug> Net<M> {
    pub(super) fn new(configs: &[WorkerConfig], trace: bool) -> Self {
        let stations = configs
            .iter()
            .map(|cfg| Station {
                inbox: VecDeque::new(),
                lanes: Vec::new(),
                capacity: super::capacity_of(cfg),
                overflow: super::overflow_of(cfg),
                effects: VecDeque::new(),
                reserved: 0,
                phase: Phase::Running,
                processed: 0,
                dropped: 0,
                unprocessed: Vec::new(),
                unprocessed_count: 0,
                evicted_flushes: Vec::new(),
                paused_until: 0,
                panics: 0,
                restarts: 0,
                outcome: None,
            })
            .collect();
        Self {
            stations,
            lanes: 0,
            clock: 0,
            accepted: 0,
            flushes: Vec::new(),
            sends: Vec::new(),
            trace: trace.then(Vec::new),
            shutdown: false,
        }
    }

    /// Appends a line to the trace (only when tracing: lines are built lazily).
    pub(super) fn log(&mut self, line: impl FnOnce() -> String) {
        if let Some(t) = &mut self.trace {
            t.push(format!("{:>5}  {}", self.clock, line()));
        }
    }

    pub(super) fn workers(&self) -> usize {
        self.stations.len()
    }

    /// A new producer: one lane into every worker.
    pub(super) fn open_lanes(&mut self) -> usize {
        for st in &mut self.stations {
            st.lanes.push(VecDeque::new());
        }
        self.lanes += 1;
        self.lanes - 1
    }

    /// Whether a send waiting for room on queue `q` of worker `w` should try again.
    pub(super) fn has_room(&self, w: usize, q: Queue) -> bool {
        let st = &self.stations[w];
        st.sealed() || st.used(q) < st.capacity
    }

    /// A client's send by the worker's overflow policy.
    pub(super) fn client_send(
        &mut self,
        client: usize,
        w: usize,
        q: Queue,
        item: Item<M>,
        may_block: bool,
        what: &str,
    ) -> Sent<M> {
        if w >= self.stations.len() {
            return Sent::Done(Err(SendError::Unroutable(item)));
        }
        let label = match &item {
            Item::Msg(m, _) => format!("{m:?}"),
            Item::Flush(id) => format!("flush marker {id}"),
        };
        let st = &mut self.stations[w];
        if st.sealed() {
            self.log(|| format!("client {client} {what} to w{w} {q:?}: closed: {label}"));
            return Sent::Done(Err(SendError::Closed(item)));
        }
        let (cap, overflow) = (st.capacity, st.overflow);
        if st.used(q) < cap {
            return self.accept(w, q, item, || {
                format!("client {client} {what} to w{w} {q:?}: {label}")
            });
        }
        match (overflow, q) {
            _ if !item.is_message() => Sent::Wait(item),
            (Overflow::Block, _) if may_block => Sent::Wait(item),
            (Overflow::Block | Overflow::Reject, _) => {
                self.log(|| format!("client {client} {what} to w{w}: full: {label}"));
                Sent::Done(Err(SendError::Full(item)))
            }
            (Overflow::DropOldest, Queue::Inbox) => {
                self.evict_oldest(w);
                self.accept(w, q, item, || {
                    format!("client {client} {what} to w{w} (evicting): {label}")
                })
            }
            (Overflow::DropNewest | Overflow::DropOldest, _) => {
                self.stations[w].dropped += 1;
                self.accepted += 1;
                self.log(|| format!("client {client} {what} to w{w}: dropped: {label}"));
                drop(item);
                Sent::Done(Ok(()))
            }
        }
    }

    fn accept(
        &mut self,
        w: usize,
        q: Queue,
        item: Item<M>,
        line: impl FnOnce() -> String,
    ) -> Sent<M> {
        if item.is_message() {
            self.accepted += 1;
        }
        self.log(line);
        self.stations[w].queue(q).push_back(item);
        Sent::Done(Ok(()))
    }

    /// `DropOldest`: drops the oldest message of the inbox, passing flush markers on to be
    /// answered by the worker's next step (as a real eviction hands them over); with only held
    /// room left, the oldest unreleased send to `w` is dropped when it lands.
    fn evict_oldest(&mut self, w: usize) {
        while let Some(item) = self.stations[w].inbox.pop_front() {
            match item {
                Item::Flush(id) => self.stations[w].evicted_flushes.push(id),
                Item::Msg(m, _) => {
                    self.stations[w].dropped += 1;
                    self.log(|| format!("w{w} evicts {m:?}"));
                    return;
                }
            }
        }
        let pending = self.sends.iter_mut().map(|(_, e)| e).chain(
            self.stations
                .iter_mut()
                .flat_map(|st| st.effects.iter_mut()),
        );
        for e in pending {
            if let Effect::Send {
                to,
                evicted: e @ false,
                ..
            } = e
            {
                if *to == w {
                    *e = true;
                    self.stations[w].reserved -= 1;
                    return;
                }
            }
        }
    }

    /// A handler's send (never waits): holds room in the target's inbox now; the message takes
    /// its place at the tail when the effect is released (the handler's push, in its program
    /// order).
    pub(super) fn context_send(
        &mut self,
        from: usize,
        to: usize,
        msg: M,
    ) -> Result<(), SendError<M>> {
        let Some(st) = self.stations.get(to) else {
            return Err(SendError::Unroutable(msg));
        };
        if st.sealed() {
            return Err(SendError::Closed(msg));
        }
        if st.used(Queue::Inbox) >= st.capacity {
            match st.overflow {
                Overflow::Block | Overflow::Reject => {
                    self.log(|| format!("w{from} send to w{to}: full: {msg:?}"));
                    return Err(SendError::Full(msg));
                }
                Overflow::DropNewest => {
                    self.stations[to].dropped += 1;
                    self.accepted += 1;
                    self.log(|| format!("w{from} send to w{to}: dropped: {msg:?}"));
                    return Ok(());
                }
                Overflow::DropOldest => self.evict_oldest(to),
            }
        }
        self.accepted += 1;
        self.stations[to].reserved += 1;
        self.log(|| format!("w{from} sends to w{to} (not yet pushed): {msg:?}"));
        self.sends.push((
            next_seq(),
            Effect::Send {
                to,
                msg,
                evicted: false,
            },
        ));
        Ok(())
    }

    /// Moves the effects the handler of worker `w` recorded (replies and sends) to its effect
    /// queue, in program order.
    pub(super) fn commit_effects(&mut self, w: usize, replies: Recorded) {
        let mut all: Vec<(u64, Effect<M>)> = replies
            .into_iter()
            .map(|(seq, r)| (seq, Effect::Reply(r)))
            .collect();
        all.append(&mut self.sends);
        all.sort_by_key(|(seq, _)| *seq);
        self.stations[w]
            .effects
            .extend(all.into_iter().map(|(_, e)| e));
    }

    /// Releases worker `w`'s oldest effect; a reply is dropped instead when `drop_reply`.
    pub(super) fn release(&mut self, w: usize, drop_reply: bool) {
        let Some(effect) = self.stations[w].effects.pop_front() else {
            return;
        };
        match effect {
            Effect::Reply(r) => {
                self.log(|| {
                    let what = if drop_reply {
                        "dropped (fault)"
                    } else {
                        "visible"
                    };
                    format!("w{w} reply {what}")
                });
                r.release(!drop_reply);
            }
            Effect::Send {
                to, msg, evicted, ..
            } if evicted => {
                self.stations[to].dropped += 1;
                self.log(|| format!("w{w} send to w{to} pushed: evicted at once: {msg:?}"));
            }
            Effect::Send { to, msg, .. } => self.land(w, to, msg),
        }
    }

    /// Pushes a handler's message to the tail of its target's inbox (or, if the target failed
    /// meanwhile, returns it unprocessed: its send had succeeded).
    fn land(&mut self, from: usize, to: usize, msg: M) {
        self.log(|| format!("w{from} send to w{to} pushed: {msg:?}"));
        let st = &mut self.stations[to];
        st.reserved -= 1;
        if st.sealed() {
            st.unprocessed.push(msg);
            st.unprocessed_count += 1;
        } else {
            st.inbox.push_back(Item::Msg(msg, None));
        }
    }

    /// Takes the next item of queue `q` of worker `w`.
    pub(super) fn take(&mut self, w: usize, q: Queue) -> Option<Item<M>> {
        self.stations[w].queue(q).pop_front()
    }

    /// Answers the flush markers evictions passed to worker `w`.
    pub(super) fn answer_evicted_flushes(&mut self, w: usize) {
        for id in std::mem::take(&mut self.stations[w].evicted_flushes) {
            self.flush_reached(id);
        }
    }

    /// Seals worker `w`: everything queued is returned unprocessed (asks fail at once, flushes
    /// fail), later sends fail.
    pub(super) fn seal(&mut self, w: usize, phase: Phase, outcome: Outcome) {
        let st = &mut self.stations[w];
        st.phase = phase;
        st.outcome = Some(outcome);
        let mut items: Vec<Item<M>> = st.inbox.drain(..).collect();
        for lane in &mut st.lanes {
            items.extend(lane.drain(..));
        }
        let evicted = std::mem::take(&mut st.evicted_flushes);
        for item in items {
            match item {
                Item::Msg(m, ticket) => {
                    if let Some(t) = ticket {
                        t.abort();
                    }
                    let st = &mut self.stations[w];
                    st.unprocessed.push(m);
                    st.unprocessed_count += 1;
                }
                Item::Flush(id) => self.flush_marker_failed(id, w),
            }
        }
        for id in evicted {
            if phase == Phase::Stopped {
                self.flush_reached(id);
            } else {
                self.flush_marker_failed(id, w);
            }
        }
    }

    pub(super) fn new_flush(&mut self, markers: usize) -> usize {
        self.flushes.push(FlushState {
            left: markers,
            failed: None,
        });
        self.flushes.len() - 1
    }

    pub(super) fn flush_reached(&mut self, id: usize) {
        self.flushes[id].left -= 1;
    }

    pub(super) fn flush_marker_failed(&mut self, id: usize, w: usize) {
        let f = &mut self.flushes[id];
        f.left -= 1;
        f.failed.get_or_insert(w);
    }

    pub(super) fn flush_done(&self, id: usize) -> Option<Result<(), Error>> {
        let f = &self.flushes[id];
        (f.left == 0).then(|| match f.failed {
            None => Ok(()),
            Some(worker) => Err(Error::Unflushed { worker }),
        })
    }

    /// Starts a shutdown: every worker drains, until `steps` from now if given.
    pub(super) fn request_shutdown(&mut self, steps: Option<u64>, by: &str) {
        let deadline = steps.map(|s| self.clock + s);
        self.shutdown = true;
        self.log(|| format!("shutdown by {by}, deadline {deadline:?}"));
        for st in &mut self.stations {
            st.phase = match (st.phase, deadline) {
                (Phase::Running, d) | (Phase::Stopping(None), d) => Phase::Stopping(d),
                (Phase::Stopping(Some(a)), Some(b)) => Phase::Stopping(Some(a.min(b))),
                (other, _) => other,
            };
        }
    }

    pub(super) fn all_ended(&self) -> bool {
        self.stations.iter().all(Station::sealed)
    }

    /// The report of every worker, with their unprocessed messages (taken out once).
    pub(super) fn take_reports(&mut self) -> Vec<WorkerReport<M>> {
        self.stations
            .iter_mut()
            .enumerate()
            .map(|(index, st)| WorkerReport {
                index,
                outcome: st.outcome.clone().unwrap_or(Outcome::Completed),
                counters: Counters {
                    processed: st.processed,
                    dropped: st.dropped,
                    panics: st.panics,
                    restarts: st.restarts,
                },
                unprocessed: std::mem::take(&mut st.unprocessed),
                abandoned: 0,
            })
            .collect()
    }

    /// `Ok` sends against processed + dropped + unprocessed: `Err` names the difference.
    pub(super) fn balance(&self) -> Result<(), String> {
        let accounted: u64 = self
            .stations
            .iter()
            .map(|s| s.processed + s.dropped + s.unprocessed_count)
            .sum();
        if accounted == self.accepted {
            Ok(())
        } else {
            Err(format!(
                "unbalanced: {} Ok sends, {accounted} processed + dropped + unprocessed",
                self.accepted
            ))
        }
    }
}
