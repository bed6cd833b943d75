//! Worker events: selective by mask, with a timeout, cancellation, an async wait, and an end.

use std::thread;
use std::time::{Duration, Instant};

use corelane_worker::Dispatch;
use corelane_worker::{
    spawn, BoxError, Context, EventError, EventMask, Pool, RestartPolicy, Worker, WorkerConfig,
    WorkerEvent,
};

const LONG: Duration = Duration::from_secs(10);

enum M {
    Work,
    Panic,
}

struct W;

impl Worker for W {
    type Message = M;
    type State = ();
    fn init(&mut self, _: &mut Context<'_, Self>) -> Result<(), BoxError> {
        Ok(())
    }
    fn handle(&mut self, _: &mut (), msg: M, _: &mut Context<'_, Self>) {
        if let M::Panic = msg {
            panic!("bad message");
        }
    }
}

#[test]
fn a_listener_gets_only_the_kinds_in_its_mask() {
    let pool = Pool::builder().workers(1).spawn(|_| W).unwrap();
    let pauses = pool
        .listen(0, EventMask::PAUSED | EventMask::RESUMED)
        .unwrap();
    let idles = pool.listen(0, EventMask::IDLE).unwrap();
    for _ in 0..3 {
        pool.send_to(0, M::Work).unwrap();
    }
    assert_eq!(idles.wait_timeout(LONG), Ok(WorkerEvent::Idle));
    pool.pause();
    assert_eq!(pauses.wait_timeout(LONG), Ok(WorkerEvent::Paused));
    pool.resume();
    assert_eq!(pauses.wait_timeout(LONG), Ok(WorkerEvent::Resumed));
    // Idle events (the worker went idle several times) never reached the pause listener.
    assert_eq!(pauses.try_next(), Err(EventError::TimedOut));
    assert!(pool.listen(7, EventMask::ALL).is_none());
    pool.shutdown().unwrap();
}

#[test]
fn a_wait_times_out_and_a_canceled_wait_ends_at_once() {
    let worker = spawn(W, WorkerConfig::new()).unwrap();
    let restarts = worker.listen(EventMask::RESTARTED);
    let started = Instant::now();
    assert_eq!(
        restarts.wait_timeout(Duration::from_millis(30)),
        Err(EventError::TimedOut)
    );
    assert!(started.elapsed() >= Duration::from_millis(30));
    let canceler = restarts.canceler();
    let cancel = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        canceler.cancel();
    });
    let started = Instant::now();
    assert_eq!(restarts.wait(), Err(EventError::Canceled));
    assert!(started.elapsed() < LONG);
    cancel.join().unwrap();
    worker.stop().unwrap();
}

#[test]
fn restarts_carry_the_reason_and_the_end_is_reported_then_closed() {
    let cfg = WorkerConfig::new().with_restart(RestartPolicy::Restart {
        max_restarts: 1,
        within: Duration::from_secs(60),
    });
    let worker = spawn(W, cfg).unwrap();
    let events = worker.listen(EventMask::RESTARTED | EventMask::FAILED | EventMask::STOPPED);
    worker.send(M::Panic).unwrap();
    assert_eq!(
        events.wait_timeout(LONG),
        Ok(WorkerEvent::Restarted {
            reason: "bad message".into()
        })
    );
    worker.send(M::Panic).unwrap(); // past the policy: the worker fails
    match events.wait_timeout(LONG) {
        Ok(WorkerEvent::Failed { reason }) => assert!(reason.contains("restarts"), "{reason}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(events.wait_timeout(LONG), Err(EventError::Closed));
    let _ = worker.stop();

    let worker = spawn(W, WorkerConfig::new()).unwrap();
    let events = worker.listen(EventMask::STOPPED);
    worker.stop().unwrap();
    assert_eq!(events.wait_timeout(LONG), Ok(WorkerEvent::Stopped));
    assert_eq!(events.wait(), Err(EventError::Closed));
}

#[test]
fn a_task_awaits_events_without_blocking_its_thread() {
    let pool = Pool::builder().workers(1).spawn(|_| W).unwrap();
    let events = pool.listen(0, EventMask::PAUSED).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut next = std::pin::pin!(events.next());
        tokio::select! {
            _ = &mut next => panic!("nothing paused yet"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        pool.pause();
        assert_eq!(next.await, Ok(WorkerEvent::Paused));
    });
    pool.resume();
    pool.shutdown().unwrap();
}
