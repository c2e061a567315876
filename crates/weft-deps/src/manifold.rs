//! Manifolds — what to run and what it needs — and the context a start function gets.

use crate::worker::{BoxFuture, Worker};
use crate::Error;
use std::any::{type_name, Any};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A resource a worker exposes to its dependents.
pub type Resource = Arc<dyn Any + Send + Sync>;

/// Starts a worker, given its context.
pub(crate) type StartFn =
    Arc<dyn Fn(Context) -> BoxFuture<Result<Arc<dyn Worker>, Error>> + Send + Sync>;
/// Exposes a resource of a running worker.
pub(crate) type OutputFn = Arc<dyn Fn(&Arc<dyn Worker>) -> Result<Resource, Error> + Send + Sync>;
/// Rewrites a worker's (or its start's) error.
pub(crate) type FilterFn = Arc<dyn Fn(Error) -> Error + Send + Sync>;

/// What the engine runs under one name.
#[derive(Clone)]
pub struct Manifold {
    /// Names of the manifolds whose resources it may get.
    pub inputs: Vec<String>,
    /// Starts its worker.
    pub start: StartFn,
    /// Exposes a resource of its worker to dependents (none: nothing is exposed).
    pub output: Option<OutputFn>,
    /// Rewrites its worker's errors before the engine judges them.
    pub filter: Option<FilterFn>,
}

impl Manifold {
    /// A manifold with these inputs and start function, exposing nothing.
    pub fn new<F, Fut>(inputs: &[&str], start: F) -> Manifold
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Arc<dyn Worker>, Error>> + Send + 'static,
    {
        Manifold {
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            start: Arc::new(move |ctx| Box::pin(start(ctx))),
            output: None,
            filter: None,
        }
    }

    /// Exposes `output(worker)` to dependents.
    pub fn with_output(
        mut self,
        output: impl Fn(&Arc<dyn Worker>) -> Result<Resource, Error> + Send + Sync + 'static,
    ) -> Self {
        self.output = Some(Arc::new(output));
        self
    }

    /// Exposes the resource the worker holds ([`Worker::resource`]).
    pub fn exposing_resource(self) -> Self {
        self.with_output(|w| {
            w.resource()
                .ok_or_else(|| Error::msg("the worker holds no resource"))
        })
    }

    /// Filters the worker's errors.
    pub fn with_filter(mut self, filter: impl Fn(Error) -> Error + Send + Sync + 'static) -> Self {
        self.filter = Some(Arc::new(filter));
        self
    }
}

/// An input as it was when the start was requested.
#[derive(Clone)]
pub(crate) enum Snapshot {
    NotRunning,
    Running(Result<Resource, Error>),
    NotExposed,
}

/// One `get` a start function made, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Access {
    /// The input asked for.
    pub name: String,
    /// The type asked for (empty for an existence check).
    #[serde(rename = "type")]
    pub kind: String,
    /// The error `get` returned, if any.
    pub error: Option<String>,
}

/// What a start function may use: its inputs' resources, as they were when the start was
/// requested. Using it after the start function returned fails.
pub struct Context {
    name: String,
    inputs: Vec<String>,
    snapshot: HashMap<String, Snapshot>,
    pub(crate) expired: Arc<AtomicBool>,
    pub(crate) log: Arc<Mutex<Vec<Access>>>,
    pub(crate) abort: tokio::sync::watch::Receiver<bool>,
}

impl Context {
    pub(crate) fn new(
        name: String,
        inputs: Vec<String>,
        snapshot: HashMap<String, Snapshot>,
        abort: tokio::sync::watch::Receiver<bool>,
    ) -> Context {
        Context {
            name,
            inputs,
            snapshot,
            expired: Arc::new(AtomicBool::new(false)),
            log: Arc::new(Mutex::new(Vec::new())),
            abort,
        }
    }

    /// The manifold's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The resource input `name` exposes, as a `T`.
    pub fn get<T: Any + Send + Sync + Clone>(&self, name: &str) -> Result<T, Error> {
        let result = self.lookup(name).and_then(|r| {
            r.downcast_ref::<T>().cloned().ok_or_else(|| {
                Error::msg(format!(
                    "{name:?} exposes no {} (a resource of another type)",
                    type_name::<T>()
                ))
            })
        });
        self.record(name, type_name::<T>(), &result);
        result
    }

    /// Whether input `name` is running (exposed or not).
    pub fn exists(&self, name: &str) -> Result<(), Error> {
        let result = match self.check(name) {
            Ok(Snapshot::Running(_)) | Ok(Snapshot::NotExposed) => Ok(()),
            Ok(Snapshot::NotRunning) => Err(Error::Missing(format!("{name:?} not running"))),
            Err(e) => Err(e),
        };
        self.record(name, "", &result);
        result
    }

    /// Resolves if the engine gives up on this start (it is stopping, or an input changed).
    pub async fn aborted(&self) {
        let mut abort = self.abort.clone();
        let _ = abort.wait_for(|a| *a).await;
    }

    fn check(&self, name: &str) -> Result<Snapshot, Error> {
        if self.expired.load(Ordering::SeqCst) {
            return Err(Error::msg(
                "expired context: cannot be used outside Start func",
            ));
        }
        if !self.inputs.iter().any(|i| i == name) {
            return Err(Error::Missing(format!("{name:?} not declared")));
        }
        Ok(self
            .snapshot
            .get(name)
            .cloned()
            .unwrap_or(Snapshot::NotRunning))
    }

    fn lookup(&self, name: &str) -> Result<Resource, Error> {
        match self.check(name)? {
            Snapshot::NotRunning => Err(Error::Missing(format!("{name:?} not running"))),
            Snapshot::NotExposed => Err(Error::Missing(format!("{name:?} not exposed"))),
            Snapshot::Running(r) => r,
        }
    }

    fn record<T>(&self, name: &str, kind: &str, result: &Result<T, Error>) {
        let access = Access {
            name: name.into(),
            kind: kind.into(),
            error: result.as_ref().err().map(|e| e.to_string()),
        };
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(access);
    }
}
