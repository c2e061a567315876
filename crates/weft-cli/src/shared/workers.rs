//! Remote workers as `weft workers` and `weft status` show them: topic, what each runs, when
//! it was last heard from (on the store's clock) and how many requests it runs.

use crate::shared::view::table;
use weft_model::time::format_rfc3339;
use weft_store::WorkerRecord;

/// The workers as a table, for people.
pub(crate) fn text(workers: &[WorkerRecord], now: i64) -> String {
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            let age = (now - w.heartbeat_at).max(0) as f64 / 1000.0;
            vec![
                w.topic.clone(),
                format!("{age:.1}s ago"),
                w.running.to_string(),
                w.process.clone().unwrap_or_default(),
                w.tasks.join(", "),
            ]
        })
        .collect();
    table(
        &["TOPIC", "LAST SEEN", "RUNNING", "PROCESS", "TASKS"],
        &rows,
    )
}

/// The workers as JSON, for scripts.
pub(crate) fn json(workers: &[WorkerRecord], now: i64) -> serde_json::Value {
    workers
        .iter()
        .map(|w| {
            serde_json::json!({
                "topic": w.topic,
                "tasks": w.tasks,
                "running": w.running,
                "process": w.process,
                "started_at": format_rfc3339(w.started_at),
                "last_seen_ms": (now - w.heartbeat_at).max(0),
            })
        })
        .collect()
}
