//! One-shot replies for request/response (`ask`).

use crate::AskError;

/// The answering half of an `ask`: the handler calls [`Reply::send`] once. Dropping it without
/// answering makes the asker's call fail with [`AskError::NoReply`] instead of hanging.
pub struct Reply<T> {
    tx: flume::Sender<T>,
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply(..)")
    }
}

impl<T> Reply<T> {
    /// A reply handle and the receiver the asker waits on.
    pub fn pair() -> (Self, Answer<T>) {
        let (tx, rx) = flume::bounded(1);
        (Self { tx }, Answer { rx })
    }

    /// Answers. If the asker gave up, the value is dropped.
    pub fn send(self, value: T) {
        let _ = self.tx.send(value);
    }
}

/// The waiting half of an `ask`.
#[derive(Debug)]
pub struct Answer<T> {
    rx: flume::Receiver<T>,
}

impl<T> Answer<T> {
    /// Blocks until the handler answers.
    ///
    /// # Errors
    /// [`AskError::NoReply`] if the [`Reply`] was dropped unanswered.
    pub fn wait<M>(self) -> Result<T, AskError<M>> {
        self.rx.recv().map_err(|_| AskError::NoReply)
    }

    /// Waits without blocking a thread; usable from any executor.
    ///
    /// # Errors
    /// As [`Answer::wait`].
    pub async fn wait_async<M>(self) -> Result<T, AskError<M>> {
        self.rx.recv_async().await.map_err(|_| AskError::NoReply)
    }
}
