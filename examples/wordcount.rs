//! Word count over generated events: two client threads stream words; each word's count lives on
//! exactly one worker, so no state is shared. Prints the top words and per-worker metrics.
//! Run: `cargo run -p corelane --example wordcount --release`.

use std::collections::HashMap;
use std::time::Instant;

use corelane::prelude::*;

struct Counts;

enum Msg {
    Word(String),
    Top(usize, Reply<Vec<(String, u64)>>),
}

impl Worker for Counts {
    type Message = Msg;
    type State = HashMap<String, u64>;

    fn init(&mut self, _: &mut Context<'_, Self>) -> Result<Self::State, BoxError> {
        Ok(HashMap::new())
    }

    fn handle(&mut self, counts: &mut Self::State, msg: Msg, _: &mut Context<'_, Self>) {
        match msg {
            Msg::Word(w) => *counts.entry(w).or_default() += 1,
            Msg::Top(n, reply) => {
                let mut top: Vec<_> = counts.iter().map(|(w, c)| (w.clone(), *c)).collect();
                top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                top.truncate(n);
                reply.send(top);
            }
        }
    }
}

/// A deterministic Zipf-ish word stream: word `k` appears about 1/k as often as word 1.
fn words(seed: u64, n: usize) -> impl Iterator<Item = String> {
    let mut x = seed;
    (0..n).map(move |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        format!("word{}", (1.0 / (u + 1e-4)) as u64 % 5000)
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder()
        .workers(2)
        .worker_config(|i| {
            WorkerConfig::new()
                .with_name(format!("counter-{i}"))
                .with_queue_capacity(4096)
        })
        .spawn(|_| Counts)?;

    let start = Instant::now();
    let clients: Vec<_> = (0..2u64)
        .map(|c| {
            let producer_pool = pool.clone();
            std::thread::spawn(move || {
                // A dedicated-lane producer handle per client thread.
                let producer = producer_pool.producer();
                for w in words(c + 1, 500_000) {
                    let key = w.clone();
                    producer
                        .send_partitioned(&key, Msg::Word(w))
                        .expect("pool is running");
                }
                producer.flush().expect("pool is running");
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
    let elapsed = start.elapsed();

    let mut top: Vec<(String, u64)> = Vec::new();
    for worker in 0..pool.workers() {
        let (reply, answer) = Reply::pair();
        pool.send_to(worker, Msg::Top(5, reply))?;
        top.extend(answer.wait::<Msg>()?);
    }
    top.sort_by_key(|t| std::cmp::Reverse(t.1));
    println!("1M words in {elapsed:?}; top words:");
    for (w, c) in top.iter().take(5) {
        println!("  {w:>10} {c}");
    }
    let metrics = pool.metrics();
    for w in &metrics.workers {
        println!(
            "worker {}: processed {:>7}, dropped {}, panics {}",
            w.index, w.counters.processed, w.counters.dropped, w.counters.panics
        );
    }
    println!("total processed {}", metrics.total().counters.processed);
    let report = pool.shutdown()?;
    assert_eq!(report.accepted(), report.processed());
    Ok(())
}
