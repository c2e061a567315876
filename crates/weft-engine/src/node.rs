//! A node: a long-lived process that executes the plans submitted to the store, built as a set
//! of manifolds on the dependency engine (`weft-deps`):
//!
//! | manifold | inputs | what it does |
//! |---|---|---|
//! | `store` | — | opens the store and checks it every [`STORE_CHECK`]; fails when it is gone |
//! | `membership` | store | registers the node and heartbeats; fatal if another node declared it dead |
//! | `invalidator` | store | declares dead every node whose heartbeat is older than the lease, looking again when the oldest lease would lapse |
//! | `scheduler` | store | promotes due delayed and chained plans, exactly once across nodes |
//! | `executor` | store | the director and executor ([`Engine`]); drains within the grace period on stop |
//! | `claimer` | store, executor | claims plans that wait for a node and executes them |
//! | `mailbox` | executor | delivers events and halts other processes post |
//! | `reporter` | store | writes the engine's live report into the store for `weft status` |
//!
//! When the store fails, everything that depends on it stops, and comes back in order when it
//! returns: the new executor first releases the locks its predecessor held, then the claimer
//! claims those plans again — their idempotent running steps re-run, the others error.
//! Shutting down stops the manifolds in reverse dependency order: the executor lets running
//! steps finish within the grace period, then kills what is left; the node then releases its
//! plans for the next node (or its next start).

use crate::director::Rescue;
use crate::engine::{Config, Engine, Error};
use crate::task::Registry;
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_deps::{Context, Manifold, Resource, TaskWorker, Worker};
use weft_model::plan;
use weft_model::{now_millis, step, Failure, PlanId};
use weft_store::{Change, Due, NodeRecord, Reply, SharedStore};

/// How long a node's heartbeat stays good (default); past it, other nodes declare it dead.
pub const LEASE: Duration = Duration::from_secs(10);
/// How long running steps may take to finish when a node shuts down (default).
pub const GRACE: Duration = Duration::from_secs(10);
/// How often the mailbox is read: events and halts from other processes.
pub const MAILBOX_POLL: Duration = Duration::from_millis(5);
/// How often the store is asked for plans to claim, when the last ask found none.
pub const CLAIM_POLL: Duration = Duration::from_millis(50);
/// How often a node polls anyway when its store sends wake-up hints.
pub const HINTED_POLL: Duration = Duration::from_millis(500);

/// How often due delayed plans are looked for.
pub const SCHEDULE_POLL: Duration = Duration::from_millis(500);
/// How soon after a lease lapses the other nodes look (they schedule their check for it).
pub const LAPSE_MARGIN: Duration = Duration::from_millis(100);
/// How often the store is checked.
pub const STORE_CHECK: Duration = Duration::from_millis(500);
/// How often the node's report is written to the store.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);
/// The most plans claimed at once.
const CLAIM_BATCH: u32 = 256;

/// Opens the store (again, after a failure).
pub type Opener =
    Arc<dyn Fn() -> weft_store::BoxFuture<Result<SharedStore, weft_store::Error>> + Send + Sync>;

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's name; the same across restarts (default: the host name).
    pub name: String,
    /// How long a heartbeat stays good (default [`LEASE`]).
    pub lease: Duration,
    /// How long running steps may take to finish at shutdown (default [`GRACE`]).
    pub grace: Duration,
    /// The most steps running at once.
    pub parallelism: usize,
    /// What to do when a step fails for good, unless the flow says (default: pause, as
    /// Dynflow does).
    pub rescue: Rescue,
    /// Makes the executor that remote steps go to (default: none).
    pub remote: Option<Arc<dyn crate::remote::RemoteFactory>>,
    /// How much of each stream of a command's output is kept (see [`Config::log_cap`]).
    pub log_cap: usize,
    /// Delete stopped plans once they ended this long ago (with their history and output),
    /// checking every minute; none: keep everything.
    pub retention: Option<Duration>,
}

impl NodeConfig {
    /// A node called `name` with the defaults.
    pub fn new(name: impl Into<String>) -> Self {
        NodeConfig {
            name: name.into(),
            lease: LEASE,
            grace: GRACE,
            parallelism: Config::default().parallelism,
            rescue: Rescue::Pause,
            remote: None,
            log_cap: crate::logs::DEFAULT_CAP,
            retention: None,
        }
    }
}

/// An error that stops the whole node.
#[derive(Debug)]
struct Fatal(String);

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Fatal {}

fn is_fatal(e: &weft_deps::Error) -> bool {
    matches!(e, weft_deps::Error::Failed(inner) if inner.downcast_ref::<Fatal>().is_some())
}

fn failed(e: impl std::fmt::Display) -> weft_deps::Error {
    weft_deps::Error::msg(e.to_string())
}

/// A running node.
pub struct Node {
    id: String,
    /// The Rust tasks its registry has (`name@version`): it claims only plans needing no others.
    capabilities: Vec<String>,
    config: NodeConfig,
    opener: Opener,
    engine: weft_deps::DependencyEngine,
    /// The executor's engine while it runs: an application embedding the node executes the
    /// plans it submits on it, under the node's name.
    executor: Arc<tokio::sync::watch::Sender<Option<Engine>>>,
}

impl Node {
    /// Registers a node. A previous incarnation of the same name whose heartbeat has lapsed,
    /// or whose process on this machine is gone, is declared dead first (its plans are
    /// claimed again); one that is still alive makes this start fail.
    pub async fn start(
        opener: Opener,
        registry: Arc<Registry>,
        config: NodeConfig,
    ) -> Result<Node, Error> {
        let store = opener().await?;
        // Leases are judged by the store's clock (the database server's, on PostgreSQL).
        let now = store.clock().await?;
        for other in store.nodes().await? {
            if other.name != config.name {
                continue;
            }
            let age = now - other.heartbeat_at;
            // A previous incarnation on this machine whose process is gone is dead now, not
            // when its lease lapses: a supervisor restarting a crashed node succeeds at once.
            let gone = other
                .process
                .as_deref()
                .is_some_and(crate::process::identity::is_gone);
            if !gone && age <= weft_model::after(0, config.lease) {
                return Err(Error::Refused(format!(
                    "a node named `{}` is already running (last heartbeat {}ms ago); give this one another --name",
                    config.name, age
                )));
            }
            let released = store.invalidate_node(other.id.clone()).await?;
            tracing::warn!(node = %other.id, plans = released.len(), "invalidated the previous incarnation of this node");
        }
        let id = format!("{}/{}", config.name, PlanId::new());
        let node = NodeRecord {
            id: id.clone(),
            name: config.name.clone(),
            started_at: now,
            heartbeat_at: now,
            report: None,
            process: Some(crate::process::identity::this_process()),
            capabilities: registry.capabilities(),
        };
        store.register_node(node).await?;
        let deps_config = weft_deps::EngineConfig::juju(is_fatal);
        let engine = weft_deps::DependencyEngine::new(deps_config).map_err(Error::Refused)?;
        let node = Node {
            id,
            capabilities: registry.capabilities(),
            config,
            opener,
            engine,
            executor: Arc::new(tokio::sync::watch::channel(None).0),
        };
        node.install(registry).await?;
        Ok(node)
    }

    /// This incarnation's id (`NAME/UUID`): the owner of the locks it holds.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The engine of the node's executor while it runs (`None` while it restarts), for an
    /// application that executes the plans it submits itself: take a plan's lock as the
    /// node ([`Node::id`]) when storing it, then execute it on this engine.
    pub fn executor(&self) -> tokio::sync::watch::Receiver<Option<Engine>> {
        self.executor.subscribe()
    }

    /// The dependency engine the node is made of.
    pub fn manifolds(&self) -> &weft_deps::DependencyEngine {
        &self.engine
    }

    async fn install(&self, registry: Arc<Registry>) -> Result<(), Error> {
        let refused = |e: weft_deps::InstallError| Error::Refused(e.to_string());
        let e = &self.engine;
        e.install("store", self.store_manifold())
            .await
            .map_err(refused)?;
        e.install("membership", self.membership_manifold())
            .await
            .map_err(refused)?;
        e.install("invalidator", self.invalidator_manifold())
            .await
            .map_err(refused)?;
        e.install("scheduler", self.scheduler_manifold())
            .await
            .map_err(refused)?;
        e.install("schedules", schedules_manifold())
            .await
            .map_err(refused)?;
        e.install("executor", self.executor_manifold(registry))
            .await
            .map_err(refused)?;
        e.install("claimer", self.claimer_manifold())
            .await
            .map_err(refused)?;
        e.install("mailbox", self.mailbox_manifold())
            .await
            .map_err(refused)?;
        e.install("reporter", self.reporter_manifold())
            .await
            .map_err(refused)?;
        if let Some(keep) = self.config.retention {
            e.install("retention", retention_manifold(keep))
                .await
                .map_err(refused)?;
        }
        Ok(())
    }

    /// Runs until `shutdown` resolves (then shuts down gracefully) or a fatal error — this
    /// node declared dead by another — stops it.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let outcome = tokio::select! {
            _ = shutdown => Ok(()),
            ended = self.engine.wait() => Err(Error::Refused(match ended {
                Err(e) => format!("node {} stopped: {e}", self.id),
                Ok(()) => format!("node {} stopped", self.id),
            })),
        };
        self.engine.kill();
        let _ = self.engine.wait().await;
        // Release this node's plans for the next node, or its next start.
        match (self.opener)().await {
            Ok(store) => match store.invalidate_node(self.id.clone()).await {
                Ok(plans) => tracing::info!(plans = plans.len(), "released this node's plans"),
                Err(e) => tracing::warn!("cannot release this node's plans: {e}"),
            },
            Err(e) => tracing::warn!("cannot reach the store to release this node's plans: {e}"),
        }
        outcome
    }

    fn store_manifold(&self) -> Manifold {
        let opener = self.opener.clone();
        Manifold::new(&[], move |_ctx| {
            let opener = opener.clone();
            async move {
                let store = opener().await.map_err(failed)?;
                store.check().await.map_err(failed)?;
                let checked = store.clone();
                let worker = StoreWorker {
                    store,
                    task: TaskWorker::spawn(move |mut stop| async move {
                        loop {
                            tokio::select! {
                                _ = stop.requested() => return Ok(()),
                                _ = tokio::time::sleep(STORE_CHECK) => {}
                            }
                            if let Err(e) = checked.check().await {
                                return Err(failed(format!("store unreachable: {e}")));
                            }
                        }
                    }),
                };
                Ok(Arc::new(worker) as Arc<dyn Worker>)
            }
        })
        .exposing_resource()
    }

    fn membership_manifold(&self) -> Manifold {
        let (id, name, every) = (
            self.id.clone(),
            self.config.name.clone(),
            (self.config.lease / 5).max(Duration::from_millis(100)),
        );
        Manifold::new(&["store"], move |ctx: Context| {
            let (id, name) = (id.clone(), name.clone());
            async move {
                let store: SharedStore = ctx.get("store")?;
                Ok(TaskWorker::spawn(move |mut stop| async move {
                    loop {
                        match store.heartbeat(id.clone(), now_millis()).await {
                            Ok(()) => {
                                crate::metrics::metrics().heartbeats.inc();
                            }
                            Err(weft_store::Error::NotFound(_)) => {
                                return Err(weft_deps::Error::Failed(Arc::new(Fatal(format!(
                                    "node {id} ({name}) was declared dead by another node (its heartbeat lapsed)"
                                )))))
                            }
                            Err(e) => return Err(failed(format!("heartbeat failed: {e}"))),
                        }
                        tokio::select! {
                            _ = stop.requested() => return Ok(()),
                            _ = tokio::time::sleep(every) => {}
                        }
                    }
                }) as Arc<dyn Worker>)
            }
        })
    }

    /// Checks again at the moment the oldest live lease would lapse (and at least every half
    /// lease, to see nodes that join), so that a dead node is declared dead within
    /// [`LAPSE_MARGIN`] of its lease lapsing — not up to half a lease later.
    fn invalidator_manifold(&self) -> Manifold {
        let (id, lease) = (self.id.clone(), self.config.lease);
        let longest = (lease / 2).max(LAPSE_MARGIN);
        store_loop(move |store| {
            let id = id.clone();
            async move {
                let now = store.clock().await?;
                let others: Vec<NodeRecord> = store
                    .nodes()
                    .await?
                    .into_iter()
                    .filter(|n| n.id != id)
                    .collect();
                let (dead, next) = lease_check(now, lease, longest, &others);
                // This node and every other whose lease holds.
                crate::metrics::metrics()
                    .nodes_live
                    .set(1 + (others.len() - dead.len()) as i64);
                let counts = store.count_plans().await?;
                for state in weft_model::plan::State::ALL {
                    let n = counts
                        .iter()
                        .find(|(s, _)| *s == state)
                        .map_or(0, |(_, n)| *n);
                    crate::metrics::metrics()
                        .plans
                        .get_or_create(&vec![("state", state.to_string())])
                        .set(n as i64);
                }
                for n in dead {
                    let plans = store.invalidate_node(n.id.clone()).await?;
                    tracing::warn!(node = %n.id, plans = plans.len(), "invalidated a dead node");
                }
                // Plans held by a process on this machine that is gone (a killed `weft run`
                // or application) are released for claiming.
                crate::owner::release_dead_holders(&store).await?;
                Ok(next)
            }
        })
    }

    fn scheduler_manifold(&self) -> Manifold {
        let id = self.id.clone();
        store_loop(move |store| {
            let id = id.clone();
            async move {
                let now = store.clock().await?;
                for d in store.promote_due(&id, now).await? {
                    if let Due::FailedDependency { plan, prerequisite } = d {
                        fail_dependency(&store, &id, plan, prerequisite).await?;
                    }
                }
                Ok(SCHEDULE_POLL)
            }
        })
    }

    fn executor_manifold(&self, registry: Arc<Registry>) -> Manifold {
        let (id, parallelism, grace) =
            (self.id.clone(), self.config.parallelism, self.config.grace);
        let remote = self.config.remote.clone();
        let log_cap = self.config.log_cap;
        let published = self.executor.clone();
        Manifold::new(&["store"], move |ctx: Context| {
            let (id, registry, published) = (id.clone(), registry.clone(), published.clone());
            let remote = remote.clone();
            async move {
                let store: SharedStore = ctx.get("store")?;
                // A new executor holds nothing: free what its predecessor held, to claim again.
                let released = store.release_locks(id.clone()).await.map_err(failed)?;
                if !released.is_empty() {
                    tracing::info!(
                        plans = released.len(),
                        "released the plans of this node's previous executor"
                    );
                }
                let engine = Engine::start(
                    store,
                    registry,
                    Config {
                        parallelism,
                        owner: id,
                        remote,
                        log_cap,
                    },
                );
                let drained = engine.clone();
                published.send_replace(Some(engine.clone()));
                let worker = ExecutorWorker {
                    engine,
                    task: TaskWorker::spawn(move |mut stop| async move {
                        stop.requested().await;
                        published.send_replace(None);
                        drain(&drained, grace).await;
                        Ok(())
                    }),
                };
                Ok(Arc::new(worker) as Arc<dyn Worker>)
            }
        })
        .exposing_resource()
    }

    fn claimer_manifold(&self) -> Manifold {
        let (id, rescue) = (self.id.clone(), self.config.rescue);
        let capabilities = self.capabilities.clone();
        Manifold::new(&["store", "executor"], move |ctx: Context| {
            let (id, capabilities) = (id.clone(), capabilities.clone());
            async move {
                let store: SharedStore = ctx.get("store")?;
                let engine: Engine = ctx.get("executor")?;
                Ok(TaskWorker::spawn(move |mut stop| async move {
                    let mut wake = weft_store::Wakeups::new(store.hints(), |h| h.plans);
                    loop {
                        wake.mark();
                        let plans = store
                            .claim_plans(id.clone(), CLAIM_BATCH, capabilities.clone())
                            .await
                            .map_err(failed)?;
                        crate::metrics::metrics().claims.inc_by(plans.len() as u64);
                        for plan in &plans {
                            let (engine, plan) = (engine.clone(), *plan);
                            tokio::spawn(async move {
                                // The engine logs the plan's start and end.
                                match engine.execute(plan, rescue).await {
                                    Ok(_) | Err(Error::Stopped) => {}
                                    Err(e) => tracing::warn!(%plan, "cannot execute: {e}"),
                                }
                            });
                        }
                        // With wake-up hints (PostgreSQL), wait for one, polling only as a
                        // backstop; without, poll.
                        let wait = match (plans.len() == CLAIM_BATCH as usize, wake.exist()) {
                            (true, _) => Duration::ZERO,
                            (false, true) => HINTED_POLL,
                            (false, false) => CLAIM_POLL,
                        };
                        tokio::select! {
                            _ = stop.requested() => return Ok(()),
                            _ = tokio::time::sleep(wait) => {}
                            _ = wake.next() => {}
                        }
                    }
                }) as Arc<dyn Worker>)
            }
        })
    }

    fn mailbox_manifold(&self) -> Manifold {
        let id = self.id.clone();
        Manifold::new(&["executor"], move |ctx: Context| {
            let id = id.clone();
            async move {
                let engine: Engine = ctx.get("executor")?;
                Ok(TaskWorker::spawn(move |mut stop| async move {
                    tokio::select! {
                        _ = stop.requested() => {}
                        _ = serve_mailbox(engine, id) => {}
                    }
                    Ok(())
                }) as Arc<dyn Worker>)
            }
        })
    }

    /// Writes the report when it changed: an idle node writes nothing.
    fn reporter_manifold(&self) -> Manifold {
        let (id, engine) = (self.id.clone(), self.engine.clone());
        let written: Arc<Mutex<Option<serde_json::Value>>> = Arc::default();
        store_loop(move |store| {
            let (id, engine, written) = (id.clone(), engine.clone(), written.clone());
            async move {
                let report = engine.report().await;
                for (name, m) in &report.manifolds {
                    crate::metrics::metrics()
                        .manifold_starts
                        .get_or_create(&vec![("manifold", name.clone())])
                        .set(m.start_count as i64);
                }
                let value = serde_json::to_value(&report).unwrap_or(serde_json::Value::Null);
                let unchanged =
                    written.lock().unwrap_or_else(|p| p.into_inner()).as_ref() == Some(&value);
                if !unchanged {
                    store.set_node_report(id, value.clone()).await?;
                    *written.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
                }
                Ok(REPORT_EVERY)
            }
        })
    }
}

/// Which of `others` have let their lease lapse at `now` (the store's clock), and how long to
/// wait before looking again: until the oldest live lease would lapse, plus [`LAPSE_MARGIN`],
/// and never longer than `longest`.
fn lease_check(
    now: weft_model::Millis,
    lease: Duration,
    longest: Duration,
    others: &[NodeRecord],
) -> (Vec<&NodeRecord>, Duration) {
    let lease_ms = weft_model::after(0, lease);
    let cutoff = now.saturating_sub(lease_ms);
    let mut next = longest;
    let mut dead = Vec::new();
    for n in others {
        if n.heartbeat_at < cutoff {
            dead.push(n);
        } else {
            let lapses_in = n.heartbeat_at.saturating_add(lease_ms) - now;
            next = next.min(Duration::from_millis(lapses_in.max(0) as u64) + LAPSE_MARGIN);
        }
    }
    (dead, next)
}

/// How often a node looks for schedules that came or changed, at least.
const SCHEDULES_POLL: Duration = Duration::from_secs(1);

/// Fires schedules' ticks: wakes at the earliest next tick (or every [`SCHEDULES_POLL`], to
/// see new schedules) and fires what is due on the store's clock. Every node does; the
/// store's transaction makes each tick fire once.
fn schedules_manifold() -> Manifold {
    store_loop(|store| async move {
        let now = store.clock().await?;
        for (schedule, plan) in store.fire_schedules(now, None).await? {
            tracing::info!(%schedule, %plan, "schedule fired");
        }
        let now = store.clock().await?;
        let soonest = store
            .schedules()
            .await?
            .iter()
            .filter(|s| !s.paused)
            .filter_map(|s| s.next_at)
            .min();
        Ok(match soonest {
            // Still due after firing: a queued tick waits for its previous plan to stop.
            Some(at) if at <= now => SCHEDULES_POLL / 4,
            Some(at) => Duration::from_millis((at - now) as u64).min(SCHEDULES_POLL),
            None => SCHEDULES_POLL,
        })
    })
}

/// How often, at most, a node with a retention looks for plans to delete (a retention shorter
/// than this is checked as often as it is long, down to a second).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Deletes stopped plans older than `keep`, in bounded batches, now and again. Every node
/// with a retention may run it: on PostgreSQL batches skip rows another node is deleting.
fn retention_manifold(keep: Duration) -> Manifold {
    let every = keep.clamp(Duration::from_secs(1), PRUNE_EVERY);
    store_loop(move |store| async move {
        let pruned = crate::control::prune(&store, keep).await?;
        if pruned > 0 {
            tracing::info!(plans = pruned, "pruned stopped plans past the retention");
        }
        Ok(every)
    })
}

/// A manifold on `store` that runs `tick` now and again after the pause each tick returns,
/// failing (to be restarted after the error delay) when a tick fails.
fn store_loop<F, Fut>(tick: F) -> Manifold
where
    F: Fn(SharedStore) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<Duration, weft_store::Error>> + Send + 'static,
{
    Manifold::new(&["store"], move |ctx: Context| {
        let tick = tick.clone();
        async move {
            let store: SharedStore = ctx.get("store")?;
            Ok(TaskWorker::spawn(move |mut stop| async move {
                loop {
                    let pause = tick(store.clone()).await.map_err(failed)?;
                    tokio::select! {
                        _ = stop.requested() => return Ok(()),
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }) as Arc<dyn Worker>)
        }
    })
}

/// Lets running work finish within `grace`, then kills what is left (it re-runs at the next
/// start, by the idempotency rule).
async fn drain(engine: &Engine, grace: Duration) {
    engine.terminate();
    let mut in_flight = engine.in_flight();
    let idle = async {
        loop {
            let busy = *in_flight.borrow_and_update() > 0;
            if !busy || in_flight.changed().await.is_err() {
                break;
            }
        }
    };
    if tokio::time::timeout(grace, idle).await.is_err() {
        tracing::warn!(
            "grace period over; killing the steps still running (they re-run at the next start)"
        );
    }
    engine.abandon();
    // What the steps printed is written before the node goes (bounded: a store that is gone
    // does not hold the node up).
    let _ = tokio::time::timeout(Duration::from_secs(2), engine.flush_logs()).await;
}

/// The `store` manifold's worker: the store, checked until it fails.
struct StoreWorker {
    store: SharedStore,
    task: Arc<TaskWorker>,
}

impl Worker for StoreWorker {
    fn kill(&self) {
        self.task.kill();
    }
    fn resource(&self) -> Option<Resource> {
        Some(Arc::new(self.store.clone()))
    }
    fn wait(&self) -> weft_deps::BoxFuture<Result<(), weft_deps::Error>> {
        self.task.wait()
    }
}

/// The `executor` manifold's worker: the engine, drained when stopped.
struct ExecutorWorker {
    engine: Engine,
    task: Arc<TaskWorker>,
}

impl Worker for ExecutorWorker {
    fn kill(&self) {
        self.task.kill();
    }
    fn resource(&self) -> Option<Resource> {
        Some(Arc::new(self.engine.clone()))
    }
    fn wait(&self) -> weft_deps::BoxFuture<Result<(), weft_deps::Error>> {
        self.task.wait()
    }
}

/// Delivers the events and halts posted for the plans `owner` holds, and answers them.
pub async fn serve_mailbox(engine: Engine, owner: String) {
    let taken: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let mut wake = weft_store::Wakeups::new(engine.store().hints(), |h| h.mailbox);
    let every = if wake.exist() {
        HINTED_POLL
    } else {
        MAILBOX_POLL
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wake.next() => {}
        }
        wake.mark();
        let messages = match engine.store().inbox(owner.clone()).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("cannot read the mailbox: {e}");
                continue;
            }
        };
        for message in messages {
            if !taken
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(message.id)
            {
                continue;
            }
            let (engine, taken) = (engine.clone(), taken.clone());
            tokio::spawn(async move {
                let id = message.id;
                // The engine writes the reply with the changes it answers; only an engine
                // that stopped before deciding leaves it to be written here.
                if let Err(Error::Stopped) = engine.deliver(message).await {
                    let reply = Reply::Refused(Error::Stopped.to_string());
                    if let Err(e) = engine.store().reply(id, reply).await {
                        tracing::warn!(message = id, "cannot answer a message: {e}");
                    }
                }
                taken.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            });
        }
    }
}

/// Stops a chained plan whose prerequisite ended in error: its steps fail with
/// `failed_dependency`, and the plan goes from `scheduled` to `stopped` (result `error`).
pub async fn fail_dependency(
    store: &SharedStore,
    by: &str,
    plan: PlanId,
    prerequisite: PlanId,
) -> Result<(), weft_store::Error> {
    let snapshot = store.load_plan(plan).await?;
    let now = now_millis();
    let failure = Failure::new(
        "failed_dependency",
        format!("not started: plan {prerequisite}, which it is chained after, ended in error"),
    );
    let mut changes: Vec<Change> = snapshot
        .steps
        .into_iter()
        .filter(|s| s.state == step::State::Pending)
        .map(|s| {
            let rec = weft_store::StepRecord {
                state: step::State::Error,
                failure: Some(failure.clone()),
                ended_at: Some(now),
                ..s
            };
            Change::Step {
                plan,
                from: step::State::Pending,
                step: rec,
                at: now,
            }
        })
        .collect();
    changes.push(Change::plan_state_because(
        plan,
        plan::State::Scheduled,
        plan::State::Stopped,
        now,
        format!("failed-dependency: prerequisite plan {prerequisite} ended in error"),
    ));
    store.apply(by, changes).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 11): the check ran every half lease from each node's own start, so a
    /// lapsed lease could go unnoticed for half a lease. It is now scheduled for the lapse.
    #[test]
    fn the_next_lease_check_is_due_when_the_oldest_live_lease_lapses() {
        let node = |id: &str, beat| NodeRecord {
            id: id.into(),
            name: id.into(),
            started_at: 0,
            heartbeat_at: beat,
            report: None,
            process: None,
            capabilities: Vec::new(),
        };
        let lease = Duration::from_secs(10);
        let longest = lease / 2;
        let others = [node("a", 95_000), node("b", 91_500), node("dead", 89_999)];
        let (dead, next) = lease_check(100_000, lease, longest, &others);
        assert_eq!(
            dead.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
            ["dead"]
        );
        // b's lease lapses at 101,500: 1.5 s from now.
        assert_eq!(next, Duration::from_millis(1_500) + LAPSE_MARGIN);
        // Alone, a node still looks every half lease, to see nodes that join.
        assert_eq!(lease_check(100_000, lease, longest, &[]).1, longest);
        // A lease lapsing exactly now is looked at again right after the margin.
        let just = [node("c", 90_000)];
        let (dead, next) = lease_check(100_000, lease, longest, &just);
        assert!(dead.is_empty());
        assert_eq!(next, LAPSE_MARGIN);
    }
}
