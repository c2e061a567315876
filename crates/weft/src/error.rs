//! What can go wrong for an application: each error says what, and about which plan, step or
//! task.

use weft_model::plan::{Outcome, State};
use weft_model::{Failure, PlanId};

/// Why an operation of the [`Engine`](crate::Engine) or a [`PlanHandle`](crate::PlanHandle)
/// failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed or cannot be reached.
    #[error(transparent)]
    Store(#[from] weft_store::Error),
    /// The engine refused or stopped.
    #[error(transparent)]
    Engine(#[from] weft_engine::Error),
    /// The flow is not valid.
    #[error(transparent)]
    Flow(#[from] weft_model::flow::Error),
    /// The inputs do not fit the flow.
    #[error("{0}")]
    Input(String),
    /// A Rust task the flow needs is registered neither here nor by any node of the store.
    #[error("no task `{task}` at version `{version}` is registered in this process or by any node of this store; register it (Registry::add) or start a node that has it")]
    Unregistered {
        /// The task's name.
        task: String,
        /// Its version.
        version: String,
    },
    /// The plan ended without success: its result and first failure.
    #[error("plan {plan} ended {outcome}{}", failure.as_ref().map(|f| format!(": {}", f.message)).unwrap_or_default())]
    Failed {
        /// The plan.
        plan: PlanId,
        /// Its result (`error` or `cancelled`).
        outcome: Outcome,
        /// Its first failure.
        failure: Option<Failure>,
    },
    /// The plan paused and waits for an operator (`weft plans resume`, `skip`, `cancel`).
    #[error("plan {plan} paused and waits for an operator{}", failure.as_ref().map(|f| format!(": {}", f.message)).unwrap_or_default())]
    Paused {
        /// The plan.
        plan: PlanId,
        /// Why.
        failure: Option<Failure>,
    },
    /// The plan's values (or a step's output) do not fit the type asked for.
    #[error("{0}")]
    Output(String),
    /// The engine was shut down.
    #[error("the engine is shut down")]
    ShutDown,
}

impl Error {
    /// The error of a plan that stopped in `state` with `outcome`, if that is not success.
    pub(crate) fn of_end(
        plan: PlanId,
        state: State,
        outcome: Outcome,
        failure: Option<Failure>,
    ) -> Option<Error> {
        match (state, outcome) {
            (State::Paused, _) => Some(Error::Paused { plan, failure }),
            (_, Outcome::Success | Outcome::Warning) => None,
            _ => Some(Error::Failed {
                plan,
                outcome,
                failure,
            }),
        }
    }
}
