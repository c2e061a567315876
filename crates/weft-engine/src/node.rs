//! A node: a long-lived process that executes the plans submitted to the store.
//!
//! A node registers itself and heartbeats. It claims plans that wait for a node (submitted, or
//! left `running` by a node that died), starts delayed and chained plans when due, delivers the
//! events and halts other processes post for the plans it holds, and declares dead any node
//! whose heartbeat is older than the lease: that node's execution locks are released, and its
//! plans are claimed again — their idempotent running steps re-run, the others error.
//!
//! Shutting down, a node starts nothing new, lets running steps finish within a grace period,
//! then kills what is left and releases its plans for the next node (or its next start).

use crate::director::{PlanEnd, Rescue};
use crate::engine::{Config, Engine, Error};
use crate::task::Registry;
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_model::plan;
use weft_model::{now_millis, step, Failure, PlanId};
use weft_store::{Change, Command, Due, NodeRecord, Reply, SharedStore};

/// How long a node's heartbeat stays good (default); past it, other nodes declare it dead.
pub const LEASE: Duration = Duration::from_secs(10);
/// How long running steps may take to finish when a node shuts down (default).
pub const GRACE: Duration = Duration::from_secs(10);
/// How often the mailbox is read: events and halts from other processes.
pub const MAILBOX_POLL: Duration = Duration::from_millis(5);
/// How often the store is asked for plans to claim, when the last ask found none.
pub const CLAIM_POLL: Duration = Duration::from_millis(50);
/// How often due delayed plans are looked for.
pub const SCHEDULE_POLL: Duration = Duration::from_millis(100);
/// The most plans claimed at once.
const CLAIM_BATCH: u32 = 256;

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
        }
    }
}

/// A running node.
pub struct Node {
    id: String,
    config: NodeConfig,
    store: SharedStore,
    engine: Engine,
}

impl Node {
    /// Registers a node. A previous incarnation of the same name whose heartbeat has lapsed
    /// is declared dead first (its plans are claimed again); one that is still alive makes
    /// this start fail.
    pub async fn start(
        store: SharedStore,
        registry: Arc<Registry>,
        config: NodeConfig,
    ) -> Result<Node, Error> {
        let now = now_millis();
        for other in store.nodes().await? {
            if other.name != config.name {
                continue;
            }
            let age = now - other.heartbeat_at;
            if age <= config.lease.as_millis() as i64 {
                return Err(Error::Refused(format!(
                    "a node named `{}` is already running (last heartbeat {}ms ago); give this one another --name",
                    config.name, age
                )));
            }
            let released = store.invalidate_node(other.id.clone()).await?;
            tracing::warn!(node = %other.id, plans = released.len(), "invalidated the previous incarnation of this node");
        }
        let id = format!("{}/{}", config.name, PlanId::new());
        store
            .register_node(NodeRecord {
                id: id.clone(),
                name: config.name.clone(),
                started_at: now,
                heartbeat_at: now,
            })
            .await?;
        let engine_config = Config {
            parallelism: config.parallelism,
            owner: id.clone(),
        };
        let engine = Engine::start(store.clone(), registry, engine_config);
        Ok(Node {
            id,
            config,
            store,
            engine,
        })
    }

    /// This incarnation's id (`NAME/UUID`): the owner of the locks it holds.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The engine executing this node's plans.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Runs until `shutdown` resolves (then shuts down gracefully) or the node learns it was
    /// declared dead by another (an error: it must not go on executing).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let mailbox = tokio::spawn(serve_mailbox(self.engine.clone(), self.id.clone()));
        let mut shutdown = std::pin::pin!(shutdown);
        let heartbeat_every = (self.config.lease / 5).max(Duration::from_millis(100));
        let mut heartbeat = tokio::time::interval(heartbeat_every);
        let mut invalidate =
            tokio::time::interval((self.config.lease / 2).max(Duration::from_millis(200)));
        let mut schedule = tokio::time::interval(SCHEDULE_POLL);
        let mut claim_at = tokio::time::Instant::now();
        let outcome = loop {
            tokio::select! {
                _ = &mut shutdown => break Ok(()),
                _ = heartbeat.tick() => {
                    match self.store.heartbeat(self.id.clone(), now_millis()).await {
                        Ok(()) => {}
                        Err(weft_store::Error::NotFound(_)) => {
                            break Err(Error::Refused(format!(
                                "node {} was declared dead by another node (its heartbeat lapsed); stopping",
                                self.id
                            )));
                        }
                        Err(e) => tracing::warn!("heartbeat failed: {e}"),
                    }
                }
                _ = invalidate.tick() => self.invalidate_dead().await,
                _ = schedule.tick() => self.start_due().await,
                _ = tokio::time::sleep_until(claim_at) => {
                    let claimed = self.claim().await;
                    let wait = if claimed == CLAIM_BATCH as usize { Duration::ZERO } else { CLAIM_POLL };
                    claim_at = tokio::time::Instant::now() + wait;
                }
            }
        };
        self.shut_down().await;
        mailbox.abort();
        outcome
    }

    /// Declares dead every other node whose heartbeat is older than the lease.
    async fn invalidate_dead(&self) {
        let Ok(nodes) = self.store.nodes().await else {
            return;
        };
        let cutoff = now_millis() - self.config.lease.as_millis() as i64;
        for n in nodes
            .into_iter()
            .filter(|n| n.id != self.id && n.heartbeat_at < cutoff)
        {
            match self.store.invalidate_node(n.id.clone()).await {
                Ok(plans) => {
                    tracing::warn!(node = %n.id, plans = plans.len(), "invalidated a dead node")
                }
                Err(e) => tracing::warn!(node = %n.id, "cannot invalidate a dead node: {e}"),
            }
        }
    }

    /// Promotes due delayed and chained plans; stops chained plans whose prerequisite failed.
    async fn start_due(&self) {
        let due = match self.store.promote_due(&self.id, now_millis()).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!("cannot look for due plans: {e}");
                return;
            }
        };
        for d in due {
            if let Due::FailedDependency { plan, prerequisite } = d {
                if let Err(e) = fail_dependency(&self.store, &self.id, plan, prerequisite).await {
                    tracing::warn!(%plan, "cannot stop a plan whose prerequisite failed: {e}");
                }
            }
        }
    }

    /// Claims plans that wait for a node and executes them; returns how many it claimed.
    async fn claim(&self) -> usize {
        let plans = match self.store.claim_plans(self.id.clone(), CLAIM_BATCH).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("cannot claim plans: {e}");
                return 0;
            }
        };
        for plan in &plans {
            let (engine, rescue, plan) = (self.engine.clone(), self.config.rescue, *plan);
            tokio::spawn(async move {
                match engine.execute(plan, rescue).await {
                    Ok(PlanEnd { state, outcome, .. }) => {
                        tracing::info!(%plan, %state, %outcome, "plan ended")
                    }
                    Err(Error::Stopped) => {}
                    Err(e) => tracing::warn!(%plan, "cannot execute: {e}"),
                }
            });
        }
        plans.len()
    }

    /// Starts nothing new, waits up to the grace period for running work, then kills what is
    /// left and releases every plan this node holds.
    async fn shut_down(&self) {
        self.engine.terminate();
        let mut in_flight = self.engine.in_flight();
        let idle = async {
            loop {
                let busy = *in_flight.borrow_and_update() > 0;
                if !busy || in_flight.changed().await.is_err() {
                    break;
                }
            }
        };
        let drained = tokio::time::timeout(self.config.grace, idle).await.is_ok();
        if !drained {
            tracing::warn!("grace period over; killing the steps still running (they re-run at the next start)");
        }
        self.engine.abandon();
        match self.store.invalidate_node(self.id.clone()).await {
            Ok(plans) => tracing::info!(plans = plans.len(), "released this node's plans"),
            Err(e) => tracing::warn!("cannot release this node's plans: {e}"),
        }
    }
}

/// Delivers the events and halts posted for the plans `owner` holds, and answers them.
pub async fn serve_mailbox(engine: Engine, owner: String) {
    let taken: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let mut tick = tokio::time::interval(MAILBOX_POLL);
    loop {
        tick.tick().await;
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
                let result = match message.command {
                    Command::Event {
                        step,
                        data,
                        optional,
                    } => engine.event(message.plan, step, data, optional).await,
                    Command::Halt => engine.halt(message.plan).await,
                };
                let reply = match result {
                    Ok(()) => Reply::Done,
                    Err(e) => Reply::Refused(e.to_string()),
                };
                if let Err(e) = engine.store().reply(message.id, reply).await {
                    tracing::warn!(message = message.id, "cannot answer a message: {e}");
                }
                taken
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&message.id);
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
