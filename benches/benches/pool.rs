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

/// A worker's per-key counts: the reference `HashMap` (SipHash over 100k keys: the handler is most
/// of the work), or a dense `Vec` indexed by key (a light handler: the transport is most of it).
/// The hand-rolled pool uses the same table.
enum Table {
    Map(HashMap<u64, u64>),
    Dense(Vec<u64>),
}

impl Table {
    fn new(light: bool) -> Self {
        if light {
            Self::Dense(vec![0; KEYS as usize])
        } else {
            Self::Map(HashMap::with_capacity(KEYS as usize))
        }
    }
    #[inline]
    fn add(&mut self, k: u64) {
        match self {
            Self::Map(m) => *m.entry(k).or_default() += 1,
            Self::Dense(v) => v[k as usize] += 1,
        }
    }
    fn get(&self, k: u64) -> u64 {
        match self {
            Self::Map(m) => m.get(&k).copied().unwrap_or(0),
            Self::Dense(v) => v[k as usize],
        }
    }
}

struct Counter {
    light: bool,
}
enum Cmd {
    Add(u64),
    Get(u64, Reply<u64>),
}
impl Worker for Counter {
    type Message = Cmd;
    type State = Table;
    fn init(&mut self, _: &mut Context<'_, Self>) -> Result<Self::State, BoxError> {
        Ok(Table::new(self.light))
    }
    fn handle(&mut self, s: &mut Self::State, msg: Cmd, _: &mut Context<'_, Self>) {
        match msg {
            Cmd::Add(k) => s.add(k),
            Cmd::Get(k, r) => r.send(s.get(k)),
        }
    }
}

fn corelane_pool(light: bool) -> Pool<Counter> {
    corelane_pool_of(WORKERS, light)
}

/// `n` workers pinned from the last core down (so that with one worker it sits on core 1 and the
/// pinned client on core 0).
fn corelane_pool_of(n: usize, light: bool) -> Pool<Counter> {
    let cores = corelane::available_cores();
    Pool::builder()
        .workers(n)
        .worker_config(move |i| {
            WorkerConfig::new()
                .with_cpu_affinity(cores[cores.len() - 1 - i % cores.len()])
                .with_queue_capacity(1024)
        })
        .spawn(|_| Counter { light })
        .expect("pool")
}

/// How the key counter's client sends.
#[derive(Clone, Copy)]
enum Client {
    /// `pool.send_partitioned` (the shared MPMC inboxes).
    Pool,
    /// `pool.producer()`: one SPSC lane per worker.
    Lanes,
    /// `pool.producer().batching(BATCH)`.
    Batched,
}

/// Messages a batching producer holds per worker.
const BATCH: usize = 64;

fn corelane_counter(keys: &[u64], client: Client, light: bool) -> f64 {
    let pool = corelane_pool(light);
    let start = Instant::now();
    match client {
        Client::Pool => {
            for &k in keys {
                pool.send_partitioned(&k, Cmd::Add(k)).unwrap();
            }
            pool.flush().unwrap();
        }
        Client::Lanes => {
            let producer = pool.producer();
            for &k in keys {
                producer.send_partitioned(&k, Cmd::Add(k)).unwrap();
            }
            producer.flush().unwrap();
        }
        Client::Batched => {
            let producer = pool.producer().batching(BATCH).unwrap();
            for &k in keys {
                producer.send_partitioned(&k, Cmd::Add(k)).unwrap();
            }
            producer.flush().unwrap();
        }
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
    /// `n` workers pinned like `corelane_pool_of`, each counting in a [`Table`].
    fn of(n: usize, light: bool) -> Self {
        let cores = corelane::available_cores().len().max(1);
        let (mut txs, mut threads) = (Vec::new(), Vec::new());
        for i in 0..n {
            let (tx, rx) = crossbeam_channel::bounded::<Req>(1024);
            txs.push(tx);
            threads.push(std::thread::spawn(move || {
                pin((cores - 1 - i % cores) % cores);
                let mut table = Table::new(light);
                for req in rx {
                    match req {
                        Req::Add(k) => table.add(k),
                        Req::Get(k, reply) => drop(reply.send(table.get(k))),
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

/// The handler's own speed: one thread applying the run's updates to `tables` tables (split by
/// the hand-rolled pool's hash when two), with no transport at all.
fn handler_alone(keys: &[u64], tables: usize) -> f64 {
    let hasher = ahash::RandomState::with_seeds(1, 2, 3, 4);
    let mut t: Vec<Table> = (0..tables).map(|_| Table::new(false)).collect();
    let start = Instant::now();
    for &k in keys {
        t[(hasher.hash_one(k) % tables as u64) as usize].add(k);
    }
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(&t);
    keys.len() as f64 / secs
}

fn hand_rolled_counter(keys: &[u64], light: bool) -> f64 {
    let pool = HandRolled::of(WORKERS, light);
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
    let pool = corelane_pool_of(1, false);
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
    let pool = HandRolled::of(1, false);
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
    let pool = corelane_pool(false);
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
        .spawn(|_| Counter { light: false })
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
    for (light, handler) in [
        (false, "`HashMap` handler (the reference workload)"),
        (true, "light handler (a `Vec` indexed by key)"),
    ] {
        // One round runs every variant once, alternating, so each ratio is taken per round.
        let mut base = Vec::new();
        let mut ours: [Vec<f64>; 3] = Default::default();
        for _ in 0..ROUNDS {
            base.push(hand_rolled_counter(&keys, light));
            for (i, client) in [Client::Pool, Client::Lanes, Client::Batched]
                .into_iter()
                .enumerate()
            {
                ours[i].push(corelane_counter(&keys, client, light));
            }
        }
        println!();
        println!(
            "## Key counter, {handler}: {MESSAGES} messages over {KEYS} keys, {WORKERS} pinned workers, 1 client thread"
        );
        println!("| variant | M msg/s (median of {ROUNDS}) | vs hand-rolled (median of per-round ratios) |");
        println!("|---|---|---|");
        println!(
            "| hand-rolled: std threads + crossbeam bounded(1024) + hash % n | {:.2} | 1.00x |",
            median(base.clone()) / 1e6
        );
        let names = [
            "corelane `send_partitioned`".to_string(),
            "corelane `producer()` lanes".to_string(),
            format!("corelane `producer().batching({BATCH})`"),
        ];
        for (name, rates) in names.iter().zip(&ours) {
            let ratios = rates.iter().zip(&base).map(|(r, b)| r / b).collect();
            println!(
                "| {name} | {:.2} | {:.2}x |",
                median(rates.clone()) / 1e6,
                median(ratios)
            );
        }
        if !light {
            // What the handler alone allows: no pool can beat two workers' handlers.
            for (tables, what) in [(1, "one table"), (2, "two tables, split by hash")] {
                let rates = (0..ROUNDS).map(|_| handler_alone(&keys, tables)).collect();
                println!(
                    "| (no transport) one thread applying the run's updates, {what} | {:.2} | |",
                    median(rates) / 1e6
                );
            }
        }
    }
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
