//! Snapshots of a partition's state: asked of every worker at one point of the partition's
//! delivery, stored as one object of the deployment's snapshot bucket, referenced by the
//! partition's offset entry (so only the current owner's compare-and-set makes one current), and
//! given back key by key to whichever worker owns each key when a node takes the partition.

use corelane_worker::{Answer, Dispatch, Reply};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::error::{nats, NatsError};
use crate::node::{Remote, Shared};

/// A worker's part of a partition's snapshot: the state of each of the partition's keys it
/// holds, each serialized on its own, so that after a takeover every key's state reaches the
/// worker that owns the key on the new node (whose pool may have another number of workers).
/// The answer to [`Remote::snapshot`].
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Snapshot {
    /// An empty part.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key`'s state; `key` is the key as clients send it (the bytes it is routed by).
    ///
    /// # Errors
    /// [`NatsError::Codec`] if `state` does not serialize.
    pub fn insert<S: Serialize + ?Sized>(
        &mut self,
        key: &[u8],
        state: &S,
    ) -> Result<(), NatsError> {
        self.entries
            .push((key.to_vec(), postcard::to_stdvec(state)?));
        Ok(())
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// One key's state from the snapshot of a partition this node takes, for the worker that owns
/// the key ([`Remote::restore`]). Every message of the partition up to [`KeyState::covers`] is in
/// it; delivery resumes after that.
#[derive(Debug, Clone)]
pub struct KeyState {
    partition: u32,
    covers: u64,
    key: Vec<u8>,
    state: Vec<u8>,
}

impl KeyState {
    /// The partition.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The last stream sequence of the partition the state includes.
    pub fn covers(&self) -> u64 {
        self.covers
    }

    /// The key, as clients send it.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The state, as [`Snapshot::insert`] was given it.
    ///
    /// # Errors
    /// [`NatsError::Codec`] if it does not decode as `S`.
    pub fn decode<S: DeserializeOwned>(&self) -> Result<S, NatsError> {
        Ok(postcard::from_bytes(&self.state)?)
    }
}

/// An object of the snapshot bucket.
#[derive(Serialize, Deserialize)]
struct Stored {
    partition: u32,
    covers: u64,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The current snapshot of a partition, as its offset entry names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotRef {
    /// The object's name: partition, epoch and sequence (a stale owner's object never takes a
    /// current one's name).
    pub(crate) name: String,
    /// The last stream sequence it covers.
    pub(crate) covers: u64,
}

/// Snapshot asks sent to every worker right after stream sequence `covers` was sent into the
/// pool: each worker answers once it handled everything sent to it before.
pub(crate) struct Requested {
    covers: u64,
    answers: Vec<Answer<Snapshot>>,
}

/// Asks every worker for its part of partition `p`'s state after sequence `covers`. `None` if
/// the workers keep no snapshots ([`Remote::snapshot`] gives no message) or the pool stopped.
pub(crate) async fn request<W: Remote>(
    shared: &Shared<W>,
    p: u32,
    covers: u64,
) -> Option<Requested> {
    let mut answers = Vec::with_capacity(shared.pool.workers());
    for worker in 0..shared.pool.workers() {
        let (reply, answer) = Reply::pair_async();
        let msg = W::snapshot(p, reply)?;
        shared.pool.send_to_async(worker, msg).await.ok()?;
        answers.push(answer);
    }
    Some(Requested { covers, answers })
}

/// Gathers the workers' parts and stores them as one object; returns its reference.
pub(crate) async fn store<W: Remote>(
    shared: &Shared<W>,
    p: u32,
    epoch: u64,
    requested: Requested,
) -> Result<SnapshotRef, NatsError> {
    let mut entries = Vec::new();
    for answer in requested.answers {
        let part = answer
            .wait_async::<W::Message>()
            .await
            .map_err(|e| NatsError::Remote(e.to_string()))?;
        entries.extend(part.entries);
    }
    let covers = requested.covers;
    let bytes = postcard::to_stdvec(&Stored {
        partition: p,
        covers,
        entries,
    })?;
    let name = format!("p{p}-e{epoch}-s{covers}");
    shared
        .snapshots
        .put(name.as_str(), &mut &bytes[..])
        .await
        .map_err(nats)?;
    Ok(SnapshotRef { name, covers })
}

/// Reads a stored snapshot of partition `p` and gives every key's state to the worker owning
/// the key. `Ok(false)`, with nothing sent, if the workers do not restore
/// ([`Remote::restore`] gives no message).
///
/// # Errors
/// The object could not be read or decoded (nothing was sent then), or the pool stopped.
pub(crate) async fn restore<W: Remote>(
    shared: &Shared<W>,
    p: u32,
    snapshot: &SnapshotRef,
) -> Result<bool, Restore> {
    let stored = load(shared, &snapshot.name)
        .await
        .map_err(|_| Restore::Unreadable)?;
    for (key, state) in stored.entries {
        let key_state = KeyState {
            partition: p,
            covers: stored.covers,
            key: key.clone(),
            state,
        };
        let Some(msg) = W::restore(key_state) else {
            return Ok(false);
        };
        shared
            .pool
            .send_async(&key[..], msg)
            .await
            .map_err(|e| Restore::Stopped(NatsError::Remote(e.to_string())))?;
    }
    Ok(true)
}

/// Why a snapshot was not restored.
pub(crate) enum Restore {
    /// It could not be read or decoded: nothing of it reached the workers.
    Unreadable,
    /// The pool stopped part way.
    Stopped(NatsError),
}

async fn load<W: Remote>(shared: &Shared<W>, name: &str) -> Result<Stored, NatsError> {
    let mut object = shared.snapshots.get(name).await.map_err(nats)?;
    let mut bytes = Vec::new();
    object.read_to_end(&mut bytes).await.map_err(nats)?;
    Ok(postcard::from_bytes(&bytes)?)
}

/// Deletes a snapshot no offset entry names any more (best effort: a leftover object only takes
/// room).
pub(crate) async fn discard<W: Remote>(shared: &Shared<W>, snapshot: &SnapshotRef) {
    let _ = shared.snapshots.delete(&snapshot.name).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_s_state_comes_back_as_inserted() {
        let mut part = Snapshot::new();
        part.insert(b"apples", &(3u32, 41u64)).unwrap();
        assert_eq!(part.len(), 1);
        let (key, state) = part.entries.pop().unwrap();
        let restored = KeyState {
            partition: 2,
            covers: 9,
            key,
            state,
        };
        assert_eq!(restored.key(), b"apples");
        assert_eq!(restored.decode::<(u32, u64)>().unwrap(), (3, 41));
        assert!(restored.decode::<String>().is_err());
    }
}
