//! Every semantic the pool promises, one test each.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use corelane_partition::{RangePartitioner, RoundRobinPartitioner};
use corelane_worker::Dispatch;
use corelane_worker::Pool;
use corelane_worker::{
    AskError, BoxError, Context, Error, Outcome, Overflow, Reply, RestartPolicy, SendError, Worker,
    WorkerConfig, WorkerState,
};

#[derive(Clone, Default)]
struct Probe {
    inits: Arc<AtomicUsize>,
    stops: Arc<AtomicUsize>,
    init_threads: Arc<Mutex<Vec<thread::ThreadId>>>,
}

#[derive(Debug)]
enum M {
    Add(u64, u64),
    Get(u64, Reply<u64>),
    Seq(usize, u64),
    SeqOk(Reply<bool>),
    Panic,
    Sleep(Duration),
    Forward(u64, u64),
    StopMe,
    DropReply(Reply<u64>),
    Thread(Reply<thread::ThreadId>),
}

impl Clone for M {
    fn clone(&self) -> Self {
        match self {
            M::Add(k, v) => M::Add(*k, *v),
            M::Sleep(d) => M::Sleep(*d),
            other => panic!("{other:?} is not cloneable in tests"),
        }
    }
}

struct State {
    sums: HashMap<u64, u64>,
    next_seq: HashMap<usize, u64>,
    in_order: bool,
}

impl Worker for Probe {
    type Message = M;
    type State = State;
    fn init(&mut self, _ctx: &mut Context<'_, Self>) -> Result<State, BoxError> {
        self.inits.fetch_add(1, Ordering::SeqCst);
        self.init_threads
            .lock()
            .unwrap()
            .push(thread::current().id());
        Ok(State {
            sums: HashMap::new(),
            next_seq: HashMap::new(),
            in_order: true,
        })
    }
    fn handle(&mut self, s: &mut State, msg: M, ctx: &mut Context<'_, Self>) {
        match msg {
            M::Add(k, v) => *s.sums.entry(k).or_default() += v,
            M::Get(k, r) => r.send(s.sums.get(&k).copied().unwrap_or(0)),
            M::Seq(p, i) => {
                let next = s.next_seq.entry(p).or_default();
                s.in_order &= *next == i;
                *next = i + 1;
            }
            M::SeqOk(r) => r.send(s.in_order),
            M::Panic => panic!("boom"),
            M::Sleep(d) => thread::sleep(d),
            M::Forward(k, v) => ctx.send_partitioned(&k, M::Add(k, v)).unwrap(),
            M::StopMe => ctx.stop(),
            M::DropReply(r) => drop(r),
            M::Thread(r) => r.send(thread::current().id()),
        }
    }
    fn on_stop(&mut self, _s: State, _ctx: &mut Context<'_, Self>) {
        self.stops.fetch_add(1, Ordering::SeqCst);
    }
}

fn pool(n: usize, cfg: impl Fn(usize) -> WorkerConfig + 'static) -> (Pool<Probe>, Probe) {
    let probe = Probe::default();
    let p = probe.clone();
    let pool = Pool::builder()
        .workers(n)
        .worker_config(cfg)
        .spawn(move |_| p.clone())
        .unwrap();
    (pool, probe)
}

#[test]
fn invalid_configurations_are_typed_errors_at_build() {
    let cores = corelane_worker::available_cores();
    let err = Pool::builder()
        .workers(1)
        .worker_config(|_| WorkerConfig::new().with_cpu_affinity(10_000))
        .spawn(|_| Probe::default())
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err:?}");
    assert!(
        msg.contains("core 10000 does not exist") && msg.contains(&format!("{cores:?}")),
        "{msg}"
    );
    assert!(matches!(
        Pool::builder().workers(0).spawn(|_| Probe::default()),
        Err(Error::InvalidConfig(_))
    ));
    let bad_capacity = Pool::builder()
        .workers(1)
        .worker_config(|_| WorkerConfig::new().with_queue_capacity(0));
    assert!(matches!(
        bad_capacity.spawn(|_| Probe::default()),
        Err(Error::InvalidConfig(_))
    ));
    let range = RangePartitioner::new(vec![10u64]).unwrap(); // two partitions
    let wrong = Pool::builder()
        .workers(3)
        .partitioner_for::<u64, _>(range)
        .spawn(|_| Probe::default());
    assert!(matches!(wrong, Err(Error::InvalidConfig(m)) if m.contains("partitioner")));
}

#[test]
fn state_is_built_on_each_workers_own_pinned_thread() {
    let cores = corelane_worker::available_cores();
    let pinned = cores.clone();
    let (pool, probe) = pool(2, move |i| {
        WorkerConfig::new().with_cpu_affinity(pinned[i % pinned.len()])
    });
    let mut worker_threads = Vec::new();
    for w in 0..2 {
        let (reply, answer) = Reply::pair();
        pool.send_to(w, M::Thread(reply)).unwrap();
        worker_threads.push(answer.wait::<M>().unwrap());
    }
    let mut inits = probe.init_threads.lock().unwrap().clone();
    inits.sort_by_key(|t| format!("{t:?}"));
    worker_threads.sort_by_key(|t| format!("{t:?}"));
    assert_eq!(
        inits, worker_threads,
        "init ran on the worker threads themselves"
    );
    assert!(!inits.contains(&thread::current().id()));
    let m = pool.metrics();
    assert_eq!(m.workers[0].core, Some(cores[0]));
}

#[test]
fn same_key_same_worker_and_per_producer_order() {
    let (pool, _) = pool(2, |_| WorkerConfig::new().with_queue_capacity(64));
    let clients: Vec<_> = (0..3usize)
        .map(|c| {
            let pool = pool.clone();
            thread::spawn(move || {
                for i in 0..20_000u64 {
                    pool.send_partitioned(&(c as u64), M::Seq(c, i)).unwrap();
                    pool.send_partitioned(&(i % 10), M::Add(i % 10, 1)).unwrap();
                }
            })
        })
        .collect();
    clients.into_iter().for_each(|h| h.join().unwrap());
    pool.flush().unwrap();
    for c in 0..3u64 {
        assert!(
            pool.ask(&c, M::SeqOk).unwrap(),
            "client {c}'s messages were reordered"
        );
    }
    let total: u64 = (0..10u64)
        .map(|k| pool.ask(&k, |r| M::Get(k, r)).unwrap())
        .sum();
    assert_eq!(total, 60_000, "every add landed on the key's one worker");
}

#[test]
fn ask_observes_every_earlier_send_read_after_write() {
    let (pool, _) = pool(2, |_| WorkerConfig::new());
    for round in 1..=200u64 {
        pool.send_partitioned(&5u64, M::Add(5, 1)).unwrap();
        assert_eq!(pool.ask(&5u64, |r| M::Get(5, r)).unwrap(), round);
    }
    let async_answer = pollster::block_on(pool.ask_async(&5u64, |r| M::Get(5, r))).unwrap();
    assert_eq!(async_answer, 200);
}

#[test]
fn dropped_reply_is_a_typed_error_not_a_hang() {
    let (pool, _) = pool(1, |_| WorkerConfig::new());
    assert!(matches!(
        pool.ask(&1u64, M::DropReply),
        Err(AskError::NoReply)
    ));
    assert!(matches!(
        pool.ask(&1u64, |_r: Reply<u64>| M::Panic),
        Err(AskError::NoReply)
    ));
}

#[test]
fn reject_hands_back_drop_newest_and_drop_oldest_count_and_everything_balances() {
    for overflow in [Overflow::Reject, Overflow::DropNewest, Overflow::DropOldest] {
        let (pool, _) = pool(1, move |_| {
            WorkerConfig::new()
                .with_queue_capacity(4)
                .with_overflow(overflow)
        });
        // Keep the worker busy so the inbox fills.
        pool.send_to(0, M::Sleep(Duration::from_millis(100)))
            .unwrap();
        thread::sleep(Duration::from_millis(20));
        let (mut ok, mut full) = (0u64, 0u64);
        for i in 0..20 {
            match pool.send_to(0, M::Add(1, i)) {
                Ok(()) => ok += 1,
                Err(SendError::Full(M::Add(1, v))) => {
                    assert_eq!(v, i, "the rejected message is handed back");
                    full += 1;
                }
                Err(e) => panic!("{overflow:?}: {e:?}"),
            }
        }
        let report = pool.shutdown().unwrap();
        let dropped = report.dropped();
        match overflow {
            Overflow::Reject => assert!(full > 0 && dropped == 0, "{full} {dropped}"),
            _ => assert!(full == 0 && dropped > 0, "{overflow:?}: {full} {dropped}"),
        }
        // accepted = processed + dropped + returned, and it equals what the client saw accepted.
        assert_eq!(report.accepted(), ok + 1, "{overflow:?}");
        assert_eq!(report.accepted(), report.processed() + report.dropped());
    }
}

#[test]
fn block_waits_for_room_and_wakes() {
    let (pool, _) = pool(1, |_| WorkerConfig::new().with_queue_capacity(2));
    pool.send_to(0, M::Sleep(Duration::from_millis(50)))
        .unwrap();
    let start = Instant::now();
    for i in 0..10 {
        pool.send_to(0, M::Add(1, i)).unwrap(); // blocks while the inbox is full
    }
    assert!(
        start.elapsed() >= Duration::from_millis(20),
        "sends should have waited for room"
    );
    assert_eq!(pool.ask(&1u64, |r| M::Get(1, r)).unwrap(), 45);
    assert!(matches!(
        pool.try_send_to(0, M::Add(1, 1)),
        Ok(()) | Err(SendError::Full(_))
    ));
}

#[test]
fn a_panic_is_caught_counted_and_the_state_rebuilt_keeping_the_queue() {
    let letters = Arc::new(AtomicUsize::new(0));
    let l = letters.clone();
    let (pool, probe) = pool(2, move |_| {
        let l = l.clone();
        WorkerConfig::new().with_dead_letter(move |d| {
            assert!(d.panic.contains("boom"));
            l.fetch_add(1, Ordering::SeqCst);
        })
    });
    let target = pool.worker_for(&3u64);
    pool.send_partitioned(&3u64, M::Add(3, 10)).unwrap();
    pool.send_partitioned(&3u64, M::Panic).unwrap();
    pool.send_partitioned(&3u64, M::Add(3, 1)).unwrap(); // queued behind the panic: kept
    assert_eq!(
        pool.ask(&3u64, |r| M::Get(3, r)).unwrap(),
        1,
        "state rebuilt, later message applied"
    );
    let m = pool.metrics();
    assert_eq!(
        (
            m.workers[target].counters.panics,
            m.workers[target].counters.restarts
        ),
        (1, 1)
    );
    assert_eq!(letters.load(Ordering::SeqCst), 1);
    assert_eq!(
        probe.inits.load(Ordering::SeqCst),
        3,
        "two workers + one rebuild"
    );
    assert_eq!(
        m.workers[1 - target].counters.panics,
        0,
        "the other worker is unaffected"
    );
}

#[test]
fn past_the_restart_limit_the_worker_stops_and_returns_its_queue() {
    let policy = RestartPolicy::Restart {
        max_restarts: 2,
        within: Duration::from_secs(60),
    };
    let (pool, _) = pool(2, move |_| WorkerConfig::new().with_restart(policy));
    let victim = pool.worker_for(&1u64);
    let other_key = (0..100u64).find(|k| pool.worker_for(k) != victim).unwrap();
    pool.send_to(victim, M::Sleep(Duration::from_millis(30)))
        .unwrap();
    for _ in 0..3 {
        pool.send_to(victim, M::Panic).unwrap();
    }
    for i in 0..5 {
        pool.send_to(victim, M::Add(1, i)).unwrap();
    }
    // The third panic exceeds the policy: the worker stops; later sends are handed back.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool.metrics().workers[victim].state != WorkerState::Failed {
        assert!(Instant::now() < deadline, "worker did not stop");
        thread::sleep(Duration::from_millis(5));
    }
    assert!(matches!(
        pool.send_to(victim, M::Add(1, 9)),
        Err(SendError::Closed(M::Add(1, 9)))
    ));
    pool.send_partitioned(&other_key, M::Add(other_key, 2))
        .unwrap();
    assert_eq!(
        pool.ask(&other_key, |r| M::Get(other_key, r)).unwrap(),
        2,
        "others keep running"
    );
    let report = pool.shutdown().unwrap();
    let w = &report.workers[victim];
    assert!(
        matches!(&w.outcome, Outcome::Failed(r) if r.contains("more than 2 restarts")),
        "{:?}",
        w.outcome
    );
    assert_eq!(w.unprocessed.len(), 5, "queued messages are returned");
    assert_eq!(w.accepted(), 9);
}

#[test]
fn stop_policy_stops_at_the_first_panic() {
    let (pool, _) = pool(1, |_| WorkerConfig::new().with_restart(RestartPolicy::Stop));
    pool.send_to(0, M::Panic).unwrap();
    let report = pool.shutdown().unwrap();
    assert!(matches!(report.workers[0].outcome, Outcome::Failed(_)));
    assert_eq!(report.workers[0].counters.restarts, 0);
}

#[test]
fn a_failing_or_panicking_init_fails_spawn() {
    struct BadInit(bool);
    impl Worker for BadInit {
        type Message = ();
        type State = ();
        fn init(&mut self, _: &mut Context<'_, Self>) -> Result<(), BoxError> {
            if self.0 {
                panic!("init exploded")
            }
            Err("no database".into())
        }
        fn handle(&mut self, _: &mut (), _: (), _: &mut Context<'_, Self>) {}
    }
    let e = Pool::builder()
        .workers(2)
        .spawn(|i| BadInit(i == 1))
        .unwrap_err();
    assert!(matches!(&e, Error::Init { worker: 0, .. }), "{e}");
    assert_eq!(e.to_string(), "worker 0 failed to initialize: no database");
    let e = Pool::builder()
        .workers(1)
        .spawn(|_| BadInit(true))
        .unwrap_err();
    assert!(
        matches!(&e, Error::InitPanic { panic, .. } if panic == "init exploded"),
        "{e}"
    );
}

#[test]
fn shutdown_drains_runs_on_stop_and_hands_back_later_sends() {
    let (pool, probe) = pool(2, |_| WorkerConfig::new().with_queue_capacity(1024));
    for i in 0..1000u64 {
        pool.send_partitioned(&i, M::Add(i, 1)).unwrap();
    }
    let handle = pool.clone();
    let report = pool.shutdown().unwrap();
    assert!(report.is_clean());
    assert_eq!(report.processed(), 1000);
    assert_eq!(probe.stops.load(Ordering::SeqCst), 2);
    match handle.send_to(0, M::Add(1, 1)) {
        Err(SendError::Closed(M::Add(1, 1))) => {}
        other => panic!("expected the message back, got {other:?}"),
    }
    assert!(matches!(handle.shutdown(), Err(Error::ShutDown)));
}

#[test]
fn shutdown_timeout_returns_what_was_not_processed() {
    let (pool, _) = pool(1, |_| WorkerConfig::new().with_queue_capacity(64));
    for _ in 0..10 {
        pool.send_to(0, M::Sleep(Duration::from_millis(30)))
            .unwrap();
    }
    let start = Instant::now();
    let report = pool.shutdown_timeout(Duration::from_millis(50)).unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
    let w = &report.workers[0];
    assert!(w.counters.processed >= 1 && w.counters.processed < 10 && !w.unprocessed.is_empty());
    assert_eq!(w.accepted(), 10);
}

#[test]
fn a_timed_shutdown_stops_inside_a_batch_gathered_before_it() {
    let (pool, _) = pool(1, |_| WorkerConfig::new().with_queue_capacity(64));
    pool.send_to(0, M::Sleep(Duration::from_millis(40)))
        .unwrap();
    thread::sleep(Duration::from_millis(10));
    // Each shorter than the stop's grace, so the handler in progress at the deadline returns
    // before the pool gives up on the worker.
    for _ in 0..10 {
        pool.send_to(0, M::Sleep(Duration::from_millis(12)))
            .unwrap();
    }
    // Once the inbox is empty the worker holds the ten in one gathered batch.
    let give_up = Instant::now() + Duration::from_secs(5);
    while pool.metrics().workers[0].queued > 0 {
        assert!(
            Instant::now() < give_up,
            "the worker never gathered its inbox"
        );
        thread::sleep(Duration::from_millis(1));
    }
    let report = pool.shutdown_timeout(Duration::from_millis(10)).unwrap();
    let w = &report.workers[0];
    assert_eq!(
        w.outcome,
        Outcome::Completed,
        "the worker went on with its gathered batch past the deadline, and the pool gave up on it"
    );
    assert!(
        w.counters.processed < 11 && !w.unprocessed.is_empty(),
        "{w:?}"
    );
    assert_eq!(w.accepted(), 11);
}

#[test]
fn dropping_the_pool_shuts_down_gracefully() {
    let (pool, probe) = pool(2, |_| WorkerConfig::new());
    pool.send_to(0, M::Add(1, 1)).unwrap();
    drop(pool);
    assert_eq!(
        probe.stops.load(Ordering::SeqCst),
        2,
        "on_stop ran on every worker"
    );
}

#[test]
fn sends_racing_shutdown_lose_nothing() {
    let (pool, _) = pool(2, |_| WorkerConfig::new().with_queue_capacity(16));
    let accepted = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (pool, accepted) = (pool.clone(), accepted.clone());
            thread::spawn(move || {
                for i in 0..100_000u64 {
                    match pool.send_partitioned(&i, M::Add(i, 1)) {
                        Ok(()) => drop(accepted.fetch_add(1, Ordering::SeqCst)),
                        Err(SendError::Closed(_)) => return,
                        Err(e) => panic!("{e:?}"),
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(5));
    let report = pool.shutdown().unwrap();
    clients.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(report.accepted(), accepted.load(Ordering::SeqCst) as u64);
    assert_eq!(
        report.processed(),
        report.accepted(),
        "a graceful shutdown handles every accepted message"
    );
}

#[test]
fn handlers_route_to_peers_and_can_stop_their_worker() {
    let (pool, _) = pool(2, |_| WorkerConfig::new());
    for k in 0..20u64 {
        pool.send_to(0, M::Forward(k, 1)).unwrap();
    }
    pool.flush().unwrap();
    pool.flush().unwrap(); // the forwarded adds were sent before the second flush's markers
    let total: u64 = (0..20u64)
        .map(|k| pool.ask(&k, |r| M::Get(k, r)).unwrap())
        .sum();
    assert_eq!(total, 20);
    pool.send_to(1, M::StopMe).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool.metrics().workers[1].state != WorkerState::Stopped {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(pool.metrics().workers[0].state, WorkerState::Running);
}

#[test]
fn broadcast_reaches_every_worker() {
    let (pool, _) = pool(2, |_| WorkerConfig::new().with_batch_size(1));
    pool.broadcast(M::Add(77, 1)).unwrap();
    pool.flush().unwrap();
    let per_worker: Vec<u64> = (0..2)
        .map(|w| {
            let (reply, answer) = Reply::pair();
            pool.send_to(w, M::Get(77, reply)).unwrap();
            answer.wait::<M>().unwrap()
        })
        .collect();
    assert_eq!(per_worker, [1, 1]);
    assert!(matches!(
        pool.send_to(5, M::Add(1, 1)),
        Err(SendError::Unroutable(_))
    ));
}

/// Two threads, each with its own producer made by `$make`, send 20k numbered messages to their
/// own key and 20k adds to key 100, then ask their key's worker whether the numbers came in
/// order, and flush.
macro_rules! two_ordered_producers {
    ($pool:expr, |$p:ident| $make:expr) => {
        let handles: Vec<_> = (0..2usize)
            .map(|c| {
                let $p = $pool.clone();
                thread::spawn(move || {
                    let producer = $make;
                    for i in 0..20_000u64 {
                        producer
                            .send_partitioned(&(c as u64), M::Seq(c, i))
                            .unwrap();
                        producer.send_partitioned(&100u64, M::Add(100, 1)).unwrap();
                    }
                    assert!(producer.ask(&(c as u64), M::SeqOk).unwrap());
                    producer.flush().unwrap();
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
    };
}

#[test]
fn producer_lanes_keep_order_and_support_ask_and_flush() {
    let (pool, _) = pool(2, |_| WorkerConfig::new().with_queue_capacity(8));
    two_ordered_producers!(pool, |pool| pool.producer());
    assert_eq!(pool.ask(&100u64, |r| M::Get(100, r)).unwrap(), 40_000);
    let report = pool.shutdown().unwrap();
    assert_eq!(report.processed(), 80_000 + 2 + 1);
}

#[test]
fn a_batching_producer_publishes_full_batches_in_order_and_on_flush() {
    let (pool, _) = pool(2, |_| WorkerConfig::new().with_queue_capacity(8));
    assert!(matches!(
        pool.producer().batching(0),
        Err(Error::InvalidConfig(_))
    ));
    let producer = pool.producer().batching(16).unwrap();
    for _ in 0..3 {
        producer.send_partitioned(&7u64, M::Add(7, 1)).unwrap();
    }
    assert_eq!(producer.pending(), 3);
    producer.flush().unwrap();
    assert_eq!(producer.pending(), 0);
    assert_eq!(
        pool.ask(&7u64, |r| M::Get(7, r)).unwrap(),
        3,
        "flush published"
    );
    // The ask goes behind its worker's batch, so it sees every earlier Seq.
    two_ordered_producers!(pool, |pool| pool.producer().batching(16).unwrap());
    assert_eq!(pool.ask(&100u64, |r| M::Get(100, r)).unwrap(), 40_000);
    // Dropping a batching producer publishes what it still holds.
    let producer = pool.producer().batching(100).unwrap();
    for _ in 0..5 {
        producer.send_to(1, M::Add(9, 1)).unwrap();
    }
    assert_eq!(producer.pending(), 5);
    drop(producer);
    let report = pool.shutdown().unwrap();
    assert_eq!(report.processed(), 3 + 1 + 80_000 + 2 + 1 + 5);
}

#[test]
fn a_batching_producer_hands_back_what_it_could_not_publish() {
    for overflow in [Overflow::Reject, Overflow::DropNewest] {
        let (pool, _) = pool(1, move |_| {
            WorkerConfig::new()
                .with_queue_capacity(4)
                .with_overflow(overflow)
        });
        let producer = pool.producer().batching(8).unwrap();
        // Keep the worker busy so that only the lane's 4 slots take the batch.
        producer
            .send_to(0, M::Sleep(Duration::from_millis(100)))
            .unwrap();
        producer.publish().unwrap();
        thread::sleep(Duration::from_millis(20));
        let mut results = Vec::new();
        for i in 0..8 {
            results.push(producer.send_to(0, M::Add(1, i)));
        }
        assert!(results[..7].iter().all(Result::is_ok), "{overflow:?}");
        match (overflow, results.pop().unwrap()) {
            (Overflow::Reject, Err(SendError::Full(back))) => {
                let values: Vec<u64> = back
                    .into_iter()
                    .map(|m| match m {
                        M::Add(1, v) => v,
                        other => panic!("{other:?}"),
                    })
                    .collect();
                assert_eq!(values, [4, 5, 6, 7], "the unpublished tail, in order");
            }
            (Overflow::DropNewest, Ok(())) => {}
            (o, r) => panic!("{o:?}: {r:?}"),
        }
        assert_eq!(producer.pending(), 0);
        let report = pool.shutdown().unwrap();
        assert_eq!(report.processed(), 1 + 4, "{overflow:?}");
        let dropped = if overflow == Overflow::DropNewest {
            4
        } else {
            0
        };
        assert_eq!(report.dropped(), dropped, "{overflow:?}");
        // After shutdown, a publish fails and hands the batch back.
        producer.send_to(0, M::Add(1, 99)).unwrap();
        match producer.publish() {
            Err(SendError::Closed(back)) => assert_eq!(back.len(), 1),
            other => panic!("{overflow:?}: {other:?}"),
        }
    }
}

#[test]
fn custom_partitioners_route_and_round_robin_spreads() {
    let probe = Probe::default();
    let p = probe.clone();
    let pool = Pool::builder()
        .workers(2)
        .partitioner(RoundRobinPartitioner::with_partitions(1).unwrap())
        .spawn(move |_| p.clone())
        .unwrap();
    for i in 0..100u64 {
        pool.send_partitioned(&(), M::Add(i, 1)).unwrap();
    }
    pool.flush().unwrap();
    let m = pool.metrics();
    assert_eq!(m.workers[0].counters.processed, 50);
    assert_eq!(m.total().counters.processed, 100);
}

/// CPU ticks used so far by this process's threads whose name starts with `prefix`.
fn thread_cpu_ticks(prefix: &str) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
        total += fields
            .get(11)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        total += fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

#[test]
fn an_idle_pool_parks_instead_of_polling() {
    let (pool, _) = pool(2, |i| {
        WorkerConfig::new().with_name(format!("idleprobe-{i}"))
    });
    pool.flush().unwrap();
    thread::sleep(Duration::from_millis(50));
    let before = thread_cpu_ticks("idleprobe-");
    thread::sleep(Duration::from_millis(500));
    let ticks = thread_cpu_ticks("idleprobe-") - before; // clock ticks, usually 10 ms each
                                                         // Two polling workers would burn ~100 ticks here; parked ones none. Loose bound on purpose:
                                                         // the precise figure is in docs/benchmarks.md.
    assert!(
        ticks <= 3,
        "idle workers used {ticks} ticks of CPU in 500 ms"
    );
    // A message to an idle worker is still handled.
    pool.send_to(0, M::Add(1, 1)).unwrap();
    let (reply, answer) = Reply::pair();
    pool.send_to(0, M::Get(1, reply)).unwrap();
    assert_eq!(answer.wait::<M>().unwrap(), 1);
}

#[test]
fn a_lone_worker_pauses_resumes_and_stops() {
    let probe = Probe::default();
    let worker =
        corelane_worker::spawn(probe.clone(), WorkerConfig::new().with_name("lone")).unwrap();
    worker.send(M::Add(1, 1)).unwrap();
    worker.flush().unwrap();
    worker.pause();
    let deadline = Instant::now() + Duration::from_secs(5);
    while worker.state() != WorkerState::Paused {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(1));
    }
    worker.send(M::Add(1, 1)).unwrap();
    thread::sleep(Duration::from_millis(30));
    assert_eq!(
        worker.metrics().counters.processed,
        1,
        "a paused worker handles nothing"
    );
    assert_eq!(worker.metrics().queued, 1);
    worker.resume();
    worker.flush().unwrap();
    assert_eq!(worker.metrics().counters.processed, 2);
    let report = worker.stop().unwrap();
    assert_eq!(
        (report.counters.processed, report.outcome),
        (2, Outcome::Completed)
    );
    assert_eq!(probe.stops.load(Ordering::SeqCst), 1);
}

#[test]
fn a_batching_send_timeout_gives_up_at_its_deadline_and_hands_back_the_batch() {
    let (pool, _) = pool(1, |_| WorkerConfig::new().with_queue_capacity(2));
    pool.send_to(0, M::Sleep(Duration::from_millis(400)))
        .unwrap();
    let batching = pool.producer().batching(4).unwrap();
    let start = Instant::now();
    let mut failed = None;
    for i in 0..40u64 {
        let sent = batching.send_timeout(&0u64, M::Add(0, i), Duration::from_millis(50));
        if let Err(e) = sent {
            failed = Some(e);
            break;
        }
    }
    let err = failed.expect("the lane fills while the worker sleeps");
    assert!(
        start.elapsed() < Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    match err {
        SendError::Timeout(back) => assert!(!back.is_empty()),
        other => panic!("expected a timeout, got {:?}", other.kind()),
    }
    drop(batching);
    pool.shutdown().unwrap();
}

/// The async twins wait for room as tasks: a full inbox under `Block` leaves the future pending
/// and the executor's one thread free for its other tasks.
#[test]
fn async_sends_and_asks_wait_for_room_without_blocking_the_executor() {
    let (pool, _) = pool(1, |_| WorkerConfig::new().with_queue_capacity(1));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        pool.send_to(0, M::Sleep(Duration::from_millis(400)))
            .unwrap();
        // Once the worker is in the sleep, fill the inbox behind it.
        thread::sleep(Duration::from_millis(50));
        while pool.try_send_to(0, M::Add(1, 1)).is_ok() {}
        let started = Instant::now();
        let mut send = std::pin::pin!(pool.send_async(&1u64, M::Add(1, 10)));
        tokio::select! {
            _ = &mut send => panic!("the inbox was full: the send cannot have completed"),
            _ = tokio::time::sleep(Duration::from_millis(30)) => {}
        }
        // The timer fired on the same thread, so the send did not block it.
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "{:?}",
            started.elapsed()
        );
        send.await.unwrap();
        let total = pool.ask_async(&1u64, |r| M::Get(1, r)).await.unwrap();
        assert!(total >= 10, "{total}");
        assert_eq!(pool.ask_to_async(0, |r| M::Get(1, r)).await.unwrap(), total);
        assert!(matches!(
            pool.send_to_async(9, M::Add(1, 1)).await,
            Err(SendError::Unroutable(_))
        ));
    });
    pool.shutdown().unwrap();
}

#[test]
fn metrics_are_exposed_in_the_prometheus_text_format() {
    let (pool, _) = pool(2, |_| WorkerConfig::new());
    for k in 0..10u64 {
        pool.send_partitioned(&k, M::Add(k, 1)).unwrap();
    }
    pool.flush().unwrap();
    let metrics = pool.metrics();
    let text = metrics.to_prometheus();
    assert!(
        text.contains("# TYPE corelane_processed_total counter"),
        "{text}"
    );
    let processed: u64 = text
        .lines()
        .filter(|l| l.starts_with("corelane_processed_total{worker="))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(processed, 10);
    assert_eq!(text.matches("corelane_queued{worker=").count(), 2);
    pool.shutdown().unwrap();
}

#[cfg(feature = "latency")]
#[test]
fn handler_latency_is_sampled_into_the_histogram() {
    let (pool, _) = pool(1, |_| WorkerConfig::new());
    // One message per batch: each is handled before the next is sent.
    let batches = 4 * u64::from(corelane_worker::LATENCY_SAMPLE);
    for sent in 1..=batches {
        pool.send_to(0, M::Sleep(Duration::from_micros(200)))
            .unwrap();
        while pool.metrics().workers[0].counters.processed < sent {
            thread::yield_now();
        }
    }
    pool.flush().unwrap(); // the last timed batch has been recorded
    let metrics = pool.metrics();
    let latency = &metrics.workers[0].latency;
    assert_eq!(latency.samples(), 4);
    let median = latency.quantile(0.5).unwrap();
    assert!(median >= Duration::from_micros(200), "{median:?}");
    assert_eq!(metrics.latency().samples(), 4);
    let count = "corelane_handler_seconds_count{worker=\"0\"} 4";
    assert!(metrics.to_prometheus().contains(count));
    pool.shutdown().unwrap();
}

#[test]
fn nth_core_pins_while_cores_last_and_never_fails() {
    let cores = corelane_worker::available_cores();
    let n = cores.len() + 2;
    let pool = Pool::builder()
        .workers(n)
        .worker_config(|i| WorkerConfig::new().with_nth_core(i))
        .spawn(|_| Probe::default())
        .unwrap();
    let placed: Vec<Option<usize>> = pool.metrics().workers.iter().map(|w| w.core).collect();
    let mut want: Vec<Option<usize>> = cores.iter().map(|&c| Some(c)).collect();
    want.extend([None, None]);
    assert_eq!(placed, want);
    pool.shutdown().unwrap();
}
