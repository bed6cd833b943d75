//! The server driven by a real client (the `redis` crate), by raw bytes, and side by side with a
//! real redis-server (byte-for-byte) and redis-cli when they are installed.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{raw, resp, start, RedisServer};
use corelane_kv::Server;
use redis::Commands;

fn client(server: &Server) -> redis::Connection {
    redis::Client::open(format!("redis://{}/", server.local_addr()))
        .unwrap()
        .get_connection()
        .unwrap()
}

#[test]
fn every_command_through_a_real_client() {
    let server = start(1 << 20);
    let mut c = client(&server);
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    assert_eq!(redis::cmd("PING").query::<String>(&mut c).unwrap(), "PONG");
    assert_eq!(
        redis::cmd("ECHO")
            .arg("hi")
            .query::<String>(&mut c)
            .unwrap(),
        "hi"
    );
    let _: () = c.set("k", "v").unwrap();
    assert_eq!(c.get::<_, String>("k").unwrap(), "v");
    assert_eq!(
        redis::cmd("SET")
            .arg("k")
            .arg("w")
            .arg("NX")
            .query::<Option<String>>(&mut c)
            .unwrap(),
        None
    );
    assert_eq!(
        redis::cmd("SET")
            .arg("k")
            .arg("w")
            .arg("XX")
            .query::<Option<String>>(&mut c)
            .unwrap(),
        Some("OK".into())
    );
    assert_eq!(
        redis::cmd("SET")
            .arg("n")
            .arg("w")
            .arg("XX")
            .query::<Option<String>>(&mut c)
            .unwrap(),
        None
    );
    let _: () = redis::cmd("SET")
        .arg("e")
        .arg("1")
        .arg("EX")
        .arg(100)
        .query(&mut c)
        .unwrap();
    assert!((99..=100).contains(&c.ttl::<_, i64>("e").unwrap()));
    let _: () = redis::cmd("SET")
        .arg("p")
        .arg("1")
        .arg("PX")
        .arg(50)
        .query(&mut c)
        .unwrap();
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(c.get::<_, Option<String>>("p").unwrap(), None, "PX expired");
    assert_eq!(c.incr::<_, _, i64>("i", 1).unwrap(), 1);
    assert_eq!(
        redis::cmd("INCRBY")
            .arg("i")
            .arg(41)
            .query::<i64>(&mut c)
            .unwrap(),
        42
    );
    assert_eq!(
        redis::cmd("DECR").arg("i").query::<i64>(&mut c).unwrap(),
        41
    );
    assert_eq!(c.append::<_, _, i64>("s", "ab").unwrap(), 2);
    assert_eq!(c.append::<_, _, i64>("s", "cd").unwrap(), 4);
    assert_eq!(
        redis::cmd("STRLEN").arg("s").query::<i64>(&mut c).unwrap(),
        4
    );
    let _: () = redis::cmd("MSET")
        .arg(&["m1", "1", "m2", "2", "m3", "3"])
        .query(&mut c)
        .unwrap();
    let got: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&["m3", "nope", "m1", "m2"])
        .query(&mut c)
        .unwrap();
    assert_eq!(
        got,
        [Some("3".into()), None, Some("1".into()), Some("2".into())],
        "MGET keeps the order"
    );
    assert_eq!(
        redis::cmd("EXISTS")
            .arg(&["m1", "m1", "nope", "m2"])
            .query::<i64>(&mut c)
            .unwrap(),
        3
    );
    assert_eq!(
        redis::cmd("DEL")
            .arg(&["m1", "m2", "nope"])
            .query::<i64>(&mut c)
            .unwrap(),
        2
    );
    assert_eq!(
        redis::cmd("EXPIRE")
            .arg("s")
            .arg(50)
            .query::<i64>(&mut c)
            .unwrap(),
        1
    );
    assert_eq!(
        redis::cmd("EXPIRE")
            .arg("nope")
            .arg(50)
            .query::<i64>(&mut c)
            .unwrap(),
        0
    );
    assert_eq!(c.ttl::<_, i64>("k").unwrap(), -1);
    assert_eq!(c.ttl::<_, i64>("nope").unwrap(), -2);
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 5); // k e i s m3
    let info: String = redis::cmd("INFO").query(&mut c).unwrap();
    assert!(
        info.contains("db0:keys=") && info.contains("shard0:") && info.contains("shard1:"),
        "{info}"
    );
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(), 0);
    assert_eq!(redis::cmd("QUIT").query::<String>(&mut c).unwrap(), "OK");
    let report = server.shutdown().unwrap();
    assert!(report.is_clean());
}

#[test]
fn pipelines_are_answered_in_order() {
    let server = start(1 << 20);
    let mut c = client(&server);
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("SET").arg(format!("key{i}")).arg(i).ignore();
        pipe.cmd("INCR").arg(format!("key{i}"));
    }
    let replies: Vec<i64> = pipe.query(&mut c).unwrap();
    assert_eq!(replies, (1..=500).collect::<Vec<i64>>());
    let keys: Vec<String> = (0..500).map(|i| format!("key{i}")).collect();
    let vals: Vec<i64> = redis::cmd("MGET").arg(&keys).query(&mut c).unwrap();
    assert_eq!(vals, (1..=500).collect::<Vec<i64>>());
}

#[test]
fn fifty_concurrent_connections() {
    let server = start(1 << 20);
    let url = format!("redis://{}/", server.local_addr());
    let handles: Vec<_> = (0..50)
        .map(|t| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                for i in 0..200 {
                    let _: i64 = c.incr("shared", 1).unwrap();
                    // Every connection's answers are its own, in order, although connections
                    // that read in the same tick share one message per shard.
                    let key = format!("t{t}:{i}");
                    let (own, got, both): (i64, i64, Vec<Option<i64>>) = redis::pipe()
                        .set(&key, i)
                        .ignore()
                        .incr(format!("own{t}"), 1)
                        .get(&key)
                        .mget(&[key.clone(), format!("t{t}:{}", i + 1)])
                        .query(&mut c)
                        .unwrap();
                    assert_eq!((own, got, both), (i + 1, i, vec![Some(i), None]));
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    let mut c = client(&server);
    assert_eq!(c.get::<_, i64>("shared").unwrap(), 50 * 200);
    assert_eq!(
        redis::cmd("DBSIZE").query::<i64>(&mut c).unwrap(),
        1 + 50 + 50 * 200
    );
}

/// The messages every shard handled so far, from `INFO`'s per-shard lines.
fn shard_messages(c: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").query(c).unwrap();
    info.lines()
        .filter(|l| l.starts_with("shard"))
        .filter_map(|l| {
            l.split("processed=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[test]
fn a_connection_whose_keys_live_on_another_shard_moves_there_mid_stream() {
    let server = start(1 << 20);
    let mut info = client(&server);
    // Two connections (one per shard, round robin) working on one key: one of them is served by
    // the shard that does not own it, and moves. Each round ends with half a command, which the
    // next round completes: bytes read but not parsed move along with the socket.
    let mut conns: Vec<TcpStream> = (0..2)
        .map(|_| {
            let s = TcpStream::connect(server.local_addr()).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    let incr = resp(&["INCR", "hot"]);
    let (head, tail) = incr.split_at(7);
    for c in &mut conns {
        c.write_all(head).unwrap();
    }
    let before = shard_messages(&mut info);
    let mut expected = 0;
    for _round in 0..30 {
        for c in &mut conns {
            let mut request = tail.to_vec();
            request.extend(resp(&["INCR", "hot"]));
            request.extend_from_slice(head);
            c.write_all(&request).unwrap();
            expected += 2;
            let want = format!(":{}\r\n:{expected}\r\n", expected - 1);
            let mut got = vec![0u8; want.len()];
            c.read_exact(&mut got).unwrap();
            assert_eq!(String::from_utf8_lossy(&got), want);
        }
    }
    // Without the move, the remote connection's 30 reads would each be a message to the owner;
    // with it, only the first few are (and INFO's own queries).
    let messages = shard_messages(&mut info) - before;
    assert!(messages < 12, "{messages} shard messages for 60 reads");
    let mut c = client(&server);
    assert_eq!(c.get::<_, i64>("hot").unwrap(), expected);
}

#[test]
fn errors_match_redis_and_the_connection_survives_where_redis_keeps_it() {
    let server = start(64);
    let addr = server.local_addr();
    let cases: &[(&[&str], &str)] = &[
        (
            &["FOO", "a", "b"],
            "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n",
        ),
        (
            &["GET"],
            "-ERR wrong number of arguments for 'get' command\r\n",
        ),
        (
            &["SET", "k", "v", "EX", "0"],
            "-ERR invalid expire time in 'set' command\r\n",
        ),
        (
            &["SET", "k", "v", "EX", "x"],
            "-ERR value is not an integer or out of range\r\n",
        ),
        (&["SET", "k", "v", "NX", "XX"], "-ERR syntax error\r\n"),
        (
            &["INCRBY", "k", "1.5"],
            "-ERR value is not an integer or out of range\r\n",
        ),
        (
            &["MSET", "a", "1", "b"],
            "-ERR wrong number of arguments for 'mset' command\r\n",
        ),
    ];
    for (args, want) in cases {
        // The connection stays usable: the error, then a PONG on the same connection.
        let mut req = resp(args);
        req.extend_from_slice(&resp(&["PING"]));
        let got = raw(addr, &req);
        assert_eq!(
            String::from_utf8_lossy(&got),
            format!("{want}+PONG\r\n"),
            "{args:?}"
        );
    }
    let mut c = client(&server);
    let _: () = c.set("text", "abc").unwrap();
    let e = c.incr::<_, _, i64>("text", 1).unwrap_err();
    assert_eq!(e.detail(), Some("value is not an integer or out of range"));
    // Protocol errors: reply, then close (as redis does).
    assert_eq!(
        raw(addr, b"*1\r\n:3\r\n*1\r\n$4\r\nPING\r\n"),
        b"-ERR Protocol error: expected '$', got ':'\r\n"
    );
    assert_eq!(
        raw(addr, b"*1\r\n$999\r\n"),
        b"-ERR Protocol error: invalid bulk length\r\n",
        "over the 64-byte limit"
    );
    assert_eq!(
        raw(addr, b"*x\r\n"),
        b"-ERR Protocol error: invalid multibulk length\r\n"
    );
    // Inline commands work too.
    assert_eq!(raw(addr, b"PING\r\n"), b"+PONG\r\n");
}

#[test]
fn a_client_that_leaves_mid_request_leaks_nothing() {
    let server = start(1 << 20);
    for _ in 0..20 {
        let mut s = TcpStream::connect(server.local_addr()).unwrap();
        s.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\nhal")
            .unwrap();
        drop(s);
    }
    let mut c = client(&server);
    assert_eq!(
        c.get::<_, Option<String>>("k").unwrap(),
        None,
        "the half request did nothing"
    );
    let report = server.shutdown().unwrap();
    assert!(
        report.is_clean(),
        "every accepted request was handled and nothing is left queued"
    );
}

#[test]
fn replies_are_byte_for_byte_those_of_redis_server() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let ours = start(512 * 1024 * 1024);
    let script: &[&[&str]] = &[
        &["FLUSHALL"],
        &["PING"],
        &["PING", "hello"],
        &["ECHO", "x y"],
        &["SET", "a", "1"],
        &["GET", "a"],
        &["GET", "missing"],
        &["SET", "a", "2", "NX"],
        &["SET", "b", "2", "XX"],
        &["SET", "a", "3", "XX"],
        &["SET", "t", "v", "EX", "100"],
        &["TTL", "t"],
        &["SET", "t2", "v", "PX", "100000"],
        &["TTL", "t2"],
        &["TTL", "a"],
        &["TTL", "missing"],
        &["INCR", "a"],
        &["INCRBY", "a", "-10"],
        &["DECR", "a"],
        &["INCR", "new"],
        &["SET", "s", "abc"],
        &["INCR", "s"],
        &["APPEND", "s", "def"],
        &["APPEND", "n2", "x"],
        &["STRLEN", "s"],
        &["STRLEN", "missing"],
        &["MSET", "k1", "v1", "k2", "v2", "k3", "v3"],
        &["MGET", "k1", "missing", "k3", "k2"],
        &["EXISTS", "k1", "k1", "missing"],
        &["DEL", "k1", "k2", "missing"],
        &["EXPIRE", "k3", "100"],
        &["TTL", "k3"],
        &["EXPIRE", "missing", "5"],
        &["EXPIRE", "k3", "-1"],
        &["GET", "k3"],
        &["DBSIZE"],
        &["SET", "big", "9223372036854775807"],
        &["INCR", "big"],
        &["INCRBY", "a", "x"],
        &["SET", "k", "v", "EX", "0"],
        &["SET", "k", "v", "EX", "abc"],
        &["SET", "k", "v", "NX", "XX"],
        &["SET", "k", "v", "BOGUS"],
        &["SET", "k"],
        &["GET"],
        &["MSET", "a"],
        &["MSET", "a", "1", "b"],
        &["NOSUCH", "a", "b"],
        &["nosuch"],
        &["set", "lower", "case"],
        &["get", "lower"],
        // A reply that a client could read as two (CR and LF in error text).
        &["FOO", "a\r\n+OK"],
        &["SET", "x", "1"],
        &["EXPIRE", "x", "10", "a\r\n+OK"],
        // Expiry overflow: redis' rules, no wrapped TTL.
        &["SET", "x", "v", "PX", "9223372036854775807"],
        &["SET", "x", "v", "EX", "9223372036854775"],
        &["SET", "x", "v", "EX", "9223372036854775807"],
        &["EXPIRE", "x", "9223372036854775"],
        &["EXPIRE", "x", "9223372036854775807"],
        &["EXPIRE", "x", "-9223372036854775808"],
        &["TTL", "x"],
        // SET options.
        &["SET", "o", "1", "EX", "100", "EX", "200"],
        &["TTL", "o"],
        &["SET", "o", "2", "KEEPTTL"],
        &["TTL", "o"],
        &["SET", "o", "3", "KEEPTTL", "GET"],
        &["SET", "o", "4", "GET"],
        &["TTL", "o"],
        &["SET", "o", "5", "NX", "GET"],
        &["SET", "none", "5", "XX", "GET"],
        &["SET", "none", "6", "NX", "GET"],
        &["SET", "o", "v", "KEEPTTL", "EX", "5"],
        &["SET", "o", "v", "EX", "5", "KEEPTTL"],
        &["SET", "o", "v", "EX", "5", "PX", "5"],
        &["SET", "o", "v", "EX", "abc", "NX", "XX"],
        &["SET", "o", "v", "EX"],
        &["SET", "o", "v", "nx", "get", "px", "100000"],
        // EXPIRE options.
        &["SET", "e1", "v"],
        &["EXPIRE", "e1", "100", "XX"],
        &["EXPIRE", "e1", "100", "GT"],
        &["EXPIRE", "e1", "100", "LT"],
        &["TTL", "e1"],
        &["EXPIRE", "e1", "200", "NX"],
        &["EXPIRE", "e1", "50", "GT"],
        &["EXPIRE", "e1", "300", "GT"],
        &["EXPIRE", "e1", "400", "XX", "LT"],
        &["EXPIRE", "e1", "40", "XX", "LT"],
        &["TTL", "e1"],
        &["EXPIRE", "e1", "10", "NX", "XX"],
        &["EXPIRE", "e1", "10", "GT", "LT"],
        &["EXPIRE", "e1", "abc", "FOO"],
        &["EXPIRE", "e1", "-5", "GT"],
        &["EXPIRE", "e1", "-5", "LT"],
        &["EXISTS", "e1"],
        &["EXPIRE", "missing", "10", "LT"],
        // The unknown-command argument cut.
        &[
            "NOPE",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            "c",
        ],
        &["COMMAND", "NOPE"],
        &["COMMAND", "COUNT", "x"],
        &["FLUSHALL"],
        &["DBSIZE"],
        &["QUIT"],
    ];
    let mut request = Vec::new();
    for cmd in script {
        request.extend_from_slice(&resp(cmd));
    }
    let theirs = raw(SocketAddr::from(([127, 0, 0, 1], redis.1)), &request);
    let mine = raw(ours.local_addr(), &request);
    assert_eq!(
        String::from_utf8_lossy(&mine),
        String::from_utf8_lossy(&theirs)
    );
    // Protocol edge cases, each on its own connection.
    for bad in [
        &b"*1\r\n:3\r\n"[..],
        b"*x\r\n",
        b"*1\r\n$-5\r\n",
        b"*+1\r\n$4\r\nPING\r\n",
        b"*01\r\n$4\r\nPING\r\n",
        b"*1\r\n$04\r\nPING\r\n",
        b"*1\r\n$+4\r\nPING\r\n",
        b"*2000000\r\n$4\r\nPING\r\n",
        b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n",
        b"SET \"a b\" 'c d'\r\nGET \"a b\"\r\nECHO \"\\x41\\n\\q\"\r\n",
        b"SET \"a b\r\nPING\r\n",
        b"ECHO \"a\"b\r\n",
        b"ECHO 'it\\'s'\r\n",
        b"   \r\n\r\nPING\r\n",
        b"\xff\xfe x\r\n",
        b"*2\r\n$3\r\nF\x00O\r\n$2\r\n\xff\r\r\n",
        b"*1\r\n$4\r\nPING\rX",
        b"*1\r\n:3",
    ] {
        let theirs = raw(SocketAddr::from(([127, 0, 0, 1], redis.1)), bad);
        let mine = raw(ours.local_addr(), bad);
        assert_eq!(
            String::from_utf8_lossy(&mine),
            String::from_utf8_lossy(&theirs),
            "{bad:?}"
        );
    }
}

#[test]
fn redis_cli_talks_to_it() {
    if Command::new("redis-cli").arg("--version").output().is_err() {
        eprintln!("redis-cli is not installed: test not run (.ci/run installs it)");
        return;
    }
    let server = start(1 << 20);
    let port = server.local_addr().port().to_string();
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", &port])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["PING"]), "PONG");
    assert_eq!(cli(&["SET", "greeting", "hello"]), "OK");
    assert_eq!(cli(&["GET", "greeting"]), "hello");
    assert_eq!(cli(&["INCR", "hits"]), "1");
    assert_eq!(cli(&["MGET", "greeting", "nope", "hits"]), "hello\n\n1");
    assert_eq!(cli(&["DBSIZE"]), "2");
    assert!(cli(&["INFO"]).contains("db0:keys=2"));
}

/// `GET` on the metrics address: the status line and the body.
fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: kv\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[test]
fn the_metrics_address_serves_the_shards_counters_to_prometheus() {
    let server = Server::start(corelane_kv::Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        shards: 2,
        pin: false,
        metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..corelane_kv::Config::default()
    })
    .unwrap();
    let mut c = client(&server);
    for i in 0..20 {
        let _: () = c.set(format!("key-{i}"), i).unwrap();
    }
    let metrics = server.metrics_addr().unwrap();
    let (status, body) = http_get(metrics, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        body.contains("# TYPE corelane_processed_total counter"),
        "{body}"
    );
    assert_eq!(body.matches("corelane_queued{worker=").count(), 2, "{body}");
    assert_eq!(http_get(metrics, "/other").0, "HTTP/1.1 404 Not Found");
    drop(c);
    server.shutdown().unwrap();
}
