//! Simulation speed: schedules and steps per second for a 2-worker, 20-message scenario (one
//! client sending 16 messages and asking 4 times), random choices, one seed per schedule.
//! Run: `cargo bench -p corelane-worker --features sim --bench sim`. (It lives here, not in
//! `benches/`, so that the pool benchmarks there are built without the feature.)
#![allow(missing_docs)]

use std::time::Instant;

use corelane_worker::sim::Sim;
use corelane_worker::{BoxError, Context, Reply, Worker};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

#[derive(Debug)]
enum Msg {
    Add(u64),
    Get(Reply<u64>),
}

struct Sum;

impl Worker for Sum {
    type Message = Msg;
    type State = u64;
    fn init(&mut self, _: &mut Context<'_, Self>) -> Result<u64, BoxError> {
        Ok(0)
    }
    fn handle(&mut self, sum: &mut u64, msg: Msg, _: &mut Context<'_, Self>) {
        match msg {
            Msg::Add(n) => *sum += n,
            Msg::Get(reply) => reply.send(*sum),
        }
    }
}

fn scenario() -> Sim<Sum> {
    Sim::new(2, |_| Sum).client(|c| async move {
        for key in 0..20u64 {
            if key % 5 == 4 {
                c.ask(&key, Msg::Get).await.unwrap();
            } else {
                c.send(&key, Msg::Add(key)).await.unwrap();
            }
        }
    })
}

fn main() {
    const SEEDS: u64 = 20_000;
    let sim = scenario();
    let mut per_second = Vec::new();
    let mut steps_per_second = Vec::new();
    for round in 0..5u64 {
        let start = Instant::now();
        let summary = sim
            .random(round * SEEDS..(round + 1) * SEEDS)
            .expect("the scenario holds");
        let secs = start.elapsed().as_secs_f64();
        per_second.push(summary.schedules as f64 / secs);
        steps_per_second.push(summary.steps as f64 / secs);
    }
    println!("## Simulation: 2 workers, 1 client, 20 messages (16 sends, 4 asks), random choices");
    println!("| measure | median of 5 rounds of {SEEDS} schedules |");
    println!("|---|---|");
    println!("| schedules per second | {:.0} |", median(per_second));
    println!("| steps per second | {:.0} |", median(steps_per_second));
}
