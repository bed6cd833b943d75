//! Error types. Every error of a sending operation hands the unsent value back; none of them needs
//! `T: Debug` to be printed.

use std::error::Error;
use std::fmt;

/// A [`try_send`](crate::mpsc::Sender::try_send) could not deliver the value, which it hands back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TrySendError<T> {
    /// The channel is full; the value is handed back.
    Full(T),
    /// Every receiver is gone; the value is handed back.
    Disconnected(T),
}

impl<T> TrySendError<T> {
    /// Takes the value back out of the error.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(v) | Self::Disconnected(v) => v,
        }
    }
    /// Whether the send failed because the channel was full.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }
    /// Whether the send failed because every receiver is gone.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected(_))
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(_) => "Full(..)",
            Self::Disconnected(_) => "Disconnected(..)",
        })
    }
}
impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(_) => "sending on a full channel",
            Self::Disconnected(_) => "sending on a disconnected channel",
        })
    }
}
impl<T> Error for TrySendError<T> {}

/// A send failed because every receiver is gone; the value is handed back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct Disconnected<T>(pub T);

impl<T> Disconnected<T> {
    /// Takes the value back out of the error.
    pub fn into_inner(self) -> T {
        self.0
    }
}
impl<T> fmt::Debug for Disconnected<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Disconnected(..)")
    }
}
impl<T> fmt::Display for Disconnected<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sending on a disconnected channel")
    }
}
impl<T> Error for Disconnected<T> {}

/// A [`send_timeout`](crate::mpsc::Sender::send_timeout) failed; the value is handed back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum SendTimeoutError<T> {
    /// No slot freed up before the deadline.
    Timeout(T),
    /// Every receiver is gone.
    Disconnected(T),
}

impl<T> SendTimeoutError<T> {
    /// Takes the value back out of the error.
    pub fn into_inner(self) -> T {
        match self {
            Self::Timeout(v) | Self::Disconnected(v) => v,
        }
    }
    /// Whether the send timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }
}
impl<T> fmt::Debug for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout(_) => "Timeout(..)",
            Self::Disconnected(_) => "Disconnected(..)",
        })
    }
}
impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout(_) => "timed out waiting on a full channel",
            Self::Disconnected(_) => "sending on a disconnected channel",
        })
    }
}
impl<T> Error for SendTimeoutError<T> {}

/// A [`try_recv`](crate::mpsc::Receiver::try_recv) found nothing to return.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum TryRecvError {
    /// The channel is empty but a sender still exists.
    Empty,
    /// The channel is empty and every sender is gone.
    Disconnected,
}
impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "receiving on an empty channel",
            Self::Disconnected => "receiving on an empty and disconnected channel",
        })
    }
}
impl Error for TryRecvError {}

/// A blocking receive failed: the channel is empty and every sender is gone.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct RecvError;
impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("receiving on an empty and disconnected channel")
    }
}
impl Error for RecvError {}

/// A [`recv_timeout`](crate::mpsc::Receiver::recv_timeout) failed.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum RecvTimeoutError {
    /// Nothing arrived before the deadline.
    Timeout,
    /// The channel is empty and every sender is gone.
    Disconnected,
}
impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout => "timed out waiting on an empty channel",
            Self::Disconnected => "receiving on an empty and disconnected channel",
        })
    }
}
impl Error for RecvTimeoutError {}

/// A requested capacity that no channel can have.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum CapacityError {
    /// Capacity 0 was requested; every channel holds at least one message.
    Zero,
    /// The capacity, rounded up to a power of two, exceeds [`MAX_CAPACITY`](crate::MAX_CAPACITY).
    TooLarge(usize),
}
impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zero => f.write_str("channel capacity must be at least 1"),
            Self::TooLarge(c) => write!(
                f,
                "channel capacity {c} exceeds the maximum of {}",
                crate::MAX_CAPACITY
            ),
        }
    }
}
impl Error for CapacityError {}
