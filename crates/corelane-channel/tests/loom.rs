//! Loom models of the rings and the wake-up protocol. Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg corelane_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p corelane-channel --test loom --release
//! ```
//!
//! Capacities are tiny so that full, empty and wrap-around are all reached within the model.
#![cfg(corelane_loom)]

use corelane_channel::{Builder, RecvError, TryRecvError, TrySendError, WaitStrategy};
use loom::thread;

#[test]
fn spsc_push_pop_wraps_in_order() {
    loom::model(|| {
        let (tx, rx) = Builder::new(2)
            .wait_strategy(WaitStrategy::Park)
            .spsc::<u32>()
            .unwrap();
        let h = thread::spawn(move || {
            for i in 0..3 {
                let mut v = i;
                loop {
                    match tx.try_send(v) {
                        Ok(()) => break,
                        Err(TrySendError::Full(back)) => {
                            v = back;
                            thread::yield_now();
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        let mut expected = 0;
        while expected < 3 {
            match rx.try_recv() {
                Ok(v) => {
                    assert_eq!(v, expected);
                    expected += 1;
                }
                Err(TryRecvError::Empty) => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        h.join().unwrap();
    });
}

#[test]
fn spsc_blocking_recv_sees_close_after_values() {
    loom::model(|| {
        let (tx, rx) = Builder::new(1)
            .wait_strategy(WaitStrategy::Park)
            .spsc::<u32>()
            .unwrap();
        let h = thread::spawn(move || {
            tx.send(1).unwrap();
            drop(tx);
        });
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Err(RecvError));
        h.join().unwrap();
    });
}

#[test]
fn spsc_blocked_sender_wakes_when_receiver_closes() {
    loom::model(|| {
        let (tx, rx) = Builder::new(1)
            .wait_strategy(WaitStrategy::Park)
            .spsc::<u32>()
            .unwrap();
        tx.try_send(0).unwrap();
        let h = thread::spawn(move || tx.send(1));
        drop(rx);
        assert_eq!(h.join().unwrap().unwrap_err().into_inner(), 1);
    });
}

#[test]
fn mpsc_two_producers_exactly_once() {
    loom::model(|| {
        let (tx, rx) = Builder::new(2)
            .wait_strategy(WaitStrategy::Park)
            .mpsc::<u32>()
            .unwrap();
        let tx2 = tx.clone();
        let a = thread::spawn(move || tx.send(1).unwrap());
        let b = thread::spawn(move || tx2.send(2).unwrap());
        let mut got = [rx.recv().unwrap(), rx.recv().unwrap()];
        got.sort();
        assert_eq!(got, [1, 2]);
        assert_eq!(rx.recv(), Err(RecvError));
        a.join().unwrap();
        b.join().unwrap();
    });
}

#[test]
fn mpsc_close_with_queued_value_drops_it() {
    loom::model(|| {
        let (tx, rx) = Builder::new(1)
            .wait_strategy(WaitStrategy::Park)
            .mpsc::<loom::sync::Arc<()>>()
            .unwrap();
        let value = loom::sync::Arc::new(());
        let probe = value.clone();
        let h = thread::spawn(move || {
            let _ = tx.send(value);
        });
        drop(rx);
        h.join().unwrap();
        // Whether the send won or lost the race with the close, the value is gone now.
        assert_eq!(loom::sync::Arc::strong_count(&probe), 1);
    });
}

#[test]
fn mpsc_send_racing_close_is_handed_back_or_dropped_never_lost() {
    loom::model(|| {
        let (tx, rx) = Builder::new(1)
            .wait_strategy(WaitStrategy::Park)
            .mpsc::<loom::sync::Arc<()>>()
            .unwrap();
        let value = loom::sync::Arc::new(());
        let probe = value.clone();
        tx.try_send(loom::sync::Arc::new(())).unwrap();
        let h = thread::spawn(move || tx.send(value));
        drop(rx);
        match h.join().unwrap() {
            // Handed back: the caller still owns it.
            Err(e) => assert_eq!(loom::sync::Arc::strong_count(&e.into_inner()), 2),
            Ok(()) => {
                panic!("a send into a channel whose receiver closed while it waited succeeded")
            }
        }
        assert_eq!(loom::sync::Arc::strong_count(&probe), 1);
    });
}

#[test]
fn mpsc_close_with_two_racing_senders_accounts_for_every_value_once() {
    loom::model(|| {
        let (tx, rx) = Builder::new(2)
            .wait_strategy(WaitStrategy::Park)
            .mpsc::<u32>()
            .unwrap();
        let tx2 = tx.clone();
        let a = thread::spawn(move || tx.try_send(1).err().map(|e| e.into_inner()));
        let b = thread::spawn(move || tx2.try_send(2).err().map(|e| e.into_inner()));
        let mut seen = rx.close();
        seen.extend(a.join().unwrap());
        seen.extend(b.join().unwrap());
        seen.sort();
        assert_eq!(
            seen,
            [1, 2],
            "each value is returned by close or handed back, exactly once"
        );
    });
}

#[test]
fn oneshot_send_wakes_a_parked_receiver() {
    loom::model(|| {
        let (tx, rx) = corelane_channel::oneshot::with_wait_strategy(WaitStrategy::Park);
        let h = thread::spawn(move || tx.send(7u32).unwrap());
        assert_eq!(rx.recv(), Ok(7));
        h.join().unwrap();
    });
}

#[test]
fn oneshot_sender_dropped_unsent_wakes_a_parked_receiver() {
    loom::model(|| {
        let (tx, rx) = corelane_channel::oneshot::with_wait_strategy::<u32>(WaitStrategy::Park);
        let h = thread::spawn(move || drop(tx));
        assert_eq!(rx.recv(), Err(RecvError));
        h.join().unwrap();
    });
}

#[test]
fn oneshot_send_racing_receiver_drop_drops_or_hands_back_once() {
    loom::model(|| {
        let (tx, rx) = corelane_channel::oneshot::channel::<loom::sync::Arc<()>>();
        let value = loom::sync::Arc::new(());
        let probe = value.clone();
        let h = thread::spawn(move || tx.send(value).err().map(|e| e.into_inner()));
        drop(rx);
        // Either the receiver's drop dropped it, or the send failed and handed it back.
        let back = h.join().unwrap();
        let expected = if back.is_some() { 2 } else { 1 };
        assert_eq!(loom::sync::Arc::strong_count(&probe), expected);
    });
}

#[test]
fn oneshot_cancel_racing_send_wakes_the_receiver_with_one_outcome() {
    loom::model(|| {
        let (tx, mut rx) = corelane_channel::oneshot::with_wait_strategy(WaitStrategy::Park);
        let canceler = tx.canceler();
        let sender = thread::spawn(move || tx.send(5u32).err().map(|e| e.into_inner()));
        let cancel = thread::spawn(move || canceler.cancel());
        let got = rx.recv_timeout(std::time::Duration::MAX);
        let back = sender.join().unwrap();
        let canceled = cancel.join().unwrap();
        match got {
            Ok(v) => assert!(v == 5 && back.is_none() && !canceled && !rx.is_canceled()),
            Err(_) => assert!(back == Some(5) && canceled && rx.is_canceled()),
        }
    });
}

#[test]
fn doorbell_ring_wakes_an_awaiting_task() {
    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::sync::Arc;
    loom::model(|| {
        let bell = Arc::new(corelane_channel::Doorbell::new());
        let flag = Arc::new(AtomicBool::new(false));
        let (b, f) = (bell.clone(), flag.clone());
        let h = thread::spawn(move || {
            f.store(true, Ordering::Release);
            b.ring();
        });
        let ready = || flag.load(Ordering::Acquire);
        loom::future::block_on(bell.ready(&ready));
        assert!(flag.load(Ordering::Acquire));
        h.join().unwrap();
    });
}

#[test]
fn two_tasks_waiting_for_room_both_get_through() {
    loom::model(|| {
        let (tx, rx) = Builder::new(1).mpsc::<u32>().unwrap();
        tx.try_send(0).unwrap();
        let senders: Vec<_> = (1..=2)
            .map(|v| {
                let tx = tx.clone();
                thread::spawn(move || loom::future::block_on(tx.send_async(v)))
            })
            .collect();
        drop(tx);
        // Each receive frees the one slot; a lost wake-up would leave a task asleep for good.
        let mut got = vec![rx.recv().unwrap(), rx.recv().unwrap(), rx.recv().unwrap()];
        senders.into_iter().for_each(|h| h.join().unwrap().unwrap());
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2]);
    });
}

#[test]
fn mpmc_close_all_twice_then_drop_accounts_for_a_racing_send_once() {
    loom::model(|| {
        let (tx, rx) = Builder::new(1)
            .wait_strategy(WaitStrategy::Park)
            .mpmc::<u32>()
            .unwrap();
        let h = thread::spawn(move || tx.try_send(1).err().map(|e| e.into_inner()));
        // A worker's stop seals its inbox, handles what it got, then seals again on its way out;
        // the last receiver's drop seals once more.
        let first = rx.close_all();
        let second = rx.close_all();
        drop(rx);
        let back = h.join().unwrap();
        assert!(
            second.is_empty(),
            "a second seal takes nothing: the first took every accepted value"
        );
        let mut seen = first;
        seen.extend(back);
        assert_eq!(
            seen,
            [1],
            "the value is returned by the first seal or handed back, exactly once"
        );
    });
}
