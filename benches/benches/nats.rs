//! End to end through NATS JetStream (publish, stream, node, pool, apply, commit) for
//! `corelane-nats` beside a plain `async-nats` consumer doing the same work, in one run.
//!
//! `cargo bench -p corelane-benches --bench nats` (needs `nats-server`; it starts its own on a
//! loopback port, R1, and stops it). Each round publishes the same events into a fresh
//! deployment of 4 partitions, then times, from a connected client on, how long until every
//! event was applied: by a corelane node (taking the partitions' leases, 2 workers counting per
//! key, offsets committed every 50 ms), and by one ordered consumer per partition decoding each
//! event and counting it per key (the plain consumer). Each round runs both, the first one
//! alternating from round to round; the table gives medians, and the median of the rounds'
//! ratios. The node's rate includes taking the partitions over (leases, epochs, consumers): the
//! time to its first applied event is reported beside it. On a small machine shared with the
//! server the rates swing from run to run, so the CPU time each side spent per event over the
//! same span (the bench process's threads, and nats-server's) is reported too.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corelane::prelude::*;
use corelane_nats::{Client, Delivery, Node, NodeConfig, Remote, Topology};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

const EVENTS: usize = 200_000;
const KEYS: usize = 1_000;
const PARTITIONS: u32 = 4;
const ROUNDS: usize = 10;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Event {
    key: String,
    n: u64,
}

/// The work: count per key.
struct Count;

enum Msg {
    Apply(Event),
    Total(Reply<u64>),
}

impl Worker for Count {
    type Message = Msg;
    type State = (HashMap<String, u64>, u64);
    fn init(&mut self, _: &mut Context<'_, Self>) -> Result<Self::State, BoxError> {
        Ok(Default::default())
    }
    fn handle(&mut self, (counts, total): &mut Self::State, msg: Msg, _: &mut Context<'_, Self>) {
        match msg {
            Msg::Apply(e) => {
                *counts.entry(e.key).or_default() += 1;
                *total += 1;
            }
            Msg::Total(reply) => reply.send(*total),
        }
    }
}

impl Remote for Count {
    type Wire = Event;
    type Answer = u64;
    fn delivered(e: Event, _: Delivery) -> Msg {
        Msg::Apply(e)
    }
    fn asked(_: Event, reply: Reply<u64>) -> Msg {
        Msg::Total(reply)
    }
}

/// The frame `corelane-nats` publishes: the key's bytes and the message.
#[derive(Deserialize)]
struct Record {
    _key: Vec<u8>,
    msg: Event,
}

/// When a round began, when its first event was applied, when a tenth were, and when all were;
/// and the CPU time spent from the start to the end.
struct Timing {
    started: Instant,
    first: Instant,
    tenth: Instant,
    done: Instant,
    cpu: Cpu,
}

/// CPU time spent by the bench process (the consumer: the node, its pool, or the plain
/// consumer's tasks), by the node's pool workers among its threads, and by nats-server.
#[derive(Clone, Copy)]
struct Cpu {
    consumer: Duration,
    workers: Duration,
    server: Duration,
}

/// The name of the node's pool worker threads (then their index).
const WORKER_THREAD: &str = "bench-w";

/// The server's process id, to read its CPU time.
static SERVER: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

impl Cpu {
    /// The CPU time so far.
    fn now() -> Self {
        Self {
            consumer: cpu_time("self", ""),
            workers: cpu_time("self", WORKER_THREAD),
            server: SERVER
                .get()
                .map_or(Duration::ZERO, |pid| cpu_time(&pid.to_string(), "")),
        }
    }

    /// The CPU time since `start`.
    fn since(start: Self) -> Self {
        let now = Self::now();
        Self {
            consumer: now.consumer.saturating_sub(start.consumer),
            workers: now.workers.saturating_sub(start.workers),
            server: now.server.saturating_sub(start.server),
        }
    }
}

/// The time on CPU of every live thread of process `pid` (`self` for this one) whose name
/// starts with `named`, from `/proc/<pid>/task/*/schedstat` (nanoseconds).
fn cpu_time(pid: &str, named: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let ns: u64 = tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with(named))
        })
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

impl Timing {
    /// Events per second over the whole round (connecting and taking the partitions included).
    fn rate(&self) -> f64 {
        EVENTS as f64 / (self.done - self.started).as_secs_f64()
    }

    /// Events per second once delivery runs: from a tenth applied to the end.
    fn steady_rate(&self) -> f64 {
        (EVENTS - EVENTS / 10) as f64 / (self.done - self.tenth).as_secs_f64()
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let store = std::env::temp_dir().join(format!("corelane-nats-bench-{}", std::process::id()));
    let Ok(child) = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        println!("nats-server is not installed: skipped");
        return;
    };
    let _ = SERVER.set(child.id());
    let _server = Server(child);
    let url = format!("nats://127.0.0.1:{port}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (mut ours, mut plain) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            ours.push(corelane_round(&rt, &url, round));
            plain.push(plain_round(&rt, &url, round));
        } else {
            plain.push(plain_round(&rt, &url, round));
            ours.push(corelane_round(&rt, &url, round));
        }
    }
    let _ = std::fs::remove_dir_all(&store);
    report(&ours, &plain);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Prints the table: medians of each consumer's rates, and of the per-round ratios.
fn report(ours: &[Timing], plain: &[Timing]) {
    let of = |t: &[Timing], f: fn(&Timing) -> f64| median(t.iter().map(f).collect());
    let ratio =
        |f: fn(&Timing) -> f64| median(ours.iter().zip(plain).map(|(o, p)| f(o) / f(p)).collect());
    let first = |t: &[Timing]| of(t, |t| (t.first - t.started).as_secs_f64() * 1e3);
    let per_event = |t: &[Timing], f: fn(&Cpu) -> Duration| {
        median(
            t.iter()
                .map(|t| f(&t.cpu).as_secs_f64() * 1e6 / EVENTS as f64)
                .collect(),
        )
    };
    println!(
        "## NATS JetStream end to end: {EVENTS} events over {KEYS} keys, {PARTITIONS} partitions, R1, {ROUNDS} rounds"
    );
    println!(
        "| consumer | events/s, start to end | events/s, from 10% applied to the end | first event applied after | consumer CPU per event (pool workers') | nats-server CPU per event |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, t) in [
        (
            "plain async-nats, one ordered consumer per partition",
            plain,
        ),
        ("corelane-nats node, 2 workers", ours),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.1} ms | {:.2} us ({:.2} us) | {:.2} us |",
            of(t, Timing::rate),
            of(t, Timing::steady_rate),
            first(t),
            per_event(t, |c| c.consumer),
            per_event(t, |c| c.workers),
            per_event(t, |c| c.server)
        );
    }
    let cpu_ratio = |f: fn(&Cpu) -> Duration| {
        median(
            ours.iter()
                .zip(plain)
                .map(|(o, p)| f(&o.cpu).as_secs_f64() / f(&p.cpu).as_secs_f64())
                .collect(),
        )
    };
    println!(
        "| ratio, corelane-nats / plain (median of the rounds' ratios) | {:.2}x | {:.2}x | | {:.2}x | {:.2}x |",
        ratio(Timing::rate),
        ratio(Timing::steady_rate),
        cpu_ratio(|c| c.consumer),
        cpu_ratio(|c| c.server)
    );
}

/// Publishes the round's events into a fresh deployment.
fn publish(rt: &tokio::runtime::Runtime, url: &str, prefix: &str) -> Topology {
    let topology = Topology::new(prefix, PARTITIONS).unwrap();
    rt.block_on(async {
        let client = Client::connect(url, topology.clone()).await.unwrap();
        let events: Vec<(String, Event)> = (0..EVENTS)
            .map(|i| {
                let key = format!("key-{}", i % KEYS);
                (
                    key.clone(),
                    Event {
                        key,
                        n: (i / KEYS) as u64,
                    },
                )
            })
            .collect();
        for chunk in events.chunks(5_000) {
            client.send_batch(chunk).await.unwrap();
        }
    });
    topology
}

/// Times a corelane node applying every event.
fn corelane_round(rt: &tokio::runtime::Runtime, url: &str, round: usize) -> Timing {
    let topology = publish(rt, url, &format!("ours{round}"));
    let pool = Pool::builder()
        .workers(2)
        .worker_config(|i| WorkerConfig::new().with_name(format!("{WORKER_THREAD}{i}")))
        .spawn(|_| Count)
        .unwrap();
    let node = Node::start(
        NodeConfig {
            id: format!("bench{round}"),
            servers: url.into(),
            topology,
            replay_from_start: false,
        },
        pool.clone(),
    )
    .unwrap();
    // From here, as for the plain consumer: connected, the deployment found.
    let started = Instant::now();
    let cpu = Cpu::now();
    let applied = || pool.metrics().total().counters.processed;
    while applied() == 0 {
        std::thread::sleep(Duration::from_micros(100));
    }
    let first = Instant::now();
    while applied() < (EVENTS / 10) as u64 {
        std::thread::sleep(Duration::from_millis(2));
    }
    let tenth = Instant::now();
    while applied() < EVENTS as u64 {
        std::thread::sleep(Duration::from_millis(2));
    }
    let done = Instant::now();
    let cpu = Cpu::since(cpu);
    node.stop();
    pool.shutdown().unwrap();
    Timing {
        started,
        first,
        tenth,
        done,
        cpu,
    }
}

/// Times one ordered consumer per partition decoding and counting every event.
fn plain_round(rt: &tokio::runtime::Runtime, url: &str, round: usize) -> Timing {
    let prefix = format!("plain{round}");
    publish(rt, url, &prefix);
    rt.block_on(async {
        let nats = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(nats.clone());
        let started = Instant::now();
        let cpu = Cpu::now();
        let applied = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tenth = std::sync::Arc::new(std::sync::Mutex::new(None));
        let first = std::sync::Arc::new(std::sync::Mutex::new(None));
        let tasks: Vec<_> = (0..PARTITIONS)
            .map(|p| {
                let (js, nats, prefix) = (js.clone(), nats.clone(), prefix.clone());
                let (applied, tenth, first) = (applied.clone(), tenth.clone(), first.clone());
                tokio::spawn(async move {
                    let stream = js.get_stream(format!("{prefix}_p{p}")).await.unwrap();
                    let pending = stream.cached_info().state.messages;
                    let consumer = stream
                        .create_consumer(async_nats::jetstream::consumer::push::OrderedConfig {
                            deliver_subject: nats.new_inbox(),
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                    let mut messages = consumer.messages().await.unwrap();
                    let mut counts: HashMap<String, u64> = HashMap::new();
                    let mut seen = 0;
                    while seen < pending {
                        let msg = messages.next().await.unwrap().unwrap();
                        let record: Record = postcard::from_bytes(&msg.payload).unwrap();
                        *counts.entry(record.msg.key).or_default() += 1;
                        seen += 1;
                        let all = applied.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                        if all == 1 {
                            *first.lock().unwrap() = Some(Instant::now());
                        }
                        if all == EVENTS / 10 {
                            *tenth.lock().unwrap() = Some(Instant::now());
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let done = Instant::now();
        let cpu = Cpu::since(cpu);
        let tenth = tenth.lock().unwrap().expect("a tenth was applied");
        let first = first.lock().unwrap().expect("one was applied");
        Timing {
            started,
            first,
            tenth,
            done,
            cpu,
        }
    })
}
