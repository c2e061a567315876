//! Rust tasks: the [`Task`] trait and the [`Registry`] that finds them by name and version.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_model::flow::TaskRef;
use weft_model::group::TaskEvent;
use weft_model::shape::Shape;
use weft_model::{Failure, PlanId};
use weft_store::BoxFuture;

/// What an executing task knows.
#[derive(Debug, Clone)]
pub struct Context {
    /// The plan.
    pub plan: PlanId,
    /// The step's name.
    pub step: String,
    /// The attempt, from 1.
    pub attempt: u32,
    /// Its required values, by name.
    pub inputs: Map<String, Value>,
    /// Set by [`Context::suspend`].
    pub(crate) suspension: Suspension,
    /// Cancelled when the step must stop: halted, timed out, cancelled, or the node stopping.
    pub(crate) cancel: tokio_util::sync::CancellationToken,
    /// Where its progress events go (the executor, or the worker answering for it).
    pub(crate) events: Option<Events>,
}

/// Where a running task's progress events go.
pub type Events = tokio::sync::mpsc::UnboundedSender<TaskEvent>;

/// Whether a task asked to suspend, and for how long.
#[derive(Debug, Clone, Default)]
pub(crate) struct Suspension(Arc<Mutex<Option<Option<Duration>>>>);

impl Suspension {
    /// The wait asked for, if any: `Some(None)` waits for ever.
    pub(crate) fn take(&self) -> Option<Option<Duration>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl Context {
    /// The context of a task run outside an engine — by a remote worker, for a request the
    /// executor sent: never cancelled, and a suspension it asks for is not honoured.
    pub fn new(
        plan: PlanId,
        step: impl Into<String>,
        attempt: u32,
        inputs: Map<String, Value>,
    ) -> Self {
        Context {
            plan,
            step: step.into(),
            attempt,
            inputs,
            suspension: Suspension::default(),
            cancel: tokio_util::sync::CancellationToken::new(),
            events: None,
        }
    }

    /// The same context, its progress events sent to `events` (a worker forwards them to
    /// the executor as `EVENT` responses).
    pub fn with_events(mut self, events: Events) -> Self {
        self.events = Some(events);
        self
    }

    /// Tells how far the task got (TaskFlow's `update_progress` and other events): kept with
    /// its step while it runs, shown by `weft plans show`; from a remote worker, sent as an
    /// `EVENT` response. The latest event replaces the one before.
    pub fn progress(&self, event_type: impl Into<String>, details: Map<String, Value>) {
        if let Some(events) = &self.events {
            let _ = events.send(TaskEvent {
                event_type: event_type.into(),
                details,
                at: weft_model::now_millis(),
            });
        }
    }

    /// Resolves when the step must stop — a halt, its timeout, the plan's cancel, or the
    /// process stopping. A task that can stop early selects on it and returns; one that does
    /// not is dropped after the step's `kill_timeout`. What it returns then is not its
    /// step's result (the step is recorded as halted or timed out).
    ///
    /// ```
    /// use weft_engine::task_fn;
    /// use weft_model::Failure;
    /// let poll = task_fn(|ctx| async move {
    ///     loop {
    ///         tokio::select! {
    ///             () = ctx.cancelled() => return Err(Failure::new("stopped", "asked to stop")),
    ///             () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
    ///                 // look at something, return Ok(...) when it is ready
    ///             }
    ///         }
    ///     }
    /// });
    /// # let _ = poll;
    /// ```
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// Whether the step has been asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Asks that, once `execute` returns `Ok`, the step wait for an event addressed to it
    /// (until `timeout`, if given) instead of succeeding. The event's data is merged into the
    /// output `execute` returned.
    pub fn suspend(&self, timeout: Option<Duration>) {
        *self.suspension.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(timeout);
    }
}

/// What a reverting task knows.
#[derive(Debug, Clone)]
pub struct RevertContext {
    /// As for execution.
    pub context: Context,
    /// What the task's execution returned.
    pub result: Option<Value>,
    /// The failure that made the plan revert.
    pub failure: Failure,
}

/// A unit of work with an optional undo. Output is a JSON object; every name the step
/// `provides` must be one of its keys.
pub trait Task: Send + Sync + 'static {
    /// Does the work.
    fn execute(&self, ctx: Context) -> BoxFuture<Result<Value, Failure>>;

    /// Undoes the work of a successful execution. The default does nothing.
    fn revert(&self, _ctx: RevertContext) -> BoxFuture<Result<(), Failure>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// The shapes of its input and output, for a typed task ([`crate::typed_fn`]); `None`
    /// (the default) for a task of JSON maps.
    fn shapes(&self) -> Option<(Shape, Shape)> {
        None
    }
}

/// A task made from an async closure, for tasks without revert.
pub struct FnTask<F>(F);

/// Wraps an async closure as a [`Task`].
///
/// ```
/// use weft_engine::task_fn;
/// let double = task_fn(|ctx| async move {
///     let n = ctx.inputs["n"].as_i64().unwrap_or(0);
///     Ok(serde_json::json!({ "doubled": n * 2 }))
/// });
/// # let _ = double;
/// ```
pub fn task_fn<F, Fut>(f: F) -> FnTask<F>
where
    F: Fn(Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, Failure>> + Send + 'static,
{
    FnTask(f)
}

impl<F, Fut> Task for FnTask<F>
where
    F: Fn(Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, Failure>> + Send + 'static,
{
    fn execute(&self, ctx: Context) -> BoxFuture<Result<Value, Failure>> {
        Box::pin((self.0)(ctx))
    }
}

/// Rust tasks by name and version.
#[derive(Default, Clone)]
pub struct Registry {
    tasks: HashMap<(String, String), Arc<dyn Task>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `task` as `name` at `version`, replacing any earlier one.
    pub fn register(
        &mut self,
        name: impl Into<String>,
        version: impl Into<String>,
        task: impl Task,
    ) -> &mut Self {
        self.tasks
            .insert((name.into(), version.into()), Arc::new(task));
        self
    }

    /// Registers `task` as `name` at `version` (replacing any earlier one) and returns how
    /// flows refer to it: [`FlowBuilder::step`](weft_model::flow::FlowBuilder::step) takes it,
    /// and a typed task's reference carries its input and output shapes.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        version: impl Into<String>,
        task: impl Task,
    ) -> TaskRef {
        let (name, version) = (name.into(), version.into());
        let (input, output) = match task.shapes() {
            Some((i, o)) => (Some(i), Some(o)),
            None => (None, None),
        };
        self.tasks
            .insert((name.clone(), version.clone()), Arc::new(task));
        TaskRef {
            name,
            version,
            input,
            output,
        }
    }

    /// Whether a task is registered as `name` at `version`.
    pub fn has(&self, name: &str, version: &str) -> bool {
        self.tasks
            .contains_key(&(name.to_string(), version.to_string()))
    }

    /// What this registry can run, as `name@version`, sorted: a node's capabilities.
    pub fn capabilities(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .tasks
            .keys()
            .map(|(n, v)| weft_model::flow::capability(n, v))
            .collect();
        all.sort();
        all
    }

    /// The task registered as `name` at `version`.
    pub fn get(&self, name: &str, version: &str) -> Option<Arc<dyn Task>> {
        self.tasks
            .get(&(name.to_string(), version.to_string()))
            .cloned()
    }
}
