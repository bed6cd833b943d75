//! Dead letters: delivered messages a node could not apply (undecodable, or their handler
//! panicked). They wait here until the next commit of their partition, which publishes them to
//! the deployment's dead-letter stream before it moves the offset past them.
//!
//! The letters of every node of the process wait in one box, each tagged with its node: a
//! [`Delivery`](crate::Delivery) then carries only its node's number, so the delivery path
//! pays no reference count per message, and the box's lock is taken only when a message
//! fails. A panicked message's bytes are not kept either: its commit reads them back from the
//! partition's stream by sequence.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;

use crate::error::{nats, NatsError};
use crate::node::lock;
use crate::Topology;

/// Why a message became a dead letter (the `Corelane-Reason` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Its bytes did not decode as the deployment's message type.
    Undecodable,
    /// Its handler panicked while it held the message's [`Delivery`](crate::Delivery).
    Panicked,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Undecodable => "undecodable",
            Self::Panicked => "handler panicked",
        }
    }
}

/// One message to publish as a dead letter.
#[derive(Debug)]
pub(crate) struct Letter {
    /// The node that delivered it ([`Receipt::node`]).
    pub(crate) node: u64,
    pub(crate) partition: u32,
    pub(crate) sequence: u64,
    /// Its bytes, when at hand (else read back from the stream when published).
    pub(crate) payload: Option<Bytes>,
    pub(crate) reason: Reason,
}

/// Every node's letters not published yet.
static LETTERS: Mutex<Vec<Letter>> = Mutex::new(Vec::new());

/// Numbers the nodes of the process.
static NODES: AtomicU64 = AtomicU64::new(1);

/// What a [`Delivery`](crate::Delivery) carries to report its message as a dead letter should
/// the handler holding it panic: its node's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Receipt {
    pub(crate) node: u64,
}

impl Receipt {
    /// A number for a new node.
    pub(crate) fn new_node() -> Self {
        Self {
            node: NODES.fetch_add(1, Ordering::Relaxed),
        }
    }
}

pub(crate) fn push(letter: Letter) {
    lock(&LETTERS).push(letter);
}

/// Takes `node`'s letters of `partition` up to stream sequence `upto`, in sequence order.
pub(crate) fn take(node: u64, partition: u32, upto: u64) -> Vec<Letter> {
    let mut letters = lock(&LETTERS);
    if letters.is_empty() {
        return Vec::new();
    }
    let (mut taken, kept) = std::mem::take(&mut *letters)
        .into_iter()
        .partition::<Vec<_>, _>(|l| {
            l.node == node && l.partition == partition && l.sequence <= upto
        });
    *letters = kept;
    drop(letters);
    taken.sort_by_key(|l| l.sequence);
    taken
}

/// Forgets `node`'s letters of `partition`, or of every partition if `None` (they were not
/// committed: whoever owns the partition next delivers those messages again).
pub(crate) fn discard(node: u64, partition: Option<u32>) {
    lock(&LETTERS).retain(|l| l.node != node || partition.is_some_and(|p| l.partition != p));
}

/// Publishes `letters` (of one partition) to the deployment's dead-letter stream, in order, each
/// acknowledged by it. A message's bytes not at hand are read back from the partition's stream
/// (empty if the stream no longer holds it). A `Nats-Msg-Id` of partition and sequence makes
/// the stream drop a letter published again (a partition replayed after a takeover fails on the
/// same message again).
pub(crate) async fn publish(
    js: &jetstream::Context,
    topology: &Topology,
    letters: &[Letter],
) -> Result<(), NatsError> {
    let subject = topology.dead_letter_subject();
    for letter in letters {
        let payload = match &letter.payload {
            Some(payload) => payload.clone(),
            None => stored(js, topology, letter.partition, letter.sequence).await?,
        };
        let mut headers = HeaderMap::new();
        headers.insert("Corelane-Partition", letter.partition.to_string().as_str());
        headers.insert("Corelane-Sequence", letter.sequence.to_string().as_str());
        headers.insert("Corelane-Reason", letter.reason.as_str());
        let id = format!(
            "{}-dead-{}-{}",
            topology.prefix(),
            letter.partition,
            letter.sequence
        );
        headers.insert("Nats-Msg-Id", id.as_str());
        js.publish_with_headers(subject.clone(), headers, payload)
            .await
            .map_err(nats)?
            .await
            .map_err(nats)?;
    }
    Ok(())
}

/// The bytes of message `sequence` of `partition`'s stream (empty if it is gone).
async fn stored(
    js: &jetstream::Context,
    topology: &Topology,
    partition: u32,
    sequence: u64,
) -> Result<Bytes, NatsError> {
    let stream = js
        .get_stream(topology.stream(partition))
        .await
        .map_err(nats)?;
    Ok(stream
        .get_raw_message(sequence)
        .await
        .map(|m| m.payload)
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(node: u64, partition: u32, sequence: u64) -> Letter {
        Letter {
            node,
            partition,
            sequence,
            payload: None,
            reason: Reason::Panicked,
        }
    }

    #[test]
    fn take_returns_one_node_s_letters_of_one_partition_up_to_a_sequence_in_order() {
        let (node, other) = (Receipt::new_node().node, Receipt::new_node().node);
        for (n, p, s) in [
            (node, 1, 9),
            (node, 0, 5),
            (node, 1, 3),
            (other, 1, 4),
            (node, 1, 12),
        ] {
            push(letter(n, p, s));
        }
        let taken: Vec<u64> = take(node, 1, 10).iter().map(|l| l.sequence).collect();
        assert_eq!(taken, [3, 9]);
        assert!(take(node, 1, 10).is_empty());
        discard(node, Some(0));
        assert!(take(node, 0, u64::MAX).is_empty());
        assert_eq!(take(node, 1, u64::MAX).len(), 1);
        discard(other, None);
        assert!(take(other, 1, u64::MAX).is_empty());
    }

    #[test]
    fn a_delivery_reports_its_message_only_when_a_panic_drops_it() {
        let node = Receipt::new_node();
        drop(crate::Delivery::with_receipt(0, 1, 1, node));
        let held = crate::Delivery::with_receipt(0, 2, 1, node);
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = held;
            panic!("a handler bug");
        }));
        assert!(handled.is_err());
        let taken = take(node.node, 0, u64::MAX);
        assert_eq!(taken.len(), 1, "{taken:?}");
        assert_eq!(
            (
                taken[0].sequence,
                taken[0].reason,
                taken[0].payload.is_none()
            ),
            (2, Reason::Panicked, true)
        );
    }
}
