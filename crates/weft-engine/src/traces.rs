//! Traces in OpenTelemetry's terms: a plan is a trace (its id is the plan's 16-byte id), the
//! plan a root span, each step attempt (and each revert) a span under it. Ids are derived from
//! the plan, step and attempt, so any process — and every command, through `TRACEPARENT` (W3C
//! trace context) — names the same span without asking anyone. With an endpoint
//! ([`install`]), finished spans are sent in batches to an OTLP/HTTP collector as JSON
//! (`POST {endpoint}/v1/traces`, OTLP's JSON encoding): no gRPC stack, nothing on the steps'
//! path but a channel send.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use weft_model::PlanId;

/// How often finished spans are sent.
const EXPORT_EVERY: Duration = Duration::from_secs(1);
/// The most spans held while the collector is slow or away; more are dropped.
const MAX_HELD: usize = 10_000;

/// A plan's trace id: its own 16 bytes.
pub fn trace_id(plan: PlanId) -> [u8; 16] {
    *plan.0.as_bytes()
}

/// The span id of a plan (`step` None) or of one run of a step.
pub fn span_id(plan: PlanId, step: Option<(u32, u32, &str)>) -> [u8; 8] {
    // SipHash with fixed keys: the same in every process.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    plan.0.as_bytes().hash(&mut h);
    step.hash(&mut h);
    let id = h.finish().max(1);
    id.to_be_bytes()
}

/// The W3C `traceparent` of one run of a step: what its command gets as `TRACEPARENT`.
pub fn traceparent(plan: PlanId, step: u32, attempt: u32, action: &str) -> String {
    format!(
        "00-{}-{}-01",
        hex(&trace_id(plan)),
        hex(&span_id(plan, Some((step, attempt, action))))
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A finished span.
struct Span {
    plan: PlanId,
    id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: String,
    start: u64,
    end: u64,
    attributes: Vec<(&'static str, Value)>,
    error: Option<String>,
}

/// The process's exporter.
pub struct Tracer {
    tx: mpsc::Sender<Span>,
    /// Plans taken up here: their flow and when.
    plans: Mutex<HashMap<PlanId, (String, u64)>>,
}

static TRACER: OnceLock<Tracer> = OnceLock::new();

/// Starts sending spans to the OTLP/HTTP collector at `endpoint` (`http://HOST:PORT`, as
/// `OTEL_EXPORTER_OTLP_ENDPOINT`), once per process; on the current runtime.
pub fn install(endpoint: &str) -> Result<(), String> {
    let rest = endpoint.strip_prefix("http://").ok_or_else(|| {
        format!("OTLP endpoint `{endpoint}` must start with http:// (OTLP/HTTP without TLS)")
    })?;
    let authority = rest.trim_end_matches('/').to_string();
    if authority.is_empty() || authority.contains('/') {
        return Err(format!(
            "OTLP endpoint `{endpoint}` must be http://HOST:PORT (spans go to /v1/traces)"
        ));
    }
    let (tx, rx) = mpsc::channel(MAX_HELD);
    if TRACER
        .set(Tracer {
            tx,
            plans: Mutex::new(HashMap::new()),
        })
        .is_ok()
    {
        tokio::spawn(export(authority, rx));
    }
    Ok(())
}

/// The exporter, if one is installed.
pub fn tracer() -> Option<&'static Tracer> {
    TRACER.get()
}

impl Tracer {
    /// A plan was taken up here.
    pub fn plan_started(&self, plan: PlanId, flow: &str) {
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        // Plans taken up here whose end this process never saw (their lock lost) must not
        // pile up: past a bound, the oldest roots are given up (their steps' spans still go).
        if plans.len() >= MAX_HELD * 10 {
            plans.clear();
        }
        plans.insert(plan, (flow.to_string(), now_nanos()));
    }

    /// It ended (stopped or paused) with `outcome`: its root span.
    pub fn plan_ended(&self, plan: PlanId, state: &str, outcome: &str, failure: Option<&str>) {
        let Some((flow, start)) = self
            .plans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&plan)
        else {
            return;
        };
        self.send(Span {
            plan,
            id: span_id(plan, None),
            parent: None,
            name: format!("plan {flow}"),
            start,
            end: now_nanos(),
            attributes: vec![
                ("weft.plan_id", json!(plan.to_string())),
                ("weft.flow", json!(flow)),
                ("weft.state", json!(state)),
                ("weft.result", json!(outcome)),
            ],
            error: failure.map(str::to_string),
        });
    }

    /// One run of a step ended.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn step_ended(
        &self,
        plan: PlanId,
        flow: &str,
        step: (u32, &str),
        attempt: u32,
        action: &str,
        started: SystemTime,
        result: &str,
        error: Option<String>,
    ) {
        let start = started
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        self.send(Span {
            plan,
            id: span_id(plan, Some((step.0, attempt, action))),
            parent: Some(span_id(plan, None)),
            name: if action == "revert" {
                format!("revert {}", step.1)
            } else {
                step.1.to_string()
            },
            start,
            end: now_nanos(),
            attributes: vec![
                ("weft.plan_id", json!(plan.to_string())),
                ("weft.flow", json!(flow)),
                ("weft.step", json!(step.1)),
                ("weft.attempt", json!(attempt)),
                ("weft.action", json!(action)),
                ("weft.result", json!(result)),
            ],
            error,
        });
    }

    fn send(&self, span: Span) {
        // Never waits: a collector that is away costs dropped spans, not slower steps.
        let _ = self.tx.try_send(span);
    }
}

/// OTLP's JSON encoding of `spans` (ids in hex, times as strings of nanoseconds).
fn encode(spans: &[Span]) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let attributes: Vec<Value> = s
                .attributes
                .iter()
                .map(|(k, v)| {
                    let value = match v {
                        Value::Number(n) => json!({ "intValue": n.to_string() }),
                        other => json!({ "stringValue": other.as_str().unwrap_or_default() }),
                    };
                    json!({ "key": k, "value": value })
                })
                .collect();
            let mut span = json!({
                "traceId": hex(&trace_id(s.plan)),
                "spanId": hex(&s.id),
                "name": s.name,
                "kind": 1,
                "startTimeUnixNano": s.start.to_string(),
                "endTimeUnixNano": s.end.to_string(),
                "attributes": attributes,
                "status": match &s.error {
                    Some(m) => json!({ "code": 2, "message": m }),
                    None => json!({ "code": 1 }),
                },
            });
            if let Some(p) = s.parent {
                span["parentSpanId"] = json!(hex(&p));
            }
            span
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": { "attributes": [
                { "key": "service.name", "value": { "stringValue": "weft" } }
            ]},
            "scopeSpans": [{ "scope": { "name": "weft" }, "spans": spans }]
        }]
    })
}

async fn export(authority: String, mut rx: mpsc::Receiver<Span>) {
    let mut held: Vec<Span> = Vec::new();
    let mut tick = tokio::time::interval(EXPORT_EVERY);
    loop {
        tokio::select! {
            s = rx.recv() => match s {
                Some(s) => {
                    held.push(s);
                    if held.len() < MAX_HELD {
                        continue;
                    }
                }
                None => return,
            },
            _ = tick.tick() => {}
        }
        if held.is_empty() {
            continue;
        }
        let body = encode(&held).to_string();
        match post(&authority, &body).await {
            Ok(()) => held.clear(),
            Err(e) => {
                tracing::warn!("cannot send spans to http://{authority}/v1/traces: {e}");
                if held.len() >= MAX_HELD {
                    held.clear();
                }
            }
        }
    }
}

/// One OTLP/HTTP request, HTTP/1.1 over a fresh connection.
async fn post(authority: &str, body: &str) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(authority),
    )
    .await
    .map_err(|_| "connecting timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let request = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut head))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())?;
    let status = String::from_utf8_lossy(&head[..n]);
    if status.starts_with("HTTP/1.1 2") || status.starts_with("HTTP/1.0 2") {
        Ok(())
    } else {
        Err(format!(
            "the collector answered {}",
            status.lines().next().unwrap_or("nothing")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_same_everywhere_and_traceparent_is_w3c() {
        let plan = PlanId::new();
        assert_eq!(
            span_id(plan, Some((1, 2, "execute"))),
            span_id(plan, Some((1, 2, "execute")))
        );
        assert_ne!(
            span_id(plan, Some((1, 2, "execute"))),
            span_id(plan, Some((1, 3, "execute")))
        );
        let tp = traceparent(plan, 1, 2, "execute");
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(
            (parts[0], parts[1].len(), parts[2].len(), parts[3]),
            ("00", 32, 16, "01")
        );
        assert_eq!(parts[1], hex(plan.0.as_bytes()));
    }

    #[test]
    fn endpoints_are_checked() {
        assert!(install("https://x:4318").is_err());
        assert!(install("http://").is_err());
        assert!(install("http://host:4318/v1/traces").is_err());
    }
}
