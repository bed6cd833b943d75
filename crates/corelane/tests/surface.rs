//! What a user of the facade reaches for first.

use std::error::Error as StdError;

use corelane::prelude::*;

#[derive(Debug)]
enum Cmd {
    Add(u64),
    Get(Reply<u64>),
    ThreadName(Reply<Option<String>>),
}

struct Sum;

impl Worker for Sum {
    type Message = Cmd;
    type State = u64;
    fn init(&mut self, _: &mut Context<'_, Self>) -> Result<u64, BoxError> {
        Ok(0)
    }
    fn handle(&mut self, sum: &mut u64, cmd: Cmd, _: &mut Context<'_, Self>) {
        match cmd {
            Cmd::Add(n) => *sum += n,
            Cmd::Get(reply) => reply.send(*sum),
            Cmd::ThreadName(reply) => reply.send(std::thread::current().name().map(str::to_string)),
        }
    }
}

/// An application in the style of `anyhow`: `?` on every corelane call converts into a boxed
/// `Send + Sync` error. (It does not compile if a corelane error is not `Sync`: a message that
/// carries a `Reply` must be `Sync` for its `SendError` and `AskError` to be.)
fn app() -> Result<u64, Box<dyn StdError + Send + Sync>> {
    let pool = Pool::builder().workers(2).spawn(|_| Sum)?;
    pool.send_partitioned(&1u64, Cmd::Add(2))?;
    pool.send_to(0, Cmd::Add(3))?;
    pool.flush()?;
    let got = pool.ask(&1u64, Cmd::Get)?;
    let producer = pool.producer();
    producer.send_to(1, Cmd::Add(1))?;
    let _ = producer.ask(&1u64, Cmd::Get)?;
    drop(producer);
    pool.shutdown()?;
    Ok(got)
}

#[test]
fn errors_convert_with_question_mark_into_send_sync_boxes() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<SendError<Cmd>>();
    send_sync::<AskError<Cmd>>();
    send_sync::<corelane::Error>();
    assert!(app().unwrap() >= 2);
}

#[test]
fn worker_threads_are_named_within_linux_fifteen_bytes() {
    let pool = Pool::builder().workers(12).spawn(|_| Sum).unwrap();
    for w in [0, 11] {
        let (reply, answer) = Reply::pair();
        pool.send_to(w, Cmd::ThreadName(reply)).unwrap();
        let name = answer.wait::<Cmd>().unwrap().unwrap();
        assert_eq!(name, format!("cl-w{w}"));
        assert!(name.len() <= 15, "Linux cuts thread names to 15 bytes");
    }
    pool.shutdown().unwrap();
}
