//! `--metrics ADDR`: a small HTTP endpoint serving the process's metrics in the Prometheus
//! text format at `/metrics` (OpenMetrics); anything else gets 404, a malformed request 400.

use super::Fail;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The largest request head read.
const MAX_REQUEST: usize = 8 << 10;
/// How long a client may take to send its request.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Binds `addr` (clear error if it cannot) and serves `/metrics` there in the background.
pub(crate) async fn serve(addr: SocketAddr) -> Result<SocketAddr, Fail> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Fail::Input(format!("--metrics {addr}: cannot listen there: {e}")))?;
    let bound = listener.local_addr().unwrap_or(addr);
    tokio::spawn(async move {
        loop {
            let mut socket = match listener.accept().await {
                Ok((socket, _)) => socket,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!("metrics endpoint: cannot accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
                    // A client that sends nothing does not hold a task for ever.
                    match tokio::time::timeout(READ_TIMEOUT, socket.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                let line = String::from_utf8_lossy(&head);
                let mut parts = line.split_whitespace();
                let response = match (parts.next(), parts.next()) {
                    (Some("GET"), Some("/metrics")) => reply(
                        "200 OK",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        &weft_engine::metrics::encode(),
                    ),
                    (Some(_), Some(_)) => {
                        reply("404 Not Found", "text/plain", "only GET /metrics is here\n")
                    }
                    _ => reply("400 Bad Request", "text/plain", "not an HTTP request\n"),
                };
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Ok(bound)
}

fn reply(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
