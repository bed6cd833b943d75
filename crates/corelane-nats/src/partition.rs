//! One owned partition: take it over (bump its epoch), deliver its stream in order from the
//! last committed sequence into the local pool, answer its asks, and commit what the workers
//! applied.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::consumer::{push, DeliverPolicy};
use async_nats::jetstream::kv;
use corelane_worker::Dispatch;
use futures_util::future::OptionFuture;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;

use crate::dead::{self, Letter, Reason};
use crate::error::{nats, NatsError};
use crate::node::{lease_key, Remote, Shared, Task};
use crate::snapshot::{self, Requested, Restore, SnapshotRef};
use crate::wire::{AnswerFrame, AskFrame, Offset, Record};
use crate::Delivery;

/// A partition this node owns: its lease revision and its runner.
pub(crate) struct Owned {
    pub(crate) revision: u64,
    /// When the last write of the lease that succeeded was sent: the lease holds at least
    /// until this plus the TTL (the server counts from when it got the write).
    pub(crate) renewed: Instant,
    pub(crate) task: Task,
    stop: watch::Sender<bool>,
}

impl Owned {
    /// Stops the runner gracefully (it commits what was applied) and waits for it.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stops the runner at once, committing nothing: the lease is lost, another node may own
    /// the partition already.
    pub(crate) fn abort(self) {
        self.task.abort();
    }
}

/// Starts the runner of partition `p`, whose lease has `revision`, written by a request sent at
/// `renewed`.
pub(crate) fn start<W: Remote>(
    shared: Arc<Shared<W>>,
    p: u32,
    revision: u64,
    renewed: Instant,
) -> Owned {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        // An error ends the runner; the ownership loop sees it finished and drops the lease.
        let _ = run(shared, p, stopped).await;
    });
    Owned {
        revision,
        renewed,
        task,
        stop,
    }
}

/// An ask held until its sequence is sent into the pool: where to answer, and the decoded
/// request (or why it could not be decoded, answered at once).
struct Waiting<M> {
    reply_to: async_nats::Subject,
    frame: Result<AskFrame<M>, String>,
}

impl<M: serde::de::DeserializeOwned> Waiting<M> {
    /// Decodes a request once; `None` if it has no reply subject (nobody to answer).
    fn new(request: async_nats::Message) -> Option<Self> {
        Some(Self {
            reply_to: request.reply?,
            frame: postcard::from_bytes(&request.payload)
                .map_err(|e| format!("undecodable ask: {e}")),
        })
    }

    /// The sequence the ask waits for (0, answered at once, if it did not decode).
    fn after(&self) -> u64 {
        self.frame.as_ref().map_or(0, |f| f.after)
    }
}

/// What the runner keeps between events.
struct Progress<M> {
    /// The last committed offset and its revision in the offsets bucket.
    committed: Offset,
    revision: u64,
    /// The last sequence sent into the pool.
    sent: u64,
    /// Asks waiting for a sequence to be applied.
    waiting: Vec<Waiting<M>>,
    /// When the last snapshot was asked for; `None` when the workers keep none.
    snapshot_asked: Option<tokio::time::Instant>,
}

impl<M> Progress<M> {
    /// This owner's epoch.
    fn epoch(&self) -> u64 {
        self.committed.epoch
    }
}

/// A partition's open sources: its messages and its asks.
struct Sources {
    messages: push::Ordered,
    asks: async_nats::Subscriber,
}

async fn run<W: Remote>(
    shared: Arc<Shared<W>>,
    p: u32,
    mut stop: watch::Receiver<bool>,
) -> Result<(), NatsError> {
    let (mut progress, mut sources) = open(&shared, p).await?;
    let ended = deliver_until_stopped(&shared, p, &mut progress, &mut sources, &mut stop).await;
    if ended.is_ok() {
        // A graceful stop: what was applied, and a snapshot of it, are handed over.
        let requested = ask_snapshot(&shared, p, &mut progress, true).await;
        let done = commit(
            shared.clone(),
            p,
            progress.committed.clone(),
            progress.revision,
            progress.sent,
            requested,
        )
        .await;
        finish_commit(Ok(done), &mut progress)?;
    }
    notify(&shared, || W::revoked(p)).await;
    ended
}

/// Takes the partition over, restores its snapshot (if any, and the workers restore), and opens
/// its messages from where delivery resumes, and its asks.
async fn open<W: Remote>(
    shared: &Arc<Shared<W>>,
    p: u32,
) -> Result<(Progress<W::Wire>, Sources), NatsError> {
    let (committed, revision) = take_over(shared, p).await?;
    // Letters left by an earlier runner of this partition that did not commit them: their
    // messages come again.
    dead::discard(shared.receipt.node, Some(p));
    let epoch = committed.epoch;
    notify(shared, || W::assigned(p, epoch)).await;
    let resume_after = resume_point(shared, p, &committed).await?;
    let messages = consume(shared, p, resume_after).await?;
    let asks = shared
        .nats
        .subscribe(shared.topology.ask_subject(p))
        .await
        .map_err(nats)?;
    let progress = Progress {
        committed,
        revision,
        sent: resume_after,
        waiting: Vec::new(),
        snapshot_asked: Some(tokio::time::Instant::now()),
    };
    Ok((progress, Sources { messages, asks }))
}

/// The sequence delivery resumes after: what the current snapshot covers once the workers
/// restored it; else 0 (replay) or the last commit, as configured. A snapshot that cannot be
/// read (none of it was given to the workers) is replaced by a replay from the start.
async fn resume_point<W: Remote>(
    shared: &Shared<W>,
    p: u32,
    committed: &Offset,
) -> Result<u64, NatsError> {
    if let Some(current) = &committed.snapshot {
        match snapshot::restore(shared, p, current).await {
            Ok(true) => return Ok(current.covers),
            Ok(false) => {}
            Err(Restore::Unreadable) => {
                shared.snapshot_failures.fetch_add(1, Ordering::Relaxed);
                return Ok(0);
            }
            Err(Restore::Stopped(e)) => return Err(e),
        }
    }
    Ok(if shared.replay_from_start {
        0
    } else {
        committed.applied
    })
}

/// Delivers the partition's messages into the pool, answers its asks and commits, until a
/// stop (`Ok`) or a failure.
async fn deliver_until_stopped<W: Remote>(
    shared: &Arc<Shared<W>>,
    p: u32,
    progress: &mut Progress<W::Wire>,
    sources: &mut Sources,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), NatsError> {
    let mut commits = tokio::time::interval(shared.topology.commit_interval());
    // At most one commit in flight; delivery goes on meanwhile.
    let mut committing: Option<Commit> = None;
    // One future for the whole loop: it stays registered with the stop signal.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    let ended = loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break Ok(()),
            msg = sources.messages.next() => match msg {
                Some(Ok(msg)) => {
                    deliver(shared, p, msg, progress).await?;
                    deliver_ready(shared, p, &mut sources.messages, progress).await?;
                }
                Some(Err(e)) => break Err(nats(e)),
                None => break Ok(()),
            },
            Some(request) = sources.asks.next() => {
                progress.waiting.extend(Waiting::new(request));
                answer_ready(shared, progress);
            }
            _ = commits.tick(), if committing.is_none() => {
                let requested = ask_snapshot(shared, p, progress, false).await;
                committing = Some(start_commit(shared, p, progress, requested));
            }
            Some(done) = OptionFuture::from(committing.as_mut().map(|c| &mut c.0)) => {
                committing = None;
                finish_commit(done, progress)?;
            }
        }
    };
    if let Some(mut in_flight) = committing.take() {
        finish_commit((&mut in_flight.0).await, progress)?;
    }
    ended
}

/// Asks every worker for its part of a snapshot at this point of the delivery, if snapshots are
/// on, the workers keep them, something was delivered since the current one, and the interval
/// passed (or `now`).
async fn ask_snapshot<W: Remote>(
    shared: &Shared<W>,
    p: u32,
    progress: &mut Progress<W::Wire>,
    now: bool,
) -> Option<Requested> {
    let interval = shared.topology.snapshot_interval()?;
    let asked = progress.snapshot_asked?;
    let covered = progress.committed.snapshot.as_ref().map_or(0, |s| s.covers);
    if progress.sent <= covered || (!now && asked.elapsed() < interval) {
        return None;
    }
    let requested = snapshot::request(shared, p, progress.sent).await;
    progress.snapshot_asked = requested.as_ref().map(|_| tokio::time::Instant::now());
    requested
}

/// The partition's messages after sequence `after`, in order, from an ordered consumer.
async fn consume<W: Remote>(
    shared: &Shared<W>,
    p: u32,
    after: u64,
) -> Result<push::Ordered, NatsError> {
    let stream = shared
        .js
        .get_stream(shared.topology.stream(p))
        .await
        .map_err(nats)?;
    let consumer = stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: shared.nats.new_inbox(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
            ..Default::default()
        })
        .await
        .map_err(nats)?;
    consumer.messages().await.map_err(nats)
}

/// Bumps the partition's epoch with a compare-and-set: from now on the previous owner's
/// commits are refused. Returns the offset to resume after, and its revision.
async fn take_over<W: Remote>(shared: &Shared<W>, p: u32) -> Result<(Offset, u64), NatsError> {
    let key = lease_key(p);
    let fenced = NatsError::Fenced {
        partition: p,
        epoch: 0,
    };
    match shared.offsets.entry(key.as_str()).await.map_err(nats)? {
        Some(entry) if entry.operation == kv::Operation::Put => {
            let old: Offset = postcard::from_bytes(&entry.value)?;
            let next = Offset {
                epoch: old.epoch + 1,
                ..old
            };
            let bytes = postcard::to_stdvec(&next)?;
            let revision = shared
                .offsets
                .update(&key, bytes.into(), entry.revision)
                .await
                .map_err(|_| fenced)?;
            Ok((next, revision))
        }
        _ => {
            let next = Offset {
                epoch: 1,
                ..Offset::default()
            };
            let bytes = postcard::to_stdvec(&next)?;
            let revision = shared
                .offsets
                .create(&key, bytes.into())
                .await
                .map_err(|_| fenced)?;
            Ok((next, revision))
        }
    }
}

/// The most messages delivered in one go from what the consumer holds already, before the
/// runner looks at its asks, commits and stop again.
const BURST: usize = 128;

/// Delivers the messages the consumer holds already (up to [`BURST`]) without waiting: one
/// pass of the runner's select per burst, not per message.
async fn deliver_ready<W: Remote>(
    shared: &Shared<W>,
    p: u32,
    messages: &mut push::Ordered,
    progress: &mut Progress<W::Wire>,
) -> Result<(), NatsError> {
    for _ in 0..BURST {
        match messages.next().now_or_never() {
            Some(Some(Ok(msg))) => deliver(shared, p, msg, progress).await?,
            Some(Some(Err(e))) => return Err(nats(e)),
            // Nothing ready, or the end: the select sees which.
            Some(None) | None => return Ok(()),
        }
    }
    Ok(())
}

/// Sends one delivered message into the pool (to the worker owning its key), or notes an
/// undecodable one as a dead letter; then answers the asks it unblocked.
async fn deliver<W: Remote>(
    shared: &Shared<W>,
    p: u32,
    msg: async_nats::jetstream::Message,
    progress: &mut Progress<W::Wire>,
) -> Result<(), NatsError> {
    let sequence = match msg.reply.as_deref().and_then(stream_sequence) {
        Some(sequence) => sequence,
        None => msg.info().map_err(nats)?.stream_sequence,
    };
    match postcard::from_bytes::<Record<W::Wire>>(&msg.payload) {
        Ok(record) => {
            let delivery = Delivery::with_receipt(p, sequence, progress.epoch(), shared.receipt);
            shared
                .pool
                .send_async(&record.key[..], W::delivered(record.msg, delivery))
                .await
                .map_err(|e| NatsError::Remote(e.to_string()))?;
        }
        Err(_) => dead::push(Letter {
            node: shared.receipt.node,
            partition: p,
            sequence,
            payload: Some(msg.payload.clone()),
            reason: Reason::Undecodable,
        }),
    }
    progress.sent = progress.sent.max(sequence);
    answer_ready(shared, progress);
    Ok(())
}

/// The stream sequence in a JetStream message's reply subject: `$JS.ACK.` then
/// `stream.consumer.delivered.sequence.consumer-sequence.time.pending`, or the same after a
/// domain and an account hash, with a token after (ADR-15). `None` for another form. It reads
/// only that token (`Message::info` also parses the timestamp).
fn stream_sequence(reply: &str) -> Option<u64> {
    let rest = reply.strip_prefix("$JS.ACK.")?;
    let index = match rest.split('.').count() {
        7 => 3,
        n if n >= 10 => 5,
        _ => return None,
    };
    rest.split('.').nth(index)?.parse().ok()
}

/// Sends every waiting ask whose sequence was sent into the pool; each is answered by a task
/// of its own, so the runner does not wait for handlers.
fn answer_ready<W: Remote>(shared: &Shared<W>, progress: &mut Progress<W::Wire>) {
    if progress.waiting.is_empty() {
        return;
    }
    let sent = progress.sent;
    let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut progress.waiting)
        .into_iter()
        .partition(|ask| ask.after() <= sent);
    progress.waiting = waiting;
    for ask in ready {
        let (pool, nats) = (shared.pool.clone(), shared.nats.clone());
        tokio::spawn(async move {
            let answer: AnswerFrame<W::Answer> = match ask.frame {
                Ok(frame) => pool
                    .ask_async(&frame.key[..], |reply| W::asked(frame.msg, reply))
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            if let Ok(bytes) = postcard::to_stdvec(&answer) {
                let _ = nats.publish(ask.reply_to, bytes.into()).await;
            }
        });
    }
}

/// Commits what the workers applied: waits until every message sent into the pool is handled
/// (a flush), publishes the dead letters among them, stores the snapshot asked for (if any),
/// then writes the offset with a compare-and-set on its revision. A refused write means another
/// node took the partition over: the runner stops; one that got no answer is left to the next
/// commit. Returns the new offset and its revision (the
/// old ones when there was nothing to commit).
async fn commit<W: Remote>(
    shared: Arc<Shared<W>>,
    p: u32,
    committed: Offset,
    revision: u64,
    sent: u64,
    requested: Option<Requested>,
) -> Result<(Offset, u64), NatsError> {
    if sent <= committed.applied && requested.is_none() {
        return Ok((committed, revision));
    }
    let pool = shared.pool.clone();
    tokio::task::spawn_blocking(move || pool.flush())
        .await
        .map_err(|e| NatsError::Remote(e.to_string()))?
        .map_err(NatsError::Stopped)?;
    let letters = dead::take(shared.receipt.node, p, sent);
    if let Err(e) = dead::publish(&shared.js, &shared.topology, &letters).await {
        // They wait for the next commit (the stream drops a letter published twice).
        letters.into_iter().for_each(dead::push);
        return Err(e);
    }
    let snapshot = store_snapshot(&shared, p, &committed, requested).await;
    let next = Offset {
        epoch: committed.epoch,
        applied: sent.max(committed.applied),
        snapshot,
    };
    let bytes = postcard::to_stdvec(&next)?;
    match shared
        .offsets
        .update(lease_key(p), bytes.into(), revision)
        .await
    {
        Ok(revision) => {
            if committed.snapshot != next.snapshot {
                shared.snapshots_stored.fetch_add(1, Ordering::Relaxed);
                if let Some(old) = &committed.snapshot {
                    snapshot::discard(&shared, old).await;
                }
            }
            Ok((next, revision))
        }
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
            shared.fenced.fetch_add(1, Ordering::Relaxed);
            Err(NatsError::Fenced {
                partition: p,
                epoch: next.epoch,
            })
        }
        // No answer: the next commit tries again.
        Err(e) => Err(nats(e)),
    }
}

/// Stores the snapshot asked for, if any, and returns the one the commit makes current: the
/// new one, or the current one when none was asked for or it could not be stored (too large
/// for the bucket, say).
async fn store_snapshot<W: Remote>(
    shared: &Shared<W>,
    p: u32,
    committed: &Offset,
    requested: Option<Requested>,
) -> Option<SnapshotRef> {
    let Some(requested) = requested else {
        return committed.snapshot.clone();
    };
    match snapshot::store(shared, p, committed.epoch, requested).await {
        Ok(stored) => Some(stored),
        Err(_) => {
            shared.snapshot_failures.fetch_add(1, Ordering::Relaxed);
            committed.snapshot.clone()
        }
    }
}

/// Starts a commit of what was sent so far (and of the snapshot asked for), off the delivery
/// path.
fn start_commit<W: Remote>(
    shared: &Arc<Shared<W>>,
    p: u32,
    progress: &Progress<W::Wire>,
    requested: Option<Requested>,
) -> Commit {
    Commit(tokio::spawn(commit(
        shared.clone(),
        p,
        progress.committed.clone(),
        progress.revision,
        progress.sent,
        requested,
    )))
}

/// Records a finished commit in `progress`. A commit that got no answer from NATS (a timeout,
/// a bucket electing its leader) changes nothing: the next one covers what it would have.
///
/// # Errors
/// The commit was refused (another node took the partition over) or the pool stopped: the
/// runner ends.
fn finish_commit<M>(
    done: Result<Result<(Offset, u64), NatsError>, tokio::task::JoinError>,
    progress: &mut Progress<M>,
) -> Result<(), NatsError> {
    match done.map_err(|e| NatsError::Remote(e.to_string()))? {
        Ok((committed, revision)) => {
            progress.committed = committed;
            progress.revision = revision;
            Ok(())
        }
        Err(NatsError::Nats(_)) => Ok(()),
        Err(refused) => Err(refused),
    }
}

/// A commit in flight, aborted if the runner is (a runner stopped for a lost lease must not
/// commit afterwards).
struct Commit(tokio::task::JoinHandle<Result<(Offset, u64), NatsError>>);

impl Drop for Commit {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends `make()`'s message, if any, to every worker.
async fn notify<W: Remote>(shared: &Shared<W>, make: impl Fn() -> Option<W::Message>) {
    for worker in 0..shared.pool.workers() {
        if let Some(msg) = make() {
            let _ = shared.pool.send_to_async(worker, msg).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both reply-subject forms of ADR-15 give their stream sequence (the fourth token after
    /// `$JS.ACK.`, or the sixth after a domain and an account hash).
    #[test]
    fn the_stream_sequence_is_read_from_both_reply_subject_forms() {
        for reply in [
            "$JS.ACK.orders_p3.cons1.1.4242.17.1733300000000000000.9",
            "$JS.ACK.hub.ACCHASH.orders_p3.cons1.1.4242.17.1733300000000000000.9.tok",
        ] {
            assert_eq!(stream_sequence(reply), Some(4242), "{reply}");
        }
        assert_eq!(stream_sequence("_INBOX.abc"), None);
        assert_eq!(stream_sequence("$JS.ACK.a.b.c"), None);
        assert_eq!(stream_sequence("$JS.ACK.s.c.1.x.17.1.9"), None);
    }

    /// An ask's `after` survives the trip: the owner must hold the ask until that sequence (a
    /// frame read without its message type lost it, and asks were answered at once).
    #[test]
    fn a_waiting_ask_keeps_the_sequence_it_waits_for() {
        let frame = AskFrame {
            after: 42,
            key: b"k".to_vec(),
            msg: "payload".to_string(),
        };
        let message = async_nats::Message {
            subject: "p.ask.0".into(),
            reply: Some("_INBOX.x".into()),
            payload: postcard::to_stdvec(&frame).unwrap().into(),
            headers: None,
            status: None,
            description: None,
            length: 0,
        };
        let waiting = Waiting::<String>::new(message).expect("it has a reply subject");
        assert_eq!(waiting.after(), 42);
        assert_eq!(waiting.frame.unwrap().msg, "payload");
    }
}
