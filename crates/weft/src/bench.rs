//! `weft bench`: the benchmarks behind docs/benchmarks.md, run on the real engine and stores.
//!
//! Each scenario runs `--repeat` times and reports the median with the range, because these
//! machines are shared and noisy. Figures are throughput of durable steps (a step is two
//! persisted transitions: running, then success) unless said otherwise.

use crate::Fail;
use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use weft_engine::{task_fn, Config, Engine, Registry, Rescue};
use weft_model::flow::{Flow, FlowBuilder};
use weft_model::plan::Outcome;
use weft_store::SharedStore;

/// `weft bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// What to measure.
    #[arg(value_enum, default_value_t = Scenario::All)]
    scenario: Scenario,
    /// Runs per scenario; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// A PostgreSQL server for the pg-* scenarios (a URL whose user may create databases;
    /// each run gets a fresh one).
    #[arg(long, env = "WEFT_BENCH_PG")]
    pg: Option<String>,
    /// Measure memory in this process instead of a fresh child (used by the child itself).
    #[arg(long, hide = true)]
    in_process: bool,
}

/// The benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
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
    /// Everything above but the pg-* scenarios (those need --pg; ask for each by name).
    All,
}

/// Parallelism for no-op tasks: enough that round trips, not the limit, set the pace.
const NOOP_PARALLELISM: usize = 1024;

struct Figure {
    name: &'static str,
    unit: &'static str,
    samples: Vec<f64>,
    target: f64,
    higher_is_better: bool,
}

impl Figure {
    fn median(&self) -> f64 {
        let mut s = self.samples.clone();
        s.sort_by(|a, b| a.total_cmp(b));
        s[s.len() / 2]
    }

    fn meets(&self) -> bool {
        if self.higher_is_better {
            self.median() >= self.target
        } else {
            self.median() <= self.target
        }
    }
}

/// Runs the chosen benchmarks.
pub(crate) async fn run(args: BenchArgs) -> Result<u8, Fail> {
    let all = [
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
    ];
    let chosen: Vec<Scenario> = if args.scenario == Scenario::All {
        all.to_vec()
    } else {
        vec![args.scenario]
    };
    let mut figures = Vec::new();
    for scenario in chosen {
        let figure = match scenario {
            Scenario::MemoryUnordered => {
                let flow = noop_flow(FlowBuilder::unordered("bench"), 10_000);
                throughput(
                    "memory-unordered",
                    200_000.0,
                    args.repeat,
                    Backend::Memory,
                    flow,
                    1,
                )
                .await?
            }
            Scenario::MemoryLinear => {
                let flow = noop_flow(FlowBuilder::linear("bench"), 10_000);
                throughput(
                    "memory-linear",
                    50_000.0,
                    args.repeat,
                    Backend::Memory,
                    flow,
                    1,
                )
                .await?
            }
            Scenario::SqliteConcurrent => {
                let flow = noop_flow(FlowBuilder::linear("bench"), 10);
                throughput(
                    "sqlite-concurrent",
                    20_000.0,
                    args.repeat,
                    Backend::Sqlite,
                    flow,
                    1000,
                )
                .await?
            }
            Scenario::SqliteLinear => {
                let flow = noop_flow(FlowBuilder::linear("bench"), 1000);
                throughput(
                    "sqlite-linear",
                    2_000.0,
                    args.repeat,
                    Backend::Sqlite,
                    flow,
                    1,
                )
                .await?
            }
            Scenario::LivePlans if args.in_process => live_plans().await?,
            Scenario::LivePlans => in_fresh_processes("live-plans", args.repeat.min(3)).await?,
            Scenario::Commands => commands(args.repeat.min(3)).await?,
            Scenario::Flow100k => flow_100k(args.repeat.min(3), false).await?,
            Scenario::Flow100kRss => flow_100k(args.repeat.min(3), true).await?,
            Scenario::EventRtt => event_rtt(args.repeat).await?,
            Scenario::PlanStarts => plan_starts(args.repeat.min(3)).await?,
            Scenario::DepsStart => deps_start(args.repeat).await?,
            Scenario::DepsBounce => deps_bounce(args.repeat).await?,
            Scenario::PgConcurrent => pg_throughput(pg(&args)?, args.repeat, 1).await?,
            Scenario::PgTwoNodes => pg_throughput(pg(&args)?, args.repeat, 2).await?,
            Scenario::PgSubmitLatency => pg_submit_latency(pg(&args)?, args.repeat, 0.5).await?,
            Scenario::PgSubmitP99 => pg_submit_latency(pg(&args)?, args.repeat, 0.99).await?,
            Scenario::All => unreachable!("expanded above"),
        };
        if !args.json {
            print_figure(&figure);
        }
        figures.push(figure);
    }
    if args.json {
        let rows: Vec<Value> = figures
            .iter()
            .map(|f| {
                json!({
                    "scenario": f.name, "unit": f.unit, "median": f.median(), "samples": f.samples,
                    "target": f.target, "meets_target": f.meets(),
                })
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&rows).map_err(|e| Fail::Other(e.to_string()))?
        );
    }
    Ok(if figures.iter().all(Figure::meets) {
        0
    } else {
        1
    })
}

fn print_figure(f: &Figure) {
    let min = f.samples.iter().copied().fold(f64::INFINITY, f64::min);
    let max = f.samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let cmp = if f.higher_is_better { "≥" } else { "≤" };
    outln!(
        "{:<18} median {:>12.1} {:<8} (range {:.1}–{:.1}, n={})  target {cmp} {}  {}",
        f.name,
        f.median(),
        f.unit,
        min,
        max,
        f.samples.len(),
        f.target,
        if f.meets() { "ok" } else { "MISSED" }
    );
}

fn noop_flow(mut builder: FlowBuilder, steps: usize) -> Flow {
    for i in 0..steps {
        builder = builder.task(format!("s{i}"), "noop", "1", |t| t);
    }
    builder.build().expect("a generated flow is valid")
}

fn noop_registry() -> Arc<Registry> {
    let mut r = Registry::new();
    r.register("noop", "1", task_fn(|_| async { Ok(json!({})) }));
    Arc::new(r)
}

/// Which store a throughput scenario runs on.
#[derive(Clone, Copy)]
enum Backend {
    Memory,
    Sqlite,
}

/// A fresh store; a SQLite one lives in a temporary directory removed when this is dropped.
struct Scratch {
    store: SharedStore,
    dir: Option<std::path::PathBuf>,
}

impl Scratch {
    fn new(backend: Backend) -> Result<Scratch, Fail> {
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
async fn plan_all(
    engine: &Engine,
    flow: &Flow,
    count: usize,
) -> Result<Vec<weft_model::PlanId>, Fail> {
    let creating: Vec<_> = (0..count)
        .map(|_| {
            let (engine, flow) = (engine.clone(), flow.clone());
            async move { engine.plan(flow, BTreeMap::new()).await }
        })
        .collect();
    futures_join(creating)
        .await
        .into_iter()
        .map(|r| r.map_err(|e| Fail::Other(e.to_string())))
        .collect()
}

/// Executes every plan concurrently; fails unless all succeed.
async fn execute_all(engine: Engine, ids: Vec<weft_model::PlanId>) -> Result<(), Fail> {
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
        return Err(Fail::Other(format!(
            "only {succeeded} of {count} benchmark plans succeeded"
        )));
    }
    Ok(())
}

fn tempdir() -> Result<std::path::PathBuf, Fail> {
    let dir = std::env::temp_dir().join(format!(
        "weft-bench-{}-{}",
        std::process::id(),
        weft_model::now_millis()
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Fail::Other(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// Steps per second executing `plans` plans of `flow` at once on a fresh store each time.
async fn throughput(
    name: &'static str,
    target: f64,
    repeat: u32,
    backend: Backend,
    flow: Flow,
    plans: usize,
) -> Result<Figure, Fail> {
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

/// Awaits futures concurrently on the runtime, in order of their results.
async fn futures_join<T: Send + 'static>(
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

fn resident_mb() -> f64 {
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

/// Runs a memory scenario once per sample, each in a fresh `weft bench --in-process` child, so
/// that what earlier scenarios allocated does not count.
async fn in_fresh_processes(scenario: &'static str, repeat: u32) -> Result<Figure, Fail> {
    let exe = std::env::current_exe().map_err(|e| Fail::Other(e.to_string()))?;
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let out = tokio::process::Command::new(&exe)
            .args(["bench", scenario, "--repeat", "1", "--json", "--in-process"])
            .output()
            .await
            .map_err(|e| Fail::Other(e.to_string()))?;
        let rows: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            Fail::Other(format!(
                "the {scenario} child printed no figures ({e}); stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        })?;
        samples.push(rows[0]["median"].as_f64().unwrap_or(f64::NAN));
    }
    Ok(Figure {
        name: "live-plans",
        unit: "MB RSS",
        samples,
        target: 200.0,
        higher_is_better: false,
    })
}

/// Resident memory with 10,000 plans of 10 steps live in one engine: each plan's first step is
/// running (blocked on a gate) and nine wait behind it.
async fn live_plans() -> Result<Figure, Fail> {
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
    all.await.map_err(|e| Fail::Other(e.to_string()))??;
    Ok(Figure {
        name: "live-plans",
        unit: "MB RSS",
        samples,
        target: 200.0,
        higher_is_better: false,
    })
}

/// `weft run` of 200 `true` steps, minus 200 bare spawns of `true`, per step, in ms.
/// `weft submit` of a 100,000-task linear flow in a fresh process: seconds, or its peak RSS.
async fn flow_100k(repeat: u32, rss: bool) -> Result<Figure, Fail> {
    const TASKS: usize = 100_000;
    let exe = std::env::current_exe().map_err(|e| Fail::Other(e.to_string()))?;
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let dir = tempdir()?;
        let mut flow = String::from("name = \"wide\"\n");
        for i in 0..TASKS {
            flow.push_str(&format!("[[task]]\nname = \"t{i}\"\nrun = [\"true\"]\n"));
            if i > 0 {
                flow.push_str(&format!("after = [\"t{}\"]\n", i - 1));
            }
        }
        let file = dir.join("wide.toml");
        std::fs::write(&file, flow).map_err(|e| Fail::Other(e.to_string()))?;
        let t = Instant::now();
        let child = std::process::Command::new(&exe)
            .arg("submit")
            .arg(&file)
            .arg("--db")
            .arg(dir.join("weft.db"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| Fail::Other(e.to_string()))?;
        let pid = child.id() as libc::pid_t;
        let (status, maxrss_kb) = tokio::task::spawn_blocking(move || {
            let mut status = 0;
            // SAFETY: an all-zero rusage is valid; wait4 fills it for the child we spawned.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: waits for our own child, writing into the two locals.
            let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            (if rc == pid { status } else { -1 }, usage.ru_maxrss)
        })
        .await
        .map_err(|e| Fail::Other(e.to_string()))?;
        let secs = t.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(dir);
        if status != 0 {
            return Err(Fail::Other(
                "weft submit of the 100k-task flow failed".into(),
            ));
        }
        samples.push(if rss { maxrss_kb as f64 / 1024.0 } else { secs });
    }
    Ok(if rss {
        Figure {
            name: "flow-100k-rss",
            unit: "MB RSS",
            samples,
            target: 300.0,
            higher_is_better: false,
        }
    } else {
        Figure {
            name: "flow-100k",
            unit: "s",
            samples,
            target: 3.0,
            higher_is_better: false,
        }
    })
}

async fn commands(repeat: u32) -> Result<Figure, Fail> {
    const STEPS: usize = 200;
    let exe = std::env::current_exe().map_err(|e| Fail::Other(e.to_string()))?;
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let dir = tempdir()?;
        let mut flow = String::from("name = \"commands\"\n");
        for i in 0..STEPS {
            flow.push_str(&format!("[[task]]\nname = \"s{i}\"\nrun = [\"true\"]\n"));
            if i > 0 {
                flow.push_str(&format!("after = [\"s{}\"]\n", i - 1));
            }
        }
        let file = dir.join("commands.toml");
        std::fs::write(&file, flow).map_err(|e| Fail::Other(e.to_string()))?;
        let t = Instant::now();
        let status = tokio::process::Command::new(&exe)
            .arg("run")
            .arg(&file)
            .arg("--json")
            .arg("--db")
            .arg(dir.join("weft.db"))
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .map_err(|e| Fail::Other(e.to_string()))?;
        let weft_secs = t.elapsed().as_secs_f64();
        if !status.success() {
            return Err(Fail::Other("the commands flow failed".into()));
        }
        let t = Instant::now();
        for _ in 0..STEPS {
            tokio::process::Command::new("true")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .process_group(0)
                .status()
                .await
                .map_err(|e| Fail::Other(e.to_string()))?;
        }
        let spawn_secs = t.elapsed().as_secs_f64();
        samples.push((weft_secs - spawn_secs) * 1000.0 / STEPS as f64);
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(Figure {
        name: "commands",
        unit: "ms/step",
        samples,
        target: 2.0,
        higher_is_better: false,
    })
}

/// Runs a node on `store` until the returned sender is dropped or fired.
fn spawn_node(store: SharedStore, registry: Registry) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
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
    stop
}

/// Median milliseconds from posting an event for a suspended step (as `weft event` does) to
/// seeing its answer, with the step's success durable.
async fn event_rtt(repeat: u32) -> Result<Figure, Fail> {
    const EVENTS: usize = 100;
    let scratch = Scratch::new(Backend::Sqlite)?;
    let store = scratch.store.clone();
    let flow = FlowBuilder::linear("gate")
        .gate("wait", None, |t| t)
        .build()
        .expect("a generated flow is valid");
    let mut ids = Vec::new();
    for _ in 0..EVENTS * repeat as usize {
        let new = weft_store::NewPlan::new(flow.clone(), BTreeMap::new());
        ids.push(new.id);
        store.create_plan(new).await?;
    }
    let stop = spawn_node(store.clone(), Registry::new());
    let mut samples = Vec::new();
    for chunk in ids.chunks(EVENTS) {
        let mut rtts = Vec::with_capacity(EVENTS);
        for &id in chunk {
            // Wait until the gate is suspended.
            loop {
                let snap = store.load_plan(id).await?;
                if snap.steps[0].state == weft_model::step::State::Suspended {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let t = Instant::now();
            let command = weft_store::Command::Event {
                step: 0,
                data: json!({"ok": true}),
                optional: false,
            };
            let message = store.post(id, command).await?;
            let reply =
                crate::event::wait_for_answer(&store, message, Duration::from_secs(10)).await?;
            if reply != weft_store::Reply::Done {
                return Err(Fail::Other(format!(
                    "benchmark event was not taken: {reply:?}"
                )));
            }
            rtts.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        rtts.sort_by(|a, b| a.total_cmp(b));
        samples.push(rtts[rtts.len() / 2]);
    }
    let _ = stop.send(());
    Ok(Figure {
        name: "event-rtt",
        unit: "ms",
        samples,
        target: 2.0,
        higher_is_better: false,
    })
}

/// Plans per second a node starts and finishes, submitted through the store beforehand.
async fn plan_starts(repeat: u32) -> Result<Figure, Fail> {
    const PLANS: usize = 10_000;
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let scratch = Scratch::new(Backend::Sqlite)?;
        let store = scratch.store.clone();
        // Two no-op steps, then one that counts finished plans.
        let flow = FlowBuilder::linear("starts")
            .task("s0", "noop", "1", |t| t)
            .task("s1", "noop", "1", |t| t)
            .task("s2", "count", "1", |t| t)
            .build()
            .expect("a generated flow is valid");
        let submitting: Vec<_> = (0..PLANS)
            .map(|_| {
                let (store, flow) = (store.clone(), flow.clone());
                async move {
                    store
                        .create_plan(weft_store::NewPlan::new(flow, BTreeMap::new()))
                        .await
                }
            })
            .collect();
        for r in futures_join(submitting).await {
            r?;
        }
        let done = Arc::new(AtomicUsize::new(0));
        let mut registry = Registry::new();
        registry.register("noop", "1", task_fn(|_| async { Ok(json!({})) }));
        let d = done.clone();
        registry.register(
            "count",
            "1",
            task_fn(move |_| {
                let d = d.clone();
                async move {
                    d.fetch_add(1, Ordering::SeqCst);
                    Ok(json!({}))
                }
            }),
        );
        let t = Instant::now();
        let stop = spawn_node(store.clone(), registry);
        while done.load(Ordering::SeqCst) < PLANS {
            if t.elapsed() > Duration::from_secs(300) {
                return Err(Fail::Other(format!(
                    "only {} of {PLANS} plans finished in 300 s",
                    done.load(Ordering::SeqCst)
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        samples.push(PLANS as f64 / t.elapsed().as_secs_f64());
        let _ = stop.send(());
    }
    Ok(Figure {
        name: "plan-starts",
        unit: "plans/s",
        samples,
        target: 5000.0,
        higher_is_better: true,
    })
}

fn pg(args: &BenchArgs) -> Result<&str, Fail> {
    args.pg.as_deref().ok_or_else(|| {
        Fail::Input(
            "the pg-* scenarios need a PostgreSQL server: --pg postgres://USER:PASSWORD@HOST:PORT/DB (or WEFT_BENCH_PG)"
                .into(),
        )
    })
}

/// A fresh database on the benchmark server.
async fn pg_database(admin: &str) -> Result<String, Fail> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "weft_bench_{}_{}_{}",
        std::process::id(),
        weft_model::now_millis(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    Ok(weft_store::postgres::create_database(admin, &name).await?)
}

/// Steps per second: 1,000 plans × 10 no-op steps on PostgreSQL, split over `nodes` engines
/// that each have their own store (connections, writer, group commit), as separate nodes do.
async fn pg_throughput(admin: &str, repeat: u32, nodes: usize) -> Result<Figure, Fail> {
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
async fn pg_submit_latency(admin: &str, repeat: u32, quantile: f64) -> Result<Figure, Fail> {
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
        let (ran_tx, mut ran) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let mut registry = Registry::new();
        registry.register(
            "mark",
            "1",
            task_fn(move |_| {
                let ran_tx = ran_tx.clone();
                async move {
                    let _ = ran_tx.send(Instant::now());
                    Ok(json!({}))
                }
            }),
        );
        let stop = spawn_node(node_store, registry);
        // Let the node settle into idleness (registered, listening, first claims done).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut latencies = Vec::with_capacity(PLANS);
        for _ in 0..PLANS {
            let new = weft_store::NewPlan::new(flow.clone(), BTreeMap::new());
            let t = Instant::now();
            weft_store::Store::create_plan(&submitter, new).await?;
            let at = tokio::time::timeout(Duration::from_secs(10), ran.recv())
                .await
                .map_err(|_| Fail::Other("a submitted plan did not start within 10 s".into()))?
                .ok_or_else(|| Fail::Other("the node stopped".into()))?;
            latencies.push(at.duration_since(t).as_secs_f64() * 1000.0);
            // Idle again before the next one.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop.send(());
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

/// An engine whose restarts wait for nothing, so that a figure is the engine's own cost.
fn deps_config() -> weft_deps::EngineConfig {
    let mut config = weft_deps::EngineConfig::juju(|_| false);
    config.bounce_delay = Duration::ZERO;
    config.error_delay = Duration::ZERO;
    config
}

/// A manifold whose worker idles, counting its starts and exposing a unit resource.
fn counted_manifold(inputs: &[&str], starts: &Arc<AtomicUsize>) -> weft_deps::Manifold {
    let starts = starts.clone();
    let names: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
    weft_deps::Manifold::new(inputs, move |ctx| {
        let (starts, names) = (starts.clone(), names.clone());
        async move {
            for n in &names {
                ctx.exists(n)?;
            }
            starts.fetch_add(1, Ordering::SeqCst);
            Ok(weft_deps::TaskWorker::idle() as Arc<dyn weft_deps::Worker>)
        }
    })
    .with_output(|_| Ok(Arc::new(()) as weft_deps::Resource))
}

async fn wait_for_count(count: &AtomicUsize, want: usize) -> Result<(), Fail> {
    let t = Instant::now();
    while count.load(Ordering::SeqCst) < want {
        if t.elapsed() > Duration::from_secs(30) {
            return Err(Fail::Other(format!(
                "only {} of {want} manifolds started",
                count.load(Ordering::SeqCst)
            )));
        }
        tokio::task::yield_now().await;
    }
    Ok(())
}

async fn deps_start(repeat: u32) -> Result<Figure, Fail> {
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let engine = weft_deps::Engine::new(deps_config()).map_err(Fail::Other)?;
        let starts = Arc::new(AtomicUsize::new(0));
        let t = Instant::now();
        for chain in 0..100 {
            for depth in 0..10 {
                let name = format!("c{chain}d{depth}");
                let input = format!("c{chain}d{}", depth.max(1) - 1);
                let inputs: Vec<&str> = if depth == 0 {
                    vec![]
                } else {
                    vec![input.as_str()]
                };
                engine
                    .install(&name, counted_manifold(&inputs, &starts))
                    .await
                    .map_err(|e| Fail::Other(e.to_string()))?;
            }
        }
        wait_for_count(&starts, 1000).await?;
        // A start can be counted and then bounced: the report is the judge.
        while engine
            .report()
            .await
            .manifolds
            .values()
            .any(|m| m.state != weft_deps::State::Started)
        {
            if t.elapsed() > Duration::from_secs(30) {
                return Err(Fail::Other("not every manifold started within 30 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
        engine.kill();
        engine
            .wait()
            .await
            .map_err(|e| Fail::Other(e.to_string()))?;
    }
    Ok(Figure {
        name: "deps-start",
        unit: "ms",
        samples,
        target: 50.0,
        higher_is_better: false,
    })
}

async fn deps_bounce(repeat: u32) -> Result<Figure, Fail> {
    let mut samples = Vec::new();
    for _ in 0..repeat {
        let engine = weft_deps::Engine::new(deps_config()).map_err(Fail::Other)?;
        let starts = Arc::new(AtomicUsize::new(0));
        let (bounce_tx, bounce_rx) = tokio::sync::watch::channel(0u32);
        let root_starts = starts.clone();
        let root = weft_deps::Manifold::new(&[], move |_ctx| {
            let (root_starts, mut bounce) = (root_starts.clone(), bounce_rx.clone());
            async move {
                root_starts.fetch_add(1, Ordering::SeqCst);
                let seen = *bounce.borrow_and_update();
                let w: Arc<dyn weft_deps::Worker> =
                    weft_deps::TaskWorker::spawn(move |mut stop| async move {
                        tokio::select! {
                            _ = stop.requested() => Ok(()),
                            _ = bounce.wait_for(|b| *b != seen) => Err(weft_deps::Error::Bounce),
                        }
                    });
                Ok(w)
            }
        })
        .with_output(|_| Ok(Arc::new(()) as weft_deps::Resource));
        engine
            .install("root", root)
            .await
            .map_err(|e| Fail::Other(e.to_string()))?;
        for i in 0..1000 {
            engine
                .install(&format!("dep{i}"), counted_manifold(&["root"], &starts))
                .await
                .map_err(|e| Fail::Other(e.to_string()))?;
        }
        wait_for_count(&starts, 1001).await?;
        // Let stragglers settle, then bounce the root.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = starts.load(Ordering::SeqCst);
        let t = Instant::now();
        let _ = bounce_tx.send(1);
        wait_for_count(&starts, before + 1001).await?;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
        engine.kill();
        engine
            .wait()
            .await
            .map_err(|e| Fail::Other(e.to_string()))?;
    }
    Ok(Figure {
        name: "deps-bounce",
        unit: "ms",
        samples,
        target: 50.0,
        higher_is_better: false,
    })
}
