//! Random and mutated RESP fed to kv-server and to a real redis-server side by side: every reply
//! byte must match. Requests are built from the commands kv-server supports (and names no
//! server knows), encoded as arrays or inline commands with quotes, then mutated (bytes replaced,
//! inserted, cut). A case whose mutation produced a command redis has and kv-server does not is
//! skipped (the README lists what kv-server does not support).
//!
//! `CORELANE_FUZZ_CASES=N` sets the number of cases (default 300), `CORELANE_FUZZ_SEED=S` the
//! seed; a failure prints both and the request.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{raw_settling, start, RedisServer};
use corelane_kv::resp::{Parsed, Parser};

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len())]
    }
}

const COMMANDS: &[&str] = &[
    "GET", "SET", "DEL", "EXISTS", "INCR", "DECR", "INCRBY", "DECRBY", "APPEND", "STRLEN", "MGET",
    "MSET", "EXPIRE", "TTL", "ECHO", "PING", "DBSIZE", "set", "Get", "NOPE", "XYZZY",
];
const KEYS: &[&str] = &["k1", "k2", "n", "s", "big"];
const VALUES: &[&str] = &[
    "1",
    "-1",
    "0",
    "42",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "abc",
    "",
    "a\r\nb",
    "01",
    "+1",
    " 1",
    "1.5",
    "a b",
    "q\"uo'te",
];
const OPTIONS: &[&str] = &[
    "NX", "XX", "GET", "EX", "PX", "KEEPTTL", "GT", "LT", "nx", "ex", "px", "100", "200000", "-5",
    "0", "abc", "FOO",
];

/// A request of one to three commands, as RESP arrays or inline lines.
fn request(r: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1 + r.below(3) {
        let mut args = vec![r.pick(COMMANDS).to_string()];
        for i in 0..r.below(6) {
            args.push(match (i, r.below(3)) {
                (0, _) | (_, 0) => r.pick(KEYS).to_string(),
                (_, 1) => r.pick(VALUES).to_string(),
                _ => r.pick(OPTIONS).to_string(),
            });
        }
        if r.below(10) < 7 {
            out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in &args {
                out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
            }
        } else {
            out.extend(inline(r, &args));
        }
    }
    out
}

/// An inline line: each argument plain, double- or single-quoted (escaping as needed).
fn inline(r: &mut Rng, args: &[String]) -> Vec<u8> {
    let mut line = Vec::new();
    for a in args {
        match r.below(3) {
            0 => line.extend_from_slice(a.as_bytes()),
            1 => {
                line.push(b'"');
                for &b in a.as_bytes() {
                    match b {
                        b'\r' => line.extend_from_slice(b"\\r"),
                        b'\n' => line.extend_from_slice(b"\\n"),
                        b'"' | b'\\' => line.extend_from_slice(&[b'\\', b]),
                        _ => line.push(b),
                    }
                }
                line.push(b'"');
            }
            _ => {
                line.push(b'\'');
                line.extend_from_slice(a.replace('\'', "\\'").as_bytes());
                line.push(b'\'');
            }
        }
        line.push(b' ');
    }
    line.extend_from_slice(b"\r\n");
    line
}

/// Replaces, inserts or cuts a few bytes.
fn mutate(r: &mut Rng, req: &mut Vec<u8>) {
    const BYTES: &[u8] = b"\r\n\"'\\$*0-+ 9\x00\xff";
    for _ in 0..1 + r.below(3) {
        if req.is_empty() {
            return;
        }
        let at = r.below(req.len());
        match r.below(4) {
            0 => req[at] = BYTES[r.below(BYTES.len())],
            1 => req.insert(at, BYTES[r.below(BYTES.len())]),
            2 => req.truncate(at),
            _ => {
                req.remove(at);
            }
        }
    }
}

/// The names of the commands our parser finds in `req` (lower case).
fn names(req: &[u8]) -> Vec<String> {
    let mut parser = Parser::new(512 * 1024 * 1024);
    let (mut pos, mut out) = (0, Vec::new());
    loop {
        let (parsed, used) = parser.parse(&req[pos..]);
        pos += used;
        match parsed {
            Parsed::Command(args) => {
                out.push(String::from_utf8_lossy(&args[0]).to_ascii_lowercase());
            }
            Parsed::Incomplete if used > 0 => {}
            _ => return out,
        }
    }
}

/// Whether redis knows `name` as a command (`COMMAND INFO`), cached.
fn redis_knows(redis: SocketAddr, known: &mut HashMap<String, bool>, name: &str) -> bool {
    if let Some(&k) = known.get(name) {
        return k;
    }
    let mut req = format!("*3\r\n$7\r\nCOMMAND\r\n$4\r\nINFO\r\n${}\r\n", name.len()).into_bytes();
    req.extend_from_slice(name.as_bytes());
    req.extend_from_slice(b"\r\n");
    let reply = raw_settling(redis, &req, Duration::from_millis(200));
    let k = !reply.starts_with(b"*1\r\n*-1") && !reply.starts_with(b"*1\r\n$-1");
    known.insert(name.to_string(), k);
    k
}

#[test]
fn random_and_mutated_requests_get_the_bytes_redis_sends() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let ours = start(512 * 1024 * 1024);
    let redis_addr = SocketAddr::from(([127, 0, 0, 1], redis.1));
    let cases: usize = std::env::var("CORELANE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("CORELANE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED);
    let mut r = Rng(seed);
    let mut known = HashMap::new();
    let supported: Vec<String> = COMMANDS.iter().map(|c| c.to_ascii_lowercase()).collect();
    let (mut compared, mut skipped) = (0, 0);
    for case in 0..cases {
        let mut req = request(&mut r);
        if r.below(2) == 0 {
            mutate(&mut r, &mut req);
        }
        let foreign = names(&req)
            .iter()
            .any(|n| !supported.contains(n) && redis_knows(redis_addr, &mut known, n));
        if foreign {
            skipped += 1;
            continue;
        }
        let settle = Duration::from_millis(40);
        let (theirs, mine) = std::thread::scope(|s| {
            let theirs = s.spawn(|| raw_settling(redis_addr, &req, settle));
            let mine = raw_settling(ours.local_addr(), &req, settle);
            (theirs.join().unwrap(), mine)
        });
        assert_eq!(
            String::from_utf8_lossy(&mine),
            String::from_utf8_lossy(&theirs),
            "seed {seed}, case {case}: request {:?}",
            String::from_utf8_lossy(&req)
        );
        compared += 1;
    }
    eprintln!("fuzz: {compared} cases identical, {skipped} skipped (commands kv-server lacks)");
    assert!(compared > cases / 2, "too few cases compared: {compared}");
}
