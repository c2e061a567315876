//! Messages between executors and remote workers, and the workers' registrations, as the
//! stores carry them (the PostgreSQL and SQLite transports of `weft-worker`). A message's body
//! is kept as the text that was sent: its receiver checks it, never the store.

use serde::{Deserialize, Serialize};
use weft_model::Millis;

/// A message on its way to a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireMessage {
    /// The topic it goes to (a worker's, or an executor's reply topic).
    pub topic: String,
    /// `NOTIFY`, `REQUEST` or `RESPONSE`.
    pub kind: String,
    /// The request it belongs to.
    pub correlation_id: Option<String>,
    /// Where to answer.
    pub reply_to: Option<String>,
    /// The step's attempt.
    pub attempt: u32,
    /// The plan, as text.
    pub plan: Option<String>,
    /// The body, as sent.
    pub body: String,
}

/// A worker as registered: its topic, what it runs, and its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Where it takes requests.
    pub topic: String,
    /// The tasks it runs (`name@version`).
    pub tasks: Vec<String>,
    /// When it registered.
    #[serde(with = "weft_model::time::rfc3339")]
    pub started_at: Millis,
    /// Its last heartbeat, on the store's clock.
    #[serde(with = "weft_model::time::rfc3339")]
    pub heartbeat_at: Millis,
    /// Its process (`weft@HOST:PID:START`), if it said.
    pub process: Option<String>,
    /// How many requests it was running at its last heartbeat.
    #[serde(default)]
    pub running: u32,
    /// How long each heartbeat stays good (milliseconds): past it, executors count what it
    /// runs as lost.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: i64,
}

fn default_lease_ms() -> i64 {
    DEFAULT_WORKER_LEASE_MS
}

/// A worker's lease when it says none (10 s), in milliseconds.
pub const DEFAULT_WORKER_LEASE_MS: i64 = 10_000;
