//! The channel workloads, written once for every contender: the criterion bench (`channel`)
//! times them one contender at a time, the `ratios` bench interleaves them round by round.
//!
//! A contender is a value implementing [`Flavor`] (corelane's flavors carry their wait
//! strategy); each workload builds fresh channels, runs pinned threads and returns the time from
//! the first thread's start to the last one's finish ([`pinned_pair`], [`pinned_group`]).

use std::hint::black_box;
use std::time::Duration;

use corelane::channel::{Builder, WaitStrategy};

use crate::{pinned_group, pinned_pair};

/// Ring capacity of the streaming workloads.
pub const CAP: usize = 1024;
/// Messages per streaming run.
pub const N: u64 = 1_000_000;
/// Messages per batch in the batch workload.
pub const BATCH: usize = 64;
/// Round trips per ping-pong run.
pub const ROUND_TRIPS: u64 = 20_000;

/// A channel implementation as the workloads use it: `u64` messages, blocking (or spinning)
/// `send` and `recv`.
pub trait Flavor: Copy + Send + 'static {
    /// The sending end.
    type Tx: Send + 'static;
    /// The receiving end.
    type Rx: Send + 'static;
    /// A fresh channel of `capacity`.
    fn channel(self, capacity: usize) -> (Self::Tx, Self::Rx);
    /// Sends `v`, waiting for room as the implementation does. (Every implementation is
    /// `#[inline(always)]`: a contender whose operations stayed a call (across the crate
    /// boundary, or by the inliner's choice for a larger body) would pay it per message while
    /// its peers do not.)
    fn send(tx: &mut Self::Tx, v: u64);
    /// Receives a value, or `None` once every sender is gone and the channel is empty.
    fn recv(rx: &mut Self::Rx) -> Option<u64>;
}

/// A flavor whose sending end can be cloned (several producers).
pub trait SharedTx: Flavor {
    /// Another sending end of the same channel.
    fn clone_tx(tx: &Self::Tx) -> Self::Tx;
}

/// A flavor whose receiving end can be cloned (several consumers).
pub trait SharedRx: Flavor {
    /// Another receiving end of the same channel.
    fn clone_rx(rx: &Self::Rx) -> Self::Rx;
}

/// `send` and `recv` of a [`Flavor`] whose ends have blocking `send(v)` and `recv()` methods.
macro_rules! blocking_ops {
    () => {
        #[inline(always)]
        fn send(tx: &mut Self::Tx, v: u64) {
            tx.send(v).expect("the receiver outlives the run");
        }
        #[inline(always)]
        fn recv(rx: &mut Self::Rx) -> Option<u64> {
            rx.recv().ok()
        }
    };
}

macro_rules! corelane_flavor {
    ($(#[$doc:meta])* $name:ident, $module:ident, $build:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name(pub WaitStrategy);
        impl Flavor for $name {
            type Tx = corelane::channel::$module::Sender<u64>;
            type Rx = corelane::channel::$module::Receiver<u64>;
            fn channel(self, capacity: usize) -> (Self::Tx, Self::Rx) {
                Builder::new(capacity)
                    .wait_strategy(self.0)
                    .$build()
                    .expect("a valid capacity")
            }
            blocking_ops!();
        }
        impl SharedTx for $name {
            fn clone_tx(tx: &Self::Tx) -> Self::Tx {
                tx.clone()
            }
        }
    };
}

corelane_flavor!(
    /// corelane's MPSC channel with the given wait strategy.
    Mpsc, mpsc, mpsc
);
corelane_flavor!(
    /// corelane's MPMC channel with the given wait strategy.
    Mpmc, mpmc, mpmc
);

impl SharedRx for Mpmc {
    fn clone_rx(rx: &Self::Rx) -> Self::Rx {
        rx.clone()
    }
}

/// corelane's SPSC channel with the given wait strategy (`send` / `recv`).
#[derive(Debug, Clone, Copy)]
pub struct Spsc(pub WaitStrategy);

impl Flavor for Spsc {
    type Tx = corelane::channel::spsc::Sender<u64>;
    type Rx = corelane::channel::spsc::Receiver<u64>;
    fn channel(self, capacity: usize) -> (Self::Tx, Self::Rx) {
        Builder::new(capacity)
            .wait_strategy(self.0)
            .spsc()
            .expect("a valid capacity")
    }
    blocking_ops!();
}

/// corelane's SPSC channel driven by `try_send` / `try_recv` spin loops (as the rtrb contender).
#[derive(Debug, Clone, Copy)]
pub struct SpscTryLoop;

impl Flavor for SpscTryLoop {
    type Tx = corelane::channel::spsc::Sender<u64>;
    type Rx = corelane::channel::spsc::Receiver<u64>;
    fn channel(self, capacity: usize) -> (Self::Tx, Self::Rx) {
        corelane::channel::spsc::channel(capacity)
    }
    #[inline(always)]
    fn send(tx: &mut Self::Tx, mut v: u64) {
        while let Err(e) = tx.try_send(v) {
            v = e.into_inner();
            std::hint::spin_loop();
        }
    }
    #[inline(always)]
    fn recv(rx: &mut Self::Rx) -> Option<u64> {
        loop {
            match rx.try_recv() {
                Ok(v) => return Some(v),
                Err(corelane::channel::TryRecvError::Disconnected) => return None,
                Err(corelane::channel::TryRecvError::Empty) => std::hint::spin_loop(),
            }
        }
    }
}

/// rtrb, which has no blocking operations: `push` / `pop` spin loops.
#[derive(Debug, Clone, Copy)]
pub struct Rtrb;

impl Flavor for Rtrb {
    type Tx = rtrb::Producer<u64>;
    type Rx = rtrb::Consumer<u64>;
    fn channel(self, capacity: usize) -> (Self::Tx, Self::Rx) {
        rtrb::RingBuffer::new(capacity)
    }
    #[inline(always)]
    fn send(tx: &mut Self::Tx, mut v: u64) {
        while let Err(rtrb::PushError::Full(back)) = tx.push(v) {
            v = back;
            std::hint::spin_loop();
        }
    }
    #[inline(always)]
    fn recv(rx: &mut Self::Rx) -> Option<u64> {
        loop {
            if let Ok(v) = rx.pop() {
                return Some(v);
            }
            if rx.is_abandoned() && rx.is_empty() {
                return None;
            }
            std::hint::spin_loop();
        }
    }
}

macro_rules! peer_flavor {
    ($(#[$doc:meta])* $name:ident, $($path:ident)::+) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;
        impl Flavor for $name {
            type Tx = $($path)::+::Sender<u64>;
            type Rx = $($path)::+::Receiver<u64>;
            fn channel(self, capacity: usize) -> (Self::Tx, Self::Rx) {
                $($path)::+::bounded(capacity)
            }
            blocking_ops!();
        }
        impl SharedTx for $name {
            fn clone_tx(tx: &Self::Tx) -> Self::Tx {
                tx.clone()
            }
        }
        impl SharedRx for $name {
            fn clone_rx(rx: &Self::Rx) -> Self::Rx {
                rx.clone()
            }
        }
    };
}

peer_flavor!(
    /// crossbeam-channel's `bounded`.
    Crossbeam, crossbeam_channel
);
peer_flavor!(
    /// flume's `bounded`.
    Flume, flume
);
peer_flavor!(
    /// kanal's `bounded`.
    Kanal, kanal
);

/// Streams [`N`] values from a producer pinned to core 0 to a consumer pinned to core 1 through
/// one channel of capacity [`CAP`].
pub fn stream<F: Flavor>(flavor: F) -> Duration {
    let (mut tx, mut rx) = flavor.channel(CAP);
    pinned_pair(
        move || (0..N).for_each(|i| F::send(&mut tx, i)),
        move || {
            let mut sum = 0u64;
            for _ in 0..N {
                sum = sum.wrapping_add(F::recv(&mut rx).expect("the producer sends N values"));
            }
            black_box(sum);
        },
    )
}

/// As [`stream`] over corelane's SPSC channel, in batches of [`BATCH`] (`send_batch` /
/// `recv_batch`).
pub fn stream_batched() -> Duration {
    let (tx, rx) = corelane::channel::spsc::channel::<u64>(CAP);
    pinned_pair(
        move || {
            let mut buf = Vec::with_capacity(BATCH);
            let mut i = 0;
            while i < N {
                buf.extend(i..(i + BATCH as u64).min(N));
                i += buf.len() as u64;
                tx.send_batch(&mut buf)
                    .expect("the receiver outlives the run");
            }
        },
        move || {
            let mut buf = Vec::with_capacity(BATCH);
            let (mut got, mut sum) = (0u64, 0u64);
            while got < N {
                buf.clear();
                got += rx.recv_batch(&mut buf, BATCH).expect("N values come") as u64;
                sum = buf.iter().fold(sum, |s, v| s.wrapping_add(*v));
            }
            black_box(sum);
        },
    )
}

/// `producers` threads send [`N`] values in total through one channel of capacity [`CAP`] to one
/// consumer; threads pinned round robin over the cores.
pub fn fan_in<F: SharedTx>(flavor: F, producers: usize) -> Duration {
    let (tx, rx) = flavor.channel(CAP);
    fan::<F>(tx, producers, vec![rx])
}

/// `producers` x `consumers` threads over one channel; [`N`] values in total.
pub fn many<F: SharedTx + SharedRx>(flavor: F, producers: usize, consumers: usize) -> Duration {
    let (tx, rx) = flavor.channel(CAP);
    let receivers = (0..consumers).map(|_| F::clone_rx(&rx)).collect();
    drop(rx);
    fan::<F>(tx, producers, receivers)
}

/// The threads of [`fan_in`] and [`many`]: `producers` clones of `tx` share [`N`] values, each
/// of `receivers` receives until the channel is disconnected.
fn fan<F: SharedTx>(tx: F::Tx, producers: usize, receivers: Vec<F::Rx>) -> Duration {
    let per = N / producers as u64;
    let mut threads: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
    for _ in 0..producers {
        let mut tx = F::clone_tx(&tx);
        threads.push(Box::new(move || (0..per).for_each(|i| F::send(&mut tx, i))));
    }
    drop(tx);
    for mut rx in receivers {
        threads.push(Box::new(move || {
            let mut sum = 0u64;
            while let Some(v) = F::recv(&mut rx) {
                sum = sum.wrapping_add(v);
            }
            black_box(sum);
        }));
    }
    pinned_group(threads)
}

/// [`ROUND_TRIPS`] round trips between two pinned threads over two channels of capacity 1: the
/// ping thread sends `i` and waits for `i` back.
pub fn ping_pong<F: Flavor>(flavor: F) -> Duration {
    let (mut tx_a, mut rx_a) = flavor.channel(1);
    let (mut tx_b, mut rx_b) = flavor.channel(1);
    pinned_pair(
        move || {
            for i in 0..ROUND_TRIPS {
                F::send(&mut tx_a, i);
                assert_eq!(F::recv(&mut rx_b), Some(i));
            }
        },
        move || {
            for _ in 0..ROUND_TRIPS {
                let v = F::recv(&mut rx_a).expect("the ping thread sends every round");
                F::send(&mut tx_b, v);
            }
        },
    )
}
