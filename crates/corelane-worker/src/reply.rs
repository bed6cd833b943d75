//! One-shot replies for request/response (`ask`).

use corelane_channel::{oneshot, RecvError};

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
    /// An awaitable one-shot, for `ask_async`.
    Async(flume::Sender<T>),
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
            ReplyTx::Async(tx) => drop(tx.send(value)),
        }
    }
}

/// The waiting half of an `ask`.
pub struct Answer<T> {
    rx: AnswerRx<T>,
}

enum AnswerRx<T> {
    Blocking(oneshot::Receiver<T>),
    Async(flume::Receiver<T>),
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
    /// [`AskError::NoReply`] if the [`Reply`] was dropped unanswered.
    pub fn wait<M>(self) -> Result<T, AskError<M>> {
        match self.rx {
            AnswerRx::Blocking(rx) => rx.recv().map_err(|RecvError| AskError::NoReply),
            AnswerRx::Async(rx) => rx.recv().map_err(|_| AskError::NoReply),
        }
    }

    /// Waits without blocking a thread when made by [`Reply::pair_async`] (for an answer made by
    /// [`Reply::pair`], this blocks like [`Answer::wait`]).
    ///
    /// # Errors
    /// As [`Answer::wait`].
    pub async fn wait_async<M>(self) -> Result<T, AskError<M>> {
        match self.rx {
            AnswerRx::Blocking(rx) => rx.recv().map_err(|RecvError| AskError::NoReply),
            AnswerRx::Async(rx) => rx.recv_async().await.map_err(|_| AskError::NoReply),
        }
    }
}
