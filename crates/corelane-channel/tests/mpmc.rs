//! The MPMC flavor: the shared suite plus many-to-many exactly-once.
#[macro_use]
mod common;

impl_ends!(
    corelane_channel::mpmc::Sender<T>,
    corelane_channel::mpmc::Receiver<T>
);
use common::{RecvEnd, SendEnd};
flavor_suite!(mpmc);

#[test]
fn each_value_reaches_exactly_one_receiver_in_producer_order() {
    for wait in STRATEGIES {
        let (producers, consumers, per) = (2usize, 2usize, 20_000u64);
        let (tx, rx) = Builder::new(16)
            .wait_strategy(wait)
            .mpmc::<(usize, u64)>()
            .unwrap();
        let ps: Vec<_> = (0..producers)
            .map(|p| {
                let tx = tx.clone();
                thread::spawn(move || (0..per).for_each(|i| tx.send((p, i)).unwrap()))
            })
            .collect();
        let cs: Vec<_> = (0..consumers)
            .map(|_| {
                let rx = rx.clone();
                thread::spawn(move || {
                    let mut seen = Vec::new();
                    let mut batch = Vec::new();
                    loop {
                        batch.clear();
                        match rx.recv_batch(&mut batch, 4) {
                            Ok(_) => seen.extend_from_slice(&batch),
                            Err(_) => return seen,
                        }
                    }
                })
            })
            .collect();
        drop((tx, rx));
        ps.into_iter().for_each(|h| h.join().unwrap());
        let mut count = vec![vec![0u8; per as usize]; producers];
        for seen in cs.into_iter().map(|h| h.join().unwrap()) {
            // Within one receiver, values of one producer arrive in increasing order.
            let mut last = vec![None; producers];
            for (p, i) in seen {
                assert!(last[p] < Some(i), "producer {p} reordered ({wait:?})");
                last[p] = Some(i);
                count[p][i as usize] += 1;
            }
        }
        assert!(
            count.iter().flatten().all(|&c| c == 1),
            "lost or duplicated values ({wait:?})"
        );
    }
}

#[test]
fn close_all_seals_with_other_receivers_alive_and_loses_nothing() {
    let (tx, rx) = mpmc::channel::<u32>(8);
    let other = rx.clone();
    for i in 0..5 {
        tx.send(i).unwrap();
    }
    assert_eq!(other.try_recv(), Ok(0));
    assert_eq!(rx.close_all(), [1, 2, 3, 4]);
    assert_eq!(tx.try_send(9), Err(TrySendError::Disconnected(9)));
    assert_eq!(other.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn sends_racing_repeated_close_all_are_delivered_once_or_handed_back() {
    // A worker's stop seals its inbox twice (once to drain, once on its way out) and then drops
    // the receiver; a send that reports success must have its value in the first seal's result.
    for round in 0..200 {
        let (tx, rx) = mpmc::channel::<u64>(4);
        let senders: Vec<_> = (0..2u64)
            .map(|s| {
                let tx = tx.clone();
                thread::spawn(move || {
                    let mut accepted = Vec::new();
                    for i in 0.. {
                        match tx.try_send(s << 32 | i) {
                            Ok(()) => accepted.push(s << 32 | i),
                            Err(TrySendError::Full(_)) => thread::yield_now(),
                            Err(TrySendError::Disconnected(v)) => {
                                assert_eq!(v, s << 32 | i, "the failed send's own value");
                                return accepted;
                            }
                        }
                    }
                    unreachable!()
                })
            })
            .collect();
        drop(tx);
        let mut received = Vec::new();
        while received.len() < 50 {
            if let Ok(v) = rx.try_recv() {
                received.push(v);
            }
        }
        received.extend(rx.close_all());
        let second = rx.close_all();
        drop(rx);
        assert!(
            second.is_empty(),
            "round {round}: a second seal took {second:?}"
        );
        let mut accepted: Vec<u64> = senders
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        accepted.sort_unstable();
        received.sort_unstable();
        assert_eq!(received, accepted, "round {round}: accepted = received");
    }
}
