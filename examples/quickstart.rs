//! The quickstart from the README: a per-key counter on a pool of pinned workers.
//! Run: `cargo run -p corelane --example quickstart --release`.

use std::collections::HashMap;

use corelane::prelude::*;

struct Counter;

enum Cmd {
    Add(u64),
    Get(u64, Reply<u64>),
}

impl Worker for Counter {
    type Message = Cmd;
    type State = HashMap<u64, u64>; // built by init on the worker's own pinned thread; need not be Send

    fn init(&mut self, ctx: &mut Context<'_, Self>) -> Result<Self::State, BoxError> {
        println!("worker {} starting on core {:?}", ctx.index(), ctx.core());
        Ok(HashMap::new())
    }

    fn handle(&mut self, state: &mut Self::State, msg: Cmd, _ctx: &mut Context<'_, Self>) {
        match msg {
            Cmd::Add(k) => *state.entry(k).or_default() += 1,
            Cmd::Get(k, reply) => reply.send(state.get(&k).copied().unwrap_or(0)),
        }
    }

    fn on_stop(&mut self, state: Self::State, ctx: &mut Context<'_, Self>) {
        println!("worker {} stopping with {} keys", ctx.index(), state.len());
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder()
        .workers(2)
        .worker_config(|i| WorkerConfig::new().with_nth_core(i)) // core i of this process, if any
        .partitioner(HashPartitioner::new()) // the default; any corelane-partition partitioner
        .spawn(|_index| Counter)?;

    for i in 0..1_000_000u64 {
        let key = i % 1000;
        pool.send_partitioned(&key, Cmd::Add(key))?; // same key, same worker: no locks
    }
    pool.try_send_partitioned(&7u64, Cmd::Add(7))?; // never blocks; a full inbox hands it back

    let n: u64 = pool.ask(&7u64, |reply| Cmd::Get(7, reply))?; // sees every earlier send
    println!("key 7 was added {n} times");
    let m: u64 = pollster::block_on(pool.ask_async(&8u64, |reply| Cmd::Get(8, reply)))?;
    println!("key 8 was added {m} times (asked asynchronously)");

    pool.flush()?;
    for w in pool.metrics().workers {
        println!(
            "worker {}: processed {}, queued {}",
            w.index, w.counters.processed, w.queued
        );
    }
    let report = pool.shutdown()?; // drains, runs on_stop, joins
    println!(
        "shutdown: accepted {}, processed {}, dropped {}, clean {}",
        report.accepted(),
        report.processed(),
        report.dropped(),
        report.is_clean()
    );
    Ok(())
}
