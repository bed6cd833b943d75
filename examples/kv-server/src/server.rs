//! The network front, thread-per-core: every shard worker serves its own share of the
//! connections on a tokio current-thread runtime that it drives while its inbox is empty
//! ([`Worker::wait`]). A connection's operations on keys of its own shard run inline, on that
//! thread; operations on other shards' keys go to their owner, one message per shard per
//! scheduler tick ([`Group`]). The accept thread only hands new connections out, round robin.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use corelane::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Notify};

use crate::resp::{parse, Parsed, Resp};
use crate::shard::{not_an_integer, parse_int, Op, Req, SetCond, Store};

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

/// The shard worker: a part of the keyspace and the connections it serves.
#[derive(Debug)]
pub struct Shard {
    max_bulk: usize,
    started: Instant,
}

/// A shard's state: its event loop, and what the loop's tasks share.
pub struct ShardState {
    tasks: tokio::task::LocalSet,
    rt: tokio::runtime::Runtime,
    front: Rc<Front>,
}

impl std::fmt::Debug for ShardState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardState")
            .field("shard", &self.front.me)
            .field("connections", &self.front.connections.get())
            .finish_non_exhaustive()
    }
}

impl Drop for ShardState {
    fn drop(&mut self) {
        // The connection tasks own sockets registered with this runtime: drop them inside it.
        let _inside = self.rt.enter();
        drop(std::mem::replace(
            &mut self.tasks,
            tokio::task::LocalSet::new(),
        ));
    }
}

/// What one shard's connection tasks share. It lives on the shard's thread: `Rc` and `RefCell`,
/// never a lock.
struct Front {
    me: usize,
    outbox: Outbox<Req>,
    store: RefCell<Store>,
    max_bulk: usize,
    started: Instant,
    /// The remote operations connections submitted since the flusher last ran (see [`flusher`]).
    group: RefCell<Group>,
    /// Wakes the flusher when the first connection joins an empty group.
    flush: Notify,
    /// Groups sent to other shards whose answers have not been handed back yet.
    in_flight: Rc<Cell<usize>>,
    /// Wakes the keep-warm task when a group goes out.
    sent: Notify,
    /// Raised by [`Req::Drain`]: connections stop reading new requests.
    stop: watch::Sender<bool>,
    /// Connection tasks alive.
    connections: Cell<usize>,
}

impl Front {
    fn shards(&self) -> usize {
        self.outbox.workers()
    }

    fn shard_of(&self, key: &[u8]) -> usize {
        // The pool's partitioner is a hash partitioner, which the outbox can always apply.
        self.outbox.worker_for(key).unwrap_or(0)
    }

    /// Applies this shard's own operations, in order.
    fn apply(&self, ops: impl Iterator<Item = Op>) -> Vec<Option<Resp>> {
        let answers = self.store.borrow_mut().apply_all(ops);
        answers.into_iter().map(Some).collect()
    }
}

impl Worker for Shard {
    type Message = Req;
    type State = ShardState;

    fn init(&mut self, ctx: &mut Context<'_, Self>) -> Result<ShardState, BoxError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let outbox = ctx.outbox();
        let front = Rc::new(Front {
            me: ctx.index(),
            group: RefCell::new(Group::new(outbox.workers())),
            outbox,
            store: RefCell::new(Store::new()),
            max_bulk: self.max_bulk,
            started: self.started,
            flush: Notify::new(),
            in_flight: Rc::new(Cell::new(0)),
            sent: Notify::new(),
            stop: watch::channel(false).0,
            connections: Cell::new(0),
        });
        let tasks = tokio::task::LocalSet::new();
        tasks.spawn_local(flusher(front.clone()));
        tasks.spawn_local(keep_warm(front.clone()));
        Ok(ShardState { tasks, rt, front })
    }

    fn handle(&mut self, st: &mut ShardState, req: Req, _: &mut Context<'_, Self>) {
        match req {
            Req::Ops { ops, reply } => reply.send(st.front.store.borrow_mut().apply_all(ops)),
            Req::Serve(stream, read) => {
                let _inside = st.rt.enter();
                // A stream the runtime cannot adopt is dropped: the client sees the close.
                if let Ok(stream) = TcpStream::from_std(stream) {
                    st.tasks
                        .spawn_local(connection(stream, read, st.front.clone()));
                }
            }
            Req::Drain => {
                st.front.stop.send_replace(true);
            }
            Req::Connections(reply) => reply.send(st.front.connections.get()),
        }
    }

    fn on_idle(&mut self, st: &mut ShardState, _: &mut Context<'_, Self>) {
        st.front.store.borrow_mut().sweep();
    }

    /// Runs the shard's connections until a message arrives.
    fn wait(&mut self, st: &mut ShardState, _: &mut Context<'_, Self>, idle: &Idle<'_>) {
        const SPIN: Duration = Duration::from_micros(50);
        st.rt.block_on(st.tasks.run_until(async {
            poll_while(|| !idle.is_ready(), SPIN).await;
            idle.ready().await
        }));
    }
}

/// A running server. [`Server::shutdown`] stops it gracefully.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<Result<ShutdownReport<Req>, corelane::Error>>>,
}

impl Server {
    /// Binds, starts the shard pool and the accept thread, and returns once both are ready.
    ///
    /// # Errors
    /// Binding or pool errors.
    pub fn start(cfg: Config) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let listener = std::net::TcpListener::bind(cfg.addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let cores = corelane::available_cores();
        let (pin, queue, max_bulk, started) = (cfg.pin, cfg.queue, cfg.max_bulk, Instant::now());
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
            .spawn(|_| Shard { max_bulk, started })?;
        let (stop, stop_rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("kv-accept".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(accept_loop(listener, &pool, stop_rx));
                drain(&pool, Duration::from_secs(5));
                pool.shutdown()
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

/// Accepts until `stop`, handing each connection to the next shard in turn.
async fn accept_loop(
    listener: std::net::TcpListener,
    pool: &Pool<Shard>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = TcpListener::from_std(listener).expect("a non-blocking listener");
    let mut next = 0;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let Ok(stream) = stream.into_std() else { continue };
                // A refused hand-off (a stopped shard) drops the stream: the client sees the close.
                let _ = pool.send_to(next, Req::Serve(stream, Vec::new()));
                next = (next + 1) % pool.workers();
            }
            _ = stop.changed() => return,
        }
    }
}

/// Tells every shard to stop reading new requests and waits (up to `limit`) until their
/// connections have answered what they read and closed.
fn drain(pool: &Pool<Shard>, limit: Duration) {
    for i in 0..pool.workers() {
        let _ = pool.send_to(i, Req::Drain);
    }
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let open: usize = (0..pool.workers())
            .map(|i| {
                let (reply, answer) = Reply::pair();
                match pool.send_to(i, Req::Connections(reply)) {
                    Ok(()) => answer.wait::<Req>().unwrap_or(0),
                    Err(_) => 0,
                }
            })
            .sum();
        if open == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Counts a connection task while it lives (aborted or not).
struct Alive(Rc<Front>);

impl Alive {
    fn new(front: Rc<Front>) -> Self {
        front.connections.set(front.connections.get() + 1);
        Self(front)
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.connections.set(self.0.connections.get() - 1);
    }
}

/// After this many reads in a row whose every key lives on one other shard, a connection moves
/// to that shard (as Dragonfly's `migrate_connections` does): its operations then run inline
/// there instead of crossing threads. A client spread over the keyspace never qualifies.
const MIGRATE_AFTER: u32 = 4;

/// One client: read what it sent, parse every complete command, run its shard operations
/// ([`submit`]), then assemble and write the answers in order. `rbuf` holds bytes already read
/// (by the shard this connection moved from).
async fn connection(mut stream: TcpStream, mut rbuf: Vec<u8>, front: Rc<Front>) {
    let alive = Alive::new(front);
    let front = &alive.0;
    let mut stop = front.stop.subscribe();
    rbuf.reserve(16 * 1024);
    let mut wbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut batch = Batch::new(front.shards());
    let mut plans = Vec::new();
    // (shard, how many reads in a row went only to it)
    let mut streak = (front.me, 0);
    let mut unread = !rbuf.is_empty();
    loop {
        if !std::mem::take(&mut unread) {
            // Draining: what was read is answered (above); nothing new is read.
            if *stop.borrow_and_update() {
                return;
            }
            let read = tokio::select! {
                r = stream.read_buf(&mut rbuf) => r,
                _ = stop.changed() => return,
            };
            match read {
                Ok(0) | Err(_) => return, // the client left; nothing of its is held anywhere
                Ok(_) => {}
            }
        }
        let mut used = 0;
        let mut close = false;
        loop {
            match parse(&rbuf[used..], front.max_bulk) {
                Parsed::Command(args, n) => {
                    used += n;
                    if args.is_empty() {
                        continue;
                    }
                    let quit = args[0].eq_ignore_ascii_case(b"quit");
                    plans.push(plan(front, &mut batch, args));
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
        streak = match batch.only_shard() {
            Some(shard) if shard != front.me && shard == streak.0 => (shard, streak.1 + 1),
            Some(shard) if shard != front.me => (shard, 1),
            _ => (front.me, 0),
        };
        let mut results = submit(front, &mut batch).await;
        for p in plans.drain(..) {
            p.resolve(front, &mut results).write(&mut wbuf);
        }
        if stream.write_all(&wbuf).await.is_err() {
            return;
        }
        wbuf.clear();
        if close {
            let _ = stream.shutdown().await;
            return;
        }
        if streak.1 >= MIGRATE_AFTER {
            // Every answer is written: nothing of this connection is in flight. Hand the socket
            // and its unparsed bytes to the shard its keys live on; if that fails, stay.
            let Ok(std) = stream.into_std() else { return };
            match front.outbox.send_to(streak.0, Req::Serve(std, rbuf)) {
                Ok(()) => return,
                Err(e) => match e.into_inner() {
                    Req::Serve(std, back) => match TcpStream::from_std(std) {
                        Ok(s) => (stream, rbuf, streak) = (s, back, (front.me, 0)),
                        Err(_) => return,
                    },
                    _ => unreachable!("the message handed back is the one sent"),
                },
            }
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
    /// Sets shard `shard`'s answers.
    fn put(&mut self, shard: usize, answers: Vec<Option<Resp>>) {
        if self.0.len() <= shard {
            self.0.resize_with(shard + 1, Vec::new);
        }
        self.0[shard] = answers;
    }

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

    /// The one shard this batch has operations for, if exactly one.
    fn only_shard(&self) -> Option<usize> {
        let mut busy = self
            .ops
            .iter()
            .enumerate()
            .filter(|(_, ops)| !ops.is_empty());
        match (busy.next(), busy.next()) {
            (Some((shard, _)), None) => Some(shard),
            _ => None,
        }
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

/// Runs `batch` (emptying it): this shard's operations at once, the others' through the current
/// group, whose answers it waits for. A batch without shard operations (PING, errors) is
/// answered at once.
async fn submit(front: &Front, batch: &mut Batch) -> Results {
    // No clock read for a read without local operations (every read of a remote-only client).
    let local =
        (!batch.ops[front.me].is_empty()).then(|| front.apply(batch.ops[front.me].drain(..)));
    let mut results = if batch.ops.iter().all(Vec::is_empty) {
        Results(Vec::new())
    } else {
        let (tx, rx) = oneshot::channel();
        {
            let mut group = front.group.borrow_mut();
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
                front.flush.notify_one();
            }
        }
        // A group that could not be sent (pool stopped) drops the sender: every answer is
        // missing.
        rx.await.unwrap_or(Results(Vec::new()))
    };
    if let Some(local) = local {
        results.put(front.me, local);
    }
    results
}

/// Sends each group to its shards (one message per shard) and, in a task of its own, hands the
/// answers back to the group's members, so the next group can go out meanwhile. A full inbox makes
/// it yield until there is room.
async fn flusher(front: Rc<Front>) {
    loop {
        front.flush.notified().await;
        let group = std::mem::replace(&mut *front.group.borrow_mut(), Group::new(front.shards()));
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
            let mut msg = Req::Ops { ops, reply };
            let sent = loop {
                match front.outbox.send_to(shard, msg) {
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
        front.in_flight.set(front.in_flight.get() + 1);
        front.sent.notify_one();
        let in_flight = front.in_flight.clone();
        tokio::task::spawn_local(async move {
            hand_back(answers, group.members).await;
            in_flight.set(in_flight.get() - 1);
        });
    }
}

/// While groups are out, keeps this thread polling (yielding, which polls the network without
/// blocking) for at most `SPIN` per wait, instead of sleeping in `epoll_wait` and paying a wake-up
/// when the answers arrive moments later.
async fn keep_warm(front: Rc<Front>) {
    const SPIN: Duration = Duration::from_micros(200);
    loop {
        front.sent.notified().await;
        poll_while(|| front.in_flight.get() > 0, SPIN).await;
    }
}

/// Keeps the event loop turning (yielding, which polls the network without blocking) while
/// `cond` holds, for at most `limit`. The clock is read every 8th turn: a read per turn was 7% of
/// a busy shard's samples.
async fn poll_while(cond: impl Fn() -> bool, limit: Duration) {
    let start = Instant::now();
    let mut turns = 0u32;
    while cond() && (!turns.is_multiple_of(8) || start.elapsed() < limit) {
        turns = turns.wrapping_add(1);
        tokio::task::yield_now().await;
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
    fn resolve(self, front: &Front, results: &mut Results) -> Resp {
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
                let metrics = front.outbox.metrics();
                for (i, slot) in slots.into_iter().enumerate() {
                    if let Resp::Array(v) = results.take(slot) {
                        if let [Resp::Int(k), Resp::Int(e)] = v[..] {
                            keys += k;
                            expires += e;
                            let m = &metrics[i];
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
                    front.started.elapsed().as_secs(),
                    metrics.len()
                );
                Resp::Bulk(Some(text.into_bytes()))
            }
        }
    }
}

/// Groups `keys` by shard: `(shard, positions in the command, keys)`.
fn by_shard(front: &Front, keys: Vec<Vec<u8>>) -> Vec<(usize, Vec<usize>, Vec<Vec<u8>>)> {
    let mut groups: Vec<(usize, Vec<usize>, Vec<Vec<u8>>)> = Vec::new();
    for (pos, key) in keys.into_iter().enumerate() {
        let shard = front.shard_of(&key);
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
fn plan(front: &Front, batch: &mut Batch, mut args: Vec<Vec<u8>>) -> Plan {
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
        let shard = front.shard_of(op.key().unwrap_or_default());
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
            let slots = by_shard(front, args.split_off(1))
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
            let parts = by_shard(front, keys)
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
                let shard = front.shard_of(&k);
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
