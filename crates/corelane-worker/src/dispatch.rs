//! The sending surface of the pool and its producers, written once.

use std::time::{Duration, Instant};

use corelane_partition::Partitioner;

use crate::{Answer, AskError, Reply, SendError};

/// How long a send waits for room when the worker's queue is full under
/// [`Overflow::Block`](crate::Overflow::Block); the other policies never wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Not at all: a full queue hands the message back as [`SendError::Full`].
    Never,
    /// For as long as it takes.
    Forever,
    /// Until the instant; then [`SendError::Timeout`].
    Until(Instant),
}

impl Wait {
    /// Waits at most `timeout` from now (forever if the deadline is too far to represent).
    pub fn timeout(timeout: Duration) -> Self {
        Instant::now()
            .checked_add(timeout)
            .map_or(Self::Forever, Self::Until)
    }
}

pub(crate) mod sealed {
    /// Only this crate's handles send: they alone can uphold the ordering and flush promises.
    pub trait Sealed {}
}

/// One worker's queue as a handle reaches it: the shared inbox (the slot) or a lane.
pub(crate) trait Queue<M> {
    /// Sends `msg` by the worker's overflow policy, waiting as `wait` says.
    fn send(&self, msg: M, wait: Wait) -> Result<(), SendError<M>>;
    /// Sends the request `make(reply)` (waiting for room) and returns the answer to wait on.
    fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> M,
        reply: (Reply<T>, Answer<T>),
    ) -> Result<Answer<T>, SendError<M>>;
}

/// [`Dispatch::send_with`] for a handle whose queue to the worker is `queue` (`None`: no such
/// worker).
#[inline]
pub(crate) fn send_via<M>(
    queue: Option<&impl Queue<M>>,
    msg: M,
    wait: Wait,
) -> Result<(), SendError<M>> {
    match queue {
        Some(queue) => queue.send(msg, wait),
        None => Err(SendError::Unroutable(msg)),
    }
}

/// [`Dispatch::ask_with`] for a handle whose queue to the worker is `queue`.
pub(crate) fn ask_via<M, T: Send + 'static>(
    queue: Option<&impl Queue<M>>,
    make: impl FnOnce(Reply<T>) -> M,
) -> Result<Answer<T>, SendError<M>> {
    match queue {
        Some(queue) => queue.ask(make, Reply::pair()),
        None => Err(SendError::Unroutable(make(Reply::pair().0))),
    }
}

/// The keyed and targeted sends and asks of a handle into a pool's workers: [`Pool`],
/// [`Producer`] and [`BatchingProducer`] each provide [`send_with`](Dispatch::send_with) and
/// [`ask_with`](Dispatch::ask_with) (where a message goes: the shared inbox, the handle's own
/// lane, or its batch), and share every other method. In the prelude.
///
/// [`Pool`]: crate::Pool
/// [`Producer`]: crate::Producer
/// [`BatchingProducer`]: crate::BatchingProducer
///
/// # Examples
/// ```
/// use corelane_partition::Partitioner;
/// use corelane_worker::{BoxError, Context, Dispatch, Pool, Reply, Worker};
///
/// struct Sum;
/// impl Worker for Sum {
///     type Message = (u64, Reply<u64>);
///     type State = u64;
///     fn init(&mut self, _: &mut Context<'_, Self>) -> Result<u64, BoxError> { Ok(0) }
///     fn handle(&mut self, sum: &mut u64, (v, reply): Self::Message, _: &mut Context<'_, Self>) {
///         *sum += v;
///         reply.send(*sum);
///     }
/// }
///
/// /// Adds `v` under `key` through any handle: the pool or one of its producers.
/// fn add<D>(to: &D, key: u64, v: u64) -> Option<u64>
/// where
///     D: Dispatch<Message = (u64, Reply<u64>)>,
///     D::Partitioner: Partitioner<u64>,
/// {
///     to.ask(&key, |reply| (v, reply)).ok()
/// }
///
/// let pool = Pool::builder().workers(2).spawn(|_| Sum)?;
/// assert_eq!(add(&pool, 7, 2), Some(2));
/// assert_eq!(add(&pool.producer(), 7, 3), Some(5));
/// assert_eq!(add(&pool.producer().batching(16)?, 7, 4), Some(9));
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
pub trait Dispatch: sealed::Sealed {
    /// What the workers receive.
    type Message;
    /// How keys map to workers.
    type Partitioner;
    /// What a failed send hands back: the message ([`Pool`](crate::Pool),
    /// [`Producer`](crate::Producer)), or every message of the worker's batch that was not
    /// published ([`BatchingProducer`](crate::BatchingProducer)).
    type Unsent;

    /// How many workers this handle reaches.
    fn workers(&self) -> usize;

    /// The partitioner keys route by (the pool's).
    fn partitioner(&self) -> &Self::Partitioner;

    /// Sends `msg` to worker `worker` by its overflow policy, waiting for room as `wait` says.
    ///
    /// # Errors
    /// [`SendError::Unroutable`] for an index out of range; [`SendError::Full`] under `Reject`
    /// (or `Block` when `wait` gave up at once), [`SendError::Timeout`] when `wait` ran out,
    /// [`SendError::Closed`] once the worker stopped. Each hands back what was not sent.
    fn send_with(
        &self,
        worker: usize,
        msg: Self::Message,
        wait: Wait,
    ) -> Result<(), SendError<Self::Unsent>>;

    /// Sends the request `make(reply)` to worker `worker` by its overflow policy (`Block` waits
    /// for room) and returns the answer to wait on. The request is handled after every message
    /// this handle sent to that worker before (read-after-write).
    ///
    /// # Errors
    /// As [`send_with`](Dispatch::send_with), with the request handed back.
    fn ask_with<T: Send + 'static>(
        &self,
        worker: usize,
        make: impl FnOnce(Reply<T>) -> Self::Message,
    ) -> Result<Answer<T>, SendError<Self::Unsent>>;

    /// The worker that owns `key`.
    #[inline]
    fn worker_for<K: ?Sized>(&self, key: &K) -> usize
    where
        Self::Partitioner: Partitioner<K>,
    {
        self.partitioner().partition(key)
    }

    /// Sends `msg` to the worker owning `key`, by that worker's overflow policy (`Block` waits).
    /// Messages from one handle (for the pool: one thread) to one worker are handled in send
    /// order.
    ///
    /// # Errors
    /// As [`send_with`](Dispatch::send_with).
    #[inline]
    fn send_partitioned<K: ?Sized>(
        &self,
        key: &K,
        msg: Self::Message,
    ) -> Result<(), SendError<Self::Unsent>>
    where
        Self::Partitioner: Partitioner<K>,
    {
        self.send_with(self.worker_for(key), msg, Wait::Forever)
    }

    /// As [`send_partitioned`](Dispatch::send_partitioned), but never blocks: a full queue hands
    /// the message back.
    ///
    /// # Errors
    /// As [`send_with`](Dispatch::send_with), with [`SendError::Full`] also under `Block`.
    #[inline]
    fn try_send_partitioned<K: ?Sized>(
        &self,
        key: &K,
        msg: Self::Message,
    ) -> Result<(), SendError<Self::Unsent>>
    where
        Self::Partitioner: Partitioner<K>,
    {
        self.send_with(self.worker_for(key), msg, Wait::Never)
    }

    /// As [`send_partitioned`](Dispatch::send_partitioned), but under `Block` waits at most
    /// `timeout` for room.
    ///
    /// # Errors
    /// As [`send_with`](Dispatch::send_with), with [`SendError::Timeout`].
    fn send_timeout<K: ?Sized>(
        &self,
        key: &K,
        msg: Self::Message,
        timeout: Duration,
    ) -> Result<(), SendError<Self::Unsent>>
    where
        Self::Partitioner: Partitioner<K>,
    {
        self.send_with(self.worker_for(key), msg, Wait::timeout(timeout))
    }

    /// Sends `msg` to worker `worker` by its overflow policy (`Block` waits).
    ///
    /// # Errors
    /// As [`send_with`](Dispatch::send_with).
    fn send_to(&self, worker: usize, msg: Self::Message) -> Result<(), SendError<Self::Unsent>> {
        self.send_with(worker, msg, Wait::Forever)
    }

    /// As [`send_to`](Dispatch::send_to), never blocking.
    ///
    /// # Errors
    /// As [`try_send_partitioned`](Dispatch::try_send_partitioned).
    fn try_send_to(
        &self,
        worker: usize,
        msg: Self::Message,
    ) -> Result<(), SendError<Self::Unsent>> {
        self.send_with(worker, msg, Wait::Never)
    }

    /// Sends the request `make(reply)` to the worker owning `key` and blocks until the handler
    /// answers. Every message this handle sent to that worker before is handled first
    /// (read-after-write).
    ///
    /// # Errors
    /// [`AskError::Send`] if the request could not be sent (handed back);
    /// [`AskError::NoReply`] if the handler dropped the [`Reply`] or panicked, or an overflow
    /// policy dropped the request; [`AskError::Unprocessed`] at once if the worker stops (shut
    /// down, failed, or past its stop deadline) before handling it.
    fn ask<K: ?Sized, T: Send + 'static>(
        &self,
        key: &K,
        make: impl FnOnce(Reply<T>) -> Self::Message,
    ) -> Result<T, AskError<Self::Unsent>>
    where
        Self::Partitioner: Partitioner<K>,
    {
        self.ask_to(self.worker_for(key), make)
    }

    /// As [`ask`](Dispatch::ask), waiting at most `timeout` for the answer (the request itself
    /// is sent by the worker's overflow policy).
    ///
    /// # Errors
    /// As [`ask`](Dispatch::ask), plus [`AskError::TimedOut`] (the request may still be handled).
    fn ask_timeout<K: ?Sized, T: Send + 'static>(
        &self,
        key: &K,
        make: impl FnOnce(Reply<T>) -> Self::Message,
        timeout: Duration,
    ) -> Result<T, AskError<Self::Unsent>>
    where
        Self::Partitioner: Partitioner<K>,
    {
        self.ask_with(self.worker_for(key), make)
            .map_err(AskError::Send)?
            .wait_timeout(timeout)
    }

    /// As [`ask`](Dispatch::ask), to worker `worker`.
    ///
    /// # Errors
    /// As [`ask`](Dispatch::ask); [`SendError::Unroutable`] (with the request) for an index out
    /// of range.
    fn ask_to<T: Send + 'static>(
        &self,
        worker: usize,
        make: impl FnOnce(Reply<T>) -> Self::Message,
    ) -> Result<T, AskError<Self::Unsent>> {
        self.ask_with(worker, make).map_err(AskError::Send)?.wait()
    }

    /// Asks every worker (`make(reply)` for each, all sent before any answer is awaited) and
    /// returns the answers in worker order.
    ///
    /// # Errors
    /// The first error, in worker order; the other answers are dropped.
    fn ask_all<T: Send + 'static>(
        &self,
        make: impl Fn(Reply<T>) -> Self::Message,
    ) -> Result<Vec<T>, AskError<Self::Unsent>> {
        let answers: Vec<_> = (0..self.workers())
            .map(|worker| self.ask_with(worker, &make))
            .collect();
        answers
            .into_iter()
            .map(|a| a.map_err(AskError::Send)?.wait())
            .collect()
    }
}
