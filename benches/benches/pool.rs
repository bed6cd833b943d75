//! Pool benchmarks, corelane beside a hand-rolled "std threads + crossbeam-channel" pool, same
//! run, alternating, workers pinned. Run: `cargo bench -p corelane-benches --bench pool`.
//! Prints markdown tables (medians over ROUNDS rounds).
#![allow(missing_docs)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use corelane::prelude::*;
use corelane_benches::{median, pin};

const MESSAGES: u64 = 1_000_000;
const KEYS: u64 = 100_000;
const WORKERS: usize = 2;
const ROUNDS: usize = 5;
const ASKS: usize = 20_000;

fn keys() -> Vec<u64> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..MESSAGES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % KEYS
        })
        .collect()
}

// ---- corelane -------------------------------------------------------------------------------

struct Counter;
enum Cmd {
    Add(u64),
    Get(u64, Reply<u64>),
}
impl Worker for Counter {
    type Message = Cmd;
    type State = HashMap<u64, u64>;
    fn init(&mut self, _: &mut Context<'_, Self>) -> Result<Self::State, BoxError> {
        Ok(HashMap::with_capacity(KEYS as usize))
    }
    fn handle(&mut self, s: &mut Self::State, msg: Cmd, _: &mut Context<'_, Self>) {
        match msg {
            Cmd::Add(k) => *s.entry(k).or_default() += 1,
            Cmd::Get(k, r) => r.send(s.get(&k).copied().unwrap_or(0)),
        }
    }
}

fn corelane_pool() -> Pool<Counter> {
    corelane_pool_of(WORKERS)
}

/// `n` workers pinned from the last core down (so that with one worker it sits on core 1 and the
/// pinned client on core 0).
fn corelane_pool_of(n: usize) -> Pool<Counter> {
    let cores = corelane::available_cores();
    Pool::builder()
        .workers(n)
        .worker_config(move |i| {
            WorkerConfig::new()
                .with_cpu_affinity(cores[cores.len() - 1 - i % cores.len()])
                .with_queue_capacity(1024)
        })
        .spawn(|_| Counter)
        .expect("pool")
}

fn corelane_counter(keys: &[u64], lanes: bool) -> f64 {
    let pool = corelane_pool();
    let start = Instant::now();
    if lanes {
        let producer = pool.producer();
        for &k in keys {
            producer.send_partitioned(&k, Cmd::Add(k)).unwrap();
        }
        producer.flush().unwrap();
    } else {
        for &k in keys {
            pool.send_partitioned(&k, Cmd::Add(k)).unwrap();
        }
        pool.flush().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let report = pool.shutdown().unwrap();
    assert_eq!(report.processed(), keys.len() as u64);
    keys.len() as f64 / secs
}

// ---- the hand-rolled baseline ----------------------------------------------------------------

enum Req {
    Add(u64),
    Get(u64, crossbeam_channel::Sender<u64>),
}

struct HandRolled {
    txs: Vec<crossbeam_channel::Sender<Req>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    hasher: ahash::RandomState,
}

impl HandRolled {
    fn new() -> Self {
        Self::of(WORKERS)
    }

    /// `n` workers pinned like `corelane_pool_of`.
    fn of(n: usize) -> Self {
        let cores = corelane::available_cores().len().max(1);
        let (mut txs, mut threads) = (Vec::new(), Vec::new());
        for i in 0..n {
            let (tx, rx) = crossbeam_channel::bounded::<Req>(1024);
            txs.push(tx);
            threads.push(std::thread::spawn(move || {
                pin((cores - 1 - i % cores) % cores);
                let mut map: HashMap<u64, u64> = HashMap::with_capacity(KEYS as usize);
                for req in rx {
                    match req {
                        Req::Add(k) => *map.entry(k).or_default() += 1,
                        Req::Get(k, reply) => drop(reply.send(map.get(&k).copied().unwrap_or(0))),
                    }
                }
            }));
        }
        Self {
            txs,
            threads,
            hasher: ahash::RandomState::with_seeds(1, 2, 3, 4),
        }
    }
    #[inline]
    fn route(&self, k: u64) -> &crossbeam_channel::Sender<Req> {
        &self.txs[(self.hasher.hash_one(k) % self.txs.len() as u64) as usize]
    }
    fn join(self) {
        drop(self.txs);
        self.threads.into_iter().for_each(|t| t.join().unwrap());
    }
}

fn hand_rolled_counter(keys: &[u64]) -> f64 {
    let pool = HandRolled::new();
    let start = Instant::now();
    for &k in keys {
        pool.route(k).send(Req::Add(k)).unwrap();
    }
    pool.join();
    keys.len() as f64 / start.elapsed().as_secs_f64()
}

// ---- ask latency ------------------------------------------------------------------------------

fn percentiles(mut ns: Vec<u64>) -> [f64; 3] {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 * q) as usize).min(ns.len() - 1)] as f64 / 1000.0;
    [at(0.5), at(0.99), at(0.999)]
}

/// Asks from a client pinned to core 0 to one worker pinned to core 1.
fn corelane_ask() -> [f64; 3] {
    pin(0);
    let pool = corelane_pool_of(1);
    let mut ns = Vec::with_capacity(ASKS);
    for i in 0..ASKS as u64 {
        let t = Instant::now();
        std::hint::black_box(pool.ask(&i, |r| Cmd::Get(i, r)).unwrap());
        ns.push(t.elapsed().as_nanos() as u64);
    }
    drop(pool);
    percentiles(ns)
}

/// As `corelane_ask`, with a crossbeam request channel and a bounded(1) reply channel per request.
fn hand_rolled_ask() -> [f64; 3] {
    pin(0);
    let pool = HandRolled::of(1);
    let mut ns = Vec::with_capacity(ASKS);
    for i in 0..ASKS as u64 {
        let t = Instant::now();
        let (tx, rx) = crossbeam_channel::bounded(1);
        pool.route(i).send(Req::Get(i, tx)).unwrap();
        std::hint::black_box(rx.recv().unwrap());
        ns.push(t.elapsed().as_nanos() as u64);
    }
    pool.join();
    percentiles(ns)
}

/// Round trip of an ask to a worker that has been idle (parked) for 5 ms.
fn wake_from_idle() -> f64 {
    let pool = corelane_pool();
    let mut us = Vec::new();
    for i in 0..50u64 {
        std::thread::sleep(Duration::from_millis(5));
        let t = Instant::now();
        pool.ask(&i, |r| Cmd::Get(i, r)).unwrap();
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    median(us)
}

/// Percent of one core used by the pool's worker threads while idle for 2 s.
fn idle_cpu_percent() -> f64 {
    let cores = corelane::available_cores();
    let pool = Pool::builder()
        .workers(WORKERS)
        .worker_config(move |i| {
            WorkerConfig::new()
                .with_cpu_affinity(cores[cores.len() - 1 - i % cores.len()])
                .with_name(format!("idlebench-{i}"))
        })
        .spawn(|_| Counter)
        .unwrap();
    pool.flush().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let ticks = || -> u64 {
        std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
            .filter(|s| s.contains("(idlebench-"))
            .map(|s| {
                let f: Vec<&str> = s[s.rfind(')').unwrap() + 1..].split_whitespace().collect();
                f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
            })
            .sum()
    };
    let (t0, c0) = (Instant::now(), ticks());
    std::thread::sleep(Duration::from_secs(2));
    let cpu_secs = (ticks() - c0) as f64 / 100.0; // USER_HZ = 100
    drop(pool);
    cpu_secs / t0.elapsed().as_secs_f64() * 100.0
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench --no-run` and test harness probes
    }
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let run = |section: &str| only.as_deref().is_none_or(|o| o == section);
    if run("counter") {
        counter();
    }
    if run("ask") {
        ask();
    }
    if run("idle") {
        idle();
    }
}

fn counter() {
    let keys = keys();
    let (mut plain, mut lanes, mut base) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        base.push(hand_rolled_counter(&keys));
        plain.push(corelane_counter(&keys, false));
        lanes.push(corelane_counter(&keys, true));
    }
    let (p, l, b) = (median(plain), median(lanes), median(base));
    println!("## Key counter: {MESSAGES} messages over {KEYS} keys, {WORKERS} pinned workers, 1 client thread");
    println!("| variant | M msg/s (median of {ROUNDS}) | vs hand-rolled |");
    println!("|---|---|---|");
    println!(
        "| hand-rolled: std threads + crossbeam bounded(1024) + hash % n | {:.2} | 1.00x |",
        b / 1e6
    );
    println!(
        "| corelane `send_partitioned` | {:.2} | {:.2}x |",
        p / 1e6,
        p / b
    );
    println!(
        "| corelane `producer()` lanes | {:.2} | {:.2}x |",
        l / 1e6,
        l / b
    );
}

fn ask() {
    let (mut ca, mut ha) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ha.push(hand_rolled_ask());
        ca.push(corelane_ask());
    }
    let med = |v: &Vec<[f64; 3]>, i: usize| median(v.iter().map(|x| x[i]).collect());
    println!();
    println!(
        "## ask round trip ({ASKS} sequential asks, client pinned to core 0, one worker pinned to core 1; us, median of {ROUNDS} runs' percentiles)"
    );
    println!("| variant | p50 | p99 | p99.9 |");
    println!("|---|---|---|---|");
    println!(
        "| hand-rolled crossbeam request/response | {:.2} | {:.2} | {:.2} |",
        med(&ha, 0),
        med(&ha, 1),
        med(&ha, 2)
    );
    println!(
        "| corelane `ask` (SpinThenPark) | {:.2} | {:.2} | {:.2} |",
        med(&ca, 0),
        med(&ca, 1),
        med(&ca, 2)
    );
    println!(
        "| ratio p50 corelane / hand-rolled | {:.2}x | | |",
        med(&ca, 0) / med(&ha, 0)
    );
}

/// Nanoseconds the calling thread has spent on a CPU (`/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Percent of one core used by a receiver blocked for 1 s on an empty channel (default
/// `SpinThenPark`), measured on the receiving thread itself.
fn blocked_receiver_cpu_percent() -> f64 {
    let (tx, rx) = corelane::channel::spsc::channel::<u64>(1024);
    let h = std::thread::spawn(move || {
        let (t0, c0) = (Instant::now(), thread_cpu_ns());
        let r = rx.recv_timeout(Duration::from_secs(1));
        assert!(r.is_err());
        (thread_cpu_ns() - c0) as f64 / t0.elapsed().as_nanos() as f64 * 100.0
    });
    let pct = h.join().unwrap();
    drop(tx);
    pct
}

fn idle() {
    println!();
    println!("## Idle");
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| ask to a worker parked for 5 ms, median round trip | {:.1} us |",
        wake_from_idle()
    );
    println!(
        "| CPU of an idle 2-worker pool over 2 s | {:.2} % of one core |",
        idle_cpu_percent()
    );
    println!(
        "| CPU of a channel receiver blocked 1 s on an empty channel (default strategy) | {:.3} % of one core |",
        blocked_receiver_cpu_percent()
    );
}
