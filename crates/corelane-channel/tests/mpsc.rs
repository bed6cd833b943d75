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
