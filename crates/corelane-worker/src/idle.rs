//! How a worker with an empty inbox waits: [`Idle`], handed to [`Worker::wait`](crate::Worker::wait).

use corelane_channel::{Doorbell, DoorbellReady, WaitStrategy};

/// A worker's view of its wake-up condition while its inbox is empty: a message in the inbox or a
/// lane, a stop or pause request, or a new lane. Senders ring the worker's doorbell after each of
/// these, which wakes a thread in [`Idle::park`] as well as a task awaiting [`Idle::ready`].
pub struct Idle<'a> {
    doorbell: &'a Doorbell,
    strategy: WaitStrategy,
    ready: &'a (dyn Fn() -> bool + 'a),
}

impl std::fmt::Debug for Idle<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idle")
            .field("strategy", &self.strategy)
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl<'a> Idle<'a> {
    pub(crate) fn new(
        doorbell: &'a Doorbell,
        strategy: WaitStrategy,
        ready: &'a (dyn Fn() -> bool + 'a),
    ) -> Self {
        Self {
            doorbell,
            strategy,
            ready,
        }
    }

    /// Whether the worker has something to do now (a cheap check: a few loads).
    pub fn is_ready(&self) -> bool {
        (self.ready)()
    }

    /// Blocks this thread by the worker's idle strategy until [`Idle::is_ready`] holds: what the
    /// default [`Worker::wait`](crate::Worker::wait) does.
    pub fn park(&self) {
        self.doorbell.wait(self.strategy, None, self.ready);
    }

    /// A future that resolves once [`Idle::is_ready`] holds, woken by the worker's senders. Drive
    /// it from the worker's own event loop, so that the thread sleeps in one place (its poller)
    /// and wakes for I/O and messages alike.
    pub fn ready(&self) -> DoorbellReady<'_> {
        self.doorbell.ready(self.ready)
    }
}
