//! `weft status`: the live report of every node, as each writes it into the store every
//! second (the node's manifolds: state, inputs, starts, last error and when).

use crate::shared::view::table;
use crate::shared::{pretty, workers, Fail, Global};
use clap::Args;
use std::fmt::Write;
use weft_model::format_millis;
use weft_model::time::format_rfc3339;

/// `weft status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Prints the nodes' reports.
pub(crate) async fn status(args: StatusArgs) -> Result<u8, Fail> {
    let global = &args.global;
    let store = weft_store::open_existing(&global.db).await?;
    let nodes = store.nodes().await?;
    // Heartbeats are on the store's clock (the database server's, on PostgreSQL).
    let now = store.clock().await?;
    if global.json {
        let rows: Vec<serde_json::Value> = nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "id": n.id,
                    "name": n.name,
                    "started_at": format_rfc3339(n.started_at),
                    "heartbeat_age_ms": now - n.heartbeat_at,
                    "capabilities": n.capabilities,
                    "report": n.report.as_ref().map(weft_server::api::types::report_view),
                })
            })
            .collect();
        outln!("{}", pretty(&rows)?);
        return Ok(0);
    }
    let remote = store.workers().await?;
    let mut out = String::new();
    if nodes.is_empty() {
        out.push_str("no nodes are registered (start one with: weft serve)\n");
    }
    for n in &nodes {
        let age = (now - n.heartbeat_at).max(0) as f64 / 1000.0;
        let _ = writeln!(
            out,
            "node {}  (started {} UTC, heartbeat {age:.1}s ago)",
            n.id,
            format_millis(n.started_at)
        );
        if !n.capabilities.is_empty() {
            let _ = writeln!(out, "  runs   {}", n.capabilities.join(", "));
        }
        let Some(report) = &n.report else {
            let _ = writeln!(out, "  no report yet\n");
            continue;
        };
        let _ = writeln!(out, "  engine {}", report["state"].as_str().unwrap_or("?"));
        let mut rows = Vec::new();
        if let Some(manifolds) = report["manifolds"].as_object() {
            for (name, m) in manifolds {
                let inputs: Vec<&str> = m["inputs"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|i| i.as_str()).collect())
                    .unwrap_or_default();
                let error = match (m["error"].as_str(), m["error_at"].as_i64()) {
                    (Some(e), Some(at)) => format!("{} UTC  {e}", format_millis(at)),
                    (Some(e), None) => e.to_string(),
                    _ => String::new(),
                };
                rows.push(vec![
                    format!("  {name}"),
                    m["state"].as_str().unwrap_or("?").to_string(),
                    inputs.join(", "),
                    m["start_count"].to_string(),
                    error,
                ]);
            }
        }
        out.push_str(&table(
            &["  MANIFOLD", "STATE", "INPUTS", "STARTS", "LAST ERROR"],
            &rows,
        ));
        out.push('\n');
    }
    if !remote.is_empty() {
        out.push_str("workers\n");
        out.push_str(&workers::text(&remote, now));
    }
    out!("{out}");
    Ok(0)
}
