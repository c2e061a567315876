//! The job board: jobs claimed, run as one-step plans and completed per second by conductors
//! (on PostgreSQL with one node and two, and on SQLite), and on an idle board the latency from
//! a post to its claim and to its flow's first step.

use crate::postgres::pg_database;
use crate::support::{noop_flow, tempdir, NOOP_PARALLELISM};
use crate::{Error, Figure};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_engine::node::{Node, NodeConfig, Opener};
use weft_engine::{task_fn, Registry};
use weft_model::flow::FlowBuilder;
use weft_store::{JobFilter, NewJob, SharedStore};

/// Jobs posted per throughput run.
const JOBS: usize = 20_000;
/// Jobs a conductor runs at once in these runs: enough that round trips set the pace.
const SIMULTANEOUS: usize = 2048;

/// Where the jobs live.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Board {
    Postgres,
    Sqlite,
}

/// A node with a conductor, running in the background until stopped.
struct ConductorNode {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl ConductorNode {
    async fn start(url: &str, registry: Registry) -> Result<ConductorNode, Error> {
        let url = url.to_string();
        let opener: Opener = Arc::new(move || {
            let url = url.clone();
            Box::pin(async move { weft_store::open(&url).await })
        });
        let capabilities = registry.capabilities();
        let mut config = NodeConfig::new(format!("bench-{}", weft_model::PlanId::new()));
        config.parallelism = NOOP_PARALLELISM;
        let node = Node::start(opener, Arc::new(registry), config)
            .await
            .map_err(|e| Error::Failed(format!("the node did not start: {e}")))?;
        let conductor = weft_board::conductor::manifold(
            node.id().to_string(),
            capabilities,
            weft_board::ConductorConfig {
                max_simultaneous_jobs: SIMULTANEOUS,
                ..weft_board::ConductorConfig::default()
            },
        );
        node.manifolds()
            .install("conductor", conductor)
            .await
            .map_err(|e| Error::Failed(e.to_string()))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = node
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(ConductorNode { stop, task })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Posts `count` jobs of a one-step no-op flow.
async fn post_all(store: &SharedStore, count: usize) -> Result<(), Error> {
    let flow = noop_flow(FlowBuilder::linear("job"), 1);
    let posting: Vec<_> = (0..count)
        .map(|_| store.post_job(NewJob::new(flow.clone(), BTreeMap::new())))
        .collect();
    for p in posting {
        p.await?;
    }
    Ok(())
}

/// Jobs per second: [`JOBS`] jobs posted, then `nodes` nodes with conductors started; the
/// clock runs from their start until the board is empty and every job complete.
pub(crate) async fn throughput(
    board: Board,
    admin: Option<&str>,
    repeat: u32,
    nodes: usize,
) -> Result<Figure, Error> {
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let (url, dir) = match board {
            Board::Postgres => {
                let admin = admin.ok_or_else(|| Error::Input("needs --pg".into()))?;
                (pg_database(admin).await?, None)
            }
            Board::Sqlite => {
                let dir = tempdir()?;
                (dir.join("bench.db").display().to_string(), Some(dir))
            }
        };
        let store = weft_store::open(&url).await?;
        post_all(&store, JOBS).await?;
        let started = Instant::now();
        let mut running = Vec::new();
        for _ in 0..nodes {
            let mut registry = Registry::new();
            registry.register("noop", "1", task_fn(|_| async { Ok(json!({})) }));
            running.push(ConductorNode::start(&url, registry).await?);
        }
        let deadline = started + Duration::from_secs(300);
        loop {
            let left = store
                .list_jobs(JobFilter {
                    limit: Some(1),
                    ..JobFilter::default()
                })
                .await?;
            if left.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Failed("the jobs did not finish within 300 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        for node in running {
            node.stop().await;
        }
        let trashed = store
            .list_jobs(JobFilter {
                trashed: true,
                ..JobFilter::default()
            })
            .await?;
        if !trashed.is_empty() {
            return Err(Error::Failed(format!(
                "{} jobs were trashed",
                trashed.len()
            )));
        }
        samples.push(JOBS as f64 / elapsed);
        if let Some(dir) = dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    Ok(Figure {
        name: match (board, nodes) {
            (Board::Sqlite, _) => "sqlite-jobs",
            (Board::Postgres, 1) => "pg-jobs",
            (Board::Postgres, _) => "pg-jobs-two-nodes",
        },
        unit: "jobs/s",
        samples,
        target: match board {
            Board::Postgres => 12_000.0,
            Board::Sqlite => 0.0,
        },
        higher_is_better: true,
    })
}

/// Post-to-start latency on an idle board: each sample is the median of 200 jobs posted one
/// by one from another connection, each timed until its flow's first step ran (so it holds
/// the claim, the plan's creation and the step's start).
pub(crate) async fn post_latency(admin: &str, repeat: u32) -> Result<Figure, Error> {
    const POSTS: usize = 200;
    let flow = FlowBuilder::linear("latency")
        .task("first", "mark", "1", |t| t)
        .build()
        .expect("a generated flow is valid");
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let url = pg_database(admin).await?;
        let poster = weft_store::open(&url).await?;
        let (registry, mut ran) = crate::support::marking_registry();
        let node = ConductorNode::start(&url, registry).await?;
        // Let the node settle into idleness (registered, listening, first looks done).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut latencies = Vec::with_capacity(POSTS);
        for _ in 0..POSTS {
            let job = NewJob::new(flow.clone(), BTreeMap::new());
            let t = Instant::now();
            poster.post_job(job).await?;
            let at = tokio::time::timeout(Duration::from_secs(10), ran.recv())
                .await
                .map_err(|_| Error::Failed("a posted job did not start within 10 s".into()))?
                .ok_or_else(|| Error::Failed("the node stopped".into()))?;
            latencies.push(at.duration_since(t).as_secs_f64() * 1000.0);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        node.stop().await;
        samples.push(crate::support::median(latencies));
    }
    Ok(Figure {
        name: "pg-job-latency",
        unit: "ms",
        samples,
        // As for a plan submitted to an idle node (pg-submit-latency).
        target: 10.0,
        higher_is_better: false,
    })
}

/// Post-to-claim latency on an idle board: a claimer waits as a conductor does (on the store's
/// wake-up hints, polling every 500 ms as a backstop) and claims as soon as it wakes; each
/// sample is the median of 200 jobs posted one by one from another connection, each timed
/// from the post until its claim is durable.
pub(crate) async fn claim_latency(admin: &str, repeat: u32) -> Result<Figure, Error> {
    const POSTS: usize = 200;
    let flow = noop_flow(FlowBuilder::linear("latency"), 1);
    let can_run = vec!["noop@1".to_string()];
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let url = pg_database(admin).await?;
        let poster = weft_store::open(&url).await?;
        let claimer = weft_store::open(&url).await?;
        let mut hints = claimer
            .hints()
            .ok_or_else(|| Error::Failed("PostgreSQL sends no hints".into()))?;
        let (claimed_tx, mut claimed) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let can_run = can_run.clone();
        let claiming = tokio::spawn(async move {
            loop {
                let seen = hints.borrow_and_update().jobs;
                let jobs = claimer
                    .claim_jobs("bench".into(), 16, can_run.clone())
                    .await?;
                if !jobs.is_empty() && claimed_tx.send(Instant::now()).is_err() {
                    return Ok::<(), Error>(());
                }
                if jobs.is_empty() {
                    let wait = async {
                        while hints.borrow().jobs == seen {
                            if hints.changed().await.is_err() {
                                break;
                            }
                        }
                    };
                    let _ = tokio::time::timeout(Duration::from_millis(500), wait).await;
                }
            }
        });
        // Let the claimer settle into idleness (listening, first looks done).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut latencies = Vec::with_capacity(POSTS);
        for _ in 0..POSTS {
            let t = Instant::now();
            poster
                .post_job(NewJob::new(flow.clone(), BTreeMap::new()))
                .await?;
            let at = tokio::time::timeout(Duration::from_secs(10), claimed.recv())
                .await
                .map_err(|_| Error::Failed("a posted job was not claimed within 10 s".into()))?
                .ok_or_else(|| Error::Failed("the claimer stopped".into()))?;
            latencies.push(at.duration_since(t).as_secs_f64() * 1000.0);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        claiming.abort();
        samples.push(crate::support::median(latencies));
    }
    Ok(Figure {
        name: "pg-claim-latency",
        unit: "ms",
        samples,
        target: 3.0,
        higher_is_better: false,
    })
}
