//! The MPSC flavor: the shared suite plus multi-producer exactly-once.
#[macro_use]
mod common;

impl_ends!(
    corelane_channel::mpsc::Sender<T>,
    corelane_channel::mpsc::Receiver<T>
);
use common::{RecvEnd, SendEnd};
flavor_suite!(mpsc);

#[test]
fn producers_are_exactly_once_and_fifo_per_producer() {
    for wait in STRATEGIES {
        let (producers, per) = (3usize, 20_000u64);
        let (tx, rx) = Builder::new(32)
            .wait_strategy(wait)
            .mpsc::<(usize, u64)>()
            .unwrap();
        let hs: Vec<_> = (0..producers)
            .map(|p| {
                let tx = tx.clone();
                thread::spawn(move || {
                    for i in 0..per {
                        if i % 7 == 0 {
                            let mut batch = vec![(p, i)];
                            tx.send_batch(&mut batch).unwrap();
                        } else {
                            tx.send((p, i)).unwrap();
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        let mut next = vec![0u64; producers];
        while let Ok((p, i)) = rx.recv() {
            assert_eq!(i, next[p], "producer {p} out of order ({wait:?})");
            next[p] += 1;
        }
        hs.into_iter().for_each(|h| h.join().unwrap());
        assert!(next.iter().all(|&n| n == per), "{next:?}");
    }
}

#[test]
fn blocked_senders_all_wake_on_receiver_drop() {
    let (tx, rx) = mpsc::channel::<u32>(1);
    tx.send(0).unwrap();
    let hs: Vec<_> = (1..4)
        .map(|i| {
            let tx = tx.clone();
            thread::spawn(move || tx.send(i))
        })
        .collect();
    thread::sleep(Duration::from_millis(30));
    drop(rx);
    let mut back: Vec<u32> = hs
        .into_iter()
        .map(|h| h.join().unwrap().unwrap_err().into_inner())
        .collect();
    back.sort();
    assert_eq!(back, [1, 2, 3]);
}

#[test]
fn close_returns_queued_messages_and_rejects_later_sends() {
    let (tx, rx) = mpsc::channel::<u32>(8);
    for i in 0..5 {
        tx.send(i).unwrap();
    }
    assert_eq!(rx.close(), [0, 1, 2, 3, 4]);
    assert_eq!(tx.try_send(9), Err(TrySendError::Disconnected(9)));
}

#[test]
fn close_racing_senders_loses_nothing() {
    for _ in 0..50 {
        let (tx, rx) = mpsc::channel::<u64>(64);
        let senders: Vec<_> = (0..2u64)
            .map(|p| {
                let tx = tx.clone();
                thread::spawn(move || {
                    let (mut ok, mut back) = (Vec::new(), Vec::new());
                    for i in 0..2_000 {
                        match tx.try_send(p * 10_000 + i) {
                            Ok(()) => ok.push(p * 10_000 + i),
                            Err(TrySendError::Full(_)) => {}
                            Err(TrySendError::Disconnected(v)) => back.push(v),
                        }
                    }
                    (ok, back)
                })
            })
            .collect();
        drop(tx);
        let mut received = Vec::new();
        for _ in 0..100 {
            if let Ok(v) = rx.try_recv() {
                received.push(v);
            }
        }
        received.extend(rx.close());
        let mut accepted = Vec::new();
        for h in senders {
            let (ok, back) = h.join().unwrap();
            accepted.extend(ok);
            assert!(
                back.iter().all(|v| !received.contains(v)),
                "a handed-back message was also delivered"
            );
        }
        received.sort();
        accepted.sort();
        assert_eq!(
            received, accepted,
            "every accepted message is received or returned by close"
        );
    }
}
