//! The shard pool's metrics over HTTP (`GET /metrics`, the Prometheus text format).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::Shard;
use corelane::Pool;

/// The most of a request that is read: its line and headers, nothing else is needed.
const MAX_REQUEST: usize = 8 * 1024;

/// Serves `GET /metrics` on `listener` until `stop`, one connection at a time.
pub(super) async fn serve(
    listener: std::net::TcpListener,
    pool: &Pool<Shard>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = TcpListener::from_std(listener).expect("a non-blocking listener");
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let _ = answer(stream, pool).await;
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, pool: &Pool<Shard>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let (status, body) = if head.starts_with(b"GET /metrics ") {
        ("200 OK", pool.metrics().to_prometheus())
    } else {
        ("404 Not Found", "only GET /metrics is served\n".to_owned())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
