//! The one-shot flavor: delivery, every way an end can go away, timeouts, and drop counting.

mod common;

use std::time::Duration;

use common::Ledger;
use corelane_channel::oneshot;
use corelane_channel::{Disconnected, RecvError, RecvTimeoutError, TryRecvError, WaitStrategy};

#[test]
fn value_crosses_threads_with_every_strategy() {
    for wait in [
        WaitStrategy::Spin,
        WaitStrategy::SpinThenYield,
        WaitStrategy::SpinThenPark,
        WaitStrategy::Park,
    ] {
        for delay in [0, 2] {
            let (tx, rx) = oneshot::with_wait_strategy(wait);
            let h = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(delay));
                tx.send(String::from("answer")).unwrap();
            });
            assert_eq!(rx.recv().as_deref(), Ok("answer"), "{wait:?}");
            h.join().unwrap();
        }
    }
}

#[test]
fn try_recv_sees_empty_then_the_value_then_disconnected() {
    let (tx, mut rx) = oneshot::channel();
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    tx.send(7u8).unwrap();
    assert_eq!(rx.try_recv(), Ok(7));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

#[test]
fn a_sender_dropped_unsent_wakes_a_blocked_receiver() {
    let (tx, rx) = oneshot::channel::<u32>();
    let h = std::thread::spawn(move || rx.recv());
    std::thread::sleep(Duration::from_millis(20));
    drop(tx);
    assert_eq!(h.join().unwrap(), Err(RecvError));
}

#[test]
fn a_send_to_a_dropped_receiver_hands_the_value_back() {
    let (tx, rx) = oneshot::channel();
    assert!(!tx.is_closed());
    drop(rx);
    assert!(tx.is_closed());
    assert_eq!(tx.send(5), Err(Disconnected(5)));
}

#[test]
fn recv_timeout_times_out_and_the_receiver_stays_usable() {
    let (tx, mut rx) = oneshot::channel();
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(10)),
        Err(RecvTimeoutError::Timeout)
    );
    tx.send(1).unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(1));
}

#[test]
fn every_value_is_dropped_exactly_once() {
    let ledger = Ledger::new(4);
    // Received: dropped by the receiver's owner.
    let (tx, rx) = oneshot::channel();
    tx.send(ledger.make(0)).unwrap();
    drop(rx.recv().unwrap());
    // Sent, never received: dropped with the receiver.
    let (tx, rx) = oneshot::channel();
    tx.send(ledger.make(1)).unwrap();
    assert_eq!(ledger.drops(1), 0);
    drop(rx);
    assert_eq!(ledger.drops(1), 1);
    // Receiver gone first: handed back to the sender.
    let (tx, rx) = oneshot::channel();
    drop(rx);
    let back = tx.send(ledger.make(2)).unwrap_err().0;
    assert_eq!(ledger.drops(2), 0);
    drop(back);
    // Sent, receiver dropped on another thread while the sender still exists.
    let (tx, rx) = oneshot::channel();
    let value = ledger.make(3);
    let h = std::thread::spawn(move || drop(rx));
    let _ = tx.send(value);
    h.join().unwrap();
    ledger.assert_each_once();
}

#[test]
fn racing_send_and_receiver_drop_lose_nothing() {
    for _ in 0..2000 {
        let ledger = Ledger::new(1);
        let (tx, rx) = oneshot::channel();
        let value = ledger.make(0);
        let h = std::thread::spawn(move || tx.send(value).err().map(|e| e.0));
        drop(rx);
        drop(h.join().unwrap());
        ledger.assert_each_once();
    }
}
