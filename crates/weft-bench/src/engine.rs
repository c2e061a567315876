//! Scenarios of one engine in this process: throughput of no-op steps on each store, and the
//! memory that live plans hold.

use crate::support::{
    execute_all, noop_registry, plan_all, resident_mb, Backend, Scratch, NOOP_PARALLELISM,
};
use crate::{Error, Figure};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use weft_engine::{task_fn, Config, Engine, Registry};
use weft_model::flow::{Flow, FlowBuilder};

/// Steps per second executing `plans` plans of `flow` at once on a fresh store each time.
pub(crate) async fn throughput(
    name: &'static str,
    target: f64,
    repeat: u32,
    backend: Backend,
    flow: Flow,
    plans: usize,
) -> Result<Figure, Error> {
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let scratch = Scratch::new(backend)?;
        let config = Config {
            parallelism: NOOP_PARALLELISM,
            ..Config::default()
        };
        let engine = Engine::start(scratch.store.clone(), noop_registry(), config);
        let ids = plan_all(&engine, &flow, plans).await?;
        let started = Instant::now();
        execute_all(engine, ids).await?;
        let secs = started.elapsed().as_secs_f64();
        samples.push((plans * flow.steps.len()) as f64 / secs);
    }
    Ok(Figure {
        name,
        unit: "steps/s",
        samples,
        target,
        higher_is_better: true,
    })
}

/// Resident memory with 10,000 plans of 10 steps live in one engine: each plan's first step is
/// running (blocked on a gate) and nine wait behind it.
pub(crate) async fn live_plans() -> Result<Figure, Error> {
    const PLANS: usize = 10_000;
    let scratch = Scratch::new(Backend::Sqlite)?;
    let gate = Arc::new(Semaphore::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new();
    let (g, s) = (gate.clone(), started.clone());
    registry.register(
        "gate",
        "1",
        task_fn(move |_| {
            let (g, s) = (g.clone(), s.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                let _permit = g
                    .acquire()
                    .await
                    .map_err(|_| weft_model::Failure::new("closed", "gate closed"))?;
                Ok(json!({}))
            }
        }),
    );
    registry.register("noop", "1", task_fn(|_| async { Ok(json!({})) }));
    let mut b = FlowBuilder::linear("live").task("gate", "gate", "1", |t| t);
    for i in 0..9 {
        b = b.task(format!("s{i}"), "noop", "1", |t| t);
    }
    let flow = b.build().expect("a generated flow is valid");
    let config = Config {
        parallelism: PLANS * 2,
        ..Config::default()
    };
    let engine = Engine::start(scratch.store.clone(), Arc::new(registry), config);
    let ids = plan_all(&engine, &flow, PLANS).await?;
    let all = tokio::spawn(execute_all(engine, ids));
    while started.load(Ordering::SeqCst) < PLANS {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let samples = vec![resident_mb()];
    gate.add_permits(PLANS);
    all.await.map_err(|e| Error::Failed(e.to_string()))??;
    Ok(Figure {
        name: "live-plans",
        unit: "MB RSS",
        samples,
        target: 200.0,
        higher_is_better: false,
    })
}
