//! The network front: RESP2 over TCP on a tokio runtime (connections are tasks, not threads),
//! commands routed to shards by key, pipelines answered in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corelane::prelude::*;
use corelane::worker::Answer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

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
        let ctx = Arc::new(Ctx {
            pool,
            max_bulk: cfg.max_bulk,
            started: Instant::now(),
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
}

/// One client: read what it sent, parse every complete command, dispatch them all to the shards,
/// then await and write the answers in order.
async fn connection(mut stream: TcpStream, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let mut rbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut wbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut pending = Vec::new();
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
                    pending.push(dispatch(&ctx, args).await);
                    if quit {
                        close = true;
                        break;
                    }
                }
                Parsed::Incomplete => break,
                Parsed::Error(msg) => {
                    pending.push(Pending::Ready(Resp::Error(msg)));
                    close = true;
                    break;
                }
            }
        }
        rbuf.drain(..used);
        for p in pending.drain(..) {
            p.resolve(&ctx).await.write(&mut wbuf);
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

/// An answer on its way.
enum Pending {
    Ready(Resp),
    One(Answer<Resp>),
    /// Integer replies of several shards, summed (`DEL`, `EXISTS`, `DBSIZE`).
    Sum(Vec<Answer<Resp>>),
    /// `MGET`: each shard's array goes back to the positions of its keys.
    Gather(usize, Vec<(Vec<usize>, Answer<Resp>)>),
    /// Every shard must answer `OK` (`MSET`, `FLUSHALL`).
    AllOk(Vec<Answer<Resp>>),
    /// `INFO`: per-shard `[keys, expires]`.
    Info(Vec<Answer<Resp>>),
}

async fn answer(a: Answer<Resp>) -> Resp {
    a.wait_async::<Req>()
        .await
        .unwrap_or_else(|_| Resp::err("shard unavailable"))
}

impl Pending {
    async fn resolve(self, ctx: &Ctx) -> Resp {
        match self {
            Pending::Ready(r) => r,
            Pending::One(a) => answer(a).await,
            Pending::Sum(parts) => {
                let mut total = 0;
                for a in parts {
                    match answer(a).await {
                        Resp::Int(n) => total += n,
                        other => return other,
                    }
                }
                Resp::Int(total)
            }
            Pending::Gather(len, parts) => {
                let mut out = vec![Resp::Bulk(None); len];
                for (positions, a) in parts {
                    match answer(a).await {
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
            Pending::AllOk(parts) => {
                for a in parts {
                    let r = answer(a).await;
                    if r != Resp::Simple("OK") {
                        return r;
                    }
                }
                Resp::Simple("OK")
            }
            Pending::Info(parts) => {
                let (mut keys, mut expires) = (0, 0);
                let mut shards = String::new();
                let metrics = ctx.pool.metrics();
                for (i, a) in parts.into_iter().enumerate() {
                    if let Resp::Array(v) = answer(a).await {
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

/// Sends `op` to shard `shard`; a full inbox makes this task yield until there is room.
async fn ask(ctx: &Ctx, shard: usize, op: Op) -> Result<Answer<Resp>, Resp> {
    let (reply, answer) = Reply::pair_async();
    let mut msg = Req { op, reply };
    loop {
        match ctx.pool.try_send_to(shard, msg) {
            Ok(()) => return Ok(answer),
            Err(SendError::Full(back)) => {
                msg = back;
                tokio::task::yield_now().await;
            }
            Err(_) => return Err(Resp::err("server is shutting down")),
        }
    }
}

async fn one(ctx: &Ctx, key: &[u8], op: Op) -> Pending {
    let shard = ctx.pool.worker_for(key);
    match ask(ctx, shard, op).await {
        Ok(a) => Pending::One(a),
        Err(e) => Pending::Ready(e),
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

/// Asks every shard `make()`.
async fn every_shard(ctx: &Ctx, make: impl Fn() -> Op) -> Result<Vec<Answer<Resp>>, Resp> {
    let mut answers = Vec::with_capacity(ctx.pool.workers());
    for shard in 0..ctx.pool.workers() {
        answers.push(ask(ctx, shard, make()).await?);
    }
    Ok(answers)
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

async fn dispatch(ctx: &Ctx, mut args: Vec<Vec<u8>>) -> Pending {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let Some(want) = arity(&name) else {
        return Pending::Ready(unknown_command(&args));
    };
    let n = args.len() as i32;
    if (want > 0 && n != want) || (want < 0 && n < -want) || (name == "ping" && n > 2) {
        return Pending::Ready(Resp::err(format!(
            "wrong number of arguments for '{name}' command"
        )));
    }
    match name.as_str() {
        "ping" => Pending::Ready(match args.get(1) {
            Some(msg) => Resp::Bulk(Some(msg.clone())),
            None => Resp::Simple("PONG"),
        }),
        "echo" => Pending::Ready(Resp::Bulk(Some(args.swap_remove(1)))),
        "quit" => Pending::Ready(Resp::Simple("OK")),
        "command" => Pending::Ready(Resp::Array(Vec::new())),
        "get" => one(ctx, &args[1], Op::Get(args[1].clone())).await,
        "strlen" => one(ctx, &args[1], Op::Strlen(args[1].clone())).await,
        "ttl" => one(ctx, &args[1], Op::Ttl(args[1].clone())).await,
        "incr" => one(ctx, &args[1], Op::IncrBy(args[1].clone(), 1)).await,
        "decr" => one(ctx, &args[1], Op::IncrBy(args[1].clone(), -1)).await,
        "incrby" | "decrby" => match parse_int(&args[2]) {
            None => Pending::Ready(not_an_integer()),
            Some(d) if name == "decrby" && d == i64::MIN => {
                Pending::Ready(Resp::err("decrement would overflow"))
            }
            Some(d) => {
                let delta = if name == "decrby" { -d } else { d };
                one(ctx, &args[1], Op::IncrBy(args[1].clone(), delta)).await
            }
        },
        "append" => {
            let val = args.pop().expect("arity checked");
            let key = args.pop().expect("arity checked");
            let shard_key = key.clone();
            one(ctx, &shard_key, Op::Append(key, val)).await
        }
        "set" => match set_options(&args) {
            Err(e) => Pending::Ready(e),
            Ok((ttl, cond)) => {
                args.truncate(3);
                let val = args.pop().expect("arity checked");
                let key = args.pop().expect("arity checked");
                let shard_key = key.clone();
                one(
                    ctx,
                    &shard_key,
                    Op::Set {
                        key,
                        val,
                        ttl,
                        cond,
                    },
                )
                .await
            }
        },
        "expire" => {
            if n > 3 {
                return Pending::Ready(Resp::err(format!(
                    "Unsupported option {}",
                    String::from_utf8_lossy(&args[3])
                )));
            }
            match parse_int(&args[2]) {
                None => Pending::Ready(not_an_integer()),
                Some(secs) => one(ctx, &args[1], Op::Expire(args[1].clone(), secs)).await,
            }
        }
        "del" | "exists" => {
            let keys = args.split_off(1);
            let mut parts = Vec::new();
            for (shard, _, keys) in by_shard(ctx, keys) {
                let op = if name == "del" {
                    Op::Del(keys)
                } else {
                    Op::Exists(keys)
                };
                match ask(ctx, shard, op).await {
                    Ok(a) => parts.push(a),
                    Err(e) => return Pending::Ready(e),
                }
            }
            Pending::Sum(parts)
        }
        "mget" => {
            let keys = args.split_off(1);
            let len = keys.len();
            let mut parts = Vec::new();
            for (shard, positions, keys) in by_shard(ctx, keys) {
                match ask(ctx, shard, Op::MGet(keys)).await {
                    Ok(a) => parts.push((positions, a)),
                    Err(e) => return Pending::Ready(e),
                }
            }
            Pending::Gather(len, parts)
        }
        "mset" => {
            if (n - 1) % 2 != 0 {
                return Pending::Ready(Resp::err("wrong number of arguments for 'mset' command"));
            }
            let mut pairs: Vec<(usize, Vec<(Vec<u8>, Vec<u8>)>)> = Vec::new();
            let mut rest = args.split_off(1).into_iter();
            while let (Some(k), Some(v)) = (rest.next(), rest.next()) {
                let shard = ctx.pool.worker_for(k.as_slice());
                match pairs.iter_mut().find(|p| p.0 == shard) {
                    Some(p) => p.1.push((k, v)),
                    None => pairs.push((shard, vec![(k, v)])),
                }
            }
            let mut parts = Vec::new();
            for (shard, kvs) in pairs {
                match ask(ctx, shard, Op::MSet(kvs)).await {
                    Ok(a) => parts.push(a),
                    Err(e) => return Pending::Ready(e),
                }
            }
            Pending::AllOk(parts)
        }
        "dbsize" => match every_shard(ctx, || Op::DbSize).await {
            Ok(parts) => Pending::Sum(parts),
            Err(e) => Pending::Ready(e),
        },
        "flushall" => match args.get(1).map(|a| a.to_ascii_lowercase()) {
            Some(opt) if opt != b"async" && opt != b"sync" || n > 2 => {
                Pending::Ready(Resp::err("syntax error"))
            }
            _ => match every_shard(ctx, || Op::FlushAll).await {
                Ok(parts) => Pending::AllOk(parts),
                Err(e) => Pending::Ready(e),
            },
        },
        "info" => match every_shard(ctx, || Op::Stats).await {
            Ok(parts) => Pending::Info(parts),
            Err(e) => Pending::Ready(e),
        },
        _ => Pending::Ready(unknown_command(&args)),
    }
}
