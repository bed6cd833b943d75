//! A shard's keyspace and the messages shards exchange. Each shard is one corelane worker that
//! owns one part of the keyspace and serves its own connections (see the server module); only
//! its thread touches its map, so nothing here takes a lock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use corelane::prelude::*;

use crate::resp::Resp;

/// `SET`'s existence condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCond {
    /// Always set.
    Always,
    /// Only if the key does not exist (`NX`).
    Nx,
    /// Only if the key exists (`XX`).
    Xx,
}

/// What a `SET` does to the key's time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTtl {
    /// Clears it.
    Clear,
    /// Sets it to this long from now.
    For(Duration),
    /// Keeps it (`KEEPTTL`).
    Keep,
}

/// `EXPIRE`'s conditions on the key's current expiry (`XX` combines with `GT` or `LT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpireCond {
    /// Only if it has none (`NX`).
    pub nx: bool,
    /// Only if it has one (`XX`).
    pub xx: bool,
    /// Only if the new one is later (`GT`; no expiry counts as infinite).
    pub gt: bool,
    /// Only if the new one is sooner (`LT`; no expiry counts as infinite).
    pub lt: bool,
}

/// One operation on one shard.
#[derive(Debug)]
pub enum Op {
    /// `GET key`
    Get(Vec<u8>),
    /// `SET key value [NX|XX] [GET] [EX s|PX ms|KEEPTTL]`
    Set {
        /// Key.
        key: Vec<u8>,
        /// Value.
        val: Vec<u8>,
        /// What happens to the key's time to live.
        ttl: SetTtl,
        /// Existence condition.
        cond: SetCond,
        /// `GET`: answer the old value instead of `OK`.
        get: bool,
    },
    /// `DEL`: how many of these keys existed (and are now gone).
    Del(Vec<Vec<u8>>),
    /// `EXISTS`: how many of these keys exist (repeats count again).
    Exists(Vec<Vec<u8>>),
    /// `INCRBY` / `DECRBY` / `INCR` / `DECR`.
    IncrBy(Vec<u8>, i64),
    /// `APPEND key value`
    Append(Vec<u8>, Vec<u8>),
    /// `STRLEN key`
    Strlen(Vec<u8>),
    /// `MGET` over this shard's keys.
    MGet(Vec<Vec<u8>>),
    /// `MSET` over this shard's pairs.
    MSet(Vec<(Vec<u8>, Vec<u8>)>),
    /// `EXPIRE key seconds [NX|XX|GT|LT]`, the time already converted to milliseconds from now
    /// (negative or zero: the key is deleted) and checked against overflow.
    Expire(Vec<u8>, i64, ExpireCond),
    /// `TTL key`
    Ttl(Vec<u8>),
    /// This shard's key count.
    DbSize,
    /// Delete everything.
    FlushAll,
    /// `[keys, keys with a TTL]`, for `INFO`.
    Stats,
}

impl Op {
    /// The key of a single-key operation (what routes it to its shard).
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Op::Get(k)
            | Op::Strlen(k)
            | Op::Ttl(k)
            | Op::IncrBy(k, _)
            | Op::Append(k, _)
            | Op::Expire(k, _, _)
            | Op::Set { key: k, .. } => Some(k),
            _ => None,
        }
    }
}

/// What a shard worker receives.
#[derive(Debug)]
pub enum Req {
    /// Operations on this shard's keys from connections served by another shard (one tick's
    /// worth), and where their answers go, in the same order.
    Ops {
        /// What to do, in order.
        ops: Vec<Op>,
        /// Where the answers go.
        reply: Reply<Vec<Resp>>,
    },
    /// A client connection for this shard to serve: a new one, or one that moves here from
    /// another shard with the bytes it had read but not yet parsed.
    Serve(std::net::TcpStream, Vec<u8>),
    /// Stop reading new requests: each connection finishes what it has read, then closes.
    Drain,
    /// How many connections this shard still serves.
    Connections(Reply<usize>),
}

/// Keys and values as exact-size boxed slices (16 bytes each in the table, against 24 for a
/// `Vec`).
type Bytes = Box<[u8]>;

/// A keyed hash (random per process): keys come from clients. SipHash took 4% of the server's
/// CPU on short keys; ahash is several times cheaper.
type Map<V> = HashMap<Bytes, V, ahash::RandomState>;

/// A shard's keyspace. Lives on the shard's thread only.
///
/// Values live in `map`; the expiry of the few keys that have one lives in `ttl`, so a table
/// bucket is two boxed slices (32 bytes) and a key without a TTL pays nothing for the feature.
/// Invariant: every key of `ttl` is in `map`.
#[derive(Debug)]
pub struct Store {
    map: Map<Bytes>,
    ttl: Map<Instant>,
    last_sweep: Instant,
}

/// How often an idle shard sweeps expired keys (they are also removed lazily on access).
const SWEEP_EVERY: Duration = Duration::from_millis(100);

pub(crate) fn not_an_integer() -> Resp {
    Resp::err("value is not an integer or out of range")
}

/// Redis' `string2ll` (see [`crate::resp::string2ll`]).
pub(crate) fn parse_int(bytes: &[u8]) -> Option<i64> {
    crate::resp::string2ll(bytes)
}

impl Store {
    pub(crate) fn new() -> Self {
        Self {
            map: Map::default(),
            ttl: Map::default(),
            last_sweep: Instant::now(),
        }
    }

    /// Removes `key` if it has expired, so every read below sees only live keys.
    fn purge(&mut self, key: &[u8], now: Instant) {
        if !self.ttl.is_empty() && self.ttl.get(key).is_some_and(|&t| t <= now) {
            self.remove(key);
        }
    }

    /// Stores `val` under `key` with the given expiry (`None`: no TTL, clearing an old one).
    fn put(&mut self, key: Vec<u8>, val: Bytes, expires: Option<Instant>) {
        let key = key.into_boxed_slice();
        match expires {
            Some(at) => {
                self.ttl.insert(key.clone(), at);
            }
            None if !self.ttl.is_empty() => {
                self.ttl.remove(&key);
            }
            None => {}
        }
        self.map.insert(key, val);
    }

    fn remove(&mut self, key: &[u8]) -> bool {
        if !self.ttl.is_empty() {
            self.ttl.remove(key);
        }
        self.map.remove(key).is_some()
    }

    fn get(&mut self, key: &[u8], now: Instant) -> Option<&mut Bytes> {
        self.purge(key, now);
        self.map.get_mut(key)
    }

    /// Applies one operation.
    pub fn apply(&mut self, op: Op) -> Resp {
        self.apply_at(op, Instant::now())
    }

    /// Applies operations in order, reading the clock once for all of them (as redis caches its
    /// clock per event-loop turn): the ops of one read see one instant.
    pub fn apply_all(&mut self, ops: impl IntoIterator<Item = Op>) -> Vec<Resp> {
        let now = Instant::now();
        ops.into_iter().map(|op| self.apply_at(op, now)).collect()
    }

    /// Applies one operation as of `now`.
    fn apply_at(&mut self, op: Op, now: Instant) -> Resp {
        match op {
            Op::Get(key) => Resp::Bulk(self.get(&key, now).map(|v| v.to_vec())),
            Op::Set {
                key,
                val,
                ttl,
                cond,
                get,
            } => self.set(key, val, ttl, cond, get, now),
            Op::Del(keys) => Resp::Int(
                keys.iter()
                    .filter(|k| {
                        self.purge(k, now);
                        self.remove(k)
                    })
                    .count() as i64,
            ),
            Op::Exists(keys) => {
                Resp::Int(keys.iter().filter(|k| self.get(k, now).is_some()).count() as i64)
            }
            Op::IncrBy(key, delta) => self.incr_by(key, delta, now),
            Op::Append(key, val) => self.append(key, val, now),
            Op::Strlen(key) => Resp::Int(self.get(&key, now).map_or(0, |v| v.len() as i64)),
            Op::MGet(keys) => Resp::Array(
                keys.iter()
                    .map(|k| Resp::Bulk(self.get(k, now).map(|v| v.to_vec())))
                    .collect(),
            ),
            Op::MSet(pairs) => {
                for (key, val) in pairs {
                    self.put(key, val.into_boxed_slice(), None);
                }
                Resp::Simple("OK")
            }
            Op::Expire(key, in_ms, cond) => self.expire(key, in_ms, cond, now),
            Op::Ttl(key) => self.ttl_of(&key, now),
            Op::DbSize => Resp::Int(self.map.len() as i64),
            Op::FlushAll => {
                self.map.clear();
                self.ttl.clear();
                Resp::Simple("OK")
            }
            Op::Stats => Resp::Array(vec![
                Resp::Int(self.map.len() as i64),
                Resp::Int(self.ttl.len() as i64),
            ]),
        }
    }

    /// `INCRBY`: the value read as an integer (0 if absent), checked for overflow; keeps the TTL.
    fn incr_by(&mut self, key: Vec<u8>, delta: i64, now: Instant) -> Resp {
        let current = match self.get(&key, now) {
            Some(v) => match parse_int(v) {
                Some(n) => n,
                None => return not_an_integer(),
            },
            None => 0,
        };
        let Some(next) = current.checked_add(delta) else {
            return Resp::err("increment or decrement would overflow");
        };
        let expires = self.ttl.get(key.as_slice()).copied();
        self.put(
            key,
            next.to_string().into_bytes().into_boxed_slice(),
            expires,
        );
        Resp::Int(next)
    }

    /// `APPEND`: the new length.
    fn append(&mut self, key: Vec<u8>, val: Vec<u8>, now: Instant) -> Resp {
        match self.get(&key, now) {
            Some(v) => {
                let mut grown = std::mem::take(v).into_vec();
                grown.extend_from_slice(&val);
                *v = grown.into_boxed_slice();
                Resp::Int(v.len() as i64)
            }
            None => {
                let len = val.len() as i64;
                self.put(key, val.into_boxed_slice(), None);
                Resp::Int(len)
            }
        }
    }

    /// `TTL`: seconds left, rounded as redis does; -1 without a TTL, -2 for no key.
    fn ttl_of(&mut self, key: &[u8], now: Instant) -> Resp {
        match self.get(key, now) {
            None => Resp::Int(-2),
            Some(_) => match self.ttl.get(key) {
                None => Resp::Int(-1),
                Some(&at) => {
                    let ms = i64::try_from(at.saturating_duration_since(now).as_millis());
                    Resp::Int(ms.unwrap_or(i64::MAX).saturating_add(500) / 1000)
                }
            },
        }
    }

    /// `SET`: the old value (for `GET`), the condition, then the write.
    fn set(
        &mut self,
        key: Vec<u8>,
        val: Vec<u8>,
        ttl: SetTtl,
        cond: SetCond,
        get: bool,
        now: Instant,
    ) -> Resp {
        let old = self.get(&key, now).map(|v| v.to_vec());
        let reply = |old: Option<Vec<u8>>| {
            if get {
                Resp::Bulk(old)
            } else {
                Resp::Simple("OK")
            }
        };
        if cond != SetCond::Always && (cond == SetCond::Nx) == old.is_some() {
            return if get {
                Resp::Bulk(old)
            } else {
                Resp::Bulk(None)
            };
        }
        let expires = match ttl {
            SetTtl::Clear => None,
            SetTtl::For(d) => now.checked_add(d),
            SetTtl::Keep => self.ttl.get(key.as_slice()).copied(),
        };
        self.put(key, val.into_boxed_slice(), expires);
        reply(old)
    }

    /// `EXPIRE` with its condition; `in_ms` is checked against overflow by the caller.
    fn expire(&mut self, key: Vec<u8>, in_ms: i64, cond: ExpireCond, now: Instant) -> Resp {
        if self.get(&key, now).is_none() {
            return Resp::Int(0);
        }
        let current = self.ttl.get(key.as_slice()).copied();
        // Past expiries compare as earlier than any live one.
        let at = (in_ms > 0)
            .then(|| now.checked_add(Duration::from_millis(in_ms as u64)))
            .flatten();
        let refused = (cond.nx && current.is_some())
            || (cond.xx && current.is_none())
            || (cond.gt && current.is_none_or(|c| at.is_none_or(|a| a <= c)))
            || (cond.lt && current.is_some_and(|c| at.is_some_and(|a| a >= c)));
        if refused {
            return Resp::Int(0);
        }
        match at {
            None => {
                self.remove(&key);
            }
            Some(at) => {
                self.ttl.insert(key.into_boxed_slice(), at);
            }
        }
        Resp::Int(1)
    }

    /// Removes expired keys, at most every [`SWEEP_EVERY`], only if some key has a TTL.
    pub(crate) fn sweep(&mut self) {
        let now = Instant::now();
        if self.ttl.is_empty() || now.duration_since(self.last_sweep) < SWEEP_EVERY {
            return;
        }
        self.last_sweep = now;
        let map = &mut self.map;
        self.ttl.retain(|key, &mut at| {
            let live = at > now;
            if !live {
                map.remove(key);
            }
            live
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_like_redis() {
        for ok in [
            "0",
            "-1",
            "42",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            assert!(parse_int(ok.as_bytes()).is_some(), "{ok}");
        }
        for bad in [
            "",
            "-",
            "-0",
            "01",
            "+1",
            " 1",
            "1 ",
            "9223372036854775808",
            "1.0",
            "abc",
        ] {
            assert!(parse_int(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn expiry_is_counted_and_swept() {
        let mut s = Store::new();
        s.apply(Op::Set {
            key: b"a".to_vec(),
            val: b"1".to_vec(),
            ttl: SetTtl::For(Duration::from_millis(1)),
            cond: SetCond::Always,
            get: false,
        });
        s.apply(Op::Set {
            key: b"b".to_vec(),
            val: b"1".to_vec(),
            ttl: SetTtl::Clear,
            cond: SetCond::Always,
            get: false,
        });
        assert_eq!(s.ttl.len(), 1);
        std::thread::sleep(Duration::from_millis(5));
        s.last_sweep -= SWEEP_EVERY;
        s.sweep();
        assert_eq!((s.map.len(), s.ttl.len()), (1, 0));
        assert_eq!(s.apply(Op::Ttl(b"b".to_vec())), Resp::Int(-1));
        assert_eq!(s.apply(Op::Ttl(b"a".to_vec())), Resp::Int(-2));
    }
}
