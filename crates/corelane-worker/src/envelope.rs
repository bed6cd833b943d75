//! What travels in an inbox or lane: user messages, asks (a message plus the runtime's hold on
//! its reply) and flush markers.

use crate::reply::AskTicket;

/// One queued item.
pub(crate) enum Envelope<M> {
    /// A user message.
    Msg(M),
    /// A request sent by an `ask`: boxed, so an envelope stays as small as a message.
    Ask(Box<Asked<M>>),
    /// Answered once everything queued before it is processed.
    Flush(FlushMarker),
}

/// An ask's request and the ticket that fails the asker at once if the request is not handled.
pub(crate) struct Asked<M> {
    pub(crate) msg: M,
    pub(crate) ticket: AskTicket,
}

impl<M> Envelope<M> {
    /// Whether this is a user message (plain or an ask), not a marker.
    #[inline]
    pub(crate) fn is_message(&self) -> bool {
        !matches!(self, Self::Flush(_))
    }

    /// For the handler: the message (an ask's ticket is released: the handler owns the reply
    /// now), or `None` after answering a flush marker that was reached.
    #[inline]
    pub(crate) fn open(self) -> Option<M> {
        match self {
            Self::Msg(m) => Some(m),
            Self::Ask(asked) => Some(asked.msg),
            Self::Flush(marker) => {
                marker.reached();
                None
            }
        }
    }

    /// For a report: the message that will not be handled (an ask's asker learns it at once), or
    /// `None` for a flush marker, whose flush then fails.
    pub(crate) fn into_unprocessed(self) -> Option<M> {
        match self {
            Self::Msg(m) => Some(m),
            Self::Ask(asked) => {
                asked.ticket.abort();
                Some(asked.msg)
            }
            Self::Flush(_) => None,
        }
    }

    /// For a failed send: the message, handed back to its sender.
    ///
    /// # Panics
    /// On a flush marker: a marker's failed send never hands it back this way.
    pub(crate) fn into_returned(self) -> M {
        match self {
            Self::Msg(m) => m,
            Self::Ask(asked) => asked.msg,
            Self::Flush(_) => unreachable!("a flush marker is never handed back to a sender"),
        }
    }
}

/// A flush's marker for one worker: answers `Ok` when the worker reaches it, and `Err(worker)`
/// when it is dropped unreached (the worker stopped, failed or missed its deadline first).
/// Boxed, so that an envelope stays one pointer wider than a message.
pub(crate) struct FlushMarker(Box<Marker>);

struct Marker {
    done: Option<flume::Sender<Result<(), usize>>>,
    worker: usize,
}

impl FlushMarker {
    pub(crate) fn new(worker: usize, done: flume::Sender<Result<(), usize>>) -> Self {
        Self(Box::new(Marker {
            done: Some(done),
            worker,
        }))
    }

    /// Everything queued before the marker is handled or dropped by policy: answer `Ok`.
    pub(crate) fn reached(mut self) {
        if let Some(done) = self.0.done.take() {
            let _ = done.send(Ok(()));
        }
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(Err(self.worker));
        }
    }
}

/// Sends one flush marker through each of `count` paths (`mark(i, marker)`) and waits until every
/// one is answered.
///
/// # Errors
/// [`Error::Unflushed`](crate::Error::Unflushed) naming the first worker that stopped before
/// reaching its marker.
pub(crate) fn flush_all(
    count: usize,
    mut mark: impl FnMut(usize, FlushMarker),
) -> Result<(), crate::Error> {
    let (tx, rx) = flume::bounded(count);
    for i in 0..count {
        mark(i, FlushMarker::new(i, tx.clone()));
    }
    drop(tx);
    let mut first_err = None;
    for _ in 0..count {
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(worker)) => {
                first_err.get_or_insert(worker);
            }
            Err(_) => unreachable!("every marker answers before its sender is dropped"),
        }
    }
    match first_err {
        None => Ok(()),
        Some(worker) => Err(crate::Error::Unflushed { worker }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_envelope_is_one_word_wider_than_a_small_message() {
        assert_eq!(std::mem::size_of::<super::Envelope<u64>>(), 16);
    }
}
