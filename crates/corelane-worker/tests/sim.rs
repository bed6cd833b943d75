//! The simulator on the workers a user writes: each test fails if its feature is removed.
#![cfg(feature = "sim")]

use std::collections::HashMap;

use corelane_worker::sim::{Faults, Sim};
use corelane_worker::{
    AskError, BoxError, Context, Error, Outcome, Overflow, Reply, RestartPolicy, SendError, Worker,
    WorkerConfig,
};

// ---- a key-value store with a front worker that forwards writes to the owner -----------------

#[derive(Debug)]
enum Kv {
    /// To the front (worker 0): write `k = v`, answer when acknowledged.
    Write(u64, u64, Reply<()>),
    /// To the owner (worker 1): apply, and answer the writer if the reply came along.
    Apply(u64, u64, Option<Reply<()>>),
    Read(u64, Reply<Option<u64>>),
}

struct Store {
    /// The planted bug: acknowledge the write before the owner applied it.
    ack_first: bool,
}

impl Worker for Store {
    type Message = Kv;
    type State = HashMap<u64, u64>;
    fn init(&mut self, _: &mut Context<'_, Self>) -> Result<Self::State, BoxError> {
        Ok(HashMap::new())
    }
    fn handle(&mut self, state: &mut Self::State, msg: Kv, ctx: &mut Context<'_, Self>) {
        match msg {
            Kv::Write(k, v, reply) if self.ack_first => {
                reply.send(());
                ctx.send_to(1, Kv::Apply(k, v, None)).unwrap();
            }
            Kv::Write(k, v, reply) => ctx.send_to(1, Kv::Apply(k, v, Some(reply))).unwrap(),
            Kv::Apply(k, v, reply) => {
                state.insert(k, v);
                if let Some(r) = reply {
                    r.send(());
                }
            }
            Kv::Read(k, reply) => reply.send(state.get(&k).copied()),
        }
    }
}

fn store(ack_first: bool) -> Sim<Store> {
    Sim::new(2, move |_| Store { ack_first }).client(|c| async move {
        c.ask_to(0, |r| Kv::Write(1, 42, r)).await.unwrap();
        let got = c.ask_to(1, |r| Kv::Read(1, r)).await.unwrap();
        assert_eq!(
            got,
            Some(42),
            "a read after an acknowledged write misses it"
        );
    })
}

#[test]
fn an_ack_before_apply_is_found_by_random_seeds_and_replays_to_the_same_trace() {
    let sim = store(true);
    let failure = sim.random(0..100).expect_err("the planted bug is found");
    assert!(failure.message.contains("misses it"), "{failure}");
    let seed = failure.seed.expect("a random schedule has a seed");
    // The seed and the choice string both replay it, to the same trace.
    let again = sim
        .run_seed(seed)
        .expect_err("the seed replays the failure");
    assert_eq!(again.trace, failure.trace);
    assert_eq!(sim.trace(seed), failure.trace);
    let replayed = sim
        .replay(&failure.choices)
        .expect_err("the choices replay it");
    assert_eq!(replayed.message, failure.message);
    assert!(
        failure.trace.iter().any(|l| l.contains("reply visible")),
        "the trace is readable: {failure}"
    );
}

#[test]
fn an_ack_before_apply_is_found_by_exhaustive_search() {
    let failure = store(true).exhaustive(100_000).expect_err("found");
    assert!(
        failure.seed.is_none() && !failure.choices.is_empty(),
        "{failure}"
    );
    assert!(store(true).pct(2, 0..200).is_err(), "PCT finds it too");
}

#[test]
fn the_corrected_store_passes_ten_thousand_seeds_and_the_exhaustive_search() {
    let sim = store(false);
    let summary = sim.random(0..10_000).unwrap();
    assert_eq!(summary.schedules, 10_000);
    let all = sim.exhaustive(1_000_000).unwrap();
    assert!(all.complete, "{all:?}");
    sim.pct(3, 0..1000).unwrap();
}

// ---- order ------------------------------------------------------------------------------------

#[derive(Debug)]
enum Seq {
    /// (producer, sequence number)
    Item(usize, u64),
    /// Forward `Item(p, n)` to worker 1.
    Forward(usize, u64),
    Check(Reply<Vec<(usize, u64)>>),
}

struct Recorder;

impl Worker for Recorder {
    type Message = Seq;
    type State = Vec<(usize, u64)>;
    fn init(&mut self, _: &mut Context<'_, Self>) -> Result<Self::State, BoxError> {
        Ok(Vec::new())
    }
    fn handle(&mut self, seen: &mut Self::State, msg: Seq, ctx: &mut Context<'_, Self>) {
        match msg {
            Seq::Item(p, n) => seen.push((p, n)),
            Seq::Forward(p, n) => ctx.send_to(1, Seq::Item(p, n)).unwrap(),
            Seq::Check(reply) => reply.send(seen.clone()),
        }
    }
}

#[test]
fn per_channel_order_holds_under_several_producers_and_the_causal_chain_raises_no_alarm() {
    let sim = Sim::new(2, |_| Recorder)
        .client(|c| async move {
            let p = c.producer();
            for n in 0..4 {
                p.send(&0u64, Seq::Item(10, n)).await.unwrap();
            }
        })
        .client(|c| async move {
            // x to B, then m to A; A forwards y to B: B sees x before y.
            c.send_to(1, Seq::Item(20, 0)).await.unwrap();
            c.send_to(0, Seq::Forward(20, 1)).await.unwrap();
            for n in 2..4 {
                c.send_to(1, Seq::Item(20, n)).await.unwrap();
            }
        })
        .client(|c| async move {
            c.yield_now().await;
            let seen = c.ask_to(1, Seq::Check).await.unwrap();
            let at = |item| seen.iter().position(|&s| s == item);
            // Each channel in order: the producer's lane; the client's direct sends to B.
            let channel = |items: &[(usize, u64)]| {
                let pos: Vec<usize> = items.iter().filter_map(|&i| at(i)).collect();
                pos.windows(2).all(|w| w[0] < w[1])
            };
            assert!(channel(&[(10, 0), (10, 1), (10, 2), (10, 3)]), "{seen:?}");
            assert!(channel(&[(20, 0), (20, 2), (20, 3)]), "{seen:?}");
            // Causal: x reached B before y, which A sent only after x was sent.
            if let Some(y) = at((20, 1)) {
                assert!(at((20, 0)).is_some_and(|x| x < y), "{seen:?}");
            }
        });
    sim.random(0..3000).unwrap();
    sim.pct(3, 0..1000).unwrap();
}

// ---- the lanes and the inbox are not ordered -------------------------------------------------

#[derive(Debug)]
enum Reg {
    Set(u64),
    Get(Reply<u64>),
}

struct Register;

impl Worker for Register {
    type Message = Reg;
    type State = u64;
    fn init(&mut self, _: &mut Context<'_, Self>) -> Result<u64, BoxError> {
        Ok(0)
    }
    fn handle(&mut self, v: &mut u64, msg: Reg, _: &mut Context<'_, Self>) {
        match msg {
            Reg::Set(n) => *v = n,
            Reg::Get(reply) => reply.send(*v),
        }
    }
}

#[test]
fn a_producer_send_then_a_pool_ask_can_read_stale_but_a_producer_ask_never_does() {
    let stale = Sim::new(1, |_| Register).client(|c| async move {
        c.producer().send(&0u64, Reg::Set(7)).await.unwrap();
        assert_eq!(c.ask(&0u64, Reg::Get).await.unwrap(), 7, "stale read");
    });
    let failure = stale
        .exhaustive(10_000)
        .expect_err("some schedule reads stale");
    assert!(failure.message.contains("stale read"), "{failure}");
    let fresh = Sim::new(1, |_| Register).client(|c| async move {
        let p = c.producer();
        p.send(&0u64, Reg::Set(7)).await.unwrap();
        assert_eq!(p.ask(&0u64, Reg::Get).await.unwrap(), 7);
    });
    assert!(fresh.exhaustive(10_000).unwrap().complete);
}

#[test]
fn everything_sent_before_a_completed_flush_was_handled() {
    let sim = Sim::new(2, |_| Register).client(|c| async move {
        for n in 1..=3 {
            c.send(&n, Reg::Set(n)).await.unwrap();
        }
        c.flush().await.unwrap();
        for n in 1..=3u64 {
            let w = c.worker_for(&n);
            let got = c.ask_to(w, Reg::Get).await.unwrap();
            assert!(
                got >= 1,
                "worker {w} had not handled a send before the flush"
            );
        }
    });
    assert!(sim.exhaustive(200_000).unwrap().complete);
    sim.random(0..2000).unwrap();
}

// ---- supervision -----------------------------------------------------------------------------

#[derive(Debug)]
enum Count {
    Inc(Reply<u64>),
    Boom,
    Get(Reply<u64>),
}

struct Counter;

impl Worker for Counter {
    type Message = Count;
    type State = u64;
    fn init(&mut self, _: &mut Context<'_, Self>) -> Result<u64, BoxError> {
        Ok(0)
    }
    fn handle(&mut self, n: &mut u64, msg: Count, _: &mut Context<'_, Self>) {
        match msg {
            Count::Inc(reply) => {
                *n += 1;
                reply.send(*n);
            }
            Count::Boom => panic!("boom"),
            Count::Get(reply) => reply.send(*n),
        }
    }
}

#[test]
fn a_panic_rebuilds_the_state_keeps_the_queue_and_loses_acknowledged_increments() {
    let sim = Sim::new(1, |_| Counter).client(|c| async move {
        assert_eq!(c.ask(&0u64, Count::Inc).await.unwrap(), 1);
        c.send(&0u64, Count::Boom).await.unwrap();
        // Queued behind the panic: still handled, by the rebuilt state.
        assert_eq!(
            c.ask(&0u64, Count::Inc).await.unwrap(),
            1,
            "the in-memory count restarted"
        );
        let reports = c.shutdown().await;
        assert_eq!(
            (reports[0].counters.panics, reports[0].counters.restarts),
            (1, 1)
        );
    });
    assert!(sim.exhaustive(10_000).unwrap().complete);
}

#[test]
fn past_the_restart_limit_the_worker_fails_returns_its_queue_and_refuses_sends() {
    let sim = Sim::new(1, |_| Counter)
        .config(|_| WorkerConfig::new().with_restart(RestartPolicy::Stop))
        .client(|c| async move {
            c.send(&0u64, Count::Boom).await.unwrap();
            let asked = c.ask(&0u64, Count::Get).await;
            // Queued behind the fatal panic: returned, and the asker learns it at once; or sent
            // after the failure: refused with the request handed back.
            match asked {
                Err(AskError::Unprocessed) | Err(AskError::Send(SendError::Closed(_))) => {}
                other => panic!("{other:?}"),
            }
            assert!(matches!(
                c.send(&0u64, Count::Boom).await,
                Err(SendError::Closed(_))
            ));
            assert!(matches!(
                c.flush().await,
                Err(Error::Unflushed { worker: 0 })
            ));
            let reports = c.shutdown().await;
            assert!(matches!(reports[0].outcome, Outcome::Failed(_)));
        });
    assert!(sim.exhaustive(10_000).unwrap().complete);
}

#[test]
fn a_dropped_reply_is_no_reply_and_a_waiting_client_with_nothing_to_run_is_stuck() {
    struct Silent;
    impl Worker for Silent {
        type Message = Reply<u64>;
        type State = Vec<Reply<u64>>;
        fn init(&mut self, _: &mut Context<'_, Self>) -> Result<Self::State, BoxError> {
            Ok(Vec::new())
        }
        fn handle(&mut self, kept: &mut Self::State, reply: Reply<u64>, _: &mut Context<'_, Self>) {
            if kept.is_empty() {
                drop(reply); // the first is dropped
            } else {
                kept.push(reply); // later ones are kept and never answered
            }
            kept.push(Reply::pair().0);
        }
    }
    let dropped = Sim::new(1, |_| Silent).client(|c| async move {
        assert!(matches!(c.ask(&0u64, |r| r).await, Err(AskError::NoReply)));
    });
    assert!(dropped.exhaustive(1000).unwrap().complete);
    let stuck = Sim::new(1, |_| Silent).client(|c| async move {
        let _ = c.ask(&0u64, |r| r).await;
        let _ = c.ask(&0u64, |r| r).await;
    });
    let failure = stuck.random(0..1).expect_err("stuck");
    assert!(failure.message.contains("stuck"), "{failure}");
}

// ---- shutdown at every step ------------------------------------------------------------------

#[test]
fn a_shutdown_at_any_step_balances_loses_nothing_and_runs_on_stop_once() {
    for overflow in [
        Overflow::Block,
        Overflow::Reject,
        Overflow::DropNewest,
        Overflow::DropOldest,
    ] {
        let sim = Sim::new(2, |_| Counter)
            .config(move |_| {
                WorkerConfig::new()
                    .with_queue_capacity(2)
                    .with_overflow(overflow)
            })
            .faults(Faults {
                shutdown: 30,
                drop_reply: 20,
                panic_after: 20,
                panic_before: 10,
                stop: 10,
                pause: 20,
                init_fails: 100,
            })
            .client(|c| async move {
                for k in 0..6u64 {
                    let _ = c.send(&k, Count::Inc(Reply::pair().0)).await;
                }
            })
            .client(|c| async move {
                let p = c.producer();
                for k in 0..4u64 {
                    match p.ask(&k, Count::Inc).await {
                        Ok(_) | Err(AskError::NoReply | AskError::Unprocessed) => {}
                        Err(AskError::Send(e)) => assert!(!matches!(e, SendError::Unroutable(_))),
                        Err(AskError::TimedOut) => panic!("a simulated ask has no timeout"),
                    }
                }
            });
        // The engine checks the balance and on_stop after every schedule.
        sim.random(0..1500)
            .unwrap_or_else(|f| panic!("{overflow:?}: {f}"));
    }
}

#[test]
fn every_seed_replays_to_an_identical_trace() {
    let sim = store(false).faults(Faults::all(50));
    for seed in 0..50 {
        assert_eq!(sim.trace(seed), sim.trace(seed), "seed {seed}");
    }
}

#[test]
fn a_worker_that_keeps_its_state_on_panic_keeps_its_count_in_every_schedule() {
    struct Keeper;
    impl Worker for Keeper {
        type Message = Count;
        type State = u64;
        fn init(&mut self, ctx: &mut Context<'_, Self>) -> Result<u64, BoxError> {
            assert_eq!(ctx.restarts(), 0, "a kept state is never rebuilt");
            Ok(0)
        }
        fn handle(&mut self, n: &mut u64, msg: Count, _: &mut Context<'_, Self>) {
            match msg {
                Count::Inc(reply) => {
                    *n += 1;
                    reply.send(*n);
                }
                Count::Boom => panic!("boom"),
                Count::Get(reply) => reply.send(*n),
            }
        }
        fn on_panic(
            &mut self,
            _: &mut u64,
            _: &str,
            _: &mut Context<'_, Self>,
        ) -> corelane_worker::PanicAction {
            corelane_worker::PanicAction::Keep
        }
    }
    let sim = Sim::new(1, |_| Keeper).client(|c| async move {
        assert_eq!(c.ask(&0u64, Count::Inc).await.unwrap(), 1);
        c.send(&0u64, Count::Boom).await.unwrap();
        assert_eq!(
            c.ask(&0u64, Count::Inc).await.unwrap(),
            2,
            "the count survived"
        );
        let reports = c.shutdown().await;
        assert_eq!(
            (reports[0].counters.panics, reports[0].counters.restarts),
            (1, 0)
        );
    });
    assert!(sim.exhaustive(10_000).unwrap().complete);
}
