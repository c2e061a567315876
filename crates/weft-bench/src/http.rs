//! The HTTP API's read path on SQLite: `GET /api/plans/{id}` answered per second by the
//! server in this process, on a loopback port, to clients holding keep-alive connections.

use crate::support::{Backend, Scratch};
use crate::{Error, Figure};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_model::flow::FlowBuilder;

/// How many connections ask at once.
const CLIENTS: usize = 16;
/// How long each run asks.
const RUN: Duration = Duration::from_secs(3);

/// Requests per second for a 10-step plan's page of JSON.
pub(crate) async fn plan_reads(repeat: u32) -> Result<Figure, Error> {
    let scratch = Scratch::new(Backend::Sqlite)?;
    let store = scratch.store.clone();
    let flow = crate::support::noop_flow(FlowBuilder::linear("bench"), 10);
    let new = weft_store::NewPlan::new(flow, BTreeMap::new());
    let id = new.id;
    store.create_plan(new).await?;
    let api = weft_server::api::Api::new(
        store,
        None,
        BTreeMap::new(),
        std::env::temp_dir(),
        "bench".into(),
    );
    let guard =
        weft_server::auth::Guard::new(([127, 0, 0, 1], 0).into(), None).map_err(Error::Failed)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::Failed(format!("cannot listen: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Failed(e.to_string()))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(weft_server::serve(
        listener,
        None,
        weft_server::router(api, guard),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let request = format!(
        "GET /api/plans/{id} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
        addr.port()
    );
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            let (done, stop, request) = (done.clone(), stop.clone(), request.clone());
            clients.push(tokio::spawn(async move {
                client(addr, &request, &done, &stop).await
            }));
        }
        let start = Instant::now();
        tokio::time::sleep(RUN).await;
        stop.store(true, Ordering::SeqCst);
        let took = start.elapsed();
        for c in clients {
            c.await
                .map_err(|e| Error::Failed(e.to_string()))?
                .map_err(Error::Failed)?;
        }
        samples.push(done.load(Ordering::SeqCst) as f64 / took.as_secs_f64());
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    Ok(Figure {
        name: "api-plan",
        unit: "requests/s",
        samples,
        target: 10_000.0,
        higher_is_better: true,
    })
}

/// Asks on one keep-alive connection until told to stop; every answer must be a 200.
async fn client(
    addr: std::net::SocketAddr,
    request: &str,
    done: &AtomicU64,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    conn.set_nodelay(true).map_err(|e| e.to_string())?;
    // Answers are read into one buffer, headers found without copying: the client shares
    // the machine's two cores with the server, so it must cost little.
    let mut buf = vec![0u8; 64 << 10];
    while !stop.load(Ordering::Relaxed) {
        conn.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut filled = 0;
        let (head_end, length) = loop {
            let n = conn
                .read(&mut buf[filled..])
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            filled += n;
            if let Some(end) = find(&buf[..filled], b"\r\n\r\n") {
                let head = &buf[..end];
                if !head.starts_with(b"HTTP/1.1 200") {
                    return Err(format!("not a 200: {}", String::from_utf8_lossy(head)));
                }
                let length = content_length(head).ok_or("no content-length")?;
                break (end + 4, length);
            }
        };
        let total = head_end + length;
        if total > buf.len() {
            return Err(format!(
                "an answer of {total} bytes is larger than expected"
            ));
        }
        while filled < total {
            let n = conn
                .read(&mut buf[filled..])
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the server closed the connection mid-answer".into());
            }
            filled += n;
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> Option<usize> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let (name, value) = line.split_at(line.iter().position(|&b| b == b':')?);
        if !name.eq_ignore_ascii_case(b"content-length") {
            return None;
        }
        std::str::from_utf8(&value[1..]).ok()?.trim().parse().ok()
    })
}
