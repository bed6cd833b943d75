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

use crate::resp::{string2ll, Parsed, Parser, Resp};
use crate::shard::{not_an_integer, parse_int, ExpireCond, Op, Req, SetCond, SetTtl, Store};

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
        let listener = listen(cfg.addr)?;
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

/// Redis' default `tcp-backlog`: connections the kernel queues before `accept`.
const BACKLOG: i32 = 511;

/// A non-blocking listener on `addr` with redis' backlog (std's `bind` uses 128, which turned
/// bursts of connects into one-second SYN retries).
fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// How long the accept loop pauses after a failed accept (out of file descriptors, say): the
/// pending connection stays queued, and retrying at once would spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

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
                let Ok((stream, _)) = accepted else {
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                        _ = stop.changed() => return,
                    }
                };
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

/// At most this many commands of one read are run before their replies are written: a
/// pipeline's replies are built and sent a chunk at a time, so a client that does not read its
/// replies stalls its own connection (nothing more is parsed) instead of growing its buffers.
const CHUNK: usize = 128;

/// Buffers larger than this are shrunk back once they are empty (after a large request or reply).
const KEEP_BUFFER: usize = 64 * 1024;

/// One client: read what it sent, parse up to [`CHUNK`] complete commands, run their shard
/// operations ([`submit`]), then assemble and write the answers in order. `rbuf` holds bytes
/// already read (by the shard this connection moved from).
async fn connection(mut stream: TcpStream, rbuf: Vec<u8>, front: Rc<Front>) {
    let alive = Alive::new(front);
    let front = &alive.0;
    let mut stop = front.stop.subscribe();
    let mut conn = Conn::new(front, rbuf);
    loop {
        if !std::mem::take(&mut conn.unread) {
            // Draining: what was read is answered (above); nothing new is read.
            if *stop.borrow_and_update() {
                return;
            }
            conn.reserve_for_bulk();
            let read = tokio::select! {
                r = stream.read_buf(&mut conn.rbuf) => r,
                _ = stop.changed() => return,
            };
            match read {
                Ok(0) | Err(_) => return, // the client left; nothing of its is held anywhere
                Ok(_) => {}
            }
        }
        let close = conn.parse_chunk(front);
        let streak = conn.streak(front);
        let mut results = submit(front, &mut conn.batch).await;
        for p in conn.plans.drain(..) {
            p.resolve(front, &mut results).write(&mut conn.wbuf);
        }
        if stream.write_all(&conn.wbuf).await.is_err() {
            return;
        }
        conn.wbuf.clear();
        conn.shrink();
        if close {
            let _ = stream.shutdown().await;
            return;
        }
        if streak >= MIGRATE_AFTER {
            // Every answer is written: nothing of this connection is in flight. Hand the socket
            // and its unparsed bytes to the shard its keys live on; if that fails, stay.
            let Ok(std) = stream.into_std() else { return };
            match front.outbox.send_to(
                conn.streak.0,
                Req::Serve(std, std::mem::take(&mut conn.rbuf)),
            ) {
                Ok(()) => return,
                Err(e) => match e.into_inner() {
                    Req::Serve(std, back) => match TcpStream::from_std(std) {
                        Ok(s) => {
                            stream = s;
                            conn.rbuf = back;
                            conn.streak = (front.me, 0);
                        }
                        Err(_) => return,
                    },
                    _ => unreachable!("the message handed back is the one sent"),
                },
            }
        }
    }
}

/// A connection's buffers and parsing state.
struct Conn {
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    parser: Parser,
    batch: Batch,
    plans: Vec<Plan>,
    /// (shard, how many reads in a row went only to it)
    streak: (usize, u32),
    /// `rbuf` may hold complete commands not parsed yet: parse before reading.
    unread: bool,
}

impl Conn {
    fn new(front: &Front, mut rbuf: Vec<u8>) -> Self {
        let unread = !rbuf.is_empty();
        rbuf.reserve(16 * 1024);
        Self {
            rbuf,
            wbuf: Vec::with_capacity(16 * 1024),
            parser: Parser::new(front.max_bulk),
            batch: Batch::new(front.shards()),
            plans: Vec::new(),
            streak: (front.me, 0),
            unread,
        }
    }

    /// Makes room for the whole bulk string the parser waits for, so a large value is read
    /// into place without repeated reallocation.
    fn reserve_for_bulk(&mut self) {
        if let Some(len) = self.parser.awaited_bulk(&self.rbuf) {
            let want = (len + 64).min(self.parser_limit());
            self.rbuf.reserve(want.saturating_sub(self.rbuf.len()));
        }
    }

    /// The most a single reservation may ask for (a client's claimed length is not trusted past
    /// a few megabytes before the bytes arrive).
    fn parser_limit(&self) -> usize {
        self.rbuf.len() + 8 * 1024 * 1024
    }

    /// Parses up to [`CHUNK`] commands from `rbuf` into plans; `true` if the connection must
    /// close after answering them (`QUIT`, a protocol error).
    fn parse_chunk(&mut self, front: &Front) -> bool {
        let mut used = 0;
        let mut commands = 0;
        let close = loop {
            if commands == CHUNK {
                self.unread = true;
                break false;
            }
            let (parsed, n) = self.parser.parse(&self.rbuf[used..]);
            used += n;
            match parsed {
                Parsed::Command(args) => {
                    commands += 1;
                    let quit = args[0].eq_ignore_ascii_case(b"quit");
                    self.plans.push(plan(front, &mut self.batch, args));
                    if quit {
                        break true;
                    }
                }
                Parsed::Incomplete if n > 0 => {}
                Parsed::Incomplete => break false,
                Parsed::Error(msg) => {
                    self.plans.push(Plan::Ready(Resp::Error(msg)));
                    break true;
                }
            }
        };
        self.rbuf.drain(..used);
        close
    }

    /// Updates the run of reads whose keys all live on one other shard; returns its length.
    fn streak(&mut self, front: &Front) -> u32 {
        self.streak = match self.batch.only_shard() {
            Some(shard) if shard != front.me && shard == self.streak.0 => {
                (shard, self.streak.1 + 1)
            }
            Some(shard) if shard != front.me => (shard, 1),
            _ => (front.me, 0),
        };
        self.streak.1
    }

    /// Gives back the memory of a large request or reply once it is done.
    fn shrink(&mut self) {
        if self.wbuf.capacity() > KEEP_BUFFER {
            self.wbuf = Vec::with_capacity(16 * 1024);
        }
        if self.rbuf.capacity() > KEEP_BUFFER && self.rbuf.len() < KEEP_BUFFER / 4 {
            self.rbuf.shrink_to(16 * 1024);
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
                                m.counters.processed,
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

/// The bytes of `b` before its first NUL: what a C `%s` prints of it, as redis does.
fn cstr(b: &[u8]) -> &[u8] {
    &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]
}

/// Whether `arg`, read as a C string, is `name` ignoring ASCII case (`strcasecmp`).
fn is(arg: &[u8], name: &str) -> bool {
    cstr(arg).eq_ignore_ascii_case(name.as_bytes())
}

/// Redis' reply to an unknown command: the name and the first arguments, each cut so that the
/// list stays within 128 bytes.
fn unknown_command(args: &[Vec<u8>]) -> Resp {
    let mut rest = Vec::new();
    for arg in &args[1..] {
        if rest.len() >= 128 {
            break;
        }
        let (arg, budget) = (cstr(arg), 128 - rest.len());
        rest.push(b'\'');
        rest.extend_from_slice(&arg[..arg.len().min(budget)]);
        rest.extend_from_slice(b"' ");
    }
    let name = cstr(&args[0]);
    let mut msg = b"unknown command '".to_vec();
    msg.extend_from_slice(&name[..name.len().min(128)]);
    msg.extend_from_slice(b"', with args beginning with: ");
    msg.extend_from_slice(&rest);
    Resp::err(msg)
}

/// The current Unix time in milliseconds, the base redis checks expiry overflow against.
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn invalid_expire(command: &str) -> Resp {
    Resp::err(format!("invalid expire time in '{command}' command"))
}

/// Parses `SET key value [NX|XX] [GET] [EX s|PX ms|KEEPTTL]` the way redis 7.0 does: every
/// option first (a repeated `EX` or `PX` replaces the earlier one), then the expire time.
fn set_options(args: &[Vec<u8>]) -> Result<(SetTtl, SetCond, bool), Resp> {
    let (mut cond, mut get, mut keep) = (SetCond::Always, false, false);
    // (in seconds, the time's argument)
    let mut expire: Option<(bool, &[u8])> = None;
    let mut i = 3;
    while i < args.len() {
        let (opt, next) = (&args[i], args.get(i + 1));
        match next {
            _ if is(opt, "nx") && cond != SetCond::Xx => cond = SetCond::Nx,
            _ if is(opt, "xx") && cond != SetCond::Nx => cond = SetCond::Xx,
            _ if is(opt, "get") => get = true,
            _ if is(opt, "keepttl") && expire.is_none() => keep = true,
            Some(t) if is(opt, "ex") && !keep && !matches!(expire, Some((false, _))) => {
                expire = Some((true, t));
                i += 1;
            }
            Some(t) if is(opt, "px") && !keep && !matches!(expire, Some((true, _))) => {
                expire = Some((false, t));
                i += 1;
            }
            _ => return Err(Resp::err("syntax error")),
        }
        i += 1;
    }
    let ttl = match expire {
        None if keep => SetTtl::Keep,
        None => SetTtl::Clear,
        Some((secs, time)) => {
            let n = string2ll(time).ok_or_else(not_an_integer)?;
            if n <= 0 || (secs && n > i64::MAX / 1000) {
                return Err(invalid_expire("set"));
            }
            let ms = if secs { n * 1000 } else { n };
            if ms.checked_add(unix_ms()).is_none() {
                return Err(invalid_expire("set"));
            }
            SetTtl::For(Duration::from_millis(ms as u64))
        }
    };
    Ok((ttl, cond, get))
}

/// Parses `EXPIRE key seconds [NX|XX|GT|LT]` the way redis 7.0 does: the options, then the
/// time, checked against overflow. Returns the time in milliseconds from now.
fn expire_options(args: &[Vec<u8>]) -> Result<(i64, ExpireCond), Resp> {
    let mut cond = ExpireCond::default();
    for opt in &args[3..] {
        match () {
            _ if is(opt, "nx") => cond.nx = true,
            _ if is(opt, "xx") => cond.xx = true,
            _ if is(opt, "gt") => cond.gt = true,
            _ if is(opt, "lt") => cond.lt = true,
            _ => {
                let mut msg = b"Unsupported option ".to_vec();
                msg.extend_from_slice(cstr(opt));
                return Err(Resp::err(msg));
            }
        }
    }
    if cond.nx && (cond.xx || cond.gt || cond.lt) {
        return Err(Resp::err(
            "NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if cond.gt && cond.lt {
        return Err(Resp::err(
            "GT and LT options at the same time are not compatible",
        ));
    }
    let secs = string2ll(&args[2]).ok_or_else(not_an_integer)?;
    if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&secs) {
        return Err(invalid_expire("expire"));
    }
    let ms = secs * 1000;
    if ms > i64::MAX - unix_ms() {
        return Err(invalid_expire("expire"));
    }
    Ok((ms, cond))
}

/// The commands this server implements (what `COMMAND COUNT` counts).
const COMMANDS: &[&str] = &[
    "append", "command", "dbsize", "decr", "decrby", "del", "echo", "exists", "expire", "flushall",
    "get", "incr", "incrby", "info", "mget", "mset", "ping", "quit", "set", "strlen", "ttl",
];

/// `COMMAND [COUNT]`.
fn command(args: &[Vec<u8>]) -> Resp {
    match args.get(1) {
        None => Resp::Array(Vec::new()),
        Some(sub) if is(sub, "count") && args.len() == 2 => Resp::Int(COMMANDS.len() as i64),
        Some(sub) if is(sub, "count") => {
            Resp::err("wrong number of arguments for 'command|count' command")
        }
        Some(sub) => {
            let sub = cstr(sub);
            let mut msg = b"unknown subcommand '".to_vec();
            msg.extend_from_slice(&sub[..sub.len().min(128)]);
            msg.extend_from_slice(b"'. Try COMMAND HELP.");
            Resp::err(msg)
        }
    }
}

/// Validates one command and adds its shard operations to `batch`.
fn plan(front: &Front, batch: &mut Batch, args: Vec<Vec<u8>>) -> Plan {
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
    match name {
        "ping" | "echo" | "quit" | "command" => Plan::Ready(answer_here(name, args)),
        "del" | "exists" | "mget" | "mset" => plan_multi_key(front, batch, name, args),
        "dbsize" | "flushall" | "info" => plan_every_shard(batch, name, &args),
        _ => plan_single_key(front, batch, name, args),
    }
}

/// The commands answered without a shard.
fn answer_here(name: &str, mut args: Vec<Vec<u8>>) -> Resp {
    match name {
        "ping" => match args.get(1) {
            Some(msg) => Resp::Bulk(Some(msg.clone())),
            None => Resp::Simple("PONG"),
        },
        "echo" => Resp::Bulk(Some(args.swap_remove(1))),
        "quit" => Resp::Simple("OK"),
        _ => command(&args),
    }
}

/// A single-key command: one operation on the key's shard (the key moves into it, no copy).
fn plan_single_key(front: &Front, batch: &mut Batch, name: &str, mut args: Vec<Vec<u8>>) -> Plan {
    let key = |args: &mut Vec<Vec<u8>>| std::mem::take(&mut args[1]);
    let mut one = |op: Op| {
        let shard = front.shard_of(op.key().unwrap_or_default());
        Plan::One(batch.add(shard, op))
    };
    match name {
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
            Ok((ttl, cond, get)) => {
                args.truncate(3);
                let val = args.pop().expect("arity checked");
                one(Op::Set {
                    key: key(&mut args),
                    val,
                    ttl,
                    cond,
                    get,
                })
            }
        },
        "expire" => match expire_options(&args) {
            Err(e) => Plan::Ready(e),
            Ok((in_ms, cond)) => one(Op::Expire(key(&mut args), in_ms, cond)),
        },
        _ => Plan::Ready(unknown_command(&args)),
    }
}

/// A command over several keys: one operation per shard that owns some of them.
fn plan_multi_key(front: &Front, batch: &mut Batch, name: &str, mut args: Vec<Vec<u8>>) -> Plan {
    match name {
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
        _ => plan_mset(front, batch, args),
    }
}

/// `MSET`: the pairs grouped by shard, every shard answering `OK`.
fn plan_mset(front: &Front, batch: &mut Batch, mut args: Vec<Vec<u8>>) -> Plan {
    if !(args.len() - 1).is_multiple_of(2) {
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

/// A command every shard answers part of (`DBSIZE`, `FLUSHALL`, `INFO`).
fn plan_every_shard(batch: &mut Batch, name: &str, args: &[Vec<u8>]) -> Plan {
    match name {
        "dbsize" => Plan::Sum(batch.add_to_every_shard(|| Op::DbSize)),
        "flushall" => match args.get(1).map(|a| a.to_ascii_lowercase()) {
            Some(opt) if opt != b"async" && opt != b"sync" || args.len() > 2 => {
                Plan::Ready(Resp::err("syntax error"))
            }
            _ => Plan::AllOk(batch.add_to_every_shard(|| Op::FlushAll)),
        },
        _ => Plan::Info(batch.add_to_every_shard(|| Op::Stats)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_count_counts_the_commands_served() {
        for name in super::COMMANDS {
            assert!(
                super::arity(name).is_some(),
                "{name} is counted but not served"
            );
        }
        let served = [
            "ping", "get", "incrby", "set", "del", "dbsize", "info", "flushall",
        ];
        for name in served {
            assert!(
                super::COMMANDS.contains(&name),
                "{name} is served but not counted"
            );
        }
    }
}
