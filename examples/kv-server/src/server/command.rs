//! Commands: validation as redis does it, the shard operations they become, and how their
//! replies are assembled.

use std::time::Duration;

use super::front::Front;
use super::group::{AnswerAt, Batch, Pairs, Results};
use crate::resp::{string2ll, Resp};
use crate::shard::{not_an_integer, parse_int, ExpireCond, Op, SetCond, SetTtl};

/// How to build one command's reply from its shards' answers.
pub(super) enum Plan {
    Ready(Resp),
    One(AnswerAt),
    /// Integer replies of several shards, summed (`DEL`, `EXISTS`, `DBSIZE`).
    Sum(Vec<AnswerAt>),
    /// `MGET`: each shard's array goes back to the positions of its keys.
    Gather(usize, Vec<(Vec<usize>, AnswerAt)>),
    /// Every shard must answer `OK` (`MSET`, `FLUSHALL`).
    AllOk(Vec<AnswerAt>),
    /// `INFO`: per-shard `[keys, expires]`.
    Info(Vec<AnswerAt>),
}

impl Plan {
    /// The command's reply, from its shards' answers (an error answer of any shard wins).
    pub(super) fn resolve(self, front: &Front, results: &mut Results) -> Resp {
        match self {
            Plan::Ready(r) => r,
            Plan::One(slot) => results.take(slot),
            Plan::Sum(slots) => sum(slots, results),
            Plan::Gather(len, parts) => gather(len, parts, results),
            Plan::AllOk(slots) => all_ok(slots, results),
            Plan::Info(slots) => info(front, slots, results),
        }
    }
}

/// The sum of the shards' integer answers.
fn sum(slots: Vec<AnswerAt>, results: &mut Results) -> Resp {
    let mut total = 0;
    for slot in slots {
        match results.take(slot) {
            Resp::Int(n) => total += n,
            other => return other,
        }
    }
    Resp::Int(total)
}

/// The shards' arrays, each item put back at its key's position in the command.
fn gather(len: usize, parts: Vec<(Vec<usize>, AnswerAt)>, results: &mut Results) -> Resp {
    let mut out = vec![Resp::Bulk(None); len];
    for (positions, slot) in parts {
        match results.take(slot) {
            Resp::Array(items) => {
                for (pos, item) in positions.into_iter().zip(items) {
                    out[pos] = item;
                }
            }
            other => return other,
        }
    }
    Resp::Array(out)
}

/// `OK` once every shard answered `OK`.
fn all_ok(slots: Vec<AnswerAt>, results: &mut Results) -> Resp {
    for slot in slots {
        let r = results.take(slot);
        if r != Resp::Simple("OK") {
            return r;
        }
    }
    Resp::Simple("OK")
}

/// `INFO`: the server, the keyspace summed over shards, and a line per shard.
fn info(front: &Front, slots: Vec<AnswerAt>, results: &mut Results) -> Resp {
    let (mut keys, mut expires) = (0, 0);
    let mut shards = String::new();
    let metrics = front.outbox.metrics();
    for (i, slot) in slots.into_iter().enumerate() {
        if let Resp::Array(v) = results.take(slot) {
            if let [Resp::Int(k), Resp::Int(e)] = v[..] {
                keys += k;
                expires += e;
                let m = &metrics[i];
                shards.push_str(&format!(
                    "shard{i}:keys={k},expires={e},processed={},queued={},core={}\r\n",
                    m.counters.processed,
                    m.queued,
                    m.core.map_or(-1, |c| c as i64)
                ));
            }
        }
    }
    let text = format!(
        "# Server\r\nredis_version:7.0.0\r\ncorelane_version:{}\r\nuptime_in_seconds:{}\r\n\r\n\
         # Keyspace\r\ndb0:keys={keys},expires={expires},avg_ttl=0\r\n\r\n\
         # Shards\r\nshards:{}\r\n{shards}",
        env!("CARGO_PKG_VERSION"),
        front.started.elapsed().as_secs(),
        metrics.len()
    );
    Resp::Bulk(Some(text.into_bytes()))
}

/// Groups `keys` by shard: `(shard, positions in the command, keys)`.
pub(super) fn by_shard(
    front: &Front,
    keys: Vec<Vec<u8>>,
) -> Vec<(usize, Vec<usize>, Vec<Vec<u8>>)> {
    let mut groups: Vec<(usize, Vec<usize>, Vec<Vec<u8>>)> = Vec::new();
    for (pos, key) in keys.into_iter().enumerate() {
        let shard = front.shard_of(&key);
        match groups.iter_mut().find(|g| g.0 == shard) {
            Some(g) => {
                g.1.push(pos);
                g.2.push(key);
            }
            None => groups.push((shard, vec![pos], vec![key])),
        }
    }
    groups
}

/// Arity as redis declares it: `n` exactly n arguments (with the name), `-n` at least n.
pub(super) fn arity(name: &str) -> Option<i32> {
    Some(match name {
        "ping" | "flushall" | "info" | "command" | "quit" => -1,
        "get" | "incr" | "decr" | "strlen" | "ttl" | "echo" => 2,
        "incrby" | "decrby" | "append" => 3,
        "set" | "mset" | "expire" => -3,
        "del" | "exists" | "mget" => -2,
        "dbsize" => 1,
        _ => return None,
    })
}

/// The bytes of `b` before its first NUL: what a C `%s` prints of it, as redis does.
pub(super) fn cstr(b: &[u8]) -> &[u8] {
    &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]
}

/// Whether `arg`, read as a C string, is `name` ignoring ASCII case (`strcasecmp`).
pub(super) fn is(arg: &[u8], name: &str) -> bool {
    cstr(arg).eq_ignore_ascii_case(name.as_bytes())
}

/// Redis' reply to an unknown command: the name and the first arguments, each cut so that the
/// list stays within 128 bytes.
pub(super) fn unknown_command(args: &[Vec<u8>]) -> Resp {
    let mut rest = Vec::new();
    for arg in &args[1..] {
        if rest.len() >= 128 {
            break;
        }
        let (arg, budget) = (cstr(arg), 128 - rest.len());
        rest.push(b'\'');
        rest.extend_from_slice(&arg[..arg.len().min(budget)]);
        rest.extend_from_slice(b"' ");
    }
    let name = cstr(&args[0]);
    let mut msg = b"unknown command '".to_vec();
    msg.extend_from_slice(&name[..name.len().min(128)]);
    msg.extend_from_slice(b"', with args beginning with: ");
    msg.extend_from_slice(&rest);
    Resp::err(msg)
}

/// The current Unix time in milliseconds, the base redis checks expiry overflow against.
pub(super) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(super) fn invalid_expire(command: &str) -> Resp {
    Resp::err(format!("invalid expire time in '{command}' command"))
}

/// Parses `SET key value [NX|XX] [GET] [EX s|PX ms|KEEPTTL]` the way redis 7.0 does: every
/// option first (a repeated `EX` or `PX` replaces the earlier one), then the expire time.
pub(super) fn set_options(args: &[Vec<u8>]) -> Result<(SetTtl, SetCond, bool), Resp> {
    let (mut cond, mut get, mut keep) = (SetCond::Always, false, false);
    // (in seconds, the time's argument)
    let mut expire: Option<(bool, &[u8])> = None;
    let mut i = 3;
    while i < args.len() {
        let (opt, next) = (&args[i], args.get(i + 1));
        match next {
            _ if is(opt, "nx") && cond != SetCond::Xx => cond = SetCond::Nx,
            _ if is(opt, "xx") && cond != SetCond::Nx => cond = SetCond::Xx,
            _ if is(opt, "get") => get = true,
            _ if is(opt, "keepttl") && expire.is_none() => keep = true,
            Some(t) if is(opt, "ex") && !keep && !matches!(expire, Some((false, _))) => {
                expire = Some((true, t));
                i += 1;
            }
            Some(t) if is(opt, "px") && !keep && !matches!(expire, Some((true, _))) => {
                expire = Some((false, t));
                i += 1;
            }
            _ => return Err(Resp::err("syntax error")),
        }
        i += 1;
    }
    let ttl = match expire {
        None if keep => SetTtl::Keep,
        None => SetTtl::Clear,
        Some((secs, time)) => {
            let n = string2ll(time).ok_or_else(not_an_integer)?;
            if n <= 0 || (secs && n > i64::MAX / 1000) {
                return Err(invalid_expire("set"));
            }
            let ms = if secs { n * 1000 } else { n };
            if ms.checked_add(unix_ms()).is_none() {
                return Err(invalid_expire("set"));
            }
            SetTtl::For(Duration::from_millis(ms as u64))
        }
    };
    Ok((ttl, cond, get))
}

/// Parses `EXPIRE key seconds [NX|XX|GT|LT]` the way redis 7.0 does: the options, then the
/// time, checked against overflow. Returns the time in milliseconds from now.
pub(super) fn expire_options(args: &[Vec<u8>]) -> Result<(i64, ExpireCond), Resp> {
    let mut cond = ExpireCond::default();
    for opt in &args[3..] {
        match () {
            _ if is(opt, "nx") => cond.nx = true,
            _ if is(opt, "xx") => cond.xx = true,
            _ if is(opt, "gt") => cond.gt = true,
            _ if is(opt, "lt") => cond.lt = true,
            _ => {
                let mut msg = b"Unsupported option ".to_vec();
                msg.extend_from_slice(cstr(opt));
                return Err(Resp::err(msg));
            }
        }
    }
    if cond.nx && (cond.xx || cond.gt || cond.lt) {
        return Err(Resp::err(
            "NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if cond.gt && cond.lt {
        return Err(Resp::err(
            "GT and LT options at the same time are not compatible",
        ));
    }
    let secs = string2ll(&args[2]).ok_or_else(not_an_integer)?;
    if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&secs) {
        return Err(invalid_expire("expire"));
    }
    let ms = secs * 1000;
    if ms > i64::MAX - unix_ms() {
        return Err(invalid_expire("expire"));
    }
    Ok((ms, cond))
}

/// The commands this server implements (what `COMMAND COUNT` counts).
pub(super) const COMMANDS: &[&str] = &[
    "append", "command", "dbsize", "decr", "decrby", "del", "echo", "exists", "expire", "flushall",
    "get", "incr", "incrby", "info", "mget", "mset", "ping", "quit", "set", "strlen", "ttl",
];

/// `COMMAND [COUNT]`.
pub(super) fn command(args: &[Vec<u8>]) -> Resp {
    match args.get(1) {
        None => Resp::Array(Vec::new()),
        Some(sub) if is(sub, "count") && args.len() == 2 => Resp::Int(COMMANDS.len() as i64),
        Some(sub) if is(sub, "count") => {
            Resp::err("wrong number of arguments for 'command|count' command")
        }
        Some(sub) => {
            let sub = cstr(sub);
            let mut msg = b"unknown subcommand '".to_vec();
            msg.extend_from_slice(&sub[..sub.len().min(128)]);
            msg.extend_from_slice(b"'. Try COMMAND HELP.");
            Resp::err(msg)
        }
    }
}

/// Validates one command and adds its shard operations to `batch`.
pub(super) fn plan(front: &Front, batch: &mut Batch, args: Vec<Vec<u8>>) -> Plan {
    // Every command we know has a short ASCII name: lower-case it on the stack.
    let mut lower = [0u8; 16];
    let name = match args[0].len() {
        n if n <= lower.len() => {
            lower[..n].copy_from_slice(&args[0]);
            lower[..n].make_ascii_lowercase();
            std::str::from_utf8(&lower[..n]).unwrap_or("")
        }
        _ => "",
    };
    let Some(want) = arity(name) else {
        return Plan::Ready(unknown_command(&args));
    };
    let n = args.len() as i32;
    if (want > 0 && n != want) || (want < 0 && n < -want) || (name == "ping" && n > 2) {
        return Plan::Ready(Resp::err(format!(
            "wrong number of arguments for '{name}' command"
        )));
    }
    match name {
        "ping" | "echo" | "quit" | "command" => Plan::Ready(answer_here(name, args)),
        "del" | "exists" | "mget" | "mset" => plan_multi_key(front, batch, name, args),
        "dbsize" | "flushall" | "info" => plan_every_shard(batch, name, &args),
        _ => plan_single_key(front, batch, name, args),
    }
}

/// The commands answered without a shard.
pub(super) fn answer_here(name: &str, mut args: Vec<Vec<u8>>) -> Resp {
    match name {
        "ping" => match args.get(1) {
            Some(msg) => Resp::Bulk(Some(msg.clone())),
            None => Resp::Simple("PONG"),
        },
        "echo" => Resp::Bulk(Some(args.swap_remove(1))),
        "quit" => Resp::Simple("OK"),
        _ => command(&args),
    }
}

/// A single-key command: one operation on the key's shard (the key moves into it, no copy).
pub(super) fn plan_single_key(
    front: &Front,
    batch: &mut Batch,
    name: &str,
    mut args: Vec<Vec<u8>>,
) -> Plan {
    let key = |args: &mut Vec<Vec<u8>>| std::mem::take(&mut args[1]);
    let mut one = |op: Op| {
        let shard = front.shard_of(op.key().unwrap_or_default());
        Plan::One(batch.add(shard, op))
    };
    match name {
        "get" => one(Op::Get(key(&mut args))),
        "strlen" => one(Op::Strlen(key(&mut args))),
        "ttl" => one(Op::Ttl(key(&mut args))),
        "incr" => one(Op::IncrBy(key(&mut args), 1)),
        "decr" => one(Op::IncrBy(key(&mut args), -1)),
        "incrby" | "decrby" => match parse_int(&args[2]) {
            None => Plan::Ready(not_an_integer()),
            Some(d) if name == "decrby" && d == i64::MIN => {
                Plan::Ready(Resp::err("decrement would overflow"))
            }
            Some(d) => {
                let delta = if name == "decrby" { -d } else { d };
                one(Op::IncrBy(key(&mut args), delta))
            }
        },
        "append" => {
            let val = args.pop().expect("arity checked");
            one(Op::Append(key(&mut args), val))
        }
        "set" => match set_options(&args) {
            Err(e) => Plan::Ready(e),
            Ok((ttl, cond, get)) => {
                args.truncate(3);
                let val = args.pop().expect("arity checked");
                one(Op::Set {
                    key: key(&mut args),
                    val,
                    ttl,
                    cond,
                    get,
                })
            }
        },
        "expire" => match expire_options(&args) {
            Err(e) => Plan::Ready(e),
            Ok((in_ms, cond)) => one(Op::Expire(key(&mut args), in_ms, cond)),
        },
        _ => Plan::Ready(unknown_command(&args)),
    }
}

/// A command over several keys: one operation per shard that owns some of them.
pub(super) fn plan_multi_key(
    front: &Front,
    batch: &mut Batch,
    name: &str,
    mut args: Vec<Vec<u8>>,
) -> Plan {
    match name {
        "del" | "exists" => {
            let del = name == "del";
            let slots = by_shard(front, args.split_off(1))
                .into_iter()
                .map(|(shard, _, keys)| {
                    batch.add(shard, if del { Op::Del(keys) } else { Op::Exists(keys) })
                })
                .collect();
            Plan::Sum(slots)
        }
        "mget" => {
            let keys = args.split_off(1);
            let len = keys.len();
            let parts = by_shard(front, keys)
                .into_iter()
                .map(|(shard, positions, keys)| (positions, batch.add(shard, Op::MGet(keys))))
                .collect();
            Plan::Gather(len, parts)
        }
        _ => plan_mset(front, batch, args),
    }
}

/// `MSET`: the pairs grouped by shard, every shard answering `OK`.
pub(super) fn plan_mset(front: &Front, batch: &mut Batch, mut args: Vec<Vec<u8>>) -> Plan {
    if !(args.len() - 1).is_multiple_of(2) {
        return Plan::Ready(Resp::err("wrong number of arguments for 'mset' command"));
    }
    let mut pairs: Vec<(usize, Pairs)> = Vec::new();
    let mut rest = args.split_off(1).into_iter();
    while let (Some(k), Some(v)) = (rest.next(), rest.next()) {
        let shard = front.shard_of(&k);
        match pairs.iter_mut().find(|p| p.0 == shard) {
            Some(p) => p.1.push((k, v)),
            None => pairs.push((shard, vec![(k, v)])),
        }
    }
    Plan::AllOk(
        pairs
            .into_iter()
            .map(|(shard, kvs)| batch.add(shard, Op::MSet(kvs)))
            .collect(),
    )
}

/// A command every shard answers part of (`DBSIZE`, `FLUSHALL`, `INFO`).
pub(super) fn plan_every_shard(batch: &mut Batch, name: &str, args: &[Vec<u8>]) -> Plan {
    match name {
        "dbsize" => Plan::Sum(batch.add_to_every_shard(|| Op::DbSize)),
        "flushall" => match args.get(1).map(|a| a.to_ascii_lowercase()) {
            Some(opt) if opt != b"async" && opt != b"sync" || args.len() > 2 => {
                Plan::Ready(Resp::err("syntax error"))
            }
            _ => Plan::AllOk(batch.add_to_every_shard(|| Op::FlushAll)),
        },
        _ => Plan::Info(batch.add_to_every_shard(|| Op::Stats)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    pub(super) fn command_count_counts_the_commands_served() {
        for name in super::COMMANDS {
            assert!(
                super::arity(name).is_some(),
                "{name} is counted but not served"
            );
        }
        let served = [
            "ping", "get", "incrby", "set", "del", "dbsize", "info", "flushall",
        ];
        for name in served {
            assert!(
                super::COMMANDS.contains(&name),
                "{name} is served but not counted"
            );
        }
    }
}
