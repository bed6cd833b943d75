//! A read's shard operations, grouped per scheduler tick and sent one message per shard.

use std::rc::Rc;
use std::time::{Duration, Instant};

use corelane::prelude::*;
use tokio::sync::oneshot;

use super::front::Front;
use crate::resp::Resp;
use crate::shard::{Op, Req};

/// Key-value pairs bound for one shard.
pub(super) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Where one shard operation's answer will be: (shard, position in that shard's batch).
pub(super) type AnswerAt = (usize, usize);

/// The operations of one read, grouped by shard, in command order.
pub(super) struct Batch {
    pub(super) ops: Vec<Vec<Op>>,
}

/// Every shard's answers to its part of a batch (`None` once taken).
pub(super) struct Results(pub(super) Vec<Vec<Option<Resp>>>);

impl Results {
    /// Sets shard `shard`'s answers.
    pub(super) fn put(&mut self, shard: usize, answers: Vec<Option<Resp>>) {
        if self.0.len() <= shard {
            self.0.resize_with(shard + 1, Vec::new);
        }
        self.0[shard] = answers;
    }

    pub(super) fn take(&mut self, (shard, pos): AnswerAt) -> Resp {
        self.0
            .get_mut(shard)
            .and_then(|answers| answers.get_mut(pos))
            .and_then(Option::take)
            .unwrap_or_else(|| Resp::err("shard unavailable"))
    }
}

impl Batch {
    pub(super) fn new(shards: usize) -> Self {
        Self {
            ops: (0..shards).map(|_| Vec::new()).collect(),
        }
    }

    pub(super) fn add(&mut self, shard: usize, op: Op) -> AnswerAt {
        self.ops[shard].push(op);
        (shard, self.ops[shard].len() - 1)
    }

    /// The one shard this batch has operations for, if exactly one.
    pub(super) fn only_shard(&self) -> Option<usize> {
        let mut busy = self
            .ops
            .iter()
            .enumerate()
            .filter(|(_, ops)| !ops.is_empty());
        match (busy.next(), busy.next()) {
            (Some((shard, _)), None) => Some(shard),
            _ => None,
        }
    }

    pub(super) fn add_to_every_shard(&mut self, make: impl Fn() -> Op) -> Vec<AnswerAt> {
        (0..self.ops.len())
            .map(|shard| self.add(shard, make()))
            .collect()
    }
}

/// The shard operations of every connection that read requests in one scheduler tick.
///
/// Connections that become readable together (after one poll of the network) each append their
/// batch here; the flusher, woken by the first of them and queued behind the rest, sends each
/// shard the whole group as one message and hands every connection its part of the answers. With
/// 50 pipelining clients this is one hop to a shard (one wake-up at most) per tick instead of one
/// per connection read.
pub(super) struct Group {
    /// Per shard, the operations of every member, member after member.
    pub(super) batch: Batch,
    /// Per member: how many operations it added to each shard, and where its answers go.
    pub(super) members: Vec<(Vec<usize>, oneshot::Sender<Results>)>,
}

impl Group {
    pub(super) fn new(shards: usize) -> Self {
        Self {
            batch: Batch::new(shards),
            members: Vec::new(),
        }
    }
}

/// Runs `batch` (emptying it): this shard's operations at once, the others' through the current
/// group, whose answers it waits for. A batch without shard operations (PING, errors) is
/// answered at once.
pub(super) async fn submit(front: &Front, batch: &mut Batch) -> Results {
    // No clock read for a read without local operations (every read of a remote-only client).
    let local =
        (!batch.ops[front.me].is_empty()).then(|| front.apply(batch.ops[front.me].drain(..)));
    let mut results = if batch.ops.iter().all(Vec::is_empty) {
        Results(Vec::new())
    } else {
        let (tx, rx) = oneshot::channel();
        {
            let mut group = front.group.borrow_mut();
            let counts = group
                .batch
                .ops
                .iter_mut()
                .zip(&mut batch.ops)
                .map(|(all, mine)| {
                    let n = mine.len();
                    all.append(mine);
                    n
                })
                .collect();
            group.members.push((counts, tx));
            if group.members.len() == 1 {
                front.flush.notify_one();
            }
        }
        // A group that could not be sent (pool stopped) drops the sender: every answer is
        // missing.
        rx.await.unwrap_or(Results(Vec::new()))
    };
    if let Some(local) = local {
        results.put(front.me, local);
    }
    results
}

/// Sends each group to its shards (one message per shard) and, in a task of its own, hands the
/// answers back to the group's members, so the next group can go out meanwhile. A full inbox makes
/// it yield until there is room.
pub(super) async fn flusher(front: Rc<Front>) {
    loop {
        front.flush.notified().await;
        let group = std::mem::replace(&mut *front.group.borrow_mut(), Group::new(front.shards()));
        if group.members.is_empty() {
            continue;
        }
        let mut answers = Vec::with_capacity(group.batch.ops.len());
        for (shard, ops) in group.batch.ops.into_iter().enumerate() {
            if ops.is_empty() {
                answers.push(None);
                continue;
            }
            let (reply, answer) = Reply::pair_async();
            let mut msg = Req::Ops { ops, reply };
            let sent = loop {
                match front.outbox.send_to(shard, msg) {
                    Ok(()) => break true,
                    Err(SendError::Full(back)) => {
                        msg = back;
                        tokio::task::yield_now().await;
                    }
                    Err(_) => break false,
                }
            };
            answers.push(sent.then_some(answer));
        }
        front.in_flight.set(front.in_flight.get() + 1);
        front.sent.notify_one();
        let in_flight = front.in_flight.clone();
        tokio::task::spawn_local(async move {
            hand_back(answers, group.members).await;
            in_flight.set(in_flight.get() - 1);
        });
    }
}

/// While groups are out, keeps this thread polling (yielding, which polls the network without
/// blocking) for at most `SPIN` per wait, instead of sleeping in `epoll_wait` and paying a wake-up
/// when the answers arrive moments later.
pub(super) async fn keep_warm(front: Rc<Front>) {
    const SPIN: Duration = Duration::from_micros(200);
    loop {
        front.sent.notified().await;
        poll_while(|| front.in_flight.get() > 0, SPIN).await;
    }
}

/// Keeps the event loop turning (yielding, which polls the network without blocking) while
/// `cond` holds, for at most `limit`. The clock is read every 8th turn: a read per turn was 7% of
/// a busy shard's samples.
pub(super) async fn poll_while(cond: impl Fn() -> bool, limit: Duration) {
    let start = Instant::now();
    let mut turns = 0u32;
    while cond() && (!turns.is_multiple_of(8) || start.elapsed() < limit) {
        turns = turns.wrapping_add(1);
        tokio::task::yield_now().await;
    }
}

/// Waits for every shard's answers to one group and splits them among its members, in order.
pub(super) async fn hand_back(
    answers: Vec<Option<corelane::worker::Answer<Vec<Resp>>>>,
    members: Vec<(Vec<usize>, oneshot::Sender<Results>)>,
) {
    let mut per_shard = Vec::with_capacity(answers.len());
    for answer in answers {
        let got = match answer {
            Some(a) => a.wait_async::<Req>().await.unwrap_or_default(),
            None => Vec::new(),
        };
        per_shard.push(got.into_iter());
    }
    for (counts, tx) in members {
        let results = per_shard
            .iter_mut()
            .zip(counts)
            .map(|(answers, n)| answers.by_ref().take(n).map(Some).collect())
            .collect();
        let _ = tx.send(Results(results)); // the connection may have left
    }
}
