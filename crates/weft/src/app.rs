//! The engine an application embeds: a node of its own (it claims, recovers, heartbeats and
//! is routed plans by what it registered) plus submitting flows and handles to await them.

use crate::handle::{LocalEnd, PlanHandle};
use crate::Error;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use weft_engine::node::{Node, NodeConfig, Opener};
use weft_engine::{Registry, Rescue};
use weft_model::flow::Flow;
use weft_model::PlanId;
use weft_store::{NewPlan, SharedStore};

/// How long starting waits for the node's executor (it needs the store open).
const EXECUTOR_START: Duration = Duration::from_secs(30);

/// How to start an [`Engine`]: [`Engine::builder`].
pub struct Builder {
    url: String,
    registry: Registry,
    name: Option<String>,
    parallelism: Option<usize>,
    lease: Option<Duration>,
    rescue: Rescue,
    conductor: Option<weft_board::ConductorConfig>,
}

impl Builder {
    /// The Rust tasks this process runs. Plans needing others run on nodes that have them.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// The node's name, the same across restarts so that a restarted process takes over
    /// at once what it left (default: the program's name and the host's). Two processes
    /// running at once need two names.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The most steps running at once (default: CPUs × 4).
    pub fn parallelism(mut self, steps: usize) -> Self {
        self.parallelism = Some(steps.max(1));
        self
    }

    /// How long a heartbeat stays good: other nodes take this one's plans over once it has
    /// been silent this long (default 10 s).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// What to do when a step fails for good, unless the flow says (default: revert what
    /// completed, as a saga does; `Rescue::Pause` waits for an operator instead).
    pub fn on_error(mut self, rescue: Rescue) -> Self {
        self.rescue = rescue;
        self
    }

    /// Also run a conductor: this process claims jobs from the board ([`Engine::board`]) whose
    /// flows it can run — their Rust tasks registered here — and runs each as a plan.
    pub fn conductor(mut self, config: weft_board::ConductorConfig) -> Self {
        self.conductor = Some(config);
        self
    }

    /// Opens the store (creating a SQLite file, migrating a PostgreSQL database) and starts
    /// the node: plans this application was executing when it last stopped are taken up again.
    pub async fn start(self) -> Result<Engine, Error> {
        let store = weft_store::open(&self.url).await?;
        // The node starts on this same store — one writer per process, as everywhere in weft
        // — and reopens the URL only after a failure (an in-memory store is never reopened).
        let first = Mutex::new(Some(store.clone()));
        let reopen = (!self.url.starts_with("memory:")).then(|| self.url.clone());
        let kept = store.clone();
        let opener: Opener = Arc::new(move || {
            let given = first.lock().unwrap_or_else(|p| p.into_inner()).take();
            let (reopen, kept) = (reopen.clone(), kept.clone());
            Box::pin(async move {
                match (given, reopen) {
                    (Some(store), _) => Ok(store),
                    (None, Some(url)) => weft_store::open(&url).await,
                    (None, None) => Ok(kept),
                }
            })
        });
        let mut config = NodeConfig::new(self.name.unwrap_or_else(default_name));
        if let Some(p) = self.parallelism {
            config.parallelism = p;
        }
        if let Some(lease) = self.lease {
            config.lease = lease;
        }
        config.rescue = self.rescue;
        // Steps marked remote go to workers (`weft worker`, `weft::worker::Worker`).
        config.remote = Some(Arc::new(weft_worker::RemoteSteps::default()));
        let registry = Arc::new(self.registry);
        let capabilities = registry.capabilities();
        let node = Node::start(opener, registry, config).await?;
        let node_id = node.id().to_string();
        if let Some(conductor) = self.conductor {
            let manifold =
                weft_board::conductor::manifold(node_id.clone(), capabilities.clone(), conductor);
            node.manifolds()
                .install("conductor", manifold)
                .await
                .map_err(|e| Error::Engine(weft_engine::Error::Refused(e.to_string())))?;
        }
        let mut executor = node.executor();
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(node.run(async {
            let _ = stopped.await;
        }));
        // Ready once the executor runs (it frees what an earlier executor held first).
        let ready = tokio::time::timeout(EXECUTOR_START, executor.wait_for(Option::is_some));
        if !matches!(ready.await, Ok(Ok(_))) {
            let _ = stop.send(());
            let why = match running.await {
                Ok(Err(e)) => e.to_string(),
                _ => format!(
                    "its executor did not start within {} s",
                    EXECUTOR_START.as_secs()
                ),
            };
            return Err(Error::Engine(weft_engine::Error::Refused(format!(
                "the engine's node did not start: {why}"
            ))));
        }
        Ok(Engine {
            inner: Arc::new(Inner {
                store,
                node_id,
                executor,
                capabilities,
                rescue: self.rescue,
                stop: Mutex::new(Some(stop)),
                running: tokio::sync::Mutex::new(Some(running)),
            }),
        })
    }
}

/// The program's name and the host's: a node name that stays the same across restarts.
fn default_name() -> String {
    let program = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "app".into());
    format!("{program}-{}", weft_engine::process::identity::hostname())
}

/// weft inside an application: submit flows, await their results; a node on the store in
/// the background. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: SharedStore,
    node_id: String,
    executor: watch::Receiver<Option<weft_engine::Engine>>,
    capabilities: Vec<String>,
    rescue: Rescue,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    running: tokio::sync::Mutex<Option<tokio::task::JoinHandle<Result<(), weft_engine::Error>>>>,
}

impl Engine {
    /// An engine on the store at `url`: `sqlite://PATH` or a path (one file), `postgres://…`
    /// (many machines), or `memory:` (nothing kept; for tests).
    pub fn builder(url: impl Into<String>) -> Builder {
        Builder {
            url: url.into(),
            registry: Registry::new(),
            name: None,
            parallelism: None,
            lease: None,
            rescue: Rescue::Revert,
            conductor: None,
        }
    }

    /// The store it uses.
    pub fn store(&self) -> &SharedStore {
        &self.inner.store
    }

    /// The job board kept in its store (TaskFlow's `JobBoard`): post jobs for conductors —
    /// this process's, with [`Builder::conductor`], or `weft serve` nodes' — to run.
    pub fn board(&self) -> weft_board::JobBoard {
        weft_board::JobBoard::new("weft", self.inner.store.clone())
    }

    /// Its node's id (`NAME/UUID`): the owner of the plans it executes.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// Stores a plan of `flow` with `inputs` (a struct or map whose fields are the flow's
    /// inputs; `()` for none) and starts it: here when this process has every Rust task it
    /// needs, else on a node that has. Refused before anything is stored when the inputs do
    /// not fit or a task is registered nowhere.
    pub async fn submit(&self, flow: &Flow, inputs: impl Serialize) -> Result<PlanHandle, Error> {
        let inputs = bind(flow, inputs)?;
        let here = self.check_needs(flow).await?;
        let new = NewPlan::new(flow.clone(), inputs);
        let id = new.id;
        if !here {
            // For a node that has the tasks: stored unlocked, claimed there.
            self.inner.store.create_plan(new).await?;
            return Ok(PlanHandle::new(id, self.inner.store.clone(), None));
        }
        // Stored locked by this node and executed right here; the call returns once the
        // plan is durable.
        let (stored, durable) = oneshot::channel();
        let local = self.execute_here(new, stored);
        match durable.await {
            Ok(Ok(())) => Ok(PlanHandle::new(id, self.inner.store.clone(), Some(local))),
            Ok(Err(e)) => Err(Error::Store(e)),
            Err(_) => Err(Error::ShutDown),
        }
    }

    /// Like [`Engine::submit`], once per idempotency `key`: if any process sharing the store
    /// submitted a plan with `key` less than `window` ago, that plan's handle comes back and
    /// nothing new is stored. The plan is stored for claiming (by this node when it has the
    /// tasks), so that racing submitters agree on one.
    pub async fn submit_once(
        &self,
        flow: &Flow,
        inputs: impl Serialize,
        key: impl Into<String>,
        window: Duration,
    ) -> Result<PlanHandle, Error> {
        let key = key.into();
        if key.is_empty() {
            return Err(Error::Input("an idempotency key must not be empty".into()));
        }
        let inputs = bind(flow, inputs)?;
        self.check_needs(flow).await?;
        let window = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let held = self
            .inner
            .store
            .create_plan_once(NewPlan::new(flow.clone(), inputs), key, window)
            .await?;
        Ok(PlanHandle::new(held, self.inner.store.clone(), None))
    }

    /// A handle on a stored plan — submitted by this process, an earlier one, or another.
    pub fn handle(&self, id: PlanId) -> PlanHandle {
        PlanHandle::new(id, self.inner.store.clone(), None)
    }

    /// Stops the node: running steps get their grace to finish; what is left is taken up
    /// when an engine of the same name (or any node) starts again.
    pub async fn shutdown(&self) -> Result<(), Error> {
        let stop = self
            .inner
            .stop
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let running = self.inner.running.lock().await.take();
        match running {
            Some(task) => match task.await {
                Ok(result) => result.map_err(Error::from),
                Err(e) => Err(Error::Engine(weft_engine::Error::Refused(format!(
                    "the node's task failed: {e}"
                )))),
            },
            None => Ok(()),
        }
    }

    /// Whether this process can run every Rust task `flow` needs; if not, refuses a task no
    /// node has ever registered with the store (a misspelt one): a plan needing a task whose
    /// nodes are all down is stored, and waits for one.
    async fn check_needs(&self, flow: &Flow) -> Result<bool, Error> {
        let missing: Vec<String> = flow
            .needs()
            .into_iter()
            .filter(|n| !self.inner.capabilities.contains(n))
            .collect();
        if missing.is_empty() {
            return Ok(true);
        }
        let known = self.inner.store.known_capabilities().await?;
        for need in missing {
            if !known.contains(&need) {
                let (task, version) = need.rsplit_once('@').unwrap_or((need.as_str(), ""));
                return Err(Error::Unregistered {
                    task: task.to_string(),
                    version: version.to_string(),
                });
            }
        }
        Ok(false)
    }

    /// Stores and executes a new plan on the node's executor, as the node; `stored` learns
    /// when it is durable, and the returned receiver its end.
    fn execute_here(
        &self,
        new: NewPlan,
        stored: oneshot::Sender<Result<(), weft_store::Error>>,
    ) -> LocalEnd {
        let (tx, rx) = watch::channel(None);
        let mut executor = self.inner.executor.clone();
        let rescue = self.inner.rescue;
        tokio::spawn(async move {
            let engine = executor
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|engine| engine.clone());
            let Some(engine) = engine else {
                let _ = stored.send(Err(weft_store::Error::Unavailable(
                    "the node stopped".into(),
                )));
                let _ = tx.send(Some(Err("the node stopped".into())));
                return;
            };
            // The handle learns the end once it is durable, not after the lock's release.
            let (told, early) = oneshot::channel();
            let executing = engine.submit_and_execute(new, rescue, stored, told);
            tokio::pin!(executing);
            tokio::select! {
                Ok(end) = early => {
                    let _ = tx.send(Some(Ok(end)));
                    let _ = executing.await;
                }
                result = &mut executing => {
                    let _ = tx.send(Some(result.map_err(|e| e.to_string())));
                }
            }
        });
        rx
    }
}

/// A flow's inputs from a struct or map, checked against the flow.
fn bind(flow: &Flow, inputs: impl Serialize) -> Result<BTreeMap<String, serde_json::Value>, Error> {
    let given = match serde_json::to_value(inputs) {
        Ok(serde_json::Value::Object(map)) => map.into_iter().collect(),
        Ok(serde_json::Value::Null) => BTreeMap::new(),
        Ok(other) => {
            return Err(Error::Input(format!(
                "a plan's inputs are a struct or a map of named values, not {other}"
            )))
        }
        Err(e) => {
            return Err(Error::Input(format!(
                "the inputs cannot be written as JSON: {e}"
            )))
        }
    };
    flow.bind_inputs(given)
        .map_err(|e| Error::Input(e.to_string()))
}
