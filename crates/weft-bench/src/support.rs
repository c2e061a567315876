//! What the scenarios share: no-op flows and tasks, scratch stores, running plans to the end,
//! a node in the background, and this process's resident memory.

use crate::Error;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use weft_engine::{task_fn, Engine, Registry, Rescue};
use weft_model::flow::{Flow, FlowBuilder};
use weft_model::plan::Outcome;
use weft_store::SharedStore;

/// Parallelism for no-op tasks: enough that round trips, not the limit, set the pace.
pub(crate) const NOOP_PARALLELISM: usize = 1024;
pub(crate) fn noop_flow(mut builder: FlowBuilder, steps: usize) -> Flow {
    for i in 0..steps {
        builder = builder.task(format!("s{i}"), "noop", "1", |t| t);
    }
    builder.build().expect("a generated flow is valid")
}

pub(crate) fn noop_registry() -> Arc<Registry> {
    let mut r = Registry::new();
    r.register("noop", "1", task_fn(|_| async { Ok(json!({})) }));
    Arc::new(r)
}

/// A registry with one task, `mark@1`, that tells the returned channel when it runs: the
/// latency scenarios time from a submission until then.
pub(crate) fn marking_registry() -> (
    Registry,
    tokio::sync::mpsc::UnboundedReceiver<std::time::Instant>,
) {
    let (ran_tx, ran) = tokio::sync::mpsc::unbounded_channel();
    let mut registry = Registry::new();
    registry.register(
        "mark",
        "1",
        task_fn(move |_| {
            let ran_tx = ran_tx.clone();
            async move {
                let _ = ran_tx.send(std::time::Instant::now());
                Ok(json!({}))
            }
        }),
    );
    (registry, ran)
}

/// Which store a throughput scenario runs on.
#[derive(Clone, Copy)]
pub(crate) enum Backend {
    Memory,
    Sqlite,
}

/// A fresh store; a SQLite one lives in a temporary directory removed when this is dropped.
pub(crate) struct Scratch {
    pub(crate) store: SharedStore,
    dir: Option<std::path::PathBuf>,
}

impl Scratch {
    pub(crate) fn new(backend: Backend) -> Result<Scratch, Error> {
        match backend {
            Backend::Memory => Ok(Scratch {
                store: Arc::new(weft_store::memory::MemoryStore::new()),
                dir: None,
            }),
            Backend::Sqlite => {
                let dir = tempdir()?;
                let store: SharedStore = Arc::new(weft_store::sqlite::SqliteStore::open(
                    &dir.join("bench.db"),
                )?);
                Ok(Scratch {
                    store,
                    dir: Some(dir),
                })
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Stores `count` plans of `flow`, concurrently.
pub(crate) async fn plan_all(
    engine: &Engine,
    flow: &Flow,
    count: usize,
) -> Result<Vec<weft_model::PlanId>, Error> {
    let creating: Vec<_> = (0..count)
        .map(|_| {
            let (engine, flow) = (engine.clone(), flow.clone());
            async move { engine.plan(flow, BTreeMap::new()).await }
        })
        .collect();
    futures_join(creating)
        .await
        .into_iter()
        .map(|r| r.map_err(|e| Error::Failed(e.to_string())))
        .collect()
}

/// Executes every plan concurrently; fails unless all succeed.
pub(crate) async fn execute_all(engine: Engine, ids: Vec<weft_model::PlanId>) -> Result<(), Error> {
    let count = ids.len();
    let runs: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let engine = engine.clone();
            async move { engine.execute(id, Rescue::Revert).await }
        })
        .collect();
    let ends = futures_join(runs).await;
    let succeeded = ends
        .iter()
        .filter(|e| matches!(e, Ok(end) if end.outcome == Outcome::Success))
        .count();
    if succeeded != count {
        return Err(Error::Failed(format!(
            "only {succeeded} of {count} benchmark plans succeeded"
        )));
    }
    Ok(())
}

pub(crate) fn tempdir() -> Result<std::path::PathBuf, Error> {
    let dir = std::env::temp_dir().join(format!(
        "weft-bench-{}-{}",
        std::process::id(),
        weft_model::now_millis()
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Failed(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// Awaits futures concurrently on the runtime, in order of their results.
pub(crate) async fn futures_join<T: Send + 'static>(
    futs: Vec<impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

pub(crate) fn resident_mb() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    pages * page / (1024.0 * 1024.0)
}

/// A node running in the background, until [`BackgroundNode::stop`].
pub(crate) struct BackgroundNode {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl BackgroundNode {
    /// Stops the node and waits until it has, so that its store may be removed.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Runs a node on `store` until it is stopped.
pub(crate) fn spawn_node(store: SharedStore, registry: Registry) -> BackgroundNode {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut config =
            weft_engine::node::NodeConfig::new(format!("bench-{}", weft_model::PlanId::new()));
        config.parallelism = NOOP_PARALLELISM;
        let opener: weft_engine::node::Opener = Arc::new(move || {
            let store = store.clone();
            Box::pin(async move { Ok(store) })
        });
        match weft_engine::node::Node::start(opener, Arc::new(registry), config).await {
            Ok(node) => {
                let _ = node
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await;
            }
            Err(e) => eprintln!("bench node failed to start: {e}"),
        }
    });
    BackgroundNode { stop, task }
}

/// The median of `values` (`NaN` for none): every latency scenario's figure per run.
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
