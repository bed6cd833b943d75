//! Timeouts, targeted asks and error kinds: the calls a user reaches for around `send` and `ask`.

use std::thread;
use std::time::{Duration, Instant};

use corelane_worker::Dispatch;
use corelane_worker::{
    spawn, AskError, AskErrorKind, BoxError, Context, Pool, Reply, SendError, SendErrorKind,
    Worker, WorkerConfig,
};

#[derive(Debug)]
enum M {
    Gate(flume::Receiver<()>),
    Index(Reply<usize>),
    Ignore(Reply<usize>),
    Add(u64),
}

struct W;

impl Worker for W {
    type Message = M;
    type State = Vec<Reply<usize>>;
    fn init(&mut self, _: &mut Context<'_, Self>) -> Result<Self::State, BoxError> {
        Ok(Vec::new())
    }
    fn handle(&mut self, kept: &mut Self::State, msg: M, ctx: &mut Context<'_, Self>) {
        match msg {
            M::Gate(gate) => drop(gate.recv()),
            M::Index(reply) => reply.send(ctx.index()),
            M::Ignore(reply) => kept.push(reply), // kept, never answered
            M::Add(_) => {}
        }
    }
}

fn pool(workers: usize, capacity: usize) -> Pool<W> {
    Pool::builder()
        .workers(workers)
        .worker_config(move |_| WorkerConfig::new().with_queue_capacity(capacity))
        .spawn(|_| W)
        .unwrap()
}

#[test]
fn send_timeout_hands_the_message_back_when_the_inbox_stays_full() {
    let pool = pool(1, 1);
    let (gate, gate_rx) = flume::bounded::<()>(0);
    pool.send_to(0, M::Gate(gate_rx)).unwrap();
    while pool.metrics().workers[0].queued > 0 {
        thread::sleep(Duration::from_millis(1));
    }
    pool.send_to(0, M::Add(1)).unwrap(); // fills the inbox
    let start = Instant::now();
    let r = pool.send_timeout(&0u64, M::Add(2), Duration::from_millis(30));
    let waited = start.elapsed();
    assert!(matches!(r, Err(SendError::Timeout(M::Add(2)))), "{r:?}");
    assert!(waited >= Duration::from_millis(25) && waited < Duration::from_secs(2));
    assert_eq!(r.unwrap_err().kind(), SendErrorKind::Timeout);
    let producer = pool.producer();
    producer.send_partitioned(&0u64, M::Add(3)).unwrap(); // fills the lane
    let r = producer.send_timeout(&0u64, M::Add(4), Duration::from_millis(10));
    assert!(matches!(r, Err(SendError::Timeout(M::Add(4)))), "{r:?}");
    drop(producer);
    drop(gate);
    assert_eq!(
        pool.send_timeout(&0u64, M::Add(5), Duration::from_secs(5)),
        Ok(())
    );
    pool.shutdown().unwrap();
}

#[test]
fn ask_timeout_gives_up_and_ask_to_and_ask_all_target_workers() {
    let pool = pool(3, 16);
    let r = pool.ask_timeout(&1u64, M::Ignore, Duration::from_millis(20));
    assert!(matches!(r, Err(AskError::TimedOut)), "{r:?}");
    assert_eq!(r.unwrap_err().kind(), AskErrorKind::TimedOut);
    for w in 0..3 {
        assert_eq!(pool.ask_to(w, M::Index).unwrap(), w);
    }
    assert_eq!(pool.ask_all(M::Index).unwrap(), [0, 1, 2]);
    let r = pool.ask_to(7, M::Index);
    assert!(
        matches!(r, Err(AskError::Send(SendError::Unroutable(M::Index(_))))),
        "{r:?}"
    );
    assert_eq!(
        r.unwrap_err().kind(),
        AskErrorKind::Send(SendErrorKind::Unroutable)
    );
    let (reply, answer) = Reply::pair();
    pool.send_to(0, M::Ignore(reply)).unwrap();
    assert!(matches!(
        answer.wait_timeout::<M>(Duration::from_millis(10)),
        Err(AskError::TimedOut)
    ));
    pool.shutdown().unwrap();
}

#[test]
fn a_single_worker_answers_asks() {
    let worker = spawn(W, WorkerConfig::new()).unwrap();
    assert_eq!(worker.ask(M::Index).unwrap(), 0);
    worker.stop().unwrap();
}

#[test]
fn error_kinds_carry_no_message_and_read_well() {
    let e: SendError<M> = SendError::Full(M::Add(1));
    assert_eq!(e.to_string(), "the worker's inbox is full");
    let kind: Box<dyn std::error::Error + Send + Sync> = Box::new(e.kind());
    assert_eq!(kind.to_string(), "the worker's inbox is full");
    let a: AskError<M> = AskError::Send(SendError::Closed(M::Add(1)));
    assert_eq!(
        a.to_string(),
        "ask failed to send: the worker is stopped or shutting down"
    );
}

#[test]
fn a_paused_pool_queues_and_a_resumed_one_catches_up() {
    let pool = pool(2, 64);
    pool.pause();
    let give_up = Instant::now() + Duration::from_secs(5);
    while pool
        .metrics()
        .workers
        .iter()
        .any(|w| w.state != corelane_worker::WorkerState::Paused)
    {
        assert!(Instant::now() < give_up, "the workers never paused");
        thread::sleep(Duration::from_millis(1));
    }
    for k in 0..10u64 {
        pool.send_partitioned(&k, M::Add(k)).unwrap();
    }
    let producer = pool.producer();
    for k in 0..5u64 {
        producer.send_partitioned(&k, M::Add(k)).unwrap();
    }
    thread::sleep(Duration::from_millis(20));
    assert_eq!(
        pool.metrics().total().counters.processed,
        0,
        "paused workers handle nothing"
    );
    assert_eq!(pool.metrics().total().queued, 15, "inboxes and lanes");
    assert!(pool.resume_worker(0) && !pool.resume_worker(9));
    pool.resume();
    pool.flush().unwrap();
    producer.flush().unwrap();
    assert_eq!(pool.metrics().total().counters.processed, 15);
    drop(producer);
    assert!(pool.shutdown().unwrap().is_clean());
}

/// A counter whose `on_panic` decides by the panic's message, and whose `init` records restarts.
struct Supervised;

#[derive(Debug)]
enum S {
    Inc,
    Panic(&'static str),
    Get(Reply<(u64, u64)>),
}

impl Worker for Supervised {
    type Message = S;
    /// (count, restarts seen by init)
    type State = (u64, u64);
    fn init(&mut self, ctx: &mut Context<'_, Self>) -> Result<Self::State, BoxError> {
        Ok((0, ctx.restarts()))
    }
    fn handle(&mut self, st: &mut Self::State, msg: S, _: &mut Context<'_, Self>) {
        match msg {
            S::Inc => st.0 += 1,
            S::Panic(why) => panic!("{why}"),
            S::Get(reply) => reply.send(*st),
        }
    }
    fn on_panic(
        &mut self,
        _: &mut Self::State,
        panic: &str,
        _: &mut Context<'_, Self>,
    ) -> corelane_worker::PanicAction {
        match panic {
            "keep" => corelane_worker::PanicAction::Keep,
            "stop" => corelane_worker::PanicAction::Stop,
            _ => corelane_worker::PanicAction::Rebuild,
        }
    }
}

#[test]
fn on_panic_keeps_rebuilds_or_stops_and_init_knows_a_restart() {
    let w = spawn(Supervised, WorkerConfig::new()).unwrap();
    w.send(S::Inc).unwrap();
    w.send(S::Panic("keep")).unwrap();
    assert_eq!(w.ask(S::Get).unwrap(), (1, 0), "kept: the count survives");
    w.send(S::Panic("rebuild")).unwrap();
    assert_eq!(
        w.ask(S::Get).unwrap(),
        (0, 1),
        "rebuilt: init saw one restart"
    );
    w.send(S::Panic("stop")).unwrap();
    let _ = w.send(S::Inc); // queued behind the stop (returned), or refused (handed back)
    let report = w.stop().unwrap();
    assert!(matches!(
        report.outcome,
        corelane_worker::Outcome::Failed(_)
    ));
    assert_eq!((report.counters.panics, report.counters.restarts), (3, 1));
}

/// Keeps a copy of every message whose text says so, and collects those whose handler panicked.
struct Letters {
    dead: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl Worker for Letters {
    type Message = String;
    type State = ();
    fn init(&mut self, _: &mut Context<'_, Self>) -> Result<(), BoxError> {
        Ok(())
    }
    fn handle(&mut self, _: &mut (), msg: String, _: &mut Context<'_, Self>) {
        if msg.contains("poison") {
            panic!("cannot digest {msg}");
        }
    }
    fn keep_for_dead_letter(&self, msg: &String) -> Option<String> {
        msg.starts_with("keep").then(|| msg.clone())
    }
    fn on_dead_letter(&mut self, msg: String, panic: &str, _: &mut Context<'_, Self>) {
        self.dead.lock().unwrap().push((msg, panic.to_owned()));
    }
}

#[test]
fn the_dead_letter_hook_gets_the_message_that_panicked_when_one_was_kept() {
    let dead = std::sync::Arc::default();
    let w = spawn(
        Letters {
            dead: std::sync::Arc::clone(&dead),
        },
        WorkerConfig::new(),
    )
    .unwrap();
    for msg in [
        "keep: fine",
        "keep: poison 1",
        "drop: poison 2",
        "keep: poison 3",
    ] {
        w.send(msg.to_owned()).unwrap();
    }
    let report = w.stop().unwrap();
    assert_eq!(report.counters.panics, 3);
    assert_eq!(
        *dead.lock().unwrap(),
        [
            (
                "keep: poison 1".to_owned(),
                "cannot digest keep: poison 1".to_owned()
            ),
            (
                "keep: poison 3".to_owned(),
                "cannot digest keep: poison 3".to_owned()
            ),
        ]
    );
}

#[cfg(feature = "signal")]
#[test]
fn a_termination_signal_shuts_the_pool_down_gracefully() {
    let signals = corelane_worker::ShutdownSignals::register().unwrap();
    let pool = pool(2, 64);
    for i in 0..100u64 {
        pool.send_partitioned(&i, M::Add(i)).unwrap();
    }
    let raiser = thread::spawn(|| {
        thread::sleep(Duration::from_millis(30));
        signal_hook::low_level::raise(signal_hook::consts::SIGTERM).unwrap();
    });
    let started = Instant::now();
    let report = pool.shutdown_on(signals, Duration::from_secs(5)).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(25));
    assert_eq!(report.processed(), 100);
    assert!(report.is_clean());
    raiser.join().unwrap();
}
