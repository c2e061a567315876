//! Remote workers: a request's round trip from the executor to a worker and back through
//! PostgreSQL, and throughput of no-op remote steps executed by an engine over four workers —
//! on PostgreSQL (each worker with its own connections, as separate processes have) and on the
//! in-memory store (the protocol's own cost, as TaskFlow's in-memory transport measures it).

use crate::postgres::pg_database;
use crate::support::{execute_all, plan_all, NOOP_PARALLELISM};
use crate::{Error, Figure};
use serde_json::{json, Map};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_engine::{task_fn, Config, Engine, Registry, RemoteCall};
use weft_model::flow::{Flow, FlowBuilder};
use weft_store::SharedStore;
use weft_worker::{RemoteConfig, RemoteExecutor, RemoteSteps, StoreTransport, Worker};

/// Workers in the throughput runs.
const WORKERS: usize = 4;
/// Plans × steps in the throughput runs: 10 plans of an unordered flow of 1,000 no-op steps
/// (TaskFlow's anchor runs the same flow, one plan at a time).
const PLANS: usize = 10;
const STEPS: usize = 1000;

fn noop_tasks() -> Registry {
    let mut r = Registry::new();
    r.register("noop", "1", task_fn(|_| async { Ok(json!({})) }));
    r
}

fn remote_flow(local: bool) -> Flow {
    let mut b = FlowBuilder::unordered("remote-bench");
    for i in 0..STEPS {
        b = b.task(format!("s{i}"), "noop", "1", |t| {
            if local {
                t
            } else {
                t.remote()
            }
        });
    }
    b.build().expect("a generated flow is valid")
}

/// Workers serving no-op tasks on their stores until the returned senders are dropped.
fn start_workers(stores: Vec<SharedStore>) -> Vec<tokio::sync::oneshot::Sender<()>> {
    stores
        .into_iter()
        .enumerate()
        .map(|(i, store)| {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let worker = Worker::new(format!("bench-{i}"), noop_tasks()).expect("a valid topic");
            tokio::spawn(worker.run(store, async {
                let _ = stopped.await;
            }));
            stop
        })
        .collect()
}

/// Steps per second: 10 plans × 1,000 remote no-op steps executed by one engine, run by four
/// workers. `pg`: on a fresh PostgreSQL database, each worker with its own store; otherwise
/// on one in-memory store. `local`: the same flow with its steps run by the engine itself,
/// for the ratio.
pub(crate) async fn throughput(
    pg: Option<&str>,
    repeat: u32,
    local: bool,
) -> Result<Figure, Error> {
    let flow = remote_flow(local);
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let (engine_store, worker_stores): (SharedStore, Vec<SharedStore>) = match pg {
            Some(admin) => {
                let url = pg_database(admin).await?;
                let mut workers = Vec::new();
                for _ in 0..WORKERS {
                    workers.push(weft_store::open(&url).await?);
                }
                (weft_store::open(&url).await?, workers)
            }
            None => {
                let store: SharedStore = Arc::new(weft_store::memory::MemoryStore::new());
                (store.clone(), vec![store; WORKERS])
            }
        };
        let _workers = start_workers(worker_stores);
        let mut remote = RemoteConfig::new("", Vec::new());
        remote.notify_period = Duration::from_millis(200);
        let config = Config {
            parallelism: NOOP_PARALLELISM,
            remote: Some(Arc::new(RemoteSteps::new(remote))),
            ..Config::default()
        };
        let registry = if local { noop_tasks() } else { Registry::new() };
        let engine = Engine::start(engine_store, Arc::new(registry), config);
        // Warm up: the executor starts and hears from every worker.
        let warm = plan_all(&engine, &flow, 1).await?;
        execute_all(engine.clone(), warm).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ids = plan_all(&engine, &flow, PLANS).await?;
        let started = Instant::now();
        execute_all(engine, ids).await?;
        samples.push((PLANS * STEPS) as f64 / started.elapsed().as_secs_f64());
    }
    Ok(Figure {
        name: match (pg.is_some(), local) {
            (true, false) => "pg-remote",
            (true, true) => "pg-remote-local",
            (false, false) => "memory-remote",
            (false, true) => "memory-remote-local",
        },
        unit: "steps/s",
        samples,
        target: 5_000.0,
        higher_is_better: true,
    })
}

/// A request's round trip on PostgreSQL, median ms: the executor sends it, a worker on its own
/// connection takes it, acknowledges and answers, and the executor has the answer — 200
/// requests one after another on an otherwise idle database.
pub(crate) async fn round_trip(admin: &str, repeat: u32) -> Result<Figure, Error> {
    const REQUESTS: usize = 200;
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let url = pg_database(admin).await?;
        let _worker = start_workers(vec![weft_store::open(&url).await?]);
        let transport = Arc::new(StoreTransport::new(weft_store::open(&url).await?));
        let mut config = RemoteConfig::new("bench-executor", vec!["bench-0".into()]);
        config.notify_period = Duration::from_millis(200);
        let executor =
            RemoteExecutor::start(transport, config).map_err(|e| Error::Failed(e.to_string()))?;
        let call = || RemoteCall {
            task: "noop".into(),
            version: "1".into(),
            step: "s".into(),
            plan: weft_model::PlanId::new(),
            attempt: 1,
            arguments: Map::new(),
            action: weft_model::worker::Action::Execute,
            result: None,
            failure: None,
        };
        // Warm up: the worker is heard from, connections and statements are ready.
        for _ in 0..10 {
            executor
                .run(call())
                .await
                .map_err(|f| Error::Failed(f.message))?;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut times = Vec::with_capacity(REQUESTS);
        for _ in 0..REQUESTS {
            let t = Instant::now();
            executor
                .run(call())
                .await
                .map_err(|f| Error::Failed(f.message))?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        executor.stop().await;
        samples.push(crate::support::median(times));
    }
    Ok(Figure {
        name: "pg-remote-rtt",
        unit: "ms",
        samples,
        target: 5.0,
        higher_is_better: false,
    })
}
