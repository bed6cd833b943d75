//! One-shot replies for request/response (`ask`).

use std::time::Duration;

use corelane_channel::oneshot;

use crate::AskError;

/// The answering half of an `ask`: the handler calls [`Reply::send`] once. Dropping it without
/// answering makes the asker's call fail with [`AskError::NoReply`] instead of hanging.
pub struct Reply<T> {
    tx: ReplyTx<T>,
}

enum ReplyTx<T> {
    /// A one-shot channel: the asker spins briefly, then parks (the default wait strategy), so a
    /// fast handler's answer is caught without a futex wake-up.
    Blocking(oneshot::Sender<T>),
    /// An awaitable one-shot, for `ask_async`; `None` is the runtime's word that the request
    /// will not be handled.
    Async(flume::Sender<Option<T>>),
    /// A simulated reply: the answer becomes visible when the simulation releases it.
    #[cfg(feature = "sim")]
    Sim(crate::sim::ReplySlot<T>),
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply(..)")
    }
}

impl<T> Reply<T> {
    /// A reply handle and the blocking receiver the asker waits on.
    pub fn pair() -> (Self, Answer<T>) {
        let (tx, rx) = oneshot::channel();
        (
            Self {
                tx: ReplyTx::Blocking(tx),
            },
            Answer {
                rx: AnswerRx::Blocking(rx),
            },
        )
    }

    /// A reply handle and an answer to `.await` ([`Answer::wait_async`]) from any executor.
    pub fn pair_async() -> (Self, Answer<T>) {
        let (tx, rx) = flume::bounded(1);
        (
            Self {
                tx: ReplyTx::Async(tx),
            },
            Answer {
                rx: AnswerRx::Async(rx),
            },
        )
    }

    /// Answers. If the asker gave up, the value is dropped.
    pub fn send(self, value: T) {
        match self.tx {
            ReplyTx::Blocking(tx) => drop(tx.send(value)),
            ReplyTx::Async(tx) => drop(tx.try_send(Some(value))),
            #[cfg(feature = "sim")]
            ReplyTx::Sim(slot) => slot.send(value),
        }
    }

    /// A reply whose answer a simulation releases (see [`crate::sim`]).
    #[cfg(feature = "sim")]
    pub(crate) fn simulated(slot: crate::sim::ReplySlot<T>) -> Self {
        Self {
            tx: ReplyTx::Sim(slot),
        }
    }
}

impl<T: Send + 'static> Reply<T> {
    /// The runtime's hold on this reply while its request is queued.
    pub(crate) fn ticket(&self) -> AskTicket {
        match &self.tx {
            ReplyTx::Blocking(tx) => AskTicket(Box::new(tx.canceler())),
            ReplyTx::Async(tx) => AskTicket(Box::new(tx.clone())),
            #[cfg(feature = "sim")]
            ReplyTx::Sim(slot) => AskTicket(Box::new(slot.abort_handle())),
        }
    }
}

/// Tells an asker, without the [`Reply`] (which stays inside the request), that its request will
/// not be handled.
pub(crate) trait Abort: Send {
    fn abort(self: Box<Self>);
}

impl<T: Send> Abort for oneshot::Canceler<T> {
    fn abort(self: Box<Self>) {
        (*self).cancel();
    }
}

impl<T: Send> Abort for flume::Sender<Option<T>> {
    fn abort(self: Box<Self>) {
        let _ = self.try_send(None);
    }
}

/// Travels with a queued ask's request. Dropped when the request reaches its handler (the reply
/// is the handler's then); [`AskTicket::abort`]ed when the request is returned unprocessed, so
/// the asker fails with [`AskError::Unprocessed`] at once instead of waiting for the report that
/// holds the request to be dropped.
pub(crate) struct AskTicket(Box<dyn Abort>);

impl AskTicket {
    pub(crate) fn abort(self) {
        self.0.abort();
    }
}

/// The waiting half of an `ask`.
pub struct Answer<T> {
    rx: AnswerRx<T>,
}

enum AnswerRx<T> {
    Blocking(oneshot::Receiver<T>),
    Async(flume::Receiver<Option<T>>),
}

impl<T> std::fmt::Debug for Answer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Answer(..)")
    }
}

impl<T> Answer<T> {
    /// Blocks until the handler answers.
    ///
    /// # Errors
    /// [`AskError::NoReply`] if the [`Reply`] was dropped unanswered;
    /// [`AskError::Unprocessed`] if the worker stopped before handling the request.
    pub fn wait<M>(self) -> Result<T, AskError<M>> {
        self.wait_for(None)
    }

    /// As [`Answer::wait`], for at most `timeout`.
    ///
    /// # Errors
    /// As [`Answer::wait`], plus [`AskError::TimedOut`] (the request may still be handled; its
    /// answer is then dropped).
    pub fn wait_timeout<M>(self, timeout: Duration) -> Result<T, AskError<M>> {
        self.wait_for(Some(timeout))
    }

    fn wait_for<M>(self, timeout: Option<Duration>) -> Result<T, AskError<M>> {
        match self.rx {
            AnswerRx::Blocking(mut rx) => match rx.recv_timeout(timeout.unwrap_or(Duration::MAX)) {
                Ok(v) => Ok(v),
                Err(corelane_channel::RecvTimeoutError::Timeout) => Err(AskError::TimedOut),
                Err(_) if rx.is_canceled() => Err(AskError::Unprocessed),
                Err(_) => Err(AskError::NoReply),
            },
            AnswerRx::Async(rx) => match timeout {
                None => unwrap_async(rx.recv().ok()),
                Some(t) => match rx.recv_timeout(t) {
                    Err(flume::RecvTimeoutError::Timeout) => Err(AskError::TimedOut),
                    got => unwrap_async(got.ok()),
                },
            },
        }
    }

    /// Waits without blocking a thread when made by [`Reply::pair_async`] (for an answer made by
    /// [`Reply::pair`], this blocks like [`Answer::wait`]).
    ///
    /// # Errors
    /// As [`Answer::wait`].
    pub async fn wait_async<M>(self) -> Result<T, AskError<M>> {
        match self.rx {
            AnswerRx::Blocking(_) => self.wait(),
            AnswerRx::Async(rx) => unwrap_async(rx.recv_async().await.ok()),
        }
    }
}

/// What an async answer's channel delivered: the value, the runtime's "unprocessed", or nothing
/// (the reply was dropped).
fn unwrap_async<T, M>(got: Option<Option<T>>) -> Result<T, AskError<M>> {
    match got {
        Some(Some(v)) => Ok(v),
        Some(None) => Err(AskError::Unprocessed),
        None => Err(AskError::NoReply),
    }
}
