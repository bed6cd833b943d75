//! Channel tour: each flavor, a full channel handing a message back, batches, and disconnection.
//! Run: `cargo run -p corelane --example channels --release`.

use std::time::Instant;

use corelane::channel::{mpmc, mpsc, spsc, Builder, TrySendError, WaitStrategy};

fn main() {
    // SPSC: one producer thread streams a million numbers to one consumer.
    let (tx, rx) = spsc::channel::<u64>(1024);
    let start = Instant::now();
    let consumer = std::thread::spawn(move || {
        let mut sum = 0u64;
        while let Ok(v) = rx.recv() {
            sum += v;
        }
        sum
    });
    for i in 0..1_000_000u64 {
        tx.send(i).expect("the consumer is alive");
    }
    drop(tx);
    let sum = consumer.join().expect("consumer thread");
    println!("spsc: 1M messages, sum {sum}, {:?}", start.elapsed());

    // Back-pressure is explicit: a full channel hands the message back.
    let (tx, rx) = Builder::new(2)
        .wait_strategy(WaitStrategy::Park)
        .mpsc::<&str>()
        .expect("capacity");
    tx.try_send("a").unwrap();
    tx.try_send("b").unwrap();
    match tx.try_send("c") {
        Err(TrySendError::Full(msg)) => println!("mpsc: full, got {msg:?} back"),
        other => unreachable!("{other:?}"),
    }
    let mut out = Vec::new();
    rx.try_recv_batch(&mut out, 8).unwrap();
    println!("mpsc: batch received {out:?}");

    // MPMC: two producers, two consumers, every message received exactly once.
    let (tx, rx) = mpmc::channel::<u32>(64);
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || std::iter::from_fn(|| rx.recv().ok()).count())
        })
        .collect();
    drop(rx);
    let producers: Vec<_> = (0..2)
        .map(|_| {
            let tx = tx.clone();
            std::thread::spawn(move || (0..10_000).for_each(|i| tx.send(i).unwrap()))
        })
        .collect();
    drop(tx);
    producers.into_iter().for_each(|h| h.join().unwrap());
    let counts: Vec<usize> = consumers.into_iter().map(|h| h.join().unwrap()).collect();
    println!("mpmc: 20000 messages split {counts:?}");

    // Dropping the receiver returns the message to a later sender.
    let (tx, rx) = mpsc::channel::<String>(4);
    drop(rx);
    let back = tx.send("lost?".to_string()).unwrap_err().into_inner();
    println!("disconnected: the message came back: {back:?}");
}
