//! The server process under resource pressure: out of file descriptors it does not spin, and a
//! client that never reads its replies cannot make it buffer them all.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The kv-server binary on a free port, in its own process (so its limits and memory are its
/// own), killed on drop.
struct Process {
    child: Child,
    port: u16,
    /// Kept open: the server must not meet a closed pipe if it prints again.
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Process {
    fn start(ulimit_files: Option<u32>) -> Self {
        let exe = env!("CARGO_BIN_EXE_kv-server");
        let limit = ulimit_files.map_or(String::new(), |n| format!("ulimit -n {n} && "));
        // Port 0: the server picks a free port and prints it, so two servers started side by
        // side can never race for one.
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(format!("{limit}exec '{exe}' --addr 127.0.0.1:0 --shards 1"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("bash runs the server");
        let mut first = String::new();
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
        std::io::BufRead::read_line(&mut stdout, &mut first)
            .expect("the server prints its address");
        let port = first
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no address in {first:?}"));
        Self {
            child,
            port,
            _stdout: stdout,
        }
    }

    /// The process's CPU time so far (user + system).
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat.rsplit(") ").next().unwrap().split(' ').collect();
        // Fields 14 and 15 (utime, stime), counted from 3 after the command name.
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
    }

    /// The process's resident memory.
    fn rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib / 1024
    }

    fn connect(&self) -> TcpStream {
        TcpStream::connect(("127.0.0.1", self.port)).unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[test]
fn out_of_file_descriptors_the_accept_loop_backs_off() {
    // Room to start (the server's runtimes take a few dozen descriptors, and a process started
    // while other tests run may inherit a few more), not for every client.
    let server = Process::start(Some(128));
    // More clients than descriptors: the extra ones wait in the backlog.
    let clients: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", server.port)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = server.cpu();
    std::thread::sleep(Duration::from_secs(1));
    let spent = server.cpu() - before;
    assert!(
        spent < Duration::from_millis(300),
        "the server spent {spent:?} of CPU in one idle second at its descriptor limit"
    );
    drop(clients);
    // Once descriptors are free again it serves.
    let mut c = server.connect();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(&resp(&[b"PING"])).unwrap();
    let mut got = [0u8; 7];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"+PONG\r\n");
}

#[test]
fn a_client_that_never_reads_cannot_make_the_server_buffer_its_replies() {
    let server = Process::start(None);
    let mut c = server.connect();
    let value = vec![b'v'; 100 * 1024];
    c.write_all(&resp(&[b"SET", b"big", &value])).unwrap();
    let mut ok = [0u8; 5];
    c.read_exact(&mut ok).unwrap();
    let base = server.rss_mib();
    // 10,000 GETs of a 100 KiB value: 1 GB of replies, never read.
    let get = resp(&[b"GET", b"big"]);
    let pipeline: Vec<u8> = get
        .iter()
        .copied()
        .cycle()
        .take(get.len() * 10_000)
        .collect();
    c.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = c.write_all(&pipeline); // may block once the server stops reading: that is the point
    std::thread::sleep(Duration::from_millis(1500));
    let grown = server.rss_mib().saturating_sub(base);
    eprintln!("grew by {grown} MiB");
    assert!(
        grown < 100,
        "the server grew by {grown} MiB for a client that reads nothing"
    );
}

#[test]
fn a_bad_flag_is_named_in_the_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_kv-server"))
        .args(["--shards", "abc"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "kv-server: --shards: invalid digit found in string"
    );
}
