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

/// A send failed; the message is handed back.
pub enum SendError<M> {
    /// The inbox is full (with [`Overflow::Reject`](crate::Overflow::Reject) or a `try_send`).
    Full(M),
    /// The worker is stopped or shutting down.
    Closed(M),
    /// No such worker, or the key cannot be routed (see
    /// [`Context::send_partitioned`](crate::Context::send_partitioned)).
    Unroutable(M),
}

impl<M> SendError<M> {
    /// Takes the message back out of the error.
    pub fn into_inner(self) -> M {
        match self {
            Self::Full(m) | Self::Closed(m) | Self::Unroutable(m) => m,
        }
    }
    pub(crate) fn map<N>(self, f: impl FnOnce(M) -> N) -> SendError<N> {
        match self {
            Self::Full(m) => SendError::Full(f(m)),
            Self::Closed(m) => SendError::Closed(f(m)),
            Self::Unroutable(m) => SendError::Unroutable(f(m)),
        }
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(_) => "Full(..)",
            Self::Closed(_) => "Closed(..)",
            Self::Unroutable(_) => "Unroutable(..)",
        })
    }
}
impl<M> fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(_) => "the worker's inbox is full",
            Self::Closed(_) => "the worker is stopped or shutting down",
            Self::Unroutable(_) => "no worker can take this message",
        })
    }
}
impl<M> std::error::Error for SendError<M> {}

impl<M> PartialEq for SendError<M> {
    /// Errors compare by kind, not by message.
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// An `ask` failed.
pub enum AskError<M> {
    /// The request could not be sent; the message (with its reply handle) is handed back.
    Send(SendError<M>),
    /// The request was sent but no answer came (see [`Error::NoReply`]).
    NoReply,
    /// The request was accepted, but the worker stopped (shut down, failed, or missed its stop
    /// deadline) before handling it; the request is in that worker's report.
    Unprocessed,
}

impl<M> fmt::Debug for AskError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Send(e) => write!(f, "Send({e:?})"),
            Self::NoReply => f.write_str("NoReply"),
            Self::Unprocessed => f.write_str("Unprocessed"),
        }
    }
}
impl<M> fmt::Display for AskError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Send(e) => write!(f, "ask failed to send: {e}"),
            Self::NoReply => f.write_str("the worker dropped the reply without answering"),
            Self::Unprocessed => f.write_str("the worker stopped before handling the request"),
        }
    }
}
impl<M> std::error::Error for AskError<M> {}
