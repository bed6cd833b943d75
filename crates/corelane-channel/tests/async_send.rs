//! `send_async`: waits for room as a task, never blocking its thread; any number of tasks wait at
//! once; a dropped future leaves no sleeper behind.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use corelane_channel::{mpmc, mpsc, spsc, Disconnected};

/// Wakes a parked thread; counts its wake-ups.
struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `f` to completion on this thread, parking between polls.
fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park_timeout(Duration::from_secs(5));
    }
}

#[test]
fn a_full_channel_leaves_the_future_pending_instead_of_blocking() {
    let (tx, rx) = spsc::channel::<u32>(1);
    tx.try_send(1).unwrap();
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut send = pin!(tx.send_async(2));
    // Returns at once (a blocking send would hang this single-threaded test).
    assert!(send.as_mut().poll(&mut cx).is_pending());
    assert_eq!(rx.try_recv(), Ok(1));
    assert_eq!(send.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
    assert_eq!(rx.try_recv(), Ok(2));
}

#[test]
fn many_tasks_wait_for_room_at_once_and_all_get_through() {
    let (tx, rx) = mpsc::channel::<u64>(2);
    tx.try_send(0).unwrap();
    tx.try_send(0).unwrap();
    let senders: Vec<_> = (1..=4u64)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                for i in 0..200 {
                    block_on(tx.send_async(t * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let mut got = Vec::new();
    while let Ok(v) = rx.recv() {
        got.push(v);
        if got.len() % 50 == 0 {
            thread::sleep(Duration::from_millis(1)); // let the senders fill it and wait again
        }
    }
    senders.into_iter().for_each(|s| s.join().unwrap());
    assert_eq!(got.len(), 2 + 4 * 200);
    for t in 1..=4u64 {
        let mine: Vec<u64> = got.iter().copied().filter(|v| v / 1000 == t).collect();
        assert_eq!(mine, (0..200).map(|i| t * 1000 + i).collect::<Vec<_>>());
    }
}

#[test]
fn a_dropped_future_leaves_no_sleeper_and_the_value_unsent() {
    let (tx, rx) = mpmc::channel::<u32>(1);
    tx.try_send(1).unwrap();
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    {
        let mut send = pin!(tx.send_async(2));
        assert!(send.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(rx.try_recv(), Ok(1));
    assert!(rx.try_recv().is_err(), "the dropped send never delivered");
    assert_eq!(block_on(tx.send_async(3)), Ok(()));
    assert_eq!(rx.try_recv(), Ok(3));
}

#[test]
fn a_waiting_send_fails_with_its_value_when_the_receiver_goes() {
    let (tx, rx) = mpsc::channel::<String>(1);
    tx.try_send("first".into()).unwrap();
    let closer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        drop(rx);
    });
    assert_eq!(
        block_on(tx.send_async("second".into())),
        Err(Disconnected("second".to_string()))
    );
    closer.join().unwrap();
}
