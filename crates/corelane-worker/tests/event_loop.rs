//! Workers that run their own event loop while idle (`Worker::wait` overridden): thread-per-core
//! I/O beside the inbox, tasks that reach other workers through an `Outbox`.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use corelane_worker::Dispatch;
use corelane_worker::Pool;
use corelane_worker::{BoxError, Context, Idle, Outbox, Reply, Worker, WorkerConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// Each worker owns a counter and serves connections on its own thread. A connection sends a
/// line per request: `inc` increments the counter of the worker the server routes it to
/// (`inc 0` / `inc 1`), answering the new value.
struct Server;

enum Msg {
    /// Serve this connection on the receiving worker's event loop.
    Serve(std::net::TcpStream),
    /// Increment this worker's counter and answer the new value.
    Inc(Reply<u64>),
    /// Answer the number of connection tasks alive on this worker.
    Tasks(Reply<usize>),
}

struct State {
    rt: tokio::runtime::Runtime,
    tasks: tokio::task::LocalSet,
    counter: Rc<RefCell<u64>>,
    alive: Rc<RefCell<usize>>,
    index: usize,
    outbox: Outbox<Msg>,
}

impl Worker for Server {
    type Message = Msg;
    type State = State;

    fn init(&mut self, ctx: &mut Context<'_, Self>) -> Result<State, BoxError> {
        Ok(State {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            tasks: tokio::task::LocalSet::new(),
            counter: Rc::new(RefCell::new(0)),
            alive: Rc::new(RefCell::new(0)),
            index: ctx.index(),
            outbox: ctx.outbox(),
        })
    }

    fn handle(&mut self, st: &mut State, msg: Msg, _: &mut Context<'_, Self>) {
        match msg {
            Msg::Serve(stream) => {
                let _guard = st.rt.enter();
                let stream = tokio::net::TcpStream::from_std(stream).expect("a tokio stream");
                let (counter, alive, outbox, me) = (
                    st.counter.clone(),
                    st.alive.clone(),
                    st.outbox.clone(),
                    st.index,
                );
                *alive.borrow_mut() += 1;
                st.tasks
                    .spawn_local(serve(stream, counter, alive.clone(), outbox, me));
            }
            Msg::Inc(reply) => {
                let mut c = st.counter.borrow_mut();
                *c += 1;
                reply.send(*c);
            }
            Msg::Tasks(reply) => reply.send(*st.alive.borrow()),
        }
    }

    fn wait(&mut self, st: &mut State, _: &mut Context<'_, Self>, idle: &Idle<'_>) {
        st.rt.block_on(st.tasks.run_until(idle.ready()));
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    counter: Rc<RefCell<u64>>,
    alive: Rc<RefCell<usize>>,
    outbox: Outbox<Msg>,
    me: usize,
) {
    let (r, mut w) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let target: usize = line
            .strip_prefix("inc ")
            .and_then(|t| t.parse().ok())
            .unwrap_or(me);
        let value = if target == me {
            // Local: this task runs on the worker's thread, beside its state.
            let mut c = counter.borrow_mut();
            *c += 1;
            *c
        } else {
            // Remote: a message to the owner, answered while this worker keeps serving.
            let (reply, answer) = Reply::pair_async();
            if outbox.send_to(target, Msg::Inc(reply)).is_err() {
                break;
            }
            match answer.wait_async::<Msg>().await {
                Ok(v) => v,
                Err(_) => break,
            }
        };
        if w.write_all(format!("{value}\n").as_bytes()).await.is_err() {
            break;
        }
    }
    *alive.borrow_mut() -= 1;
}

fn pool() -> Pool<Server> {
    Pool::builder()
        .workers(2)
        .worker_config(|i| WorkerConfig::new().with_name(format!("loop-{i}")))
        .spawn(|_| Server)
        .expect("spawn")
}

/// Connects a client to worker `worker` through a loopback listener.
fn connect(pool: &Pool<Server>, worker: usize) -> (BufReader<TcpStream>, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server_side, _) = listener.accept().unwrap();
    server_side.set_nonblocking(true).unwrap();
    pool.send_to(worker, Msg::Serve(server_side))
        .unwrap_or_else(|_| panic!("send"));
    client.set_nodelay(true).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (BufReader::new(client.try_clone().unwrap()), client)
}

fn request(conn: &mut (BufReader<TcpStream>, TcpStream), line: &str) -> u64 {
    conn.1.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    conn.0
        .read_line(&mut answer)
        .expect("an answer within the read timeout (a lost wake-up times out here)");
    answer.trim().parse().expect("a number")
}

#[test]
fn connections_are_served_on_their_worker_and_reach_the_other_through_the_outbox() {
    let pool = pool();
    let mut a = connect(&pool, 0);
    let mut b = connect(&pool, 1);
    // Local increments, then remote ones through the other worker's inbox, interleaved.
    assert_eq!(request(&mut a, "inc 0"), 1);
    assert_eq!(request(&mut b, "inc 1"), 1);
    assert_eq!(request(&mut a, "inc 1"), 2);
    assert_eq!(request(&mut b, "inc 0"), 2);
    // Both connections increment worker 1's counter: one locally, one remotely.
    let mut expected = 2;
    for _ in 0..200 {
        expected += 1;
        assert_eq!(request(&mut a, "inc 1"), expected);
        expected += 1;
        assert_eq!(request(&mut b, "inc 1"), expected);
    }
    // Messages from outside reach a worker sleeping in its event loop.
    let ticks = pool.ask(&0u64, Msg::Inc).unwrap();
    assert!(ticks >= 2);
    let report = pool.shutdown().expect("shutdown");
    assert!(report.is_clean());
}

#[test]
fn a_message_wakes_a_worker_idle_in_its_event_loop() {
    let pool = pool();
    let (done, finished) = std::sync::mpsc::channel();
    let asker = pool.clone();
    std::thread::spawn(move || {
        for round in 0..200u64 {
            std::thread::sleep(Duration::from_micros(200 * (round % 3)));
            let (reply, answer) = Reply::pair();
            asker
                .send_to(1, Msg::Inc(reply))
                .unwrap_or_else(|_| panic!("send"));
            assert_eq!(answer.wait::<Msg>().unwrap(), round + 1);
        }
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(Duration::from_secs(30))
        .expect("every message answered (a lost wake-up leaves the worker asleep in epoll)");
    pool.shutdown().expect("shutdown");
}

#[test]
fn shutdown_wakes_the_event_loop_and_drops_its_tasks_with_the_state() {
    let pool = pool();
    let mut a = connect(&pool, 0);
    assert_eq!(request(&mut a, "inc 0"), 1);
    let tasks = pool.ask(&0u64, Msg::Tasks);
    assert!(tasks.is_ok());
    let report = pool
        .shutdown()
        .expect("shutdown returns while a connection is open");
    assert!(report.is_clean());
    // The state (and its runtime, and the connection task) is gone: the client sees EOF.
    let mut rest = String::new();
    assert_eq!(a.0.read_line(&mut rest).unwrap(), 0);
}
