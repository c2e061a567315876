//! A plan once submitted: wait for it to end, read its result as your type, or one step's
//! output. A handle made from a plan id ([`Engine::handle`](crate::Engine::handle)) works in
//! any process that shares the store.

use crate::Error;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::time::Duration;
use tokio::sync::watch;
use weft_engine::PlanEnd;
use weft_model::plan::State;
use weft_model::PlanId;
use weft_store::{PlanSnapshot, SharedStore};

/// How often a handle looks at the store for a plan executed elsewhere (a backstop where the
/// store wakes it).
const POLL: Duration = Duration::from_millis(50);

/// How the end of a plan executed in this process reaches its handle: `None` until it ends,
/// then the engine's answer (`Err` when this process stopped executing it; it goes on
/// elsewhere, and the handle then waits on the store).
pub(crate) type LocalEnd = watch::Receiver<Option<Result<PlanEnd, String>>>;

/// A submitted plan.
#[derive(Clone)]
pub struct PlanHandle {
    id: PlanId,
    store: SharedStore,
    local: Option<LocalEnd>,
}

impl std::fmt::Debug for PlanHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanHandle").field("id", &self.id).finish()
    }
}

impl PlanHandle {
    pub(crate) fn new(id: PlanId, store: SharedStore, local: Option<LocalEnd>) -> Self {
        PlanHandle { id, store, local }
    }

    /// A handle on plan `id` of `store`, without an [`Engine`](crate::Engine): it waits on
    /// the store, for a plan any process executes.
    pub fn of(store: SharedStore, id: PlanId) -> Self {
        PlanHandle::new(id, store, None)
    }

    /// The plan's id: keep it to get a handle again later, in this or another process.
    pub fn id(&self) -> PlanId {
        self.id
    }

    /// Waits until the plan has stopped or paused, wherever it runs; returns how it ended.
    pub async fn wait(&self) -> Result<PlanEnd, Error> {
        if let Some(local) = &self.local {
            let mut local = local.clone();
            let end = local
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|end| end.clone());
            if let Some(Ok(end)) = end {
                return Ok(end);
            }
            // Not executed to its end here (this engine stopped, or another node took it
            // over): it ends elsewhere.
        }
        self.wait_in_store().await.map(|snap| end_of(&snap))
    }

    /// Waits for the plan to end and returns its values as `T`: its inputs and every value
    /// its steps provided, by name (a later step's value over an earlier one's). A plan that
    /// did not succeed is an [`Error::Failed`] or [`Error::Paused`].
    pub async fn result<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let end = self.wait().await?;
        if let Some(e) = Error::of_end(self.id, end.state, end.outcome, end.failure) {
            return Err(e);
        }
        // A plan executed here brings its values with its end; else they are read back.
        let values: Map<String, Value> = if end.values.is_empty() {
            values_of(&self.store.load_plan(self.id).await?)
        } else {
            end.values.into_iter().collect()
        };
        serde_json::from_value(Value::Object(values)).map_err(|e| {
            Error::Output(format!(
                "plan {}'s values do not fit `{}`: {e}",
                self.id,
                std::any::type_name::<T>()
            ))
        })
    }

    /// Waits for the plan to end and returns step `step`'s output as `T`.
    pub async fn output<T: DeserializeOwned>(&self, step: &str) -> Result<T, Error> {
        let snap = self.ended().await?;
        let Some(index) = snap.steps.iter().position(|s| s.name == step) else {
            let names: Vec<&str> = snap.steps.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::Output(format!(
                "plan {} has no step `{step}`; its steps are: {}",
                self.id,
                names.join(", ")
            )));
        };
        let output = snap.steps[index].output.clone().unwrap_or(Value::Null);
        serde_json::from_value(output).map_err(|e| {
            Error::Output(format!(
                "the output of step `{step}` of plan {} does not fit `{}`: {e}",
                self.id,
                std::any::type_name::<T>()
            ))
        })
    }

    /// Waits for the end; the plan as stored if it succeeded, else why not.
    async fn ended(&self) -> Result<PlanSnapshot, Error> {
        let end = self.wait().await?;
        if let Some(e) = Error::of_end(self.id, end.state, end.outcome, end.failure) {
            return Err(e);
        }
        Ok(self.store.load_plan(self.id).await?)
    }

    /// Polls the store (woken early by its hints) until the plan stops or pauses.
    async fn wait_in_store(&self) -> Result<PlanSnapshot, Error> {
        let mut hints = self.store.hints();
        loop {
            if let Some(rx) = hints.as_mut() {
                rx.borrow_and_update();
            }
            let snap = self.store.load_plan(self.id).await?;
            if matches!(snap.plan.state, State::Stopped | State::Paused) {
                return Ok(snap);
            }
            match hints.as_mut() {
                Some(rx) => {
                    tokio::select! {
                        _ = rx.changed() => {}
                        _ = tokio::time::sleep(POLL) => {}
                    }
                }
                None => tokio::time::sleep(POLL).await,
            }
        }
    }
}

/// A plan's inputs and every value its steps provided, by name (a later step's value over an
/// earlier one's).
pub fn values_of(snap: &PlanSnapshot) -> Map<String, Value> {
    let mut values: Map<String, Value> = snap.plan.inputs.clone().into_iter().collect();
    for (def, step) in snap.plan.flow.steps.iter().zip(&snap.steps) {
        let Some(Value::Object(output)) = &step.output else {
            continue;
        };
        for name in &def.provides {
            if let Some(v) = output.get(name) {
                values.insert(name.clone(), v.clone());
            }
        }
    }
    values
}

/// How a stored plan ended: its state, result and first failure.
fn end_of(snap: &PlanSnapshot) -> PlanEnd {
    PlanEnd {
        plan: snap.plan.id,
        state: snap.plan.state,
        outcome: snap.outcome(),
        failure: snap.steps.iter().find_map(|s| s.failure.clone()),
        values: values_of(snap).into_iter().collect(),
    }
}
