//! The SPSC flavor: the shared suite plus topology checks.
#[macro_use]
mod common;

impl_ends!(
    corelane_channel::spsc::Sender<T>,
    corelane_channel::spsc::Receiver<T>
);
use common::{RecvEnd, SendEnd};
flavor_suite!(spsc);

#[test]
fn ends_are_send_but_not_clone_or_sync() {
    fn is_send<T: Send>() {}
    is_send::<spsc::Sender<Vec<u8>>>();
    is_send::<spsc::Receiver<Vec<u8>>>();
    // `!Sync` and `!Clone` are checked by the `compile_fail` examples in `spsc`'s docs.
}

#[test]
fn close_returns_queued_messages() {
    let (tx, rx) = spsc::channel::<String>(4);
    tx.send("a".into()).unwrap();
    tx.send("b".into()).unwrap();
    assert_eq!(rx.close(), ["a", "b"]);
    assert!(tx.send("c".into()).is_err());
}

/// Streams `n` values made by `make` through a channel of `capacity` between two threads and
/// checks that each arrives once, in order. Far enough ahead of both sides, the ring asks for
/// slot lines before it touches them (`hint`); this runs that path for slot sizes that divide a
/// cache line, do not, and exceed one.
fn stream_in_order<T: Send + PartialEq + std::fmt::Debug + 'static>(
    capacity: usize,
    n: usize,
    make: fn(usize) -> T,
) {
    let (tx, rx) = spsc::channel::<T>(capacity);
    let producer = std::thread::spawn(move || {
        for i in 0..n {
            tx.send(make(i)).unwrap();
        }
    });
    for i in 0..n {
        assert_eq!(rx.recv().unwrap(), make(i), "message {i}");
    }
    producer.join().unwrap();
    assert!(rx.recv().is_err());
}

#[test]
fn every_slot_size_streams_in_order() {
    stream_in_order(2048, 200_000, |i| i as u8);
    stream_in_order(1024, 200_000, |i| i as u64);
    stream_in_order(256, 100_000, |i| [i as u64, !(i as u64), i as u64 * 3]);
    stream_in_order(64, 20_000, |i| [i as u8; 200]);
    stream_in_order(64, 100_000, |_| ());
}
