//! Helpers and the test suite every flavor must pass.
#![allow(dead_code, unused_macros)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts drops per value id, to catch leaks and double drops.
#[derive(Debug)]
pub struct Tracked {
    pub id: usize,
    drops: Arc<Vec<AtomicUsize>>,
}

#[derive(Debug, Clone)]
pub struct Ledger(Arc<Vec<AtomicUsize>>);

impl Ledger {
    pub fn new(n: usize) -> Self {
        Self(Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect()))
    }
    pub fn make(&self, id: usize) -> Tracked {
        Tracked {
            id,
            drops: self.0.clone(),
        }
    }
    pub fn drops(&self, id: usize) -> usize {
        self.0[id].load(Ordering::SeqCst)
    }
    pub fn total(&self) -> usize {
        self.0.iter().map(|d| d.load(Ordering::SeqCst)).sum()
    }
    /// Asserts every value was dropped exactly once.
    pub fn assert_each_once(&self) {
        for (id, d) in self.0.iter().enumerate() {
            assert_eq!(
                d.load(Ordering::SeqCst),
                1,
                "value {id} dropped a wrong number of times"
            );
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops[self.id].fetch_add(1, Ordering::SeqCst);
    }
}

pub const STRATEGIES: [corelane_channel::WaitStrategy; 4] = [
    corelane_channel::WaitStrategy::Spin,
    corelane_channel::WaitStrategy::SpinThenYield,
    corelane_channel::WaitStrategy::SpinThenPark,
    corelane_channel::WaitStrategy::Park,
];

/// The suite. `$make` is a path to a `Builder` method (`spsc`, `mpsc`, `mpmc`).
macro_rules! flavor_suite {
    ($make:ident) => {
        use std::thread;
        use std::time::{Duration, Instant};

        use common::{Ledger, Tracked, STRATEGIES};
        use corelane_channel::*;

        fn chan<T: Send + 'static>(
            cap: usize,
            wait: WaitStrategy,
        ) -> (impl SendEnd<T>, impl RecvEnd<T>) {
            let (tx, rx) = Builder::new(cap).wait_strategy(wait).$make::<T>().unwrap();
            (tx, rx)
        }

        #[test]
        fn capacity_is_rounded_to_a_power_of_two_and_validated() {
            let (tx, rx) = Builder::new(5).$make::<u8>().unwrap();
            assert_eq!((tx.capacity(), rx.capacity()), (8, 8));
            assert_eq!(Builder::new(1).$make::<u8>().unwrap().0.capacity(), 1);
            assert_eq!(
                Builder::new(0).$make::<u8>().unwrap_err(),
                CapacityError::Zero
            );
            let huge = MAX_CAPACITY + 1;
            assert_eq!(
                Builder::new(huge).$make::<u8>().unwrap_err(),
                CapacityError::TooLarge(huge)
            );
            assert_eq!(
                CapacityError::Zero.to_string(),
                "channel capacity must be at least 1"
            );
        }

        #[test]
        fn zero_capacity_panics_with_a_clear_message() {
            let err = std::panic::catch_unwind(|| $make::channel::<u8>(0)).unwrap_err();
            let msg = err.downcast_ref::<String>().unwrap();
            assert!(msg.contains("capacity must be at least 1"), "{msg}");
        }

        #[test]
        fn full_and_empty_hand_back_and_report() {
            for cap in [1, 2, 4] {
                let (tx, rx) = chan::<u32>(cap, WaitStrategy::default());
                assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
                assert!(rx.is_empty());
                for i in 0..cap as u32 {
                    tx.try_send(i).unwrap();
                }
                assert!(tx.is_full());
                assert_eq!(tx.len(), cap);
                assert_eq!(tx.try_send(99), Err(TrySendError::Full(99)));
                assert_eq!(format!("{:?}", TrySendError::Full(())), "Full(..)");
                for i in 0..cap as u32 {
                    assert_eq!(rx.try_recv(), Ok(i));
                }
                assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            }
        }

        #[test]
        fn wraps_around_many_laps_in_order() {
            let (tx, rx) = chan::<usize>(4, WaitStrategy::default());
            for i in 0..1000 {
                tx.try_send(i).unwrap();
                if i % 3 == 2 {
                    for j in i - 2..=i {
                        assert_eq!(rx.try_recv(), Ok(j));
                    }
                }
            }
            assert_eq!(rx.try_recv(), Ok(999));
        }

        #[test]
        fn dropping_the_receiver_drops_queued_values_at_once_and_rejects_sends() {
            let ledger = Ledger::new(10);
            let (tx, rx) = chan(8, WaitStrategy::default());
            for i in 0..8 {
                tx.try_send(ledger.make(i)).unwrap();
            }
            drop(rx);
            assert_eq!(
                ledger.total(),
                8,
                "queued values must drop with the last receiver"
            );
            assert!(tx.is_disconnected());
            match tx.try_send(ledger.make(8)) {
                Err(TrySendError::Disconnected(v)) => assert_eq!(v.id, 8),
                other => panic!("expected Disconnected, got {other:?}"),
            }
            match tx.send(ledger.make(9)) {
                Err(Disconnected(v)) => assert_eq!(v.id, 9),
                other => panic!("expected Disconnected, got {other:?}"),
            }
            drop(tx);
            ledger.assert_each_once();
        }

        #[test]
        fn dropping_the_sender_lets_the_receiver_drain_then_disconnects() {
            let ledger = Ledger::new(4);
            let (tx, rx) = chan(4, WaitStrategy::default());
            for i in 0..4 {
                tx.send(ledger.make(i)).unwrap();
            }
            drop(tx);
            assert!(rx.is_disconnected());
            for i in 0..4 {
                assert_eq!(rx.recv().unwrap().id, i);
            }
            assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Disconnected);
            assert_eq!(rx.recv().unwrap_err(), RecvError);
            ledger.assert_each_once();
        }

        #[test]
        fn dropping_both_ends_drops_every_value_once() {
            for cap in [1, 2, 16] {
                let ledger = Ledger::new(cap);
                let (tx, rx) = chan(cap, WaitStrategy::default());
                for i in 0..cap {
                    tx.try_send(ledger.make(i)).unwrap();
                }
                drop(tx);
                drop(rx);
                ledger.assert_each_once();
            }
        }

        #[test]
        fn blocked_receiver_wakes_on_sender_drop() {
            for wait in STRATEGIES {
                let (tx, rx) = chan::<u8>(2, wait);
                let h = thread::spawn(move || rx.recv());
                thread::sleep(Duration::from_millis(30));
                drop(tx);
                assert_eq!(h.join().unwrap(), Err(RecvError), "{wait:?}");
            }
        }

        #[test]
        fn blocked_sender_wakes_on_receiver_drop_with_its_value() {
            for wait in STRATEGIES {
                let (tx, rx) = chan::<u8>(1, wait);
                tx.send(1).unwrap();
                let h = thread::spawn(move || tx.send(2));
                thread::sleep(Duration::from_millis(30));
                drop(rx);
                assert_eq!(h.join().unwrap(), Err(Disconnected(2)), "{wait:?}");
            }
        }

        #[test]
        fn blocked_receiver_wakes_on_a_message() {
            for wait in STRATEGIES {
                let (tx, rx) = chan::<u8>(2, wait);
                let h = thread::spawn(move || rx.recv());
                thread::sleep(Duration::from_millis(30));
                tx.send(7).unwrap();
                assert_eq!(h.join().unwrap(), Ok(7), "{wait:?}");
            }
        }

        #[test]
        fn timeouts_expire_and_hand_back() {
            for wait in STRATEGIES {
                let (tx, rx) = chan::<u8>(1, wait);
                let t = Instant::now();
                assert_eq!(
                    rx.recv_timeout(Duration::from_millis(20)),
                    Err(RecvTimeoutError::Timeout)
                );
                assert!(t.elapsed() >= Duration::from_millis(20));
                tx.send(1).unwrap();
                let t = Instant::now();
                assert_eq!(
                    tx.send_timeout(2, Duration::from_millis(20)),
                    Err(SendTimeoutError::Timeout(2))
                );
                assert!(t.elapsed() >= Duration::from_millis(20));
                assert_eq!(rx.recv_timeout(Duration::from_millis(20)), Ok(1));
                let mut out = Vec::new();
                assert_eq!(
                    rx.recv_batch_timeout(&mut out, 4, Duration::from_millis(5)),
                    Err(RecvTimeoutError::Timeout)
                );
                drop(tx);
                assert_eq!(
                    rx.recv_timeout(Duration::from_secs(5)),
                    Err(RecvTimeoutError::Disconnected)
                );
            }
        }

        #[test]
        fn batches_move_what_fits_and_keep_the_rest_in_order() {
            let (tx, rx) = chan::<u32>(4, WaitStrategy::default());
            let mut items: Vec<u32> = (0..6).collect();
            assert_eq!(tx.try_send_batch(&mut items), Ok(4));
            assert_eq!(items, [4, 5]);
            assert_eq!(tx.try_send_batch(&mut items), Ok(0));
            let mut out = Vec::new();
            assert_eq!(rx.try_recv_batch(&mut out, 3), Ok(3));
            assert_eq!(out, [0, 1, 2]);
            assert_eq!(rx.try_recv_batch(&mut out, 0), Ok(0));
            assert_eq!(tx.try_send_batch(&mut items), Ok(2));
            assert_eq!(rx.recv_batch(&mut out, 10), Ok(3));
            assert_eq!(out, [0, 1, 2, 3, 4, 5]);
            assert_eq!(rx.try_recv_batch(&mut out, 10), Err(TryRecvError::Empty));
            drop(rx);
            let mut more = vec![9, 10];
            assert_eq!(tx.send_batch(&mut more), Err(Disconnected(())));
            assert_eq!(more, [9, 10], "a failed batch keeps every message");
        }

        #[test]
        fn batches_across_the_wrap_move_each_value_once() {
            // Owned values in partial batches that wrap around the ring's end many times: each
            // arrives once, in order, and is dropped once (by the receiver, the unsent rest of a
            // batch, or the channel's drop).
            let ledger = Ledger::new(200);
            let (tx, rx) = chan::<Tracked>(8, WaitStrategy::default());
            let mut next = 0;
            let mut expect = 0;
            let mut out = Vec::new();
            for round in 0..40 {
                let mut items: Vec<Tracked> = (next..(next + 1 + round % 7).min(190))
                    .map(|id| ledger.make(id))
                    .collect();
                let offered = items.len();
                let sent = tx.try_send_batch(&mut items).unwrap();
                assert_eq!(items.len(), offered - sent, "the rest stays in the batch");
                assert!(items
                    .iter()
                    .enumerate()
                    .all(|(i, t)| t.id == next + sent + i));
                next += sent;
                drop(items); // the unsent rest is the caller's to drop
                next += offered - sent;
                out.clear();
                let _ = rx.try_recv_batch(&mut out, 1 + round % 5);
                for t in out.drain(..) {
                    while ledger.drops(expect) == 1 {
                        expect += 1; // skip ids that were dropped unsent
                    }
                    assert_eq!(t.id, expect, "in order");
                    expect += 1;
                }
            }
            let left = tx.try_send_batch(&mut vec![ledger.make(190), ledger.make(191)]);
            assert!(left.is_ok());
            drop((tx, rx));
            assert!(next > 100, "the rounds made {next} values");
            for id in (0..next).chain([190, 191]) {
                assert_eq!(
                    ledger.drops(id),
                    1,
                    "value {id} dropped a wrong number of times"
                );
            }
            assert_eq!(ledger.total(), next + 2, "no value made was dropped twice");
        }

        #[test]
        fn blocking_batches_stream_everything_in_order() {
            for wait in STRATEGIES {
                let (tx, rx) = chan::<u32>(8, wait);
                let h = thread::spawn(move || {
                    let mut out = Vec::new();
                    while rx.recv_batch(&mut out, 5).is_ok() {}
                    out
                });
                let mut items: Vec<u32> = (0..10_000).collect();
                tx.send_batch(&mut items).unwrap();
                assert!(items.is_empty());
                drop(tx);
                assert_eq!(
                    h.join().unwrap(),
                    (0..10_000).collect::<Vec<_>>(),
                    "{wait:?}"
                );
            }
        }

        #[test]
        fn streaming_is_exactly_once_in_order_for_every_strategy() {
            for wait in STRATEGIES {
                let n = 50_000u64;
                let (tx, rx) = chan::<u64>(16, wait);
                let h = thread::spawn(move || {
                    let mut expected = 0;
                    while let Ok(v) = rx.recv() {
                        assert_eq!(v, expected);
                        expected += 1;
                    }
                    expected
                });
                for i in 0..n {
                    tx.send(i).unwrap();
                }
                drop(tx);
                assert_eq!(h.join().unwrap(), n, "{wait:?}");
            }
        }

        #[test]
        fn values_in_flight_across_threads_drop_exactly_once() {
            let n = 20_000;
            let ledger = Ledger::new(n);
            let (tx, rx) = chan(8, WaitStrategy::default());
            let h = thread::spawn(move || {
                // Receive half, then drop the receiver with values still queued or in flight.
                for _ in 0..n / 2 {
                    drop(rx.recv().unwrap());
                }
            });
            let mut sent = 0;
            for i in 0..n {
                match tx.send(ledger.make(i)) {
                    Ok(()) => sent += 1,
                    Err(Disconnected(v)) => drop(v),
                }
            }
            h.join().unwrap();
            assert!(sent >= n / 2);
            drop(tx);
            ledger.assert_each_once();
        }

        #[test]
        fn endpoints_are_debug_without_t_debug() {
            struct Opaque;
            let (tx, rx) = chan::<Opaque>(2, WaitStrategy::default());
            assert!(format!("{tx:?}").contains("capacity: 2"));
            assert!(format!("{rx:?}").contains("len: 0"));
        }
    };
}

/// The sending API every flavor has, so the suite is written once.
pub trait SendEnd<T>: Send + std::fmt::Debug + 'static {
    fn try_send(&self, v: T) -> Result<(), corelane_channel::TrySendError<T>>;
    fn send(&self, v: T) -> Result<(), corelane_channel::Disconnected<T>>;
    fn send_timeout(
        &self,
        v: T,
        d: std::time::Duration,
    ) -> Result<(), corelane_channel::SendTimeoutError<T>>;
    fn try_send_batch(&self, v: &mut Vec<T>) -> Result<usize, corelane_channel::Disconnected<()>>;
    fn send_batch(&self, v: &mut Vec<T>) -> Result<(), corelane_channel::Disconnected<()>>;
    fn len(&self) -> usize;
    fn capacity(&self) -> usize;
    fn is_full(&self) -> bool;
    fn is_disconnected(&self) -> bool;
}

/// The receiving API every flavor has.
pub trait RecvEnd<T>: Send + std::fmt::Debug + 'static {
    fn try_recv(&self) -> Result<T, corelane_channel::TryRecvError>;
    fn recv(&self) -> Result<T, corelane_channel::RecvError>;
    fn recv_timeout(&self, d: std::time::Duration)
        -> Result<T, corelane_channel::RecvTimeoutError>;
    fn try_recv_batch(
        &self,
        out: &mut Vec<T>,
        max: usize,
    ) -> Result<usize, corelane_channel::TryRecvError>;
    fn recv_batch(
        &self,
        out: &mut Vec<T>,
        max: usize,
    ) -> Result<usize, corelane_channel::RecvError>;
    fn recv_batch_timeout(
        &self,
        out: &mut Vec<T>,
        max: usize,
        d: std::time::Duration,
    ) -> Result<usize, corelane_channel::RecvTimeoutError>;
    fn is_empty(&self) -> bool;
    fn capacity(&self) -> usize;
    fn is_disconnected(&self) -> bool;
}

macro_rules! impl_ends {
    ($tx:ty, $rx:ty) => {
        impl<T: Send + 'static> $crate::common::SendEnd<T> for $tx {
            fn try_send(&self, v: T) -> Result<(), corelane_channel::TrySendError<T>> {
                <$tx>::try_send(self, v)
            }
            fn send(&self, v: T) -> Result<(), corelane_channel::Disconnected<T>> {
                <$tx>::send(self, v)
            }
            fn send_timeout(
                &self,
                v: T,
                d: std::time::Duration,
            ) -> Result<(), corelane_channel::SendTimeoutError<T>> {
                <$tx>::send_timeout(self, v, d)
            }
            fn try_send_batch(
                &self,
                v: &mut Vec<T>,
            ) -> Result<usize, corelane_channel::Disconnected<()>> {
                <$tx>::try_send_batch(self, v)
            }
            fn send_batch(&self, v: &mut Vec<T>) -> Result<(), corelane_channel::Disconnected<()>> {
                <$tx>::send_batch(self, v)
            }
            fn len(&self) -> usize {
                <$tx>::len(self)
            }
            fn capacity(&self) -> usize {
                <$tx>::capacity(self)
            }
            fn is_full(&self) -> bool {
                <$tx>::is_full(self)
            }
            fn is_disconnected(&self) -> bool {
                <$tx>::is_disconnected(self)
            }
        }
        impl<T: Send + 'static> $crate::common::RecvEnd<T> for $rx {
            fn try_recv(&self) -> Result<T, corelane_channel::TryRecvError> {
                <$rx>::try_recv(self)
            }
            fn recv(&self) -> Result<T, corelane_channel::RecvError> {
                <$rx>::recv(self)
            }
            fn recv_timeout(
                &self,
                d: std::time::Duration,
            ) -> Result<T, corelane_channel::RecvTimeoutError> {
                <$rx>::recv_timeout(self, d)
            }
            fn try_recv_batch(
                &self,
                out: &mut Vec<T>,
                max: usize,
            ) -> Result<usize, corelane_channel::TryRecvError> {
                <$rx>::try_recv_batch(self, out, max)
            }
            fn recv_batch(
                &self,
                out: &mut Vec<T>,
                max: usize,
            ) -> Result<usize, corelane_channel::RecvError> {
                <$rx>::recv_batch(self, out, max)
            }
            fn recv_batch_timeout(
                &self,
                out: &mut Vec<T>,
                max: usize,
                d: std::time::Duration,
            ) -> Result<usize, corelane_channel::RecvTimeoutError> {
                <$rx>::recv_batch_timeout(self, out, max, d)
            }
            fn is_empty(&self) -> bool {
                <$rx>::is_empty(self)
            }
            fn capacity(&self) -> usize {
                <$rx>::capacity(self)
            }
            fn is_disconnected(&self) -> bool {
                <$rx>::is_disconnected(self)
            }
        }
    };
}
