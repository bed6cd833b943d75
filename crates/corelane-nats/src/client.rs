//! Publishing into the partitions, and asking their owners.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::HeaderMap;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{nats, NatsError};
use crate::wire::{AnswerFrame, AskFrame, Record};
use crate::Topology;

/// How long an ask that found no owner waits before asking again.
const NO_OWNER_RETRY: Duration = Duration::from_millis(50);

/// Where a published message landed: its partition and its sequence in that partition's stream.
/// Pass it to [`Client::ask`] to read your own write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Published {
    /// The partition (its stream).
    pub partition: u32,
    /// The message's sequence in the partition's stream.
    pub sequence: u64,
}

/// Sends messages into a deployment's partitions and asks their owners. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    nats: async_nats::Client,
    js: jetstream::Context,
    topology: Topology,
}

impl Client {
    /// Connects to `servers` (comma-separated URLs, tried in the order given, again after a lost
    /// connection; list every server of the cluster, as [`NodeConfig::servers`](crate::NodeConfig::servers)
    /// says why) and sets the deployment up if needed.
    ///
    /// # Errors
    /// [`NatsError::Invalid`] for a URL that does not parse; [`NatsError::Nats`] when no server
    /// answers or JetStream refuses the setup.
    pub async fn connect(servers: &str, topology: Topology) -> Result<Self, NatsError> {
        let nats = crate::error::connect(servers).await?;
        Self::with_connection(nats, topology).await
    }

    /// As [`Client::connect`], over a connection you made.
    ///
    /// # Errors
    /// As [`Topology::setup`].
    pub async fn with_connection(
        nats: async_nats::Client,
        topology: Topology,
    ) -> Result<Self, NatsError> {
        let js = jetstream::new(nats.clone());
        topology.setup(&js).await?;
        Ok(Self { nats, js, topology })
    }

    /// The deployment.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Publishes `msg` to the partition of `key`, with a fresh `Nats-Msg-Id`, and returns once
    /// JetStream stored it.
    ///
    /// # Errors
    /// [`NatsError::Codec`] if `msg` does not encode; [`NatsError::Nats`] if the publish fails.
    pub async fn send<M: Serialize>(&self, key: &[u8], msg: &M) -> Result<Published, NatsError> {
        // An inbox name is unique per connection and call: a fresh id.
        self.send_with_id(key, msg, &self.nats.new_inbox()).await
    }

    /// As [`Client::send`] with your own message id: JetStream stores a message once per id
    /// within its 2-minute duplicate window, so a retried send does not duplicate.
    ///
    /// # Errors
    /// As [`Client::send`].
    pub async fn send_with_id<M: Serialize>(
        &self,
        key: &[u8],
        msg: &M,
        id: &str,
    ) -> Result<Published, NatsError> {
        let (partition, ack) = self.publish(key, msg, id).await?;
        Ok(Published {
            partition,
            sequence: ack.await.map_err(nats)?.sequence,
        })
    }

    /// Publishes `msg` under `id` to the partition of `key`; the acknowledgement is yet to
    /// come.
    async fn publish<M: Serialize>(
        &self,
        key: &[u8],
        msg: &M,
        id: &str,
    ) -> Result<(u32, jetstream::context::PublishAckFuture), NatsError> {
        let partition = self.topology.partition_of(key);
        let payload = postcard::to_stdvec(&Record {
            key: key.to_vec(),
            msg,
        })?;
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        let ack = self
            .js
            .publish_with_headers(self.topology.subject(partition), headers, payload.into())
            .await
            .map_err(nats)?;
        Ok((partition, ack))
    }

    /// Publishes every `(key, msg)` of `items` (each with a fresh id) with the publishes in
    /// flight together, and returns once JetStream stored them all, in order: much faster than
    /// one [`Client::send`] after another, which waits for each acknowledgement.
    ///
    /// # Errors
    /// As [`Client::send`]; messages before the failing one may be stored.
    pub async fn send_batch<K: AsRef<[u8]>, M: Serialize>(
        &self,
        items: &[(K, M)],
    ) -> Result<Vec<Published>, NatsError> {
        let mut acks = Vec::with_capacity(items.len());
        for (key, msg) in items {
            acks.push(
                self.publish(key.as_ref(), msg, &self.nats.new_inbox())
                    .await?,
            );
        }
        let mut published = Vec::with_capacity(acks.len());
        for (partition, ack) in acks {
            published.push(Published {
                partition,
                sequence: ack.await.map_err(nats)?.sequence,
            });
        }
        Ok(published)
    }

    /// Asks the owner of `key`'s partition: `msg` goes to the worker owning `key` there, and its
    /// answer comes back. With `after` (from [`Client::send`] of the same key), the owner
    /// answers only once its workers applied that message: read-after-write across machines.
    ///
    /// An ask that finds no owner (a partition between two owners) asks again until `timeout`.
    ///
    /// # Errors
    /// [`NatsError::NoOwner`] when no node owned the partition until `timeout`,
    /// [`NatsError::Timeout`],
    /// [`NatsError::Codec`], [`NatsError::Remote`] when the owner's worker failed the ask.
    pub async fn ask<M: Serialize, A: DeserializeOwned>(
        &self,
        key: &[u8],
        msg: &M,
        after: Option<Published>,
        timeout: Duration,
    ) -> Result<A, NatsError> {
        let partition = self.topology.partition_of(key);
        let frame = AskFrame {
            after: after.map_or(0, |p| p.sequence),
            key: key.to_vec(),
            msg,
        };
        let payload: bytes::Bytes = postcard::to_stdvec(&frame)?.into();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut no_owner = false;
        loop {
            let request = self
                .nats
                .request(self.topology.ask_subject(partition), payload.clone());
            match tokio::time::timeout_at(deadline, request).await {
                Err(_) if no_owner => return Err(NatsError::NoOwner { partition }),
                Err(_) => return Err(NatsError::Timeout(timeout)),
                // Between two owners (a handover, a takeover): ask again until the deadline.
                Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                    no_owner = true;
                    let retry = tokio::time::Instant::now() + NO_OWNER_RETRY;
                    if retry >= deadline {
                        return Err(NatsError::NoOwner { partition });
                    }
                    tokio::time::sleep_until(retry).await;
                }
                Ok(Err(e)) => return Err(nats(e)),
                Ok(Ok(reply)) => {
                    return postcard::from_bytes::<AnswerFrame<A>>(&reply.payload)?
                        .map_err(NatsError::Remote)
                }
            }
        }
    }
}
