//! A node: a local pool behind the partitions it owns. Ownership is a lease per partition in a
//! key-value bucket, taken with `create`, renewed with a revision-checked `update`, expiring
//! with the bucket's TTL; every node takes at most ceil(P / N) of them (N: live nodes, from a
//! second bucket) and gives back what it holds above that, so a node that joins gets its share.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_nats::jetstream::{self, kv, object_store};
use corelane_worker::{Pool, Reply, Worker};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::dead::{self, Letter, Reason, Receipt};
use crate::error::{nats, NatsError};
use crate::partition::{self, Owned};
use crate::{KeyState, Snapshot, Topology};

/// How a [`Worker`] is reached through NATS: what its messages are on the wire, and how a
/// delivered message or an ask becomes one of its messages. The worker itself is unchanged.
pub trait Remote: Worker {
    /// A message as published by [`Client::send`](crate::Client::send).
    type Wire: Serialize + DeserializeOwned + Send + 'static;
    /// An ask's answer, as [`Client::ask`](crate::Client::ask) returns it.
    type Answer: Serialize + DeserializeOwned + Send + 'static;

    /// The worker message for a delivered one. `delivery` says where it came from: a worker
    /// that keeps the last applied sequence per partition can drop what a takeover redelivers.
    fn delivered(msg: Self::Wire, delivery: Delivery) -> Self::Message;

    /// The worker message for an ask, answered through `reply`.
    fn asked(msg: Self::Wire, reply: Reply<Self::Answer>) -> Self::Message;

    /// A message for every worker when this node takes `partition` under `epoch` (to rebuild
    /// its state, for example). The default sends nothing.
    fn assigned(partition: u32, epoch: u64) -> Option<Self::Message> {
        let _ = (partition, epoch);
        None
    }

    /// A message for every worker when this node gives `partition` up (to drop its state).
    /// The default sends nothing.
    fn revoked(partition: u32) -> Option<Self::Message> {
        let _ = partition;
        None
    }

    /// A message asking a worker for the state it holds for `partition`'s keys, answered with a
    /// [`Snapshot`] through `reply`. With [`Topology::with_snapshot_interval`], the owner asks
    /// every worker at one point of the partition's delivery (each answers after handling what
    /// came before), stores the parts as one object with the stream sequence they cover, and
    /// makes it current with its next commit (refused once another node took over). The default
    /// sends nothing: no snapshots.
    fn snapshot(partition: u32, reply: Reply<Snapshot>) -> Option<Self::Message> {
        let _ = (partition, reply);
        None
    }

    /// A message giving one key's state from the current snapshot of a partition this node
    /// takes: sent to the worker owning the key, after [`Remote::assigned`] and before any of
    /// the partition's messages, which then resume after [`KeyState::covers`]. Return a message
    /// for every key or for none; the default sends nothing, and delivery then starts as if
    /// there were no snapshot.
    fn restore(state: KeyState) -> Option<Self::Message> {
        let _ = state;
        None
    }
}

/// Where a delivered message came from, and the node's receipt for it.
///
/// Keep it in the worker message until the handler is done: should the handler panic while the
/// message holds it (it is dropped during the unwinding), the node publishes the message to the
/// deployment's dead-letter stream ([`Topology::dead_letter_subject`], headers
/// `Corelane-Partition`, `Corelane-Sequence`, `Corelane-Reason`) before it commits past it. The
/// partition goes on with the next message: the failed one is not delivered again, since a
/// retry would come behind later messages of its key. A `Delivery` dropped before the panic
/// (or one from [`Delivery::new`]) reports nothing.
pub struct Delivery {
    /// Its partition.
    pub partition: u32,
    /// Its sequence in the partition's stream: increasing, without gaps; after a takeover the
    /// new owner starts after the last committed one, so a few may come again.
    pub sequence: u64,
    /// The owner's epoch for the partition: bumped by every takeover. A side effect written
    /// with a check of the epoch (a compare-and-set) is refused once a newer owner exists.
    pub epoch: u64,
    receipt: Option<Receipt>,
}

impl Delivery {
    /// A delivery that reports nothing when dropped: for testing a worker without a node.
    pub fn new(partition: u32, sequence: u64, epoch: u64) -> Self {
        Self {
            partition,
            sequence,
            epoch,
            receipt: None,
        }
    }

    /// A delivery whose message is reported as a dead letter if a panic drops it.
    pub(crate) fn with_receipt(
        partition: u32,
        sequence: u64,
        epoch: u64,
        receipt: Receipt,
    ) -> Self {
        Self {
            receipt: Some(receipt),
            ..Self::new(partition, sequence, epoch)
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(receipt) = self.receipt.take() {
            if std::thread::panicking() {
                dead::push(Letter {
                    node: receipt.node,
                    partition: self.partition,
                    sequence: self.sequence,
                    payload: None,
                    reason: Reason::Panicked,
                });
            }
        }
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("partition", &self.partition)
            .field("sequence", &self.sequence)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Delivery {
    /// Two deliveries are equal when they name the same message under the same epoch.
    fn eq(&self, other: &Self) -> bool {
        (self.partition, self.sequence, self.epoch)
            == (other.partition, other.sequence, other.epoch)
    }
}

impl Eq for Delivery {}

/// A node's settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's name, unique in the deployment (letters, digits, `-`, `_`).
    pub id: String,
    /// The NATS servers, comma-separated URLs, tried in the order given at start and again
    /// whenever the connection is lost (give each machine its own order to spread the
    /// connections). List every server of the cluster: async-nats learns other servers only
    /// from the greeting of the one it first reaches, not from later updates, so a node given
    /// one URL may know no other when that server dies.
    pub servers: String,
    /// The deployment.
    pub topology: Topology,
    /// Where delivery starts in a partition this node takes that has no snapshot its workers
    /// restore ([`Remote::restore`]; with one, right after what it covers): from the first
    /// message, so that the workers rebuild the state by replaying it (it lives only in
    /// memory), or (`false`) after the last committed offset (the state lives elsewhere).
    /// Either way each key's messages arrive in order. A snapshot that cannot be read is
    /// replaced by a replay from the first message.
    pub replay_from_start: bool,
}

/// What the node's tasks share.
pub(crate) struct Shared<W: Remote> {
    pub(crate) id: String,
    pub(crate) topology: Topology,
    pub(crate) replay_from_start: bool,
    pub(crate) pool: Pool<W>,
    pub(crate) nats: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) leases: kv::Store,
    pub(crate) nodes: kv::Store,
    pub(crate) offsets: kv::Store,
    /// The partitions owned now, for [`Node::owned`].
    pub(crate) owned: Mutex<BTreeSet<u32>>,
    /// Commits refused because another node took the partition over ([`Node::fenced`]).
    pub(crate) fenced: AtomicU64,
    /// This node's number among the process's, on its deliveries and dead letters.
    pub(crate) receipt: Receipt,
    /// The deployment's snapshot bucket.
    pub(crate) snapshots: object_store::ObjectStore,
    /// Snapshots this node made current ([`Node::snapshots`]).
    pub(crate) snapshots_stored: AtomicU64,
    /// Snapshots it could not store or read ([`Node::snapshot_failures`]).
    pub(crate) snapshot_failures: AtomicU64,
}

/// A running node: see the module docs. [`Node::stop`] hands its partitions over at once.
pub struct Node<W: Remote> {
    shared: Arc<Shared<W>>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<W: Remote> std::fmt::Debug for Node<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.shared.id)
            .field("owned", &self.owned())
            .finish_non_exhaustive()
    }
}

impl<W: Remote> Node<W> {
    /// Connects, sets the deployment up if needed, and starts taking partitions for `pool` (on
    /// a thread of its own with a small tokio runtime). Returns once connected.
    ///
    /// # Errors
    /// [`NatsError::Invalid`] for an unusable id; [`NatsError::Nats`] when no server answers.
    pub fn start(cfg: NodeConfig, pool: Pool<W>) -> Result<Self, NatsError> {
        let usable = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if cfg.id.is_empty() || !cfg.id.chars().all(usable) {
            return Err(NatsError::Invalid(format!("node id {:?}", cfg.id)));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("nats-{}", cfg.id))
            .enable_all()
            .build()
            .map_err(|e| NatsError::Invalid(format!("runtime: {e}")))?;
        let shared = Arc::new(rt.block_on(connect(cfg, pool))?);
        let (stop, stopped) = watch::channel(false);
        let run = shared.clone();
        let thread = std::thread::Builder::new()
            .name("nats-node".into())
            .spawn(move || rt.block_on(run_node(run, stopped)))
            .map_err(|e| NatsError::Invalid(format!("thread: {e}")))?;
        Ok(Self {
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// The partitions this node owns now.
    pub fn owned(&self) -> Vec<u32> {
        lock(&self.shared.owned).iter().copied().collect()
    }

    /// How many of this node's commits were refused because another node had taken the
    /// partition over (after a pause past the lease, say): each stopped that partition here.
    pub fn fenced(&self) -> u64 {
        self.shared.fenced.load(Ordering::Relaxed)
    }

    /// How many snapshots this node stored and made current (see [`Remote::snapshot`]).
    pub fn snapshots(&self) -> u64 {
        self.shared.snapshots_stored.load(Ordering::Relaxed)
    }

    /// How many snapshots this node could not store (the partition's current one stayed) or
    /// read when taking a partition (it was replayed from its first message instead).
    pub fn snapshot_failures(&self) -> u64 {
        self.shared.snapshot_failures.load(Ordering::Relaxed)
    }

    /// The local pool.
    pub fn pool(&self) -> &Pool<W> {
        &self.shared.pool
    }

    /// Stops gracefully: every owned partition's applied messages are committed and its lease
    /// released at once (other nodes take it without waiting for the TTL).
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl<W: Remote> Drop for Node<W> {
    fn drop(&mut self) {
        self.finish();
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn connect<W: Remote>(cfg: NodeConfig, pool: Pool<W>) -> Result<Shared<W>, NatsError> {
    let client = crate::error::connect(&cfg.servers).await?;
    let js = jetstream::new(client.clone());
    cfg.topology.setup(&js).await?;
    let snapshots = js
        .get_object_store(cfg.topology.bucket("snapshots"))
        .await
        .map_err(nats)?;
    let store = |what: &str| js.get_key_value(cfg.topology.bucket(what));
    let (leases, nodes, offsets) = (
        store("leases").await.map_err(nats)?,
        store("nodes").await.map_err(nats)?,
        store("offsets").await.map_err(nats)?,
    );
    Ok(Shared {
        id: cfg.id,
        topology: cfg.topology,
        replay_from_start: cfg.replay_from_start,
        pool,
        nats: client,
        js,
        leases,
        nodes,
        offsets,
        owned: Mutex::new(BTreeSet::new()),
        fenced: AtomicU64::new(0),
        receipt: Receipt::new_node(),
        snapshots,
        snapshots_stored: AtomicU64::new(0),
        snapshot_failures: AtomicU64::new(0),
    })
}

/// The ownership loop: every third of the lease TTL, renew the leases and the membership; then,
/// and whenever a lease is released or the set of nodes changes (both buckets are watched),
/// give back what is above the fair share and take free leases; on stop, hand everything over.
/// A lease that expires (its owner died) raises no event: it is taken at the next renewal, so
/// a crashed node's partitions move within the lease TTL plus a third of it.
async fn run_node<W: Remote>(shared: Arc<Shared<W>>, mut stop: watch::Receiver<bool>) {
    let mut owned: BTreeMap<u32, Owned> = BTreeMap::new();
    let renewal = shared.topology.renewal_interval();
    let mut changes = Changes {
        leases: shared.leases.watch_all().await.ok(),
        nodes: shared.nodes.watch_all().await.ok(),
    };
    let mut renewed: Option<Instant> = None;
    let mut fair = 0;
    let mut changed = true;
    while !*stop.borrow() {
        let due = renewed.is_none_or(|at| at.elapsed() >= renewal);
        if due {
            renewed = Some(Instant::now());
            let _ = shared.nodes.put(&shared.id, shared.id.clone().into()).await;
            renew(&shared, &mut owned).await;
        }
        drop_finished(&mut owned);
        if due || changed {
            fair = fair_share(&shared).await;
        }
        give_back(&shared, &mut owned, fair).await;
        take(&shared, &mut owned, fair).await;
        *lock(&shared.owned) = owned.keys().copied().collect();
        let next_renewal = renewed.map_or_else(Instant::now, |at| at + renewal);
        changed = changes.wait(&mut stop, next_renewal.into()).await;
    }
    for (p, lease) in std::mem::take(&mut owned) {
        release(&shared, p, lease).await;
    }
    lock(&shared.owned).clear();
    dead::discard(shared.receipt.node, None);
    let _ = shared.nodes.delete(&shared.id).await;
}

/// The watched buckets: a lease released, or a node joining or leaving, wakes the loop.
struct Changes {
    leases: Option<kv::Watch>,
    nodes: Option<kv::Watch>,
}

impl Changes {
    /// Waits until `until`, a stop, a released lease or a change of the nodes; returns
    /// whether it was one of the changes.
    async fn wait(
        &mut self,
        stop: &mut watch::Receiver<bool>,
        until: tokio::time::Instant,
    ) -> bool {
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return false,
                _ = stop.changed() => return false,
                Some(entry) = next_entry(&mut self.leases) => {
                    // Renewals are puts: only a release (or a purge) frees a partition.
                    if entry.operation != kv::Operation::Put {
                        return true;
                    }
                }
                Some(_) = next_entry(&mut self.nodes) => return true,
            }
        }
    }
}

/// The next change a watch reports; a watch that fails is dropped (the loop then relies on its
/// renewals alone).
async fn next_entry(watch: &mut Option<kv::Watch>) -> Option<kv::Entry> {
    let Some(changes) = watch else {
        return std::future::pending().await;
    };
    match changes.next().await {
        Some(Ok(entry)) => Some(entry),
        _ => {
            *watch = None;
            None
        }
    }
}

/// The most partitions this node may own: ceil(P / live nodes).
async fn fair_share<W: Remote>(shared: &Shared<W>) -> usize {
    let live = match shared.nodes.keys().await {
        Ok(keys) => keys.filter(|k| std::future::ready(k.is_ok())).count().await,
        Err(_) => 1,
    };
    let p = shared.topology.partitions() as usize;
    p.div_ceil(live.max(1))
}

/// Drops the partitions whose runner ended on its own (fenced, or its consumer failed): their
/// leases are left to expire, so that no node takes them again at once on stale offsets.
fn drop_finished(owned: &mut BTreeMap<u32, Owned>) {
    owned.retain(|_, lease| !lease.task.is_finished());
}

/// Renews every lease. A partition whose lease another write replaced (a newer owner, or an
/// expiry and a take) is dropped at once. One whose renewal got no answer (a timeout, or the
/// bucket electing a leader: "no stream") is kept while its last renewal still holds it past
/// the next attempt, and dropped once it might not.
async fn renew<W: Remote>(shared: &Arc<Shared<W>>, owned: &mut BTreeMap<u32, Owned>) {
    let ttl = shared.topology.lease_ttl();
    let next_attempt = shared.topology.renewal_interval();
    let mut lost = Vec::new();
    for (&p, lease) in owned.iter_mut() {
        let asked = Instant::now();
        let renewed = shared
            .leases
            .update(lease_key(p), shared.id.clone().into(), lease.revision)
            .await;
        match renewed {
            Ok(revision) => {
                lease.revision = revision;
                lease.renewed = asked;
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => lost.push(p),
            Err(_) if Instant::now() + next_attempt < lease.renewed + ttl => {}
            Err(_) => lost.push(p),
        }
    }
    for p in lost {
        if let Some(lease) = owned.remove(&p) {
            lease.abort();
        }
    }
}

/// Hands back the partitions above the fair share (the highest first).
async fn give_back<W: Remote>(
    shared: &Arc<Shared<W>>,
    owned: &mut BTreeMap<u32, Owned>,
    fair: usize,
) {
    while owned.len() > fair {
        let Some((p, lease)) = owned.pop_last() else {
            break;
        };
        release(shared, p, lease).await;
    }
}

/// Takes free partitions up to the fair share, starting at a place that depends on this node's
/// id, so that nodes starting together do not all race for the same partitions.
async fn take<W: Remote>(shared: &Arc<Shared<W>>, owned: &mut BTreeMap<u32, Owned>, fair: usize) {
    let partitions = shared.topology.partitions();
    let start = shared.topology.partition_of(shared.id.as_bytes());
    for i in 0..partitions {
        if owned.len() >= fair {
            return;
        }
        let p = (start + i) % partitions;
        if owned.contains_key(&p) {
            continue;
        }
        let asked = Instant::now();
        if let Ok(revision) = shared
            .leases
            .create(lease_key(p), shared.id.clone().into())
            .await
        {
            owned.insert(p, partition::start(shared.clone(), p, revision, asked));
        }
    }
}

/// Stops a partition gracefully (what its workers applied is committed) and deletes its lease.
async fn release<W: Remote>(shared: &Arc<Shared<W>>, p: u32, lease: Owned) {
    let revision = lease.revision;
    lease.stop().await;
    let _ = shared
        .leases
        .delete_expect_revision(lease_key(p), Some(revision))
        .await;
}

pub(crate) fn lease_key(p: u32) -> String {
    format!("p{p}")
}

/// A spawned task's handle, aborted when dropped unless finished.
pub(crate) type Task = JoinHandle<()>;
