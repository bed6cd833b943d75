//! With the `tracing` feature, the lifecycle shows up as `tracing` events (target `corelane`).
#![cfg(feature = "tracing")]

use std::io::Write;
use std::sync::{Arc, Mutex};

use corelane_worker::{BoxError, Context, Dispatch, Pool, Worker};

/// A writer into a shared buffer, for the subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct W;

impl Worker for W {
    type Message = bool;
    type State = ();
    fn init(&mut self, _: &mut Context<'_, Self>) -> Result<(), BoxError> {
        Ok(())
    }
    fn handle(&mut self, _: &mut (), panic: bool, _: &mut Context<'_, Self>) {
        assert!(!panic, "asked to panic");
    }
}

#[test]
fn the_lifecycle_is_traced() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    )
    .unwrap();
    let pool = Pool::builder().workers(1).spawn(|_| W).unwrap();
    pool.send_to(0, true).unwrap();
    pool.flush().unwrap();
    pool.pause();
    pool.resume();
    pool.shutdown().unwrap();
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for line in [
        "worker started",
        "handler panicked",
        "asked to panic",
        "worker state rebuilt",
        "pool shutting down",
        "worker stopped",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
}
