//! Scenarios of weft embedded in an application (`weft::Engine`): a plan submitted in process
//! until its result is read back.

use crate::support::tempdir;
use crate::{Error, Figure};
use serde_json::{json, Value};
use std::time::Instant;
use weft::prelude::*;

/// Plans timed per sample.
const PLANS: usize = 200;

/// Median milliseconds from `engine.submit` of a one-step plan of a no-op Rust task until
/// `handle.result()` returns, on the in-memory store or a SQLite file.
pub(crate) async fn result_latency(sqlite: bool, repeat: u32) -> Result<Figure, Error> {
    let failed = |e: weft::Error| Error::Failed(e.to_string());
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let dir = if sqlite { Some(tempdir()?) } else { None };
        let url = match &dir {
            Some(d) => d.join("bench.db").display().to_string(),
            None => "memory:".to_string(),
        };
        let mut tasks = Registry::new();
        let noop = tasks.add(
            "noop",
            "1",
            task_fn(|_| async { Ok(json!({"done": true})) }),
        );
        let flow = FlowBuilder::linear("one")
            .step("only", &noop, |t| t.provides(["done"]))
            .build()
            .map_err(|e| Error::Failed(e.to_string()))?;
        let engine = Engine::builder(url)
            .name(format!("bench-{}", PlanId::new()))
            .registry(tasks)
            .start()
            .await
            .map_err(failed)?;
        let mut times = Vec::with_capacity(PLANS);
        for _ in 0..PLANS {
            let t = Instant::now();
            let plan = engine.submit(&flow, ()).await.map_err(failed)?;
            let _: Value = plan.result().await.map_err(failed)?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        engine.shutdown().await.map_err(failed)?;
        if let Some(d) = dir {
            let _ = std::fs::remove_dir_all(d);
        }
        samples.push(crate::support::median(times));
    }
    Ok(Figure {
        name: if sqlite {
            "result-sqlite"
        } else {
            "result-memory"
        },
        unit: "ms",
        samples,
        target: if sqlite { 1.25 } else { 1.0 },
        higher_is_better: false,
    })
}
