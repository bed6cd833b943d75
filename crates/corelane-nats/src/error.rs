//! The crate's one error type.

use std::time::Duration;

/// What can go wrong between a client or node and NATS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The connection, a JetStream call or a key-value call failed.
    #[error("nats: {0}")]
    Nats(#[source] async_nats::Error),
    /// No node owns the key's partition now (an ask found no responder).
    #[error("no node owns partition {partition}")]
    NoOwner {
        /// The key's partition.
        partition: u32,
    },
    /// No answer came in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// A message or answer could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(#[from] postcard::Error),
    /// The owning node could not answer the ask (its worker failed it).
    #[error("the owner failed the ask: {0}")]
    Remote(String),
    /// Another node took the partition (this node's writes for it are refused from now on).
    #[error("partition {partition} was taken over (epoch {epoch} is stale)")]
    Fenced {
        /// The partition.
        partition: u32,
        /// This node's stale epoch.
        epoch: u64,
    },
    /// The node's local pool stopped (or a worker failed) before applying what it was sent.
    #[error("the local pool stopped: {0}")]
    Stopped(#[source] corelane_worker::Error),
    /// A topology or node setting is not usable.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// Wraps any NATS client error.
pub(crate) fn nats(e: impl Into<async_nats::Error>) -> NatsError {
    NatsError::Nats(e.into())
}

/// Connects to `servers`, comma-separated URLs tried in the order given, first at connect time
/// and again whenever the connection is lost. List every server of the cluster: async-nats
/// learns the other servers only from the first one's greeting, never from later updates, so a
/// client given one URL that connected before that server had its routes knows no other, and
/// when that server dies it retries only the dead one (every publish failing at its 5 s ack
/// timeout) until the server returns.
pub(crate) async fn connect(servers: &str) -> Result<async_nats::Client, NatsError> {
    let addrs = servers
        .split(',')
        .map(|s| s.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NatsError::Invalid(format!("servers {servers:?}: {e}")))?;
    async_nats::ConnectOptions::new()
        .retain_servers_order()
        .connect(addrs)
        .await
        .map_err(nats)
}
