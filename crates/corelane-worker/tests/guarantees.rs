//! The promises that hold under every policy and every kind of stop, one deterministic test
//! each: no `Ok` send missing from the report, no sender or asker left waiting on a stopped
//! worker, no flush answered early.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use corelane_worker::Dispatch;
use corelane_worker::Pool;
use corelane_worker::{
    AskError, BoxError, Context, Error, Outcome, Overflow, Reply, RestartPolicy, SendError, Worker,
    WorkerConfig, WorkerState,
};

enum M {
    /// Blocks the handler until the sender side of the gate is dropped or sends.
    Gate(flume::Receiver<()>),
    Sleep(Duration),
    Tag,
    Get(Reply<u64>),
    SleepThenPanic(Duration),
}

struct W;

impl Worker for W {
    type Message = M;
    type State = u64;
    fn init(&mut self, _: &mut Context<'_, Self>) -> Result<u64, BoxError> {
        Ok(0)
    }
    fn handle(&mut self, handled: &mut u64, msg: M, _: &mut Context<'_, Self>) {
        *handled += 1;
        match msg {
            M::Gate(gate) => drop(gate.recv()),
            M::Sleep(d) => thread::sleep(d),
            M::Tag => {}
            M::Get(reply) => reply.send(*handled),
            M::SleepThenPanic(d) => {
                thread::sleep(d);
                panic!("planned failure");
            }
        }
    }
}

fn one_worker(cfg: WorkerConfig) -> Pool<W> {
    Pool::builder()
        .workers(1)
        .worker_config(move |_| cfg.clone())
        .spawn(|_| W)
        .unwrap()
}

/// Waits until the worker has taken everything from its inbox.
fn until_taken(pool: &Pool<W>) {
    let give_up = Instant::now() + Duration::from_secs(5);
    while pool.metrics().workers[0].queued > 0 {
        assert!(Instant::now() < give_up, "the worker never took its inbox");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `f` on a thread and returns its result, or `None` if it did not finish within `limit`.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

#[test]
fn a_lane_opened_after_shutdown_refuses_every_send() {
    for overflow in [
        Overflow::Block,
        Overflow::Reject,
        Overflow::DropNewest,
        Overflow::DropOldest,
    ] {
        let pool = one_worker(
            WorkerConfig::new()
                .with_queue_capacity(2)
                .with_overflow(overflow),
        );
        let late = pool.clone();
        let report = pool.shutdown().unwrap();
        let producer = late.producer();
        for _ in 0..10 {
            // A lane nobody drains would take two, then drop or block.
            let r = within(Duration::from_secs(2), {
                let producer = late.producer();
                move || matches!(producer.send_to(0, M::Tag), Err(SendError::Closed(_)))
            });
            assert_eq!(r, Some(true), "{overflow:?}: a late lane's send");
            assert!(matches!(
                producer.try_send_partitioned(&1u64, M::Tag),
                Err(SendError::Closed(_))
            ));
        }
        assert!(
            matches!(producer.flush(), Err(Error::Unflushed { worker: 0 })),
            "{overflow:?}"
        );
        assert_eq!(report.accepted(), 0);
        assert_eq!(
            report.dropped(),
            0,
            "{overflow:?}: no drop after the report"
        );
    }
}

#[test]
fn a_timed_shutdown_wakes_a_sender_blocked_on_a_lane_and_hands_its_message_back() {
    let pool = one_worker(WorkerConfig::new().with_queue_capacity(1));
    let (gate, gate_rx) = flume::bounded::<()>(0);
    pool.send_to(0, M::Gate(gate_rx)).unwrap();
    until_taken(&pool);
    let producer = pool.producer();
    producer.send_to(0, M::Tag).unwrap(); // fills the lane
    let (blocked_tx, blocked) = mpsc::channel();
    thread::spawn(move || {
        let r = producer.send_to(0, M::Tag);
        let _ = blocked_tx.send((Instant::now(), matches!(r, Err(SendError::Closed(M::Tag)))));
    });
    thread::sleep(Duration::from_millis(20));
    let start = Instant::now();
    let report = within(Duration::from_secs(5), move || {
        pool.shutdown_timeout(Duration::from_millis(1)).unwrap()
    })
    .expect("a timed shutdown returns");
    let (woke, handed_back) = blocked
        .recv_timeout(Duration::from_secs(5))
        .expect("the blocked sender wakes");
    assert!(
        handed_back,
        "the blocked send returns Closed with its message"
    );
    assert!(
        woke.duration_since(start) < Duration::from_secs(1),
        "the blocked sender waited for the handler: {:?}",
        woke.duration_since(start)
    );
    let w = &report.workers[0];
    assert_eq!(w.outcome, Outcome::TimedOut);
    assert_eq!(
        (w.abandoned, w.unprocessed.len(), w.accepted()),
        (1, 1, 2),
        "the gate in the handler, the lane's message returned"
    );
    drop(gate);
}

#[test]
fn an_ask_behind_a_stuck_handler_fails_promptly_after_a_timed_shutdown() {
    let pool = one_worker(WorkerConfig::new().with_queue_capacity(64));
    let (gate, gate_rx) = flume::bounded::<()>(0);
    pool.send_to(0, M::Gate(gate_rx)).unwrap();
    until_taken(&pool);
    for _ in 0..20 {
        pool.send_to(0, M::Sleep(Duration::from_secs(1))).unwrap();
    }
    let asker = pool.clone();
    let (ask_tx, ask) = mpsc::channel();
    thread::spawn(move || {
        let r = asker.ask(&0u64, M::Get);
        let _ = ask_tx.send((Instant::now(), r));
    });
    while pool.metrics().workers[0].queued < 21 {
        thread::sleep(Duration::from_millis(1));
    }
    let start = Instant::now();
    let report = within(Duration::from_secs(5), move || {
        pool.shutdown_timeout(Duration::from_millis(1)).unwrap()
    })
    .expect("a timed shutdown returns");
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    let (failed_at, r) = ask
        .recv_timeout(Duration::from_secs(5))
        .expect("the ask returns");
    assert!(matches!(r, Err(AskError::Unprocessed)), "{r:?}");
    assert!(failed_at.duration_since(start) < Duration::from_millis(500));
    let w = &report.workers[0];
    assert_eq!(w.outcome, Outcome::TimedOut);
    assert_eq!((w.counters.processed, w.abandoned), (0, 1));
    assert_eq!(
        w.unprocessed.len(),
        21,
        "the sleeps and the ask are returned"
    );
    assert_eq!(w.accepted(), 22);
    drop(report); // the ask failed before its request was dropped
    drop(gate);
}

#[test]
fn a_deadline_stop_runs_on_stop_and_returns_what_was_queued() {
    let pool = one_worker(WorkerConfig::new().with_queue_capacity(64));
    for _ in 0..5 {
        pool.send_to(0, M::Sleep(Duration::from_millis(5))).unwrap();
    }
    let report = pool.shutdown_timeout(Duration::from_millis(1)).unwrap();
    let w = &report.workers[0];
    assert_eq!(w.outcome, Outcome::Completed);
    assert_eq!(w.accepted(), 5);
    assert!(!w.unprocessed.is_empty());
}

#[test]
fn a_flush_marker_evicted_by_drop_oldest_waits_for_the_handler_in_progress() {
    let pool = one_worker(
        WorkerConfig::new()
            .with_queue_capacity(1)
            .with_overflow(Overflow::DropOldest),
    );
    let (gate, gate_rx) = flume::bounded::<()>(0);
    pool.send_to(0, M::Gate(gate_rx)).unwrap();
    until_taken(&pool);
    let flusher = pool.clone();
    let (flushed_tx, flushed) = mpsc::channel();
    thread::spawn(move || flushed_tx.send(flusher.flush()).unwrap());
    while pool.metrics().workers[0].queued == 0 {
        thread::sleep(Duration::from_millis(1));
    }
    // The inbox holds only the marker: this send evicts it.
    pool.send_to(0, M::Tag).unwrap();
    assert!(
        flushed.recv_timeout(Duration::from_millis(100)).is_err(),
        "the flush returned while the gate sent before it was still in its handler"
    );
    drop(gate);
    let r = flushed
        .recv_timeout(Duration::from_secs(5))
        .expect("the flush returns");
    assert!(r.is_ok(), "{r:?}");
    let report = pool.shutdown().unwrap();
    assert_eq!(report.accepted(), 2);
    assert_eq!(report.dropped(), 0, "a marker is not a dropped message");
}

#[test]
fn an_ask_queued_on_a_failing_worker_fails_promptly_and_flush_reports_the_failure() {
    let pool = one_worker(
        WorkerConfig::new()
            .with_queue_capacity(8)
            .with_restart(RestartPolicy::Stop),
    );
    pool.send_to(0, M::SleepThenPanic(Duration::from_millis(100)))
        .unwrap();
    until_taken(&pool);
    let asker = pool.clone();
    let r = within(Duration::from_secs(5), move || asker.ask(&0u64, M::Get));
    let r = r.expect("the ask returns once the worker fails");
    assert!(matches!(r, Err(AskError::Unprocessed)), "{r:?}");
    assert_eq!(
        pool.metrics().workers[0].state,
        WorkerState::Failed,
        "the state is current when the failure is observable"
    );
    assert!(matches!(pool.flush(), Err(Error::Unflushed { worker: 0 })));
    let report = pool.shutdown().unwrap();
    let w = &report.workers[0];
    assert!(matches!(w.outcome, Outcome::Failed(_)));
    assert_eq!((w.counters.processed, w.unprocessed.len()), (1, 1));
}

#[test]
fn drop_policies_count_only_what_the_report_counts() {
    for overflow in [Overflow::DropNewest, Overflow::DropOldest] {
        let pool = one_worker(
            WorkerConfig::new()
                .with_queue_capacity(2)
                .with_overflow(overflow),
        );
        let (gate, gate_rx) = flume::bounded::<()>(0);
        pool.send_to(0, M::Gate(gate_rx)).unwrap();
        until_taken(&pool);
        let producer = pool.producer();
        let mut ok = 1;
        for _ in 0..50 {
            ok += u64::from(pool.send_to(0, M::Tag).is_ok());
            ok += u64::from(producer.send_to(0, M::Tag).is_ok());
        }
        let late = pool.clone();
        drop(gate);
        let report = pool.shutdown().unwrap();
        for _ in 0..50 {
            assert!(late.send_to(0, M::Tag).is_err());
            assert!(producer.send_to(0, M::Tag).is_err());
        }
        assert_eq!(report.accepted(), ok, "{overflow:?}");
        assert!(report.dropped() >= 96, "{overflow:?}: {}", report.dropped());
        assert_eq!(late.metrics().total().counters.dropped, report.dropped());
    }
}

/// Floods of drops racing a shutdown: every `Ok` send is in the report (a drop counted after the
/// report took its count would make `Ok` sends exceed `accepted`).
#[test]
fn drops_racing_a_shutdown_balance() {
    let rounds = if cfg!(debug_assertions) { 12 } else { 40 };
    for round in 0..rounds {
        let overflow = [Overflow::DropNewest, Overflow::DropOldest][round % 2];
        let lanes = round % 4 >= 2;
        let pool = Pool::builder()
            .workers(4)
            .worker_config(move |_| {
                WorkerConfig::new()
                    .with_queue_capacity(4)
                    .with_overflow(overflow)
            })
            .spawn(|_| W)
            .unwrap();
        let clients: Vec<_> = (0..3u64)
            .map(|c| {
                let pool = pool.clone();
                thread::spawn(move || {
                    let producer = pool.producer();
                    let mut ok = 0u64;
                    for i in 0..100_000u64 {
                        let key = i.wrapping_mul(31) ^ c;
                        let r = if lanes {
                            producer.send_partitioned(&key, M::Tag)
                        } else {
                            pool.send_partitioned(&key, M::Tag)
                        };
                        match r {
                            Ok(()) => ok += 1,
                            Err(_) => break,
                        }
                    }
                    ok
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(2));
        let report = pool.shutdown().unwrap();
        let ok: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
        assert_eq!(
            ok,
            report.accepted(),
            "round {round} ({overflow:?}, lanes: {lanes}): Ok sends against the report"
        );
    }
}
