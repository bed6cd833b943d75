//! Names and sizes shared by every client and node of one deployment.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use corelane_partition::{Partitioner, StableHashPartitioner};

use crate::error::{nats, NatsError};

/// The stream behind a key-value bucket, as the client's own `create_key_value` builds it:
/// one value per key, rollups allowed, direct gets, new writes refused when full.
fn bucket_stream(bucket: &str, ttl: Duration, replicas: usize) -> stream::Config {
    stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age: ttl,
        // The duplicate window may not exceed the age limit.
        duplicate_window: if ttl.is_zero() {
            Duration::from_secs(120)
        } else {
            ttl.min(Duration::from_secs(120))
        },
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// How long [`Topology::setup`] keeps retrying a cluster that times requests out.
const SETUP_PATIENCE: Duration = Duration::from_secs(15);

/// One deployment: its name (`prefix`), its partitions, and the timing of ownership. Clients and
/// nodes of one deployment must agree on it.
///
/// Partition `i` is the stream `{prefix}_p{i}` on subject `{prefix}.p.{i}`: one stream per
/// partition, so its sequence numbers have no gaps. Keys map to partitions by corelane's stable
/// hash (XXH3 over the key's bytes), the same on every machine. Ownership lives in three
/// key-value buckets: `{prefix}_nodes` (live nodes, entries expire after the lease TTL),
/// `{prefix}_leases` (one lease per partition, same TTL) and `{prefix}_offsets` (per partition:
/// the owner's epoch and the last stream sequence its workers applied). Messages that could not
/// be applied go to the stream `{prefix}_dead` ([`Topology::dead_letter_subject`]); snapshots
/// to the object store `{prefix}_snapshots`.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    partitions: u32,
    replicas: usize,
    lease_ttl: Duration,
    commit_interval: Duration,
    snapshot_interval: Option<Duration>,
}

impl Topology {
    /// A deployment named `prefix` (letters, digits, `-` and `_`) with `partitions` partitions,
    /// one replica, a 3 s lease TTL and offsets committed every 50 ms.
    ///
    /// # Errors
    /// [`NatsError::Invalid`] for an empty or unusable prefix or zero partitions.
    pub fn new(prefix: &str, partitions: u32) -> Result<Self, NatsError> {
        let usable = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if prefix.is_empty() || !prefix.chars().all(usable) {
            return Err(NatsError::Invalid(format!(
                "prefix {prefix:?}: use letters, digits, '-' and '_'"
            )));
        }
        if partitions == 0 {
            return Err(NatsError::Invalid("zero partitions".into()));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            partitions,
            replicas: 1,
            lease_ttl: Duration::from_secs(3),
            commit_interval: Duration::from_millis(50),
            snapshot_interval: None,
        })
    }

    /// Replicas of every stream and bucket (3 on a 3-server cluster survives a server loss).
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// How long a lease outlives its owner's last renewal: a crashed node's partitions move
    /// after at most this (renewals run every third of it).
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(300));
        self
    }

    /// How often an owner commits the offsets its workers applied (a crash reapplies at most
    /// this much).
    pub fn with_commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How often an owner snapshots a partition whose workers keep snapshots
    /// ([`Remote::snapshot`](crate::Remote::snapshot)), when it delivered something since the
    /// last one. None by default.
    pub fn with_snapshot_interval(mut self, interval: Duration) -> Self {
        self.snapshot_interval = Some(interval.max(Duration::from_millis(10)));
        self
    }

    /// The snapshot interval, if snapshots are on.
    pub fn snapshot_interval(&self) -> Option<Duration> {
        self.snapshot_interval
    }

    /// The number of partitions.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The lease TTL.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// How often an owner renews its leases: a third of the TTL, so that a renewal that gets no
    /// answer can be tried again before the lease expires.
    pub(crate) fn renewal_interval(&self) -> Duration {
        self.lease_ttl / 3
    }

    /// The commit interval.
    pub fn commit_interval(&self) -> Duration {
        self.commit_interval
    }

    /// The partition that owns `key`: the same on every machine and version.
    pub fn partition_of(&self, key: &[u8]) -> u32 {
        let p = StableHashPartitioner::with_partitions(self.partitions as usize)
            .expect("partitions is not zero");
        Partitioner::<[u8]>::partition(&p, key) as u32
    }

    pub(crate) fn stream(&self, partition: u32) -> String {
        format!("{}_p{partition}", self.prefix)
    }
    pub(crate) fn subject(&self, partition: u32) -> String {
        format!("{}.p.{partition}", self.prefix)
    }
    pub(crate) fn ask_subject(&self, partition: u32) -> String {
        format!("{}.ask.{partition}", self.prefix)
    }
    /// The deployment's name.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// Where messages that could not be applied go (undecodable, or their handler panicked):
    /// the subject of the stream `{prefix}_dead`, with headers `Corelane-Partition`,
    /// `Corelane-Sequence` and `Corelane-Reason` (`undecodable`, `handler panicked`).
    pub fn dead_letter_subject(&self) -> String {
        format!("{}.dead", self.prefix)
    }
    pub(crate) fn bucket(&self, what: &str) -> String {
        format!("{}_{what}", self.prefix)
    }

    /// Creates the deployment's streams and buckets where they do not exist yet (every client
    /// and node calls it; it is idempotent). A cluster that just started, or is electing a
    /// leader, times requests out for a while: each failing step is retried for up to 15 s.
    ///
    /// # Errors
    /// [`NatsError::Nats`] if JetStream still refuses after that (not enabled, no quorum).
    pub async fn setup(&self, js: &jetstream::Context) -> Result<(), NatsError> {
        let started = std::time::Instant::now();
        loop {
            match self.try_setup(js).await {
                Err(NatsError::Nats(_)) if started.elapsed() < SETUP_PATIENCE => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                done => return done,
            }
        }
    }

    async fn try_setup(&self, js: &jetstream::Context) -> Result<(), NatsError> {
        for p in 0..self.partitions {
            js.get_or_create_stream(stream::Config {
                name: self.stream(p),
                subjects: vec![self.subject(p)],
                num_replicas: self.replicas,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(nats)?;
        }
        js.get_or_create_stream(stream::Config {
            name: self.bucket("dead"),
            subjects: vec![self.dead_letter_subject()],
            num_replicas: self.replicas,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(nats)?;
        let snapshots = self.bucket("snapshots");
        js.get_or_create_stream(stream::Config {
            name: format!("OBJ_{snapshots}"),
            subjects: vec![format!("$O.{snapshots}.C.>"), format!("$O.{snapshots}.M.>")],
            num_replicas: self.replicas,
            discard: stream::DiscardPolicy::New,
            allow_rollup: true,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .map_err(nats)?;
        for (what, ttl) in [
            ("nodes", self.lease_ttl),
            ("leases", self.lease_ttl),
            ("offsets", Duration::ZERO),
        ] {
            let bucket = self.bucket(what);
            // The bucket's stream, made here: the client's `create_key_value` first reads the
            // account's limits, whose reply from a 2.9 server it does not parse.
            js.get_or_create_stream(bucket_stream(&bucket, ttl, self.replicas))
                .await
                .map_err(nats)?;
        }
        Ok(())
    }
}
