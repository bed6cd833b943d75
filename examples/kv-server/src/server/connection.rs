//! One client connection: reading, parsing a chunk of commands, answering in order, moving to
//! the shard its keys live on.

use std::rc::Rc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::command::{plan, Plan};
use super::front::{Alive, Front};
use super::group::{submit, Batch};
use crate::resp::{Parsed, Parser, Resp};
use crate::shard::Req;

/// After this many reads in a row whose every key lives on one other shard, a connection moves
/// to that shard (as Dragonfly's `migrate_connections` does): its operations then run inline
/// there instead of crossing threads. A client spread over the keyspace never qualifies.
pub(super) const MIGRATE_AFTER: u32 = 4;

/// At most this many commands of one read are run before their replies are written: a
/// pipeline's replies are built and sent a chunk at a time, so a client that does not read its
/// replies stalls its own connection (nothing more is parsed) instead of growing its buffers.
pub(super) const CHUNK: usize = 128;

/// Buffers larger than this are shrunk back once they are empty (after a large request or reply).
pub(super) const KEEP_BUFFER: usize = 64 * 1024;

/// One client: read what it sent, parse up to [`CHUNK`] complete commands, run their shard
/// operations ([`submit`]), then assemble and write the answers in order. `rbuf` holds bytes
/// already read (by the shard this connection moved from).
pub(super) async fn connection(mut stream: TcpStream, rbuf: Vec<u8>, front: Rc<Front>) {
    let alive = Alive::new(front);
    let front = &alive.0;
    let mut stop = front.stop.subscribe();
    let mut conn = Conn::new(front, rbuf);
    loop {
        if !std::mem::take(&mut conn.unread) {
            // Draining: what was read is answered (above); nothing new is read.
            if *stop.borrow_and_update() {
                return;
            }
            conn.reserve_for_bulk();
            let read = tokio::select! {
                r = stream.read_buf(&mut conn.rbuf) => r,
                _ = stop.changed() => return,
            };
            match read {
                Ok(0) | Err(_) => return, // the client left; nothing of its is held anywhere
                Ok(_) => {}
            }
        }
        let close = conn.parse_chunk(front);
        let streak = conn.streak(front);
        let mut results = submit(front, &mut conn.batch).await;
        for p in conn.plans.drain(..) {
            p.resolve(front, &mut results).write(&mut conn.wbuf);
        }
        if stream.write_all(&conn.wbuf).await.is_err() {
            return;
        }
        conn.wbuf.clear();
        conn.shrink();
        if close {
            let _ = stream.shutdown().await;
            return;
        }
        if streak >= MIGRATE_AFTER {
            // Every answer is written: nothing of this connection is in flight. Hand the socket
            // and its unparsed bytes to the shard its keys live on; if that fails, stay.
            let Ok(std) = stream.into_std() else { return };
            match front.outbox.send_to(
                conn.streak.0,
                Req::Serve(std, std::mem::take(&mut conn.rbuf)),
            ) {
                Ok(()) => return,
                Err(e) => match e.into_inner() {
                    Req::Serve(std, back) => match TcpStream::from_std(std) {
                        Ok(s) => {
                            stream = s;
                            conn.rbuf = back;
                            conn.streak = (front.me, 0);
                        }
                        Err(_) => return,
                    },
                    _ => unreachable!("the message handed back is the one sent"),
                },
            }
        }
    }
}

/// A connection's buffers and parsing state.
pub(super) struct Conn {
    pub(super) rbuf: Vec<u8>,
    pub(super) wbuf: Vec<u8>,
    pub(super) parser: Parser,
    pub(super) batch: Batch,
    pub(super) plans: Vec<Plan>,
    /// (shard, how many reads in a row went only to it)
    pub(super) streak: (usize, u32),
    /// `rbuf` may hold complete commands not parsed yet: parse before reading.
    pub(super) unread: bool,
}

impl Conn {
    pub(super) fn new(front: &Front, mut rbuf: Vec<u8>) -> Self {
        let unread = !rbuf.is_empty();
        rbuf.reserve(16 * 1024);
        Self {
            rbuf,
            wbuf: Vec::with_capacity(16 * 1024),
            parser: Parser::new(front.max_bulk),
            batch: Batch::new(front.shards()),
            plans: Vec::new(),
            streak: (front.me, 0),
            unread,
        }
    }

    /// Makes room for the whole bulk string the parser waits for, so a large value is read
    /// into place without repeated reallocation.
    pub(super) fn reserve_for_bulk(&mut self) {
        if let Some(len) = self.parser.awaited_bulk(&self.rbuf) {
            let want = (len + 64).min(self.parser_limit());
            self.rbuf.reserve(want.saturating_sub(self.rbuf.len()));
        }
    }

    /// The most a single reservation may ask for (a client's claimed length is not trusted past
    /// a few megabytes before the bytes arrive).
    pub(super) fn parser_limit(&self) -> usize {
        self.rbuf.len() + 8 * 1024 * 1024
    }

    /// Parses up to [`CHUNK`] commands from `rbuf` into plans; `true` if the connection must
    /// close after answering them (`QUIT`, a protocol error).
    pub(super) fn parse_chunk(&mut self, front: &Front) -> bool {
        let mut used = 0;
        let mut commands = 0;
        let close = loop {
            if commands == CHUNK {
                self.unread = true;
                break false;
            }
            let (parsed, n) = self.parser.parse(&self.rbuf[used..]);
            used += n;
            match parsed {
                Parsed::Command(args) => {
                    commands += 1;
                    let quit = args[0].eq_ignore_ascii_case(b"quit");
                    self.plans.push(plan(front, &mut self.batch, args));
                    if quit {
                        break true;
                    }
                }
                Parsed::Incomplete if n > 0 => {}
                Parsed::Incomplete => break false,
                Parsed::Error(msg) => {
                    self.plans.push(Plan::Ready(Resp::Error(msg)));
                    break true;
                }
            }
        };
        self.rbuf.drain(..used);
        close
    }

    /// Updates the run of reads whose keys all live on one other shard; returns its length.
    pub(super) fn streak(&mut self, front: &Front) -> u32 {
        self.streak = match self.batch.only_shard() {
            Some(shard) if shard != front.me && shard == self.streak.0 => {
                (shard, self.streak.1 + 1)
            }
            Some(shard) if shard != front.me => (shard, 1),
            _ => (front.me, 0),
        };
        self.streak.1
    }

    /// Gives back the memory of a large request or reply once it is done.
    pub(super) fn shrink(&mut self) {
        if self.wbuf.capacity() > KEEP_BUFFER {
            self.wbuf = Vec::with_capacity(16 * 1024);
        }
        if self.rbuf.capacity() > KEEP_BUFFER && self.rbuf.len() < KEEP_BUFFER / 4 {
            self.rbuf.shrink_to(16 * 1024);
        }
    }
}
