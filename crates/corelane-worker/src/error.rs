//! Error types. Every error of a send hands the message back.

use std::fmt;

/// A boxed error, as returned by [`Worker::init`](crate::Worker::init).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of building, running and stopping workers and pools.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot work on this machine (names the worker and the problem).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A worker's `init` returned an error.
    #[error("worker {worker} failed to initialize: {source}")]
    Init {
        /// The worker.
        worker: usize,
        /// What `init` returned.
        #[source]
        source: BoxError,
    },
    /// A worker's `init` panicked.
    #[error("worker {worker} panicked during init: {panic}")]
    InitPanic {
        /// The worker.
        worker: usize,
        /// The panic message.
        panic: String,
    },
    /// The OS refused to start a thread.
    #[error("could not spawn worker thread {worker}: {source}")]
    Spawn {
        /// The worker.
        worker: usize,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The pool or worker was already shut down.
    #[error("already shut down")]
    ShutDown,
    /// A flush could not complete: the worker stopped (shut down, failed, or missed its stop
    /// deadline) before handling everything sent before the flush; what it did not handle is in
    /// its report.
    #[error("worker {worker} stopped before handling everything sent before the flush")]
    Unflushed {
        /// The first worker that did not reach its flush marker.
        worker: usize,
    },
    /// An `ask` got no answer: the handler dropped the [`Reply`](crate::Reply), panicked, or the
    /// worker stopped.
    #[error("the worker dropped the reply without answering")]
    NoReply,
}

/// A send failed; the message is handed back. `Send + Sync` whenever the message is, so `?`
/// converts it into `Box<dyn Error + Send + Sync>` or `anyhow::Error`; [`SendError::kind`]
/// drops the message when only the reason matters.
pub enum SendError<M> {
    /// The inbox is full (with [`Overflow::Reject`](crate::Overflow::Reject) or a `try_send`).
    Full(M),
    /// The inbox stayed full until the timeout of a `send_timeout`.
    Timeout(M),
    /// The worker is stopped or shutting down.
    Closed(M),
    /// No such worker, or the key cannot be routed (see
    /// [`Context::send_partitioned`](crate::Context::send_partitioned)).
    Unroutable(M),
}

/// Why a send failed, without the message: what [`SendError::kind`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum SendErrorKind {
    /// See [`SendError::Full`].
    #[error("the worker's inbox is full")]
    Full,
    /// See [`SendError::Timeout`].
    #[error("the worker's inbox stayed full until the timeout")]
    Timeout,
    /// See [`SendError::Closed`].
    #[error("the worker is stopped or shutting down")]
    Closed,
    /// See [`SendError::Unroutable`].
    #[error("no worker can take this message")]
    Unroutable,
}

impl<M> SendError<M> {
    /// Takes the message back out of the error.
    pub fn into_inner(self) -> M {
        match self {
            Self::Full(m) | Self::Timeout(m) | Self::Closed(m) | Self::Unroutable(m) => m,
        }
    }

    /// Why the send failed; the message stays in `self` (drop the error to drop it).
    pub fn kind(&self) -> SendErrorKind {
        match self {
            Self::Full(_) => SendErrorKind::Full,
            Self::Timeout(_) => SendErrorKind::Timeout,
            Self::Closed(_) => SendErrorKind::Closed,
            Self::Unroutable(_) => SendErrorKind::Unroutable,
        }
    }

    pub(crate) fn map<N>(self, f: impl FnOnce(M) -> N) -> SendError<N> {
        match self {
            Self::Full(m) => SendError::Full(f(m)),
            Self::Timeout(m) => SendError::Timeout(f(m)),
            Self::Closed(m) => SendError::Closed(f(m)),
            Self::Unroutable(m) => SendError::Unroutable(f(m)),
        }
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}(..)", self.kind())
    }
}
impl<M> fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind(), f)
    }
}
impl<M> std::error::Error for SendError<M> {}

impl<M> PartialEq for SendError<M> {
    /// Errors compare by kind, not by message.
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind()
    }
}

/// An `ask` failed. `Send + Sync` whenever the message is, like [`SendError`].
pub enum AskError<M> {
    /// The request could not be sent; the message (with its reply handle) is handed back.
    Send(SendError<M>),
    /// The request was sent but no answer came (see [`Error::NoReply`]).
    NoReply,
    /// The request was accepted, but the worker stopped (shut down, failed, or missed its stop
    /// deadline) before handling it; the request is in that worker's report.
    Unprocessed,
    /// No answer came within the timeout of an `ask_timeout` (or `Answer::wait_timeout`); the
    /// request may still be handled.
    TimedOut,
}

/// Why an ask failed, without the message: what [`AskError::kind`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum AskErrorKind {
    /// See [`AskError::Send`].
    #[error("ask failed to send: {0}")]
    Send(SendErrorKind),
    /// See [`AskError::NoReply`].
    #[error("the worker dropped the reply without answering")]
    NoReply,
    /// See [`AskError::Unprocessed`].
    #[error("the worker stopped before handling the request")]
    Unprocessed,
    /// See [`AskError::TimedOut`].
    #[error("no answer came within the timeout")]
    TimedOut,
}

impl<M> AskError<M> {
    /// Why the ask failed; a request handed back stays in `self`.
    pub fn kind(&self) -> AskErrorKind {
        match self {
            Self::Send(e) => AskErrorKind::Send(e.kind()),
            Self::NoReply => AskErrorKind::NoReply,
            Self::Unprocessed => AskErrorKind::Unprocessed,
            Self::TimedOut => AskErrorKind::TimedOut,
        }
    }
}

impl<M> fmt::Debug for AskError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Send(e) => write!(f, "Send({e:?})"),
            Self::NoReply => f.write_str("NoReply"),
            Self::Unprocessed => f.write_str("Unprocessed"),
            Self::TimedOut => f.write_str("TimedOut"),
        }
    }
}
impl<M> fmt::Display for AskError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind(), f)
    }
}
impl<M> std::error::Error for AskError<M> {}
