//! What the kv-server test files share: starting our server and a real redis-server, and
//! talking raw RESP to either.
#![allow(dead_code)] // each test file uses its own part

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corelane_kv::{Config, Server};

pub fn start(max_bulk: usize) -> Server {
    Server::start(Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        shards: 2,
        max_bulk,
        ..Config::default()
    })
    .expect("server starts")
}

/// Sends `request` and returns every byte the server answers until it closes or is silent for
/// 300 ms.
pub fn raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    raw_settling(addr, request, Duration::from_millis(300))
}

/// As [`raw`], waiting for `settle` of silence.
pub fn raw_settling(addr: SocketAddr, request: &[u8], settle: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request).unwrap();
    s.set_read_timeout(Some(settle)).unwrap();
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

pub fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct RedisServer(Child, pub u16);

impl RedisServer {
    /// A redis-server on a free loopback port; `None` if it is not installed, except under CI
    /// (`CI` set), where that fails the test: `.ci/run` installs it.
    pub fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is not installed (.ci/run installs it with apt-get)"
            );
            eprintln!("redis-server is not installed: comparison not run (.ci/run installs it)");
            return None;
        }
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
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
