//! A single worker without a pool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::context::{Peers, Routing};
use crate::runtime::{collect_reports, start, WorkerReport};
use crate::slot::Slot;
use crate::{AskError, Error, Reply, SendError, Worker, WorkerConfig, WorkerMetrics, WorkerState};

/// Spawns one worker on its own thread (pinned if `config` says so), runs its `init` there, and
/// returns a handle to feed and control it.
///
/// # Errors
/// [`Error::InvalidConfig`] for a bad configuration (a core that does not exist, capacity 0, ...),
/// [`Error::Init`] / [`Error::InitPanic`] if `init` fails, [`Error::Spawn`] if the OS refuses.
///
/// # Examples
/// ```
/// use corelane_worker::{spawn, BoxError, Context, Worker, WorkerConfig};
///
/// struct Sum;
/// impl Worker for Sum {
///     type Message = u64;
///     type State = u64;
///     fn init(&mut self, _: &mut Context<'_, Self>) -> Result<u64, BoxError> { Ok(0) }
///     fn handle(&mut self, total: &mut u64, n: u64, _: &mut Context<'_, Self>) { *total += n }
/// }
///
/// let worker = spawn(Sum, WorkerConfig::new())?;
/// for n in 1..=10 {
///     worker.send(n)?;
/// }
/// let report = worker.stop()?;
/// assert_eq!(report.counters.processed, 10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn spawn<W: Worker>(
    worker: W,
    config: WorkerConfig,
) -> Result<WorkerHandle<W::Message>, Error> {
    let (slot, pin) = Slot::new(0, &config)?;
    // A lone worker owns every key.
    let owner = corelane_partition::HashPartitioner::with_partitions(1)
        .expect("one partition is a valid size");
    let peers = Arc::new(Peers::new(
        vec![slot.clone()],
        Routing::hashed(Arc::new(owner)),
    ));
    let (reports_tx, reports) = flume::bounded(1);
    let thread = start(worker, &config, slot.clone(), peers, pin, reports_tx)?;
    Ok(WorkerHandle {
        slot,
        reports,
        thread: Some(thread),
    })
}

/// Feeds and controls a worker started by [`spawn`]. Dropping it stops the worker gracefully.
pub struct WorkerHandle<M> {
    slot: Arc<Slot<M>>,
    reports: flume::Receiver<WorkerReport<M>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<M> std::fmt::Debug for WorkerHandle<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("state", &self.slot.state())
            .finish_non_exhaustive()
    }
}

impl<M: Send + 'static> WorkerHandle<M> {
    /// Sends by the worker's overflow policy.
    ///
    /// # Errors
    /// See [`SendError`]; the message is handed back.
    pub fn send(&self, msg: M) -> Result<(), SendError<M>> {
        self.slot.send(msg)
    }

    /// Sends without blocking.
    ///
    /// # Errors
    /// See [`SendError`]; the message is handed back.
    pub fn try_send(&self, msg: M) -> Result<(), SendError<M>> {
        self.slot.try_send(msg)
    }

    /// As [`WorkerHandle::send`], but under `Block` waits at most `timeout` for room.
    ///
    /// # Errors
    /// As [`WorkerHandle::send`], plus [`SendError::Timeout`] with the message.
    pub fn send_timeout(&self, msg: M, timeout: Duration) -> Result<(), SendError<M>> {
        self.slot
            .send_until(msg, Instant::now().checked_add(timeout))
    }

    /// Sends the request `make(reply)` and blocks until the handler answers; every message sent
    /// to this worker before is handled first.
    ///
    /// # Errors
    /// [`AskError::Send`] with the request if it could not be sent; [`AskError::NoReply`] if
    /// the handler dropped the reply; [`AskError::Unprocessed`] if the worker stopped first.
    pub fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> M,
    ) -> Result<T, AskError<M>> {
        self.slot
            .ask(make, Reply::pair())
            .map_err(AskError::Send)?
            .wait()
    }

    /// Pauses the worker after its current message: it parks (no CPU) and messages queue up.
    pub fn pause(&self) {
        self.slot.set_paused(true);
    }

    /// Resumes a paused worker.
    pub fn resume(&self) {
        self.slot.set_paused(false);
    }

    /// A listener for the worker's events of the kinds in `mask`, from now on (see
    /// [`Pool::listen`](crate::Pool::listen)).
    pub fn listen(&self, mask: crate::EventMask) -> crate::EventListener {
        self.slot.listen(mask)
    }

    /// The worker's lifecycle state.
    pub fn state(&self) -> WorkerState {
        self.slot.state()
    }

    /// A snapshot of the worker's counters.
    pub fn metrics(&self) -> WorkerMetrics {
        self.slot.metrics()
    }

    /// Waits until every message sent before this call has been handled (or dropped by the
    /// overflow policy).
    ///
    /// # Errors
    /// [`Error::Unflushed`] if the worker stopped (or failed) before handling them all.
    pub fn flush(&self) -> Result<(), Error> {
        crate::envelope::flush_all(1, |_, marker| self.slot.flush_marker(marker))
    }

    /// Stops gracefully: drains the inbox, runs `on_stop`, joins the thread.
    ///
    /// # Errors
    /// [`Error::ShutDown`] if the worker thread vanished without a report.
    pub fn stop(mut self) -> Result<WorkerReport<M>, Error> {
        self.stop_by(None)
    }

    /// Stops like [`WorkerHandle::stop`], handling messages for at most `timeout`; the rest are
    /// returned in the report.
    ///
    /// # Errors
    /// As [`WorkerHandle::stop`].
    pub fn stop_timeout(mut self, timeout: Duration) -> Result<WorkerReport<M>, Error> {
        self.stop_by(Instant::now().checked_add(timeout))
    }

    fn stop_by(&mut self, deadline: Option<Instant>) -> Result<WorkerReport<M>, Error> {
        let thread = self.thread.take().ok_or(Error::ShutDown)?;
        self.slot.request_stop(deadline);
        let reports = collect_reports(std::slice::from_ref(&self.slot), &self.reports, deadline);
        match reports.into_iter().next().flatten() {
            Some(r) if r.outcome == crate::Outcome::TimedOut => Ok(r),
            Some(r) => {
                let _ = thread.join();
                Ok(r)
            }
            None => Err(Error::ShutDown),
        }
    }
}

impl<M> Drop for WorkerHandle<M> {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.slot.request_stop(None);
            let _ = thread.join();
        }
    }
}
