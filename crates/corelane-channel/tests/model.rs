//! Proptest model: any sequence of single-thread operations on each flavor behaves exactly like a
//! `VecDeque` bounded at the channel's capacity.
#[macro_use]
mod common;

use std::collections::VecDeque;

use common::{RecvEnd, SendEnd};
use corelane_channel::{Builder, TryRecvError, TrySendError};
use proptest::prelude::*;

impl_ends!(
    corelane_channel::spsc::Sender<T>,
    corelane_channel::spsc::Receiver<T>
);
impl_ends!(
    corelane_channel::mpsc::Sender<T>,
    corelane_channel::mpsc::Receiver<T>
);
impl_ends!(
    corelane_channel::mpmc::Sender<T>,
    corelane_channel::mpmc::Receiver<T>
);

#[derive(Debug, Clone)]
enum Op {
    TrySend(u32),
    TrySendBatch(Vec<u32>),
    TryRecv,
    TryRecvBatch(usize),
    Len,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u32>().prop_map(Op::TrySend),
        1 => prop::collection::vec(any::<u32>(), 0..12).prop_map(Op::TrySendBatch),
        4 => Just(Op::TryRecv),
        1 => (0usize..12).prop_map(Op::TryRecvBatch),
        1 => Just(Op::Len),
    ]
}

fn run(tx: &impl SendEnd<u32>, rx: &impl RecvEnd<u32>, ops: Vec<Op>) {
    let cap = tx.capacity();
    let mut model = VecDeque::new();
    for op in ops {
        match op {
            Op::TrySend(v) => {
                let got = tx.try_send(v);
                if model.len() < cap {
                    model.push_back(v);
                    assert_eq!(got, Ok(()));
                } else {
                    assert_eq!(got, Err(TrySendError::Full(v)));
                }
            }
            Op::TrySendBatch(mut items) => {
                let before = items.clone();
                let n = tx.try_send_batch(&mut items).unwrap();
                let fit = (cap - model.len()).min(before.len());
                assert_eq!(n, fit);
                assert_eq!(items, before[fit..]);
                model.extend(&before[..fit]);
            }
            Op::TryRecv => match model.pop_front() {
                Some(v) => assert_eq!(rx.try_recv(), Ok(v)),
                None => assert_eq!(rx.try_recv(), Err(TryRecvError::Empty)),
            },
            Op::TryRecvBatch(max) => {
                let mut out = vec![7];
                let got = rx.try_recv_batch(&mut out, max);
                let take = max.min(model.len());
                let expect: Vec<u32> = model.drain(..take).collect();
                if max == 0 {
                    assert_eq!(got, Ok(0));
                } else if expect.is_empty() {
                    assert_eq!(got, Err(TryRecvError::Empty));
                } else {
                    assert_eq!(got, Ok(expect.len()));
                }
                assert_eq!(out[1..], expect[..]);
            }
            Op::Len => {
                assert_eq!(tx.len(), model.len());
                assert_eq!(rx.is_empty(), model.is_empty());
                assert_eq!(tx.is_full(), model.len() == cap);
            }
        }
    }
}

proptest! {
    #[test]
    fn spsc_matches_vecdeque(cap in 1usize..9, ops in prop::collection::vec(op(), 0..200)) {
        let (tx, rx) = Builder::new(cap).spsc().unwrap();
        run(&tx, &rx, ops);
    }

    #[test]
    fn mpsc_matches_vecdeque(cap in 1usize..9, ops in prop::collection::vec(op(), 0..200)) {
        let (tx, rx) = Builder::new(cap).mpsc().unwrap();
        run(&tx, &rx, ops);
    }

    #[test]
    fn mpmc_matches_vecdeque(cap in 1usize..9, ops in prop::collection::vec(op(), 0..200)) {
        let (tx, rx) = Builder::new(cap).mpmc().unwrap();
        run(&tx, &rx, ops);
    }
}
