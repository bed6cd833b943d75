//! Dead letters: delivered messages a node could not apply (undecodable, or their handler
//! panicked). They wait here until the next commit of their partition, which publishes them to
//! the deployment's dead-letter stream before it moves the offset past them.

use std::sync::{Arc, Mutex};

use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;

use crate::error::{nats, NatsError};
use crate::node::lock;

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
    pub(crate) partition: u32,
    pub(crate) sequence: u64,
    pub(crate) payload: Bytes,
    pub(crate) reason: Reason,
}

/// The node's dead letters not published yet, shared with every [`Receipt`].
#[derive(Debug, Default)]
pub(crate) struct DeadLetters {
    pending: Mutex<Vec<Letter>>,
}

impl DeadLetters {
    pub(crate) fn push(&self, letter: Letter) {
        lock(&self.pending).push(letter);
    }

    /// Takes the letters of `partition` up to stream sequence `upto`, in sequence order.
    pub(crate) fn take(&self, partition: u32, upto: u64) -> Vec<Letter> {
        let mut pending = lock(&self.pending);
        let (mut taken, kept) = std::mem::take(&mut *pending)
            .into_iter()
            .partition::<Vec<_>, _>(|l| l.partition == partition && l.sequence <= upto);
        *pending = kept;
        taken.sort_by_key(|l| l.sequence);
        taken
    }

    /// Forgets the letters of `partition` (its runner ended without committing them: whoever
    /// owns it next delivers those messages again).
    pub(crate) fn discard(&self, partition: u32) {
        lock(&self.pending).retain(|l| l.partition != partition);
    }
}

/// What a [`Delivery`](crate::Delivery) carries to report its message as a dead letter should
/// the handler holding it panic.
pub(crate) struct Receipt {
    pub(crate) letters: Arc<DeadLetters>,
    pub(crate) payload: Bytes,
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receipt")
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// Publishes `letters` to `subject` through JetStream, each acknowledged by the stream. A
/// `Nats-Msg-Id` of partition and sequence makes the stream drop a letter published again (a
/// partition replayed after a takeover fails on the same message again).
pub(crate) async fn publish(
    js: &jetstream::Context,
    prefix: &str,
    subject: &str,
    letters: Vec<Letter>,
) -> Result<(), NatsError> {
    for letter in letters {
        let mut headers = HeaderMap::new();
        headers.insert("Corelane-Partition", letter.partition.to_string().as_str());
        headers.insert("Corelane-Sequence", letter.sequence.to_string().as_str());
        headers.insert("Corelane-Reason", letter.reason.as_str());
        let id = format!("{prefix}-dead-{}-{}", letter.partition, letter.sequence);
        headers.insert("Nats-Msg-Id", id.as_str());
        js.publish_with_headers(subject.to_owned(), headers, letter.payload)
            .await
            .map_err(nats)?
            .await
            .map_err(nats)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(partition: u32, sequence: u64) -> Letter {
        Letter {
            partition,
            sequence,
            payload: Bytes::new(),
            reason: Reason::Panicked,
        }
    }

    #[test]
    fn take_returns_one_partitions_letters_up_to_a_sequence_in_order() {
        let dead = DeadLetters::default();
        for (p, s) in [(1, 9), (0, 5), (1, 3), (1, 12), (2, 1)] {
            dead.push(letter(p, s));
        }
        let taken: Vec<u64> = dead.take(1, 10).iter().map(|l| l.sequence).collect();
        assert_eq!(taken, [3, 9]);
        assert!(dead.take(1, 10).is_empty());
        dead.discard(2);
        let rest: Vec<(u32, u64)> = lock(&dead.pending)
            .iter()
            .map(|l| (l.partition, l.sequence))
            .collect();
        assert_eq!(rest, [(0, 5), (1, 12)]);
    }

    #[test]
    fn a_delivery_reports_its_message_only_when_a_panic_drops_it() {
        let letters = Arc::new(DeadLetters::default());
        let receipt = |payload: &'static [u8]| Receipt {
            letters: letters.clone(),
            payload: Bytes::from_static(payload),
        };
        drop(crate::Delivery::with_receipt(0, 1, 1, receipt(b"applied")));
        let held = crate::Delivery::with_receipt(0, 2, 1, receipt(b"poison"));
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = held;
            panic!("a handler bug");
        }));
        assert!(handled.is_err());
        let taken = letters.take(0, u64::MAX);
        assert_eq!(taken.len(), 1, "{taken:?}");
        assert_eq!(
            (taken[0].sequence, &taken[0].payload[..], taken[0].reason),
            (2, &b"poison"[..], Reason::Panicked)
        );
    }
}
