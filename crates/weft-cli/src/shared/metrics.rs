//! `--metrics ADDR`: a small HTTP endpoint serving the process's metrics in the Prometheus
//! text format at `/metrics` (OpenMetrics); anything else gets 404, a malformed request 400.

use super::Fail;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The largest request head read.
const MAX_REQUEST: usize = 8 << 10;

/// Binds `addr` (clear error if it cannot) and serves `/metrics` there in the background.
pub(crate) async fn serve(addr: SocketAddr) -> Result<SocketAddr, Fail> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Fail::Input(format!("--metrics {addr}: cannot listen there: {e}")))?;
    let bound = listener.local_addr().unwrap_or(addr);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
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
