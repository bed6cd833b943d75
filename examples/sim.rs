//! A planted bug found by simulation: a front worker acknowledges a write before the worker that
//! owns the key has applied it, so a client that reads right after its acknowledged write can
//! miss it. `cargo run -p corelane --example sim --features sim` finds the schedule, prints its
//! seed and trace, replays it, and checks the corrected worker over 10,000 seeds and every
//! schedule.

use std::collections::HashMap;

use corelane::prelude::*;
use corelane::sim::Sim;

#[derive(Debug)]
enum Kv {
    /// To the front (worker 0).
    Write(u64, u64, Reply<()>),
    /// To the owner (worker 1); carries the writer's reply when the front forwards it.
    Apply(u64, u64, Option<Reply<()>>),
    Read(u64, Reply<Option<u64>>),
}

struct Store {
    ack_before_apply: bool,
}

impl Worker for Store {
    type Message = Kv;
    type State = HashMap<u64, u64>;
    fn init(&mut self, _: &mut Context<'_, Self>) -> Result<Self::State, BoxError> {
        Ok(HashMap::new())
    }
    fn handle(&mut self, state: &mut Self::State, msg: Kv, ctx: &mut Context<'_, Self>) {
        match msg {
            Kv::Write(k, v, reply) if self.ack_before_apply => {
                reply.send(()); // the bug: the ack goes out before the owner applied the write
                let _ = ctx.send_to(1, Kv::Apply(k, v, None));
            }
            // The fix: the owner answers once it applied the write.
            Kv::Write(k, v, reply) => {
                let _ = ctx.send_to(1, Kv::Apply(k, v, Some(reply)));
            }
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

fn simulation(ack_before_apply: bool) -> Sim<Store> {
    Sim::new(2, move |_| Store { ack_before_apply }).client(|c| async move {
        c.ask_to(0, |r| Kv::Write(1, 42, r)).await.unwrap();
        let got = c.ask_to(1, |r| Kv::Read(1, r)).await.unwrap();
        assert_eq!(
            got,
            Some(42),
            "read-after-acknowledged-write missed the write"
        );
    })
}

fn main() {
    let buggy = simulation(true);
    let failure = buggy
        .random(0..100)
        .expect_err("100 random seeds find the planted bug");
    println!("{failure}");
    let seed = failure.seed.expect("a random schedule has a seed");
    let replayed = buggy.run_seed(seed).expect_err("the seed replays it");
    assert_eq!(replayed.trace, failure.trace);
    println!("seed {seed} replays to the same trace");

    let fixed = simulation(false);
    let random = fixed.random(0..10_000).expect("the fix holds");
    let all = fixed
        .exhaustive(1_000_000)
        .expect("the fix holds in every schedule");
    println!(
        "fixed: {} random schedules and all {} schedules (complete: {}) pass",
        random.schedules, all.schedules, all.complete
    );
}
