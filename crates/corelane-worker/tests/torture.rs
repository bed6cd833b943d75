//! Torture suite: clients hammer a pool while `shutdown` or `shutdown_timeout` runs at a random
//! point, under every overflow policy, through the shared inbox, producer lanes and batching
//! producers, with panicking handlers, tiny and large queues, and asks and flushes mixed in.
//!
//! Every run checks that
//! - every `Ok` send is in the report: `Ok sends = processed + dropped + unprocessed (+ abandoned)`;
//! - every message handed back (by an error or the report) is one that was sent, and was neither
//!   handled nor handed back before;
//! - every successful flush returns only after everything the client sent before it through the
//!   flushed path was handled or dropped;
//! - every thread finishes: a watchdog turns a hang into a failure that prints what each thread
//!   was doing.
//!
//! `cargo test -p corelane-worker --release --test torture -- --seconds 600` runs it for as long
//! as asked (default 60 s; `--seed N` replays one run, `--runs N` stops after N runs).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use corelane_partition::HashPartitioner;
use corelane_worker::Dispatch;
use corelane_worker::{
    AskError, BoxError, Context, Outcome, Overflow, Reply, RestartPolicy, Worker, WorkerConfig,
};
use corelane_worker::{BatchingProducer, Pool, ShutdownReport};

/// The fate of one message, as bits.
const HANDLED: u8 = 1;
const DROPPED: u8 = 2;
const RETURNED: u8 = 4;

/// How long one run may take before the watchdog calls it a hang.
const WATCHDOG: Duration = Duration::from_secs(30);

/// splitmix64: a small seeded generator, so a failing seed replays its configuration.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Per-client fate table, shared by clients, handlers and message drops.
struct Fates {
    clients: Vec<Vec<AtomicU8>>,
    /// A violation seen from a place that cannot return an error (a handler, a drop).
    violations: Mutex<Vec<String>>,
}

impl Fates {
    fn new(clients: usize, per_client: usize) -> Self {
        Self {
            clients: (0..clients)
                .map(|_| (0..per_client).map(|_| AtomicU8::new(0)).collect())
                .collect(),
            violations: Mutex::new(Vec::new()),
        }
    }
    fn mark(&self, client: usize, seq: usize, bit: u8) -> u8 {
        self.clients[client][seq].fetch_or(bit, Ordering::SeqCst)
    }
    fn get(&self, client: usize, seq: usize) -> u8 {
        self.clients[client][seq].load(Ordering::SeqCst)
    }
    fn violation(&self, what: String) {
        self.violations.lock().unwrap().push(what);
    }
}

/// A tracked message: its drop marks it `DROPPED`.
struct Msg {
    client: usize,
    seq: usize,
    fates: Arc<Fates>,
    reply: Option<Reply<usize>>,
    panic: bool,
    sleep_us: u64,
}

impl Drop for Msg {
    fn drop(&mut self) {
        self.fates.mark(self.client, self.seq, DROPPED);
    }
}

/// Marks a message handed back to the test (by an error or the report).
fn returned(msg: &Msg) {
    let before = msg.fates.mark(msg.client, msg.seq, RETURNED);
    if before & (HANDLED | RETURNED) != 0 {
        msg.fates.violation(format!(
            "client {} seq {} handed back after being {}",
            msg.client,
            msg.seq,
            if before & HANDLED != 0 {
                "handled"
            } else {
                "handed back"
            }
        ));
    }
}

struct Tortured;

impl Worker for Tortured {
    type Message = Msg;
    type State = ();
    fn init(&mut self, _: &mut Context<'_, Self>) -> Result<(), BoxError> {
        Ok(())
    }
    fn handle(&mut self, _: &mut (), mut msg: Msg, _: &mut Context<'_, Self>) {
        let before = msg.fates.mark(msg.client, msg.seq, HANDLED);
        if before != 0 {
            msg.fates.violation(format!(
                "client {} seq {} handled with fate {before}",
                msg.client, msg.seq
            ));
        }
        if msg.sleep_us > 0 {
            thread::sleep(Duration::from_micros(msg.sleep_us));
        }
        if msg.panic {
            panic!("tortured handler panics on purpose");
        }
        if let Some(reply) = msg.reply.take() {
            reply.send(msg.seq);
        }
    }
}

/// How a client sends.
#[derive(Clone, Copy, Debug)]
enum Path {
    Pool,
    Lanes,
    Batching(usize),
}

/// One run's configuration, drawn from its seed.
#[derive(Debug)]
struct Plan {
    workers: usize,
    capacity: usize,
    batch_size: usize,
    overflow: Overflow,
    restart: RestartPolicy,
    clients: Vec<Path>,
    per_client: usize,
    panic_every: Option<usize>,
    sleep_every: Option<usize>,
    ask_every: usize,
    flush_every: usize,
    try_send: bool,
    shutdown_after_us: u64,
    timeout_us: Option<u64>,
}

impl Plan {
    fn draw(seed: u64) -> Self {
        let mut r = Rng(seed);
        if r.chance(25) {
            return Self::flood(&mut r);
        }
        let clients = (0..1 + r.below(3))
            .map(|_| match r.below(3) {
                0 => Path::Pool,
                1 => Path::Lanes,
                _ => Path::Batching(r.pick(&[1, 3, 16, 64])),
            })
            .collect();
        Self {
            workers: 1 + r.below(4) as usize,
            capacity: r.pick(&[1, 2, 4, 64, 1024]),
            batch_size: r.pick(&[1, 4, 64, 256]),
            overflow: r.pick(&[
                Overflow::Block,
                Overflow::Reject,
                Overflow::DropNewest,
                Overflow::DropOldest,
            ]),
            restart: if r.chance(30) {
                RestartPolicy::Stop
            } else {
                RestartPolicy::Restart {
                    max_restarts: r.pick(&[1, 5, 1000]),
                    within: Duration::from_secs(10),
                }
            },
            clients,
            per_client: r.pick(&[200, 2_000, 20_000]),
            panic_every: r.chance(30).then(|| r.pick(&[7, 100, 1000])),
            sleep_every: r.chance(30).then(|| r.pick(&[10, 200])),
            ask_every: r.pick(&[5, 50, 1_000_000]),
            flush_every: r.pick(&[7, 100, 1_000_000]),
            try_send: r.chance(20),
            shutdown_after_us: r.pick(&[0, 100, 2_000, 20_000, 200_000]),
            timeout_us: r.chance(60).then(|| r.pick(&[0, 1_000, 5_000])),
        }
    }
}

impl Plan {
    /// Clients flooding tiny queues under a drop policy while the shutdown runs: a drop counted
    /// after the report took its count shows here.
    fn flood(r: &mut Rng) -> Self {
        Self {
            workers: 4,
            capacity: 4,
            batch_size: 64,
            overflow: r.pick(&[Overflow::DropNewest, Overflow::DropOldest]),
            restart: RestartPolicy::default(),
            clients: (0..3)
                .map(|_| r.pick(&[Path::Pool, Path::Lanes, Path::Batching(16)]))
                .collect(),
            per_client: 100_000,
            panic_every: None,
            sleep_every: None,
            ask_every: usize::MAX,
            flush_every: usize::MAX,
            try_send: false,
            shutdown_after_us: r.pick(&[500, 2_000, 5_000]),
            timeout_us: r.chance(30).then_some(1_000),
        }
    }
}

/// What one client did, for the final balance.
#[derive(Default)]
struct Tally {
    ok: u64,
    handed_back: u64,
}

/// Per-client status, printed by the watchdog.
type Status = Arc<Mutex<String>>;

fn set(status: &Status, what: String) {
    *status.lock().unwrap() = what;
}

struct Client {
    id: usize,
    path: Path,
    pool: Pool<Tortured>,
    fates: Arc<Fates>,
    status: Status,
    rng: Rng,
    /// How much of `sent_ok` earlier flushes checked.
    checked: usize,
}

impl Client {
    fn message(&mut self, plan: &Plan, seq: usize) -> Msg {
        Msg {
            client: self.id,
            seq,
            fates: self.fates.clone(),
            reply: None,
            panic: plan.panic_every.is_some_and(|n| seq % n == n - 1),
            sleep_us: match plan.sleep_every {
                Some(n) if seq % n == 0 => self.rng.below(300),
                _ => 0,
            },
        }
    }

    /// Checks that every message this client sent before a successful flush was handled or
    /// dropped.
    fn check_flushed(&mut self, sent_ok: &[usize], upto: usize) {
        let from = std::mem::replace(&mut self.checked, sent_ok.len());
        for &seq in sent_ok[from..].iter().filter(|&&s| s < upto) {
            if self.fates.get(self.id, seq) & (HANDLED | DROPPED) == 0 {
                self.fates.violation(format!(
                    "client {} ({:?}): flush before seq {upto} returned while seq {seq} was neither handled nor dropped",
                    self.id, self.path
                ));
                return;
            }
        }
    }

    fn run(mut self, plan: &Plan) -> Tally {
        let mut tally = Tally::default();
        let mut sent_ok = Vec::new();
        match self.path {
            Path::Pool => self.run_pool(plan, &mut tally, &mut sent_ok),
            Path::Lanes => self.run_lanes(plan, &mut tally, &mut sent_ok),
            Path::Batching(n) => self.run_batching(plan, n, &mut tally, &mut sent_ok),
        }
        set(&self.status, "done".into());
        tally
    }

    fn back(&self, tally: &mut Tally, msg: Msg) {
        returned(&msg);
        tally.handed_back += 1;
    }

    fn asked(&self, tally: &mut Tally, sent_ok: &mut Vec<usize>, seq: usize, r: AskResult) {
        match r {
            Ok(got) => {
                if got != seq {
                    self.fates
                        .violation(format!("client {} ask {seq} answered {got}", self.id));
                }
                tally.ok += 1;
                sent_ok.push(seq);
            }
            Err(AskError::Send(e)) => self.back(tally, e.into_inner()),
            // Accepted: handled (a panicking handler drops the reply), dropped by policy, or
            // returned unprocessed in the report.
            Err(_) => {
                tally.ok += 1;
                sent_ok.push(seq);
            }
        }
    }

    fn run_pool(&mut self, plan: &Plan, tally: &mut Tally, sent_ok: &mut Vec<usize>) {
        for seq in 0..plan.per_client {
            let key = self.rng.below(64);
            let mut msg = self.message(plan, seq);
            if seq % plan.ask_every == plan.ask_every - 1 {
                set(&self.status, format!("pool.ask seq {seq}"));
                let r = self.pool.ask(&key, |reply| {
                    msg.reply = Some(reply);
                    msg
                });
                self.asked(tally, sent_ok, seq, r);
            } else {
                set(&self.status, format!("pool send seq {seq}"));
                let r = if plan.try_send {
                    self.pool.try_send_partitioned(&key, msg)
                } else {
                    self.pool.send_partitioned(&key, msg)
                };
                match r {
                    Ok(()) => {
                        tally.ok += 1;
                        sent_ok.push(seq);
                    }
                    Err(e) => self.back(tally, e.into_inner()),
                }
            }
            if seq % plan.flush_every == plan.flush_every - 1 {
                set(&self.status, format!("pool.flush after seq {seq}"));
                if self.pool.flush().is_ok() {
                    self.check_flushed(sent_ok, seq + 1);
                }
            }
        }
    }

    fn run_lanes(&mut self, plan: &Plan, tally: &mut Tally, sent_ok: &mut Vec<usize>) {
        let producer = self.pool.producer();
        for seq in 0..plan.per_client {
            let key = self.rng.below(64);
            let mut msg = self.message(plan, seq);
            if seq % plan.ask_every == plan.ask_every - 1 {
                set(&self.status, format!("producer.ask seq {seq}"));
                let r = producer.ask(&key, |reply| {
                    msg.reply = Some(reply);
                    msg
                });
                self.asked(tally, sent_ok, seq, r);
            } else {
                set(&self.status, format!("producer send seq {seq}"));
                let r = if plan.try_send {
                    producer.try_send_partitioned(&key, msg)
                } else {
                    producer.send_partitioned(&key, msg)
                };
                match r {
                    Ok(()) => {
                        tally.ok += 1;
                        sent_ok.push(seq);
                    }
                    Err(e) => self.back(tally, e.into_inner()),
                }
            }
            if seq % plan.flush_every == plan.flush_every - 1 {
                set(&self.status, format!("producer.flush after seq {seq}"));
                if producer.flush().is_ok() {
                    self.check_flushed(sent_ok, seq + 1);
                }
            }
        }
    }

    fn run_batching(&mut self, plan: &Plan, n: usize, tally: &mut Tally, sent_ok: &mut Vec<usize>) {
        let producer = self.pool.producer().batching(n).expect("batch >= 1");
        // Per worker, the messages in the producer's batch: accepted only once published.
        let mut held: Vec<Vec<usize>> = vec![Vec::new(); self.pool.workers()];
        for seq in 0..plan.per_client {
            let key = self.rng.below(64);
            let worker = self.pool.worker_for(&key);
            let mut msg = self.message(plan, seq);
            held[worker].push(seq);
            if seq % plan.ask_every == plan.ask_every - 1 {
                set(&self.status, format!("batching.ask seq {seq}"));
                let r = producer.ask(&key, |reply| {
                    msg.reply = Some(reply);
                    msg
                });
                // The ask publishes the worker's batch with the request last.
                match r {
                    Err(AskError::Send(e)) => {
                        self.settle(tally, sent_ok, &mut held[worker], e.into_inner())
                    }
                    other => {
                        held[worker].pop();
                        self.settle(tally, sent_ok, &mut held[worker], Vec::new());
                        let r = other.map_err(|_| AskError::<Msg>::NoReply);
                        self.asked(tally, sent_ok, seq, r);
                    }
                }
            } else {
                set(&self.status, format!("batching send seq {seq}"));
                let r = if plan.try_send {
                    producer.try_send_partitioned(&key, msg)
                } else {
                    producer.send_partitioned(&key, msg)
                };
                match r {
                    Err(e) => self.settle(tally, sent_ok, &mut held[worker], e.into_inner()),
                    // A full batch was published.
                    Ok(()) if held[worker].len() == n => {
                        self.settle(tally, sent_ok, &mut held[worker], Vec::new())
                    }
                    Ok(()) => {}
                }
            }
            if seq % plan.flush_every == plan.flush_every - 1 {
                set(&self.status, format!("batching.flush after seq {seq}"));
                if self.publish_all(&producer, tally, sent_ok, &mut held)
                    && producer.flush().is_ok()
                {
                    self.check_flushed(sent_ok, seq + 1);
                }
            }
        }
        set(&self.status, "batching final publish".into());
        self.publish_all(&producer, tally, sent_ok, &mut held);
    }

    /// Publishes every batch, settling each worker's held messages; `true` if nothing failed.
    fn publish_all(
        &self,
        producer: &BatchingProducer<Tortured, HashPartitioner>,
        tally: &mut Tally,
        sent_ok: &mut Vec<usize>,
        held: &mut [Vec<usize>],
    ) -> bool {
        let mut clean = true;
        loop {
            match producer.publish() {
                Ok(()) => {
                    for h in held.iter_mut() {
                        self.settle(tally, sent_ok, h, Vec::new());
                    }
                    return clean;
                }
                Err(e) => {
                    clean = false;
                    let back = e.into_inner();
                    let Some(first) = back.first() else { continue };
                    let w = held
                        .iter()
                        .position(|h| h.contains(&first.seq))
                        .expect("a handed-back message was held");
                    self.settle(tally, sent_ok, &mut held[w], back);
                }
            }
        }
    }

    /// One worker's batch was published: what came back in `back` was not, the rest was.
    fn settle(
        &self,
        tally: &mut Tally,
        sent_ok: &mut Vec<usize>,
        held: &mut Vec<usize>,
        back: Vec<Msg>,
    ) {
        let back_seqs: Vec<usize> = back.iter().map(|m| m.seq).collect();
        for m in back {
            self.back(tally, m);
        }
        for seq in held.drain(..) {
            if !back_seqs.contains(&seq) {
                tally.ok += 1;
                sent_ok.push(seq);
            }
        }
    }
}

type AskResult = Result<usize, AskError<Msg>>;

/// The result of one run: `Err` names every violation.
fn run_once(seed: u64) -> Result<(), String> {
    let plan = Plan::draw(seed);
    let fates = Arc::new(Fates::new(plan.clients.len(), plan.per_client));
    let (overflow, capacity, batch, restart) =
        (plan.overflow, plan.capacity, plan.batch_size, plan.restart);
    let pool = Pool::builder()
        .workers(plan.workers)
        .worker_config(move |_| {
            WorkerConfig::new()
                .with_queue_capacity(capacity)
                .with_overflow(overflow)
                .with_batch_size(batch)
                .with_restart(restart)
        })
        .spawn(|_| Tortured)
        .map_err(|e| format!("spawn: {e}"))?;
    let statuses: Vec<Status> = plan
        .clients
        .iter()
        .map(|_| Arc::new(Mutex::new("starting".into())))
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let main_status: Status = Arc::new(Mutex::new("starting clients".into()));
    let watchdog = spawn_watchdog(seed, done.clone(), statuses.clone(), main_status.clone());
    let plan = Arc::new(plan);
    let clients: Vec<_> = plan
        .clients
        .iter()
        .enumerate()
        .map(|(id, &path)| {
            let client = Client {
                id,
                path,
                pool: pool.clone(),
                fates: fates.clone(),
                status: statuses[id].clone(),
                rng: Rng(seed ^ (id as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407)),
                checked: 0,
            };
            let plan = plan.clone();
            thread::Builder::new()
                .name(format!("client-{id}"))
                .spawn(move || client.run(&plan))
                .expect("spawn client")
        })
        .collect();
    thread::sleep(Duration::from_micros(plan.shutdown_after_us));
    set(
        &main_status,
        format!("shutdown (timeout {:?} us)", plan.timeout_us),
    );
    let report = match plan.timeout_us {
        Some(us) => pool.shutdown_timeout(Duration::from_micros(us)),
        None => pool.shutdown(),
    }
    .map_err(|e| format!("shutdown: {e}"))?;
    set(&main_status, "joining clients".into());
    let tallies: Vec<Tally> = clients
        .into_iter()
        .map(|c| c.join().expect("client panicked"))
        .collect();
    done.store(true, Ordering::SeqCst);
    let _ = watchdog.join();
    check(&plan, &fates, &tallies, report)
}

/// The balance and the fate table after a run.
fn check(
    plan: &Plan,
    fates: &Fates,
    tallies: &[Tally],
    report: ShutdownReport<Msg>,
) -> Result<(), String> {
    let mut problems = std::mem::take(&mut *fates.violations.lock().unwrap());
    let ok: u64 = tallies.iter().map(|t| t.ok).sum();
    let accepted = report.accepted();
    let timed_out = report
        .workers
        .iter()
        .any(|w| w.outcome == Outcome::TimedOut);
    let summary = format!(
        "ok sends {ok}, accepted {accepted} (processed {}, dropped {}, unprocessed {}), timed out: {timed_out}",
        report.processed(),
        report.dropped(),
        report.workers.iter().map(|w| w.unprocessed.len()).sum::<usize>()
    );
    if ok != accepted {
        problems.push(format!("unbalanced: {summary}"));
    }
    for w in &report.workers {
        for m in &w.unprocessed {
            returned(m);
        }
    }
    problems.extend(std::mem::take(&mut *fates.violations.lock().unwrap()));
    drop(report);
    let _ = plan;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n  "))
    }
}

/// Fails the whole process if a run takes longer than [`WATCHDOG`], printing every thread.
fn spawn_watchdog(
    seed: u64,
    done: Arc<AtomicBool>,
    clients: Vec<Status>,
    main: Status,
) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            let start = Instant::now();
            while !done.load(Ordering::SeqCst) {
                if start.elapsed() > WATCHDOG {
                    eprintln!("HANG: seed {seed} did not finish in {WATCHDOG:?}");
                    eprintln!("  {:#?}", Plan::draw(seed));
                    eprintln!("  main: {}", main.lock().unwrap());
                    for (i, s) in clients.iter().enumerate() {
                        eprintln!("  client-{i}: {}", s.lock().unwrap());
                    }
                    print_threads();
                    println!("0 passed, 1 failed");
                    std::process::exit(1);
                }
                thread::sleep(Duration::from_millis(20));
            }
        })
        .expect("spawn watchdog")
}

/// Every thread of this process: name, state and the kernel function it waits in.
fn print_threads() {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let read = |f: &str| {
            std::fs::read_to_string(path.join(f))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let state = read("stat")
            .rsplit(") ")
            .next()
            .and_then(|s| s.split(' ').next())
            .unwrap_or("?")
            .to_string();
        eprintln!(
            "  thread {:?} {}: state {state}, waiting in {}",
            task.file_name(),
            read("comm"),
            read("wchan")
        );
    }
}

struct Args {
    seconds: f64,
    runs: Option<u64>,
    seed: Option<u64>,
}

fn args() -> Args {
    let mut out = Args {
        seconds: 60.0,
        runs: None,
        seed: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match a.as_str() {
            "--seconds" => out.seconds = value("--seconds").parse().expect("--seconds N"),
            "--runs" => out.runs = Some(value("--runs").parse().expect("--runs N")),
            "--seed" => out.seed = Some(value("--seed").parse().expect("--seed N")),
            // libtest's flags (cargo test passes some through): ignored.
            _ => {}
        }
    }
    out
}

fn main() {
    // The handlers' planned panics would flood the output.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let planned = info
            .payload()
            .downcast_ref::<&str>()
            .is_some_and(|s| s.contains("on purpose"));
        if !planned {
            default_hook(info);
        }
    }));
    let args = args();
    let start = Instant::now();
    let base = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let runs = if args.seed.is_some() {
        Some(1)
    } else {
        args.runs
    };
    let (mut passed, mut failed) = (0u64, 0u64);
    let count = AtomicUsize::new(0);
    let executed = AtomicU64::new(0);
    let mut i = 0u64;
    while runs.map_or(start.elapsed().as_secs_f64() < args.seconds, |r| i < r) {
        let seed = if args.seed.is_some() {
            base
        } else {
            base.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        };
        i += 1;
        executed.fetch_add(1, Ordering::Relaxed);
        match run_once(seed) {
            Ok(()) => passed += 1,
            Err(why) => {
                failed += 1;
                count.fetch_add(1, Ordering::Relaxed);
                eprintln!("FAILED seed {seed}: {:?}\n  {why}", Plan::draw(seed));
            }
        }
    }
    eprintln!(
        "torture: {} runs in {:.1} s (first seed {base})",
        executed.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64()
    );
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
