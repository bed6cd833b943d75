//! What travels: frames encoded with `postcard`.

use serde::{Deserialize, Serialize};

use crate::snapshot::SnapshotRef;

/// A stream message: the key it was routed by and the user's message.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Record<W> {
    pub(crate) key: Vec<u8>,
    pub(crate) msg: W,
}

/// An ask: answer once the owner applied stream sequence `after` (0: at once).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AskFrame<W> {
    pub(crate) after: u64,
    pub(crate) key: Vec<u8>,
    pub(crate) msg: W,
}

/// The owner's answer to an ask.
pub(crate) type AnswerFrame<A> = Result<A, String>;

/// What the offsets bucket holds per partition: the owner's epoch, the last stream sequence its
/// workers applied, and the current snapshot if any.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Offset {
    pub(crate) epoch: u64,
    pub(crate) applied: u64,
    pub(crate) snapshot: Option<SnapshotRef>,
}
