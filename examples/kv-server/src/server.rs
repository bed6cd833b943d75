//! The network front: RESP2 over TCP on a tokio runtime (connections are tasks, not threads),
//! commands routed to shards by key, pipelines answered in order.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corelane::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Notify};

use crate::resp::{parse, Parsed, Resp};
use crate::shard::{not_an_integer, parse_int, Op, Req, SetCond, Shard};

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (default 127.0.0.1:6380; port 0 picks a free one).
    pub addr: SocketAddr,
    /// Shard workers (default: one per core).
    pub shards: usize,
    /// Pin shard `i` to core `i` (default true).
    pub pin: bool,
    /// Largest bulk string accepted, in bytes (redis' `proto-max-bulk-len`, default 512 MiB).
    pub max_bulk: usize,
    /// Inbox capacity of each shard.
    pub queue: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:6380".parse().expect("a valid address"),
            shards: corelane::available_cores().len().max(1),
            pin: true,
            max_bulk: 512 * 1024 * 1024,
            queue: 4096,
        }
    }
}

struct Ctx {
    pool: Pool<Shard>,
    max_bulk: usize,
    started: Instant,
    /// The operations connections submitted since the flusher last ran (see [`flusher`]).
    group: Mutex<Group>,
    /// Wakes the flusher when the first connection joins an empty group.
    flush: Notify,
    /// Groups sent to the shards whose answers have not been handed back yet (an `Arc` of its
    /// own: the tasks handing answers back must not hold the pool).
    in_flight: Arc<AtomicUsize>,
    /// Wakes the keep-warm task when a group goes out.
    sent: Notify,
}

/// A running server. [`Server::shutdown`] stops it gracefully.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<Result<ShutdownReport<Req>, corelane::Error>>>,
}

impl Server {
    /// Binds, starts the shard pool and the network thread, and returns once both are ready.
    ///
    /// # Errors
    /// Binding or pool errors.
    pub fn start(cfg: Config) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let listener = std::net::TcpListener::bind(cfg.addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let cores = corelane::available_cores();
        let pin = cfg.pin;
        let queue = cfg.queue;
        let pool = Pool::builder()
            .workers(cfg.shards)
            .worker_config(move |i| {
                let c = WorkerConfig::new()
                    .with_name(format!("kv-shard-{i}"))
                    .with_queue_capacity(queue);
                match cores.get(i) {
                    Some(&core) if pin => c.with_cpu_affinity(core),
                    _ => c,
                }
            })
            .spawn(|_| Shard)?;
        let (stop, stop_rx) = watch::channel(false);
        let group = Mutex::new(Group::new(pool.workers()));
        let ctx = Arc::new(Ctx {
            pool,
            max_bulk: cfg.max_bulk,
            started: Instant::now(),
            group,
            flush: Notify::new(),
            in_flight: Arc::new(AtomicUsize::new(0)),
            sent: Notify::new(),
        });
        let thread = std::thread::Builder::new()
            .name("kv-net".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(accept_loop(listener, ctx.clone(), stop_rx));
                let ctx = Arc::try_unwrap(ctx)
                    .unwrap_or_else(|_| panic!("connections still hold the pool"));
                ctx.pool.shutdown()
            })?;
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets open connections finish the requests they sent (up to 5 s), shuts
    /// the shard pool down gracefully and returns its report.
    ///
    /// # Errors
    /// The pool's shutdown error.
    pub fn shutdown(mut self) -> Result<ShutdownReport<Req>, corelane::Error> {
        let _ = self.stop.send(true);
        let thread = self.thread.take().expect("shut down once");
        thread.join().unwrap_or(Err(corelane::Error::ShutDown))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.stop.send(true);
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    ctx: Arc<Ctx>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = TcpListener::from_std(listener).expect("a non-blocking listener");
    let flusher = tokio::spawn(flusher(ctx.clone()));
    let warm = tokio::spawn(keep_warm(ctx.clone()));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(connection(stream, ctx.clone(), stop.clone()));
                }
            }
            _ = stop.changed() => break,
        }
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    let deadline = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = conns.join_next() => if next.is_none() { break },
            _ = &mut deadline => { conns.abort_all(); while conns.join_next().await.is_some() {} break; }
        }
    }
    // Every connection is gone, so nothing waits on a group any more.
    flusher.abort();
    let _ = flusher.await;
    warm.abort();
    let _ = warm.await;
}

/// One client: read what it sent, parse every complete command, hand the shard operations to
/// this tick's group ([`submit`]), then assemble and write the answers in order.
async fn connection(mut stream: TcpStream, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let mut rbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut wbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut batch = Batch::new(ctx.pool.workers());
    let mut plans = Vec::new();
    loop {
        let read = tokio::select! {
            r = stream.read_buf(&mut rbuf) => r,
            _ = stop.changed() => return,
        };
        match read {
            Ok(0) | Err(_) => return, // the client left; nothing of its is held anywhere
            Ok(_) => {}
        }
        let mut used = 0;
        let mut close = false;
        loop {
            match parse(&rbuf[used..], ctx.max_bulk) {
                Parsed::Command(args, n) => {
                    used += n;
                    if args.is_empty() {
                        continue;
                    }
                    let quit = args[0].eq_ignore_ascii_case(b"quit");
                    plans.push(plan(&ctx, &mut batch, args));
                    if quit {
                        close = true;
                        break;
                    }
                }
                Parsed::Incomplete => break,
                Parsed::Error(msg) => {
                    plans.push(Plan::Ready(Resp::Error(msg)));
                    close = true;
                    break;
                }
            }
        }
        rbuf.drain(..used);
        let mut results = submit(&ctx, &mut batch).await;
        for p in plans.drain(..) {
            p.resolve(&ctx, &mut results).write(&mut wbuf);
        }
        if stream.write_all(&wbuf).await.is_err() {
            return;
        }
        wbuf.clear();
        if close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// Key-value pairs bound for one shard.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Where one shard operation's answer will be: (shard, position in that shard's batch).
type Slot = (usize, usize);

/// The operations of one read, grouped by shard, in command order.
struct Batch {
    ops: Vec<Vec<Op>>,
}

/// Every shard's answers to its part of a batch (`None` once taken).
struct Results(Vec<Vec<Option<Resp>>>);

impl Results {
    fn take(&mut self, (shard, pos): Slot) -> Resp {
        self.0
            .get_mut(shard)
            .and_then(|answers| answers.get_mut(pos))
            .and_then(Option::take)
            .unwrap_or_else(|| Resp::err("shard unavailable"))
    }
}

impl Batch {
    fn new(shards: usize) -> Self {
        Self {
            ops: (0..shards).map(|_| Vec::new()).collect(),
        }
    }

    fn add(&mut self, shard: usize, op: Op) -> Slot {
        self.ops[shard].push(op);
        (shard, self.ops[shard].len() - 1)
    }

    fn add_to_every_shard(&mut self, make: impl Fn() -> Op) -> Vec<Slot> {
        (0..self.ops.len())
            .map(|shard| self.add(shard, make()))
            .collect()
    }
}

/// The shard operations of every connection that read requests in one scheduler tick.
///
/// Connections that become readable together (after one poll of the network) each append their
/// batch here; the flusher, woken by the first of them and queued behind the rest, sends each
/// shard the whole group as one message and hands every connection its part of the answers. With
/// 50 pipelining clients this is one hop to a shard (one wake-up at most) per tick instead of one
/// per connection read.
struct Group {
    /// Per shard, the operations of every member, member after member.
    batch: Batch,
    /// Per member: how many operations it added to each shard, and where its answers go.
    members: Vec<(Vec<usize>, oneshot::Sender<Results>)>,
}

impl Group {
    fn new(shards: usize) -> Self {
        Self {
            batch: Batch::new(shards),
            members: Vec::new(),
        }
    }
}

fn lock(group: &Mutex<Group>) -> std::sync::MutexGuard<'_, Group> {
    // A panic while holding the lock leaves at worst a member without answers, which reads as
    // "shard unavailable"; the group itself stays usable.
    group.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds `batch` (emptying it) to the current group and waits for its answers. A batch without
/// shard operations (PING, errors) is answered at once.
async fn submit(ctx: &Ctx, batch: &mut Batch) -> Results {
    if batch.ops.iter().all(Vec::is_empty) {
        return Results(Vec::new());
    }
    let (tx, rx) = oneshot::channel();
    {
        let mut group = lock(&ctx.group);
        let counts = group
            .batch
            .ops
            .iter_mut()
            .zip(&mut batch.ops)
            .map(|(all, mine)| {
                let n = mine.len();
                all.append(mine);
                n
            })
            .collect();
        group.members.push((counts, tx));
        if group.members.len() == 1 {
            ctx.flush.notify_one();
        }
    }
    // A group that could not be sent (pool stopped) drops the sender: every answer is missing.
    rx.await.unwrap_or(Results(Vec::new()))
}

/// Sends each group to the shards (one message per shard) and, in a task of its own, hands the
/// answers back to the group's members, so the next group can go out meanwhile. A full inbox makes
/// it yield until there is room.
async fn flusher(ctx: Arc<Ctx>) {
    loop {
        ctx.flush.notified().await;
        let group = std::mem::replace(&mut *lock(&ctx.group), Group::new(ctx.pool.workers()));
        if group.members.is_empty() {
            continue;
        }
        let mut answers = Vec::with_capacity(group.batch.ops.len());
        for (shard, ops) in group.batch.ops.into_iter().enumerate() {
            if ops.is_empty() {
                answers.push(None);
                continue;
            }
            let (reply, answer) = Reply::pair_async();
            let mut msg = Req { ops, reply };
            let sent = loop {
                match ctx.pool.try_send_to(shard, msg) {
                    Ok(()) => break true,
                    Err(SendError::Full(back)) => {
                        msg = back;
                        tokio::task::yield_now().await;
                    }
                    Err(_) => break false,
                }
            };
            answers.push(sent.then_some(answer));
        }
        ctx.in_flight.fetch_add(1, Ordering::Relaxed);
        ctx.sent.notify_one();
        let in_flight = ctx.in_flight.clone();
        tokio::spawn(async move {
            hand_back(answers, group.members).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// While groups are out, keeps this thread polling (yielding, which polls the network without
/// blocking) for at most `SPIN` per wait, instead of sleeping in `epoll_wait` and paying a wake-up
/// when the answers arrive moments later.
async fn keep_warm(ctx: Arc<Ctx>) {
    const SPIN: Duration = Duration::from_micros(200);
    loop {
        ctx.sent.notified().await;
        let start = Instant::now();
        while ctx.in_flight.load(Ordering::Relaxed) > 0 && start.elapsed() < SPIN {
            tokio::task::yield_now().await;
        }
    }
}

/// Waits for every shard's answers to one group and splits them among its members, in order.
async fn hand_back(
    answers: Vec<Option<corelane::worker::Answer<Vec<Resp>>>>,
    members: Vec<(Vec<usize>, oneshot::Sender<Results>)>,
) {
    let mut per_shard = Vec::with_capacity(answers.len());
    for answer in answers {
        let got = match answer {
            Some(a) => a.wait_async::<Req>().await.unwrap_or_default(),
            None => Vec::new(),
        };
        per_shard.push(got.into_iter());
    }
    for (counts, tx) in members {
        let results = per_shard
            .iter_mut()
            .zip(counts)
            .map(|(answers, n)| answers.by_ref().take(n).map(Some).collect())
            .collect();
        let _ = tx.send(Results(results)); // the connection may have left
    }
}

/// How to build one command's reply from its shards' answers.
enum Plan {
    Ready(Resp),
    One(Slot),
    /// Integer replies of several shards, summed (`DEL`, `EXISTS`, `DBSIZE`).
    Sum(Vec<Slot>),
    /// `MGET`: each shard's array goes back to the positions of its keys.
    Gather(usize, Vec<(Vec<usize>, Slot)>),
    /// Every shard must answer `OK` (`MSET`, `FLUSHALL`).
    AllOk(Vec<Slot>),
    /// `INFO`: per-shard `[keys, expires]`.
    Info(Vec<Slot>),
}

impl Plan {
    fn resolve(self, ctx: &Ctx, results: &mut Results) -> Resp {
        match self {
            Plan::Ready(r) => r,
            Plan::One(slot) => results.take(slot),
            Plan::Sum(slots) => {
                let mut total = 0;
                for slot in slots {
                    match results.take(slot) {
                        Resp::Int(n) => total += n,
                        other => return other,
                    }
                }
                Resp::Int(total)
            }
            Plan::Gather(len, parts) => {
                let mut out = vec![Resp::Bulk(None); len];
                for (positions, slot) in parts {
                    match results.take(slot) {
                        Resp::Array(items) => {
                            for (pos, item) in positions.into_iter().zip(items) {
                                out[pos] = item;
                            }
                        }
                        other => return other,
                    }
                }
                Resp::Array(out)
            }
            Plan::AllOk(slots) => {
                for slot in slots {
                    let r = results.take(slot);
                    if r != Resp::Simple("OK") {
                        return r;
                    }
                }
                Resp::Simple("OK")
            }
            Plan::Info(slots) => {
                let (mut keys, mut expires) = (0, 0);
                let mut shards = String::new();
                let metrics = ctx.pool.metrics();
                for (i, slot) in slots.into_iter().enumerate() {
                    if let Resp::Array(v) = results.take(slot) {
                        if let [Resp::Int(k), Resp::Int(e)] = v[..] {
                            keys += k;
                            expires += e;
                            let m = &metrics.workers[i];
                            shards.push_str(&format!(
                                "shard{i}:keys={k},expires={e},processed={},queued={},core={}\r\n",
                                m.processed,
                                m.queued,
                                m.core.map_or(-1, |c| c as i64)
                            ));
                        }
                    }
                }
                let text = format!(
                    "# Server\r\nredis_version:7.0.0\r\ncorelane_version:{}\r\nuptime_in_seconds:{}\r\n\r\n\
                     # Keyspace\r\ndb0:keys={keys},expires={expires},avg_ttl=0\r\n\r\n\
                     # Shards\r\nshards:{}\r\n{shards}",
                    env!("CARGO_PKG_VERSION"),
                    ctx.started.elapsed().as_secs(),
                    metrics.workers.len()
                );
                Resp::Bulk(Some(text.into_bytes()))
            }
        }
    }
}

/// Groups `keys` by shard: `(shard, positions in the command, keys)`.
fn by_shard(ctx: &Ctx, keys: Vec<Vec<u8>>) -> Vec<(usize, Vec<usize>, Vec<Vec<u8>>)> {
    let mut groups: Vec<(usize, Vec<usize>, Vec<Vec<u8>>)> = Vec::new();
    for (pos, key) in keys.into_iter().enumerate() {
        let shard = ctx.pool.worker_for(key.as_slice());
        match groups.iter_mut().find(|g| g.0 == shard) {
            Some(g) => {
                g.1.push(pos);
                g.2.push(key);
            }
            None => groups.push((shard, vec![pos], vec![key])),
        }
    }
    groups
}

/// Arity as redis declares it: `n` exactly n arguments (with the name), `-n` at least n.
fn arity(name: &str) -> Option<i32> {
    Some(match name {
        "ping" | "flushall" | "info" | "command" | "quit" => -1,
        "get" | "incr" | "decr" | "strlen" | "ttl" | "echo" => 2,
        "incrby" | "decrby" | "append" => 3,
        "set" | "mset" | "expire" => -3,
        "del" | "exists" | "mget" => -2,
        "dbsize" => 1,
        _ => return None,
    })
}

fn unknown_command(args: &[Vec<u8>]) -> Resp {
    let rest: String = args[1..]
        .iter()
        .map(|a| format!("'{}' ", String::from_utf8_lossy(&a[..a.len().min(128)])))
        .collect();
    Resp::err(format!(
        "unknown command '{}', with args beginning with: {rest}",
        String::from_utf8_lossy(&args[0][..args[0].len().min(128)])
    ))
}

/// Parses `SET key value [NX|XX] [EX s|PX ms]` options the way redis 7 does.
fn set_options(args: &[Vec<u8>]) -> Result<(Option<Duration>, SetCond), Resp> {
    let (mut ttl, mut cond) = (None, SetCond::Always);
    let mut i = 3;
    while i < args.len() {
        let opt = args[i].to_ascii_lowercase();
        match opt.as_slice() {
            b"nx" if cond != SetCond::Xx => cond = SetCond::Nx,
            b"xx" if cond != SetCond::Nx => cond = SetCond::Xx,
            b"ex" | b"px" if ttl.is_none() && i + 1 < args.len() => {
                i += 1;
                let n = parse_int(&args[i]).ok_or_else(not_an_integer)?;
                if n <= 0 || (opt == b"ex" && n > i64::MAX / 1000) {
                    return Err(Resp::err("invalid expire time in 'set' command"));
                }
                ttl = Some(if opt == b"ex" {
                    Duration::from_secs(n as u64)
                } else {
                    Duration::from_millis(n as u64)
                });
            }
            _ => return Err(Resp::err("syntax error")),
        }
        i += 1;
    }
    Ok((ttl, cond))
}

/// Validates one command and adds its shard operations to `batch`.
fn plan(ctx: &Ctx, batch: &mut Batch, mut args: Vec<Vec<u8>>) -> Plan {
    // Every command we know has a short ASCII name: lower-case it on the stack.
    let mut lower = [0u8; 16];
    let name = match args[0].len() {
        n if n <= lower.len() => {
            lower[..n].copy_from_slice(&args[0]);
            lower[..n].make_ascii_lowercase();
            std::str::from_utf8(&lower[..n]).unwrap_or("")
        }
        _ => "",
    };
    let Some(want) = arity(name) else {
        return Plan::Ready(unknown_command(&args));
    };
    let n = args.len() as i32;
    if (want > 0 && n != want) || (want < 0 && n < -want) || (name == "ping" && n > 2) {
        return Plan::Ready(Resp::err(format!(
            "wrong number of arguments for '{name}' command"
        )));
    }
    // A single-key command: its key moves into the operation (no copy).
    let key = |args: &mut Vec<Vec<u8>>| std::mem::take(&mut args[1]);
    let mut one = |op: Op| {
        let shard = ctx.pool.worker_for(op.key().unwrap_or_default());
        Plan::One(batch.add(shard, op))
    };
    match name {
        "ping" => Plan::Ready(match args.get(1) {
            Some(msg) => Resp::Bulk(Some(msg.clone())),
            None => Resp::Simple("PONG"),
        }),
        "echo" => Plan::Ready(Resp::Bulk(Some(args.swap_remove(1)))),
        "quit" => Plan::Ready(Resp::Simple("OK")),
        "command" => Plan::Ready(Resp::Array(Vec::new())),
        "get" => one(Op::Get(key(&mut args))),
        "strlen" => one(Op::Strlen(key(&mut args))),
        "ttl" => one(Op::Ttl(key(&mut args))),
        "incr" => one(Op::IncrBy(key(&mut args), 1)),
        "decr" => one(Op::IncrBy(key(&mut args), -1)),
        "incrby" | "decrby" => match parse_int(&args[2]) {
            None => Plan::Ready(not_an_integer()),
            Some(d) if name == "decrby" && d == i64::MIN => {
                Plan::Ready(Resp::err("decrement would overflow"))
            }
            Some(d) => {
                let delta = if name == "decrby" { -d } else { d };
                one(Op::IncrBy(key(&mut args), delta))
            }
        },
        "append" => {
            let val = args.pop().expect("arity checked");
            one(Op::Append(key(&mut args), val))
        }
        "set" => match set_options(&args) {
            Err(e) => Plan::Ready(e),
            Ok((ttl, cond)) => {
                args.truncate(3);
                let val = args.pop().expect("arity checked");
                one(Op::Set {
                    key: key(&mut args),
                    val,
                    ttl,
                    cond,
                })
            }
        },
        "expire" => {
            if n > 3 {
                return Plan::Ready(Resp::err(format!(
                    "Unsupported option {}",
                    String::from_utf8_lossy(&args[3])
                )));
            }
            match parse_int(&args[2]) {
                None => Plan::Ready(not_an_integer()),
                Some(secs) => one(Op::Expire(key(&mut args), secs)),
            }
        }
        "del" | "exists" => {
            let del = name == "del";
            let slots = by_shard(ctx, args.split_off(1))
                .into_iter()
                .map(|(shard, _, keys)| {
                    batch.add(shard, if del { Op::Del(keys) } else { Op::Exists(keys) })
                })
                .collect();
            Plan::Sum(slots)
        }
        "mget" => {
            let keys = args.split_off(1);
            let len = keys.len();
            let parts = by_shard(ctx, keys)
                .into_iter()
                .map(|(shard, positions, keys)| (positions, batch.add(shard, Op::MGet(keys))))
                .collect();
            Plan::Gather(len, parts)
        }
        "mset" => {
            if (n - 1) % 2 != 0 {
                return Plan::Ready(Resp::err("wrong number of arguments for 'mset' command"));
            }
            let mut pairs: Vec<(usize, Pairs)> = Vec::new();
            let mut rest = args.split_off(1).into_iter();
            while let (Some(k), Some(v)) = (rest.next(), rest.next()) {
                let shard = ctx.pool.worker_for(k.as_slice());
                match pairs.iter_mut().find(|p| p.0 == shard) {
                    Some(p) => p.1.push((k, v)),
                    None => pairs.push((shard, vec![(k, v)])),
                }
            }
            Plan::AllOk(
                pairs
                    .into_iter()
                    .map(|(shard, kvs)| batch.add(shard, Op::MSet(kvs)))
                    .collect(),
            )
        }
        "dbsize" => Plan::Sum(batch.add_to_every_shard(|| Op::DbSize)),
        "flushall" => match args.get(1).map(|a| a.to_ascii_lowercase()) {
            Some(opt) if opt != b"async" && opt != b"sync" || n > 2 => {
                Plan::Ready(Resp::err("syntax error"))
            }
            _ => Plan::AllOk(batch.add_to_every_shard(|| Op::FlushAll)),
        },
        "info" => Plan::Info(batch.add_to_every_shard(|| Op::Stats)),
        _ => Plan::Ready(unknown_command(&args)),
    }
}
