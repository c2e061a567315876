//! The benchmarks behind docs/benchmarks.md, run on the real engine and stores: what
//! `weft bench` measures.
//!
//! Each scenario runs [`Options::repeat`] times and reports the median with the range, because
//! these machines are shared and noisy. Figures are throughput of durable steps (a step is two
//! persisted transitions: running, then success) unless said otherwise. Scenarios that measure
//! the `weft` command itself run the binary named by [`Options::weft`].

mod deps;
mod embed;
mod engine;
mod http;
mod jobs;
mod limits;
mod node;
mod postgres;
mod processes;
mod remote;
mod support;

use clap::ValueEnum;
use std::path::PathBuf;

/// The benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// 10,000-step unordered flow of no-op Rust tasks, in-memory store (target ≥ 200,000 steps/s).
    MemoryUnordered,
    /// 10,000-step linear flow of no-op Rust tasks, in-memory store (target ≥ 50,000 steps/s).
    MemoryLinear,
    /// 1,000 concurrent plans × 10 no-op steps, durable SQLite (target ≥ 20,000 steps/s).
    SqliteConcurrent,
    /// One linear plan of 1,000 no-op steps, durable SQLite (target ≥ 2,000 steps/s).
    SqliteLinear,
    /// 10,000 live plans held by one engine on SQLite: resident memory (target ≤ 200 MB).
    LivePlans,
    /// `weft run` of a 200-step flow of `true` commands: overhead per step beyond the spawn
    /// itself (target ≤ 2 ms).
    Commands,
    /// `commands` with every task printing 10,000 lines (`seq 1 10000`), kept for `weft logs`
    /// (1 MiB cap): overhead per step beyond running `seq` and reading its output (target: as
    /// commands-printing-unlogged, within 10 %).
    CommandsPrinting,
    /// The same with `--log-cap 0`: nothing kept.
    CommandsPrintingUnlogged,
    /// `weft submit` of a linear flow of 100,000 `true` tasks from its file, on SQLite:
    /// seconds from start to exit (target ≤ 3 s).
    #[value(name = "flow-100k")]
    Flow100k,
    /// The same: peak resident memory of the `weft submit` process, MB (target ≤ 300 MB).
    #[value(name = "flow-100k-rss")]
    Flow100kRss,
    /// A node on SQLite: an event posted for a suspended step until the step's success is
    /// durable and answered, median ms (target ≤ 2 ms).
    EventRtt,
    /// A node on SQLite: plans of a 3-step no-op flow submitted through the store, started
    /// and finished per second (target ≥ 5,000 plans/s).
    PlanStarts,
    /// The dependency engine: 1,000 manifolds in 100 chains of depth 10, from install until
    /// all are started, in ms (target ≤ 50 ms; bounce delay 0, so this is the engine's cost).
    DepsStart,
    /// The dependency engine: a root with 1,000 dependents bounces; ms until all are started
    /// again (target ≤ 50 ms; bounce delay 0).
    DepsBounce,
    /// weft embedded (`weft::Engine`) on the in-memory store: a one-step plan submitted in
    /// process until `handle.result()` returns, median ms (target ≤ 1 ms).
    ResultMemory,
    /// The same on a SQLite file, every step durable: median ms (target ≤ 1.25 ms: 1 ms and
    /// one fsync of this disk).
    ResultSqlite,
    /// 1,000 concurrent plans × 10 no-op steps, one node on PostgreSQL (target ≥ 10,000
    /// steps/s). Needs --pg.
    PgConcurrent,
    /// The same work split over two nodes (two engines, each with its own connections), on
    /// PostgreSQL: more than one node. Needs --pg.
    PgTwoNodes,
    /// An idle node on PostgreSQL: a plan submitted from another connection until its first
    /// step runs, median ms (target ≤ 10 ms). Needs --pg.
    PgSubmitLatency,
    /// The same, 99th percentile (target ≤ 50 ms). Needs --pg.
    PgSubmitP99,
    /// The job board on SQLite, one node with a conductor: 20,000 posted jobs of a one-step
    /// no-op flow claimed, run and completed per second (no target; compare with pg-jobs).
    SqliteJobs,
    /// The same on PostgreSQL, one node (target ≥ 12,000 jobs/s). Needs --pg.
    PgJobs,
    /// The same, two nodes (more than one node). Needs --pg.
    PgJobsTwoNodes,
    /// An idle board on PostgreSQL: a job posted from another connection until a waiting
    /// claimer's claim of it is durable, median ms (target ≤ 3 ms). Needs --pg.
    PgClaimLatency,
    /// The same until a conductor has the job's flow's first step running, median ms (target
    /// ≤ 10 ms, as for a submitted plan: it adds the plan's creation and its step's start).
    /// Needs --pg.
    PgJobLatency,
    /// Remote workers on the in-memory store: 1,000 plans × 10 remote no-op steps run by
    /// four workers, steps/s (the protocol's own cost; target ≥ 5,000).
    MemoryRemote,
    /// The same on PostgreSQL, each worker with its own connections (target ≥ 5,000
    /// steps/s). Needs --pg.
    PgRemote,
    /// memory-remote's flow with its steps run by the engine itself: the local executor's
    /// figure, for the ratio (same target).
    MemoryRemoteLocal,
    /// pg-remote's flow run by the engine itself, for the ratio. Needs --pg.
    PgRemoteLocal,
    /// A remote request's round trip through PostgreSQL — executor to worker and back, each
    /// on its own connection — median ms (target ≤ 5 ms). Needs --pg.
    PgRemoteRtt,
    /// The HTTP API on SQLite: `GET /api/plans/{id}` of a 10-step plan, answered per second
    /// to 16 keep-alive connections on loopback (target ≥ 10,000 requests/s).
    ApiPlan,
    /// What a flow-level concurrency limit and idempotency keys cost on SQLite: 1,000 plans ×
    /// 10 no-op steps submitted and run at once with a limit and a key per plan, over the
    /// same without (target ≥ 0.85: at most 15 % slower).
    SqliteLimits,
    /// The same on PostgreSQL, one node (target ≥ 0.85). Needs --pg.
    PgLimits,
    /// Everything above but the pg-* scenarios (those need --pg; ask for each by name).
    All,
}

impl Scenario {
    /// The scenarios `self` stands for: every one but the pg-* ones for [`Scenario::All`].
    pub fn expand(self) -> Vec<Scenario> {
        if self != Scenario::All {
            return vec![self];
        }
        vec![
            Scenario::MemoryUnordered,
            Scenario::MemoryLinear,
            Scenario::SqliteConcurrent,
            Scenario::SqliteLinear,
            Scenario::LivePlans,
            Scenario::Commands,
            Scenario::Flow100k,
            Scenario::Flow100kRss,
            Scenario::EventRtt,
            Scenario::PlanStarts,
            Scenario::DepsStart,
            Scenario::DepsBounce,
            Scenario::ResultMemory,
            Scenario::ResultSqlite,
            Scenario::SqliteJobs,
            Scenario::MemoryRemote,
            Scenario::ApiPlan,
            Scenario::SqliteLimits,
        ]
    }
}

/// How to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Runs per scenario; the median is reported.
    pub repeat: u32,
    /// A PostgreSQL server for the pg-* scenarios: a URL whose user may create databases
    /// (each run gets a fresh one).
    pub pg: Option<String>,
    /// Measure memory in this process instead of a fresh child (set in the child itself).
    pub in_process: bool,
    /// The `weft` binary, for the scenarios that run it.
    pub weft: PathBuf,
}

/// A benchmark could not be run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// What was asked for cannot be measured as given (a pg-* scenario without a server).
    #[error("{0}")]
    Input(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] weft_store::Error),
    /// A run failed or did not finish.
    #[error("{0}")]
    Failed(String),
}

/// One scenario's samples and its target.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figure {
    /// The scenario's name, as `weft bench` takes it.
    pub name: &'static str,
    /// What a sample counts: `steps/s`, `ms`, `MB RSS`, …
    pub unit: &'static str,
    /// Every run's figure.
    pub samples: Vec<f64>,
    /// The figure the median must reach.
    pub target: f64,
    /// Whether the target is a floor (throughput) rather than a ceiling (latency, memory).
    pub higher_is_better: bool,
}

impl Figure {
    /// The median sample.
    pub fn median(&self) -> f64 {
        support::median(self.samples.clone())
    }

    /// Whether the median meets the target.
    pub fn meets(&self) -> bool {
        if self.higher_is_better {
            self.median() >= self.target
        } else {
            self.median() <= self.target
        }
    }
}

/// Drops the databases the pg-* scenarios made on the `--pg` server. Call it once the
/// figures are in: the engines a scenario dropped keep their loops until the process ends,
/// and ending their sessions makes them warn.
pub async fn drop_databases(options: &Options) -> Result<(), Error> {
    match options.pg.as_deref() {
        Some(admin) => postgres::drop_databases(admin).await,
        None => Ok(()),
    }
}

/// Measures one scenario (not [`Scenario::All`]: [`Scenario::expand`] it first). The
/// databases a pg-* scenario makes are left for [`drop_databases`].
pub async fn measure(scenario: Scenario, options: &Options) -> Result<Figure, Error> {
    use support::{noop_flow, Backend};
    use weft_model::flow::FlowBuilder;
    let repeat = options.repeat;
    let weft = options.weft.as_path();
    Ok(match scenario {
        Scenario::MemoryUnordered => {
            let flow = noop_flow(FlowBuilder::unordered("bench"), 10_000);
            engine::throughput(
                "memory-unordered",
                200_000.0,
                repeat,
                Backend::Memory,
                flow,
                1,
            )
            .await?
        }
        Scenario::MemoryLinear => {
            let flow = noop_flow(FlowBuilder::linear("bench"), 10_000);
            engine::throughput("memory-linear", 50_000.0, repeat, Backend::Memory, flow, 1).await?
        }
        Scenario::SqliteConcurrent => {
            let flow = noop_flow(FlowBuilder::linear("bench"), 10);
            engine::throughput(
                "sqlite-concurrent",
                20_000.0,
                repeat,
                Backend::Sqlite,
                flow,
                1000,
            )
            .await?
        }
        Scenario::SqliteLinear => {
            let flow = noop_flow(FlowBuilder::linear("bench"), 1000);
            engine::throughput("sqlite-linear", 2_000.0, repeat, Backend::Sqlite, flow, 1).await?
        }
        Scenario::LivePlans if options.in_process => engine::live_plans().await?,
        Scenario::LivePlans => {
            processes::in_fresh_processes(weft, "live-plans", repeat.min(3)).await?
        }
        Scenario::Commands => processes::commands(weft, repeat.min(3)).await?,
        Scenario::CommandsPrinting => {
            processes::commands_printing(weft, repeat, Some((10_000, true))).await?
        }
        Scenario::CommandsPrintingUnlogged => {
            processes::commands_printing(weft, repeat, Some((10_000, false))).await?
        }
        Scenario::Flow100k => processes::flow_100k(weft, repeat.min(3), false).await?,
        Scenario::Flow100kRss => processes::flow_100k(weft, repeat.min(3), true).await?,
        Scenario::EventRtt => node::event_rtt(repeat).await?,
        Scenario::PlanStarts => node::plan_starts(repeat.min(3)).await?,
        Scenario::DepsStart => deps::deps_start(repeat).await?,
        Scenario::DepsBounce => deps::deps_bounce(repeat).await?,
        Scenario::ResultMemory => embed::result_latency(false, repeat).await?,
        Scenario::ResultSqlite => embed::result_latency(true, repeat).await?,
        Scenario::PgConcurrent => postgres::pg_throughput(pg(options)?, repeat, 1).await?,
        Scenario::PgTwoNodes => postgres::pg_throughput(pg(options)?, repeat, 2).await?,
        Scenario::PgSubmitLatency => postgres::pg_submit_latency(pg(options)?, repeat, 0.5).await?,
        Scenario::PgSubmitP99 => postgres::pg_submit_latency(pg(options)?, repeat, 0.99).await?,
        Scenario::SqliteJobs => {
            jobs::throughput(jobs::Board::Sqlite, None, repeat.min(3), 1).await?
        }
        Scenario::PgJobs => {
            jobs::throughput(jobs::Board::Postgres, Some(pg(options)?), repeat, 1).await?
        }
        Scenario::PgJobsTwoNodes => {
            jobs::throughput(jobs::Board::Postgres, Some(pg(options)?), repeat, 2).await?
        }
        Scenario::PgClaimLatency => jobs::claim_latency(pg(options)?, repeat).await?,
        Scenario::PgJobLatency => jobs::post_latency(pg(options)?, repeat).await?,
        Scenario::MemoryRemote => remote::throughput(None, repeat, false).await?,
        Scenario::MemoryRemoteLocal => remote::throughput(None, repeat, true).await?,
        Scenario::PgRemote => remote::throughput(Some(pg(options)?), repeat, false).await?,
        Scenario::PgRemoteLocal => remote::throughput(Some(pg(options)?), repeat, true).await?,
        Scenario::PgRemoteRtt => remote::round_trip(pg(options)?, repeat).await?,
        Scenario::ApiPlan => http::plan_reads(repeat).await?,
        Scenario::SqliteLimits => {
            limits::cost("sqlite-limits", repeat, || async {
                let scratch = support::Scratch::new(support::Backend::Sqlite)?;
                let store = scratch.store.clone();
                Ok((store, Box::new(scratch) as Box<dyn Send>))
            })
            .await?
        }
        Scenario::PgLimits => {
            let admin = pg(options)?;
            limits::cost("pg-limits", repeat, || async move {
                let url = postgres::pg_database(admin).await?;
                let store: weft_store::SharedStore =
                    std::sync::Arc::new(weft_store::postgres::PostgresStore::open(&url).await?);
                Ok((store, Box::new(()) as Box<dyn Send>))
            })
            .await?
        }
        Scenario::All => {
            return Err(Error::Input(
                "`all` stands for several scenarios: measure each of Scenario::expand".into(),
            ))
        }
    })
}

/// The PostgreSQL server the pg-* scenarios need.
fn pg(options: &Options) -> Result<&str, Error> {
    options.pg.as_deref().ok_or_else(|| {
        Error::Input(
            "the pg-* scenarios need a PostgreSQL server: --pg postgres://USER:PASSWORD@HOST:PORT/DB (or WEFT_BENCH_PG)"
                .into(),
        )
    })
}
