//! The server driven by a real client (the `redis` crate), by raw bytes, and side by side with a
//! real redis-server (byte-for-byte) and redis-cli when they are installed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corelane_kv::{Config, Server};
use redis::Commands;

fn start(max_bulk: usize) -> Server {
    Server::start(Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        shards: 2,
        max_bulk,
        ..Config::default()
    })
    .expect("server starts")
}

fn client(server: &Server) -> redis::Connection {
    redis::Client::open(format!("redis://{}/", server.local_addr()))
        .unwrap()
        .get_connection()
        .unwrap()
}

/// Sends `request` and returns every byte the server answers within `settle` of the last one.
fn raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    out
}

fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct RedisServer(Child, u16);

impl RedisServer {
    fn start() -> Option<Self> {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self(child, port))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn replies_are_byte_for_byte_those_of_redis_server() {
    let Some(redis) = RedisServer::start() else {
        eprintln!(
            "redis-server is not installed: byte-for-byte comparison not run (.ci/run installs it)"
        );
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
    // Protocol errors, each on its own connection.
    for bad in [&b"*1\r\n:3\r\n"[..], b"*x\r\n", b"*1\r\n$-5\r\n"] {
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
