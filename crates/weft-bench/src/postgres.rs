//! Scenarios on a PostgreSQL server: throughput with one node and two, and submit-to-start
//! latency.

use crate::support::{
    execute_all, futures_join, noop_flow, noop_registry, plan_all, spawn_node, NOOP_PARALLELISM,
};
use crate::{Error, Figure};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft_engine::{Config, Engine};
use weft_model::flow::FlowBuilder;
use weft_store::SharedStore;

/// The databases made on the benchmark server and not yet dropped.
static MADE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A fresh database on the benchmark server, dropped by [`drop_databases`].
pub(crate) async fn pg_database(admin: &str) -> Result<String, Error> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "weft_bench_{}_{}_{}",
        std::process::id(),
        weft_model::now_millis(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let url = weft_store::postgres::create_database(admin, &name).await?;
    MADE.lock().unwrap_or_else(|e| e.into_inner()).push(name);
    Ok(url)
}

/// Drops every database [`pg_database`] made, ending the sessions still open there.
pub(crate) async fn drop_databases(admin: &str) -> Result<(), Error> {
    let made = std::mem::take(&mut *MADE.lock().unwrap_or_else(|e| e.into_inner()));
    for name in made {
        weft_store::postgres::drop_database(admin, &name).await?;
    }
    Ok(())
}

/// Steps per second: 1,000 plans × 10 no-op steps on PostgreSQL, split over `nodes` engines
/// that each have their own store (connections, writer, group commit), as separate nodes do.
pub(crate) async fn pg_throughput(admin: &str, repeat: u32, nodes: usize) -> Result<Figure, Error> {
    const PLANS: usize = 1000;
    let flow = noop_flow(FlowBuilder::linear("bench"), 10);
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let url = pg_database(admin).await?;
        let mut engines = Vec::new();
        for _ in 0..nodes {
            let store: SharedStore =
                Arc::new(weft_store::postgres::PostgresStore::open(&url).await?);
            let config = Config {
                parallelism: NOOP_PARALLELISM,
                ..Config::default()
            };
            engines.push(Engine::start(store, noop_registry(), config));
        }
        let mut batches = Vec::new();
        for (i, engine) in engines.iter().enumerate() {
            let share = PLANS / nodes + usize::from(i < PLANS % nodes);
            batches.push((engine.clone(), plan_all(engine, &flow, share).await?));
        }
        let started = Instant::now();
        let runs: Vec<_> = batches
            .into_iter()
            .map(|(engine, ids)| execute_all(engine, ids))
            .collect();
        for r in futures_join(runs).await {
            r?;
        }
        samples.push((PLANS * flow.steps.len()) as f64 / started.elapsed().as_secs_f64());
    }
    Ok(Figure {
        name: if nodes == 1 {
            "pg-concurrent"
        } else {
            "pg-two-nodes"
        },
        unit: "steps/s",
        samples,
        target: 10_000.0,
        higher_is_better: true,
    })
}

/// Submit-to-start latency on an idle node: each sample is the `quantile` of 200 plans
/// submitted one by one from another connection, each timed until its first step ran.
pub(crate) async fn pg_submit_latency(
    admin: &str,
    repeat: u32,
    quantile: f64,
) -> Result<Figure, Error> {
    const PLANS: usize = 200;
    let flow = FlowBuilder::linear("latency")
        .task("first", "mark", "1", |t| t)
        .build()
        .expect("a generated flow is valid");
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let url = pg_database(admin).await?;
        let node_store: SharedStore =
            Arc::new(weft_store::postgres::PostgresStore::open(&url).await?);
        let submitter = weft_store::postgres::PostgresStore::open(&url).await?;
        let (registry, mut ran) = crate::support::marking_registry();
        let node = spawn_node(node_store, registry);
        // Let the node settle into idleness (registered, listening, first claims done).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut latencies = Vec::with_capacity(PLANS);
        for _ in 0..PLANS {
            let new = weft_store::NewPlan::new(flow.clone(), BTreeMap::new());
            let t = Instant::now();
            weft_store::Store::create_plan(&submitter, new).await?;
            let at = tokio::time::timeout(Duration::from_secs(10), ran.recv())
                .await
                .map_err(|_| Error::Failed("a submitted plan did not start within 10 s".into()))?
                .ok_or_else(|| Error::Failed("the node stopped".into()))?;
            latencies.push(at.duration_since(t).as_secs_f64() * 1000.0);
            // Idle again before the next one.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        node.stop().await;
        latencies.sort_by(|a, b| a.total_cmp(b));
        let i = ((latencies.len() as f64 - 1.0) * quantile).round() as usize;
        samples.push(latencies[i.min(latencies.len() - 1)]);
    }
    Ok(if quantile < 0.9 {
        Figure {
            name: "pg-submit-latency",
            unit: "ms",
            samples,
            target: 10.0,
            higher_is_better: false,
        }
    } else {
        Figure {
            name: "pg-submit-p99",
            unit: "ms",
            samples,
            target: 50.0,
            higher_is_better: false,
        }
    })
}
