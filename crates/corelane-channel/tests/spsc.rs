//! The SPSC flavor: the shared suite plus topology checks.
#[macro_use]
mod common;

impl_ends!(
    corelane_channel::spsc::Producer<T>,
    corelane_channel::spsc::Consumer<T>
);
use common::{RecvEnd, SendEnd};
flavor_suite!(spsc);

#[test]
fn ends_are_send_but_not_clone_or_sync() {
    fn is_send<T: Send>() {}
    is_send::<spsc::Producer<Vec<u8>>>();
    is_send::<spsc::Consumer<Vec<u8>>>();
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
