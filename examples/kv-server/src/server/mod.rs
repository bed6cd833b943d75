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
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

use crate::shard::{Req, Store};

mod command;
mod connection;
mod front;
mod group;
mod metrics;

use connection::connection;
use front::Front;
use group::{flusher, keep_warm, poll_while, Group};

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
    /// Where to serve the shard pool's metrics (`GET /metrics`, Prometheus text), if anywhere.
    pub metrics_addr: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:6380".parse().expect("a valid address"),
            shards: corelane::available_cores().len().max(1),
            pin: true,
            max_bulk: 512 * 1024 * 1024,
            queue: 4096,
            metrics_addr: None,
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
    metrics_addr: Option<SocketAddr>,
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
        let metrics = cfg.metrics_addr.map(listen).transpose()?;
        let metrics_addr = metrics.as_ref().map(|l| l.local_addr()).transpose()?;
        let (pin, queue, max_bulk, started) = (cfg.pin, cfg.queue, cfg.max_bulk, Instant::now());
        let pool = Pool::builder()
            .workers(cfg.shards)
            .worker_config(move |i| {
                let c = WorkerConfig::new()
                    .with_name(format!("kv-shard-{i}"))
                    .with_queue_capacity(queue);
                if pin {
                    c.with_nth_core(i)
                } else {
                    c
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
                rt.block_on(async {
                    let serving = async {
                        if let Some(metrics) = metrics {
                            metrics::serve(metrics, &pool, stop_rx.clone()).await;
                        }
                    };
                    tokio::join!(accept_loop(listener, &pool, stop_rx.clone()), serving);
                });
                drain(&pool, Duration::from_secs(5));
                pool.shutdown()
            })?;
        Ok(Self {
            addr,
            metrics_addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address it serves its metrics on, if [`Config::metrics_addr`] was set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
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
