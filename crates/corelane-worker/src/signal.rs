//! A graceful shutdown on Ctrl-C or SIGTERM (feature `signal`).

use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::{Error, Pool, ShutdownReport, Worker};

/// SIGINT (Ctrl-C) and SIGTERM, caught from the moment this is made: they no longer end the
/// process, they wait here for [`Pool::shutdown_on`] (or [`ShutdownSignals::wait`]). Make it
/// before the work starts, so that a signal that comes early is kept, not fatal.
#[derive(Debug)]
pub struct ShutdownSignals {
    signals: Signals,
}

impl ShutdownSignals {
    /// Starts catching SIGINT and SIGTERM.
    ///
    /// # Errors
    /// The operating system's, if a handler cannot be installed.
    pub fn register() -> std::io::Result<Self> {
        Ok(Self {
            signals: Signals::new([SIGINT, SIGTERM])?,
        })
    }

    /// Blocks until one of the signals arrives (or has arrived since the registration) and
    /// returns its number.
    pub fn wait(&mut self) -> i32 {
        self.signals
            .forever()
            .next()
            .expect("a registered signal iterator only ends when closed")
    }
}

impl<W: Worker, P: Send + Sync + 'static> Pool<W, P> {
    /// Blocks until SIGINT or SIGTERM arrives, then shuts the pool down gracefully, handling
    /// what is queued for at most `grace` ([`Pool::shutdown_timeout`]).
    ///
    /// # Errors
    /// As [`Pool::shutdown`].
    ///
    /// # Examples
    /// ```no_run
    /// use std::time::Duration;
    /// use corelane_worker::{BoxError, Context, Pool, ShutdownSignals, Worker};
    ///
    /// struct Nop;
    /// impl Worker for Nop {
    ///     type Message = ();
    ///     type State = ();
    ///     fn init(&mut self, _: &mut Context<'_, Self>) -> Result<(), BoxError> { Ok(()) }
    ///     fn handle(&mut self, _: &mut (), _: (), _: &mut Context<'_, Self>) {}
    /// }
    ///
    /// let signals = ShutdownSignals::register()?;
    /// let pool = Pool::builder().spawn(|_| Nop)?;
    /// // ... hand the pool to the threads that feed it ...
    /// let report = pool.shutdown_on(signals, Duration::from_secs(5))?;
    /// println!("handled {} messages", report.processed());
    /// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    /// ```
    pub fn shutdown_on(
        self,
        mut signals: ShutdownSignals,
        grace: Duration,
    ) -> Result<ShutdownReport<W::Message>, Error> {
        signals.wait();
        self.shutdown_timeout(grace)
    }
}
