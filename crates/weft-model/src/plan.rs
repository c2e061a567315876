//! Execution plans: one run of a flow with its inputs. The plan's state machine is Dynflow's;
//! its result is never stored but derived from its steps, as Dynflow derives it.

use crate::step;
use serde::{Deserialize, Serialize};

/// A plan's id: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlanId(pub uuid::Uuid);

impl PlanId {
    /// A fresh id.
    pub fn new() -> Self {
        PlanId(uuid::Uuid::now_v7())
    }
}

impl Default for PlanId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for PlanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for PlanId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(PlanId)
    }
}

/// The state of an execution plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Created, not yet planned.
    Pending,
    /// Waiting for its start time; the scheduler moves it to `planning` when due.
    Scheduled,
    /// Its steps are being worked out.
    Planning,
    /// Ready to run; a director's `start_execution` moves it to `running`.
    Planned,
    /// A director is executing it. It leaves when the plan finishes (`stopped`), needs an
    /// operator (`paused`), or its node dies (recovery moves it to `paused`, then on).
    Running,
    /// Waiting for an operator (or recovery): resume moves it back to `running`.
    Paused,
    /// Finished, for good. Its result says how it went.
    Stopped,
}

/// A transition the plan state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("plan cannot go from {from} to {to}")]
pub struct IllegalTransition {
    /// The state the plan was in.
    pub from: State,
    /// The state that was asked for.
    pub to: State,
}

impl State {
    /// Every state.
    pub const ALL: [State; 7] = [
        State::Pending,
        State::Scheduled,
        State::Planning,
        State::Planned,
        State::Running,
        State::Paused,
        State::Stopped,
    ];

    /// Whether a plan may go from `self` to `to` (Dynflow's `state_transitions`).
    pub fn allows(self, to: State) -> bool {
        use State::*;
        matches!(
            (self, to),
            (Pending, Stopped | Scheduled | Planning)
                | (Scheduled, Planning | Stopped)
                | (Planning, Planned | Stopped)
                | (Planned, Running | Stopped)
                | (Running, Paused | Stopped)
                | (Paused, Running | Stopped)
        )
    }

    /// Moves to `to` if allowed.
    #[must_use = "an illegal transition is an error to handle"]
    pub fn transition(self, to: State) -> Result<State, IllegalTransition> {
        if self.allows(to) {
            Ok(to)
        } else {
            Err(IllegalTransition { from: self, to })
        }
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Scheduled => "scheduled",
            State::Planning => "planning",
            State::Planned => "planned",
            State::Running => "running",
            State::Paused => "paused",
            State::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown plan state `{s}`; one of: {}",
                    State::ALL.map(State::as_str).join(", ")
                )
            })
    }
}

/// How a plan went, derived from its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Not decided yet.
    Pending,
    /// Every step succeeded.
    Success,
    /// Something was skipped.
    Warning,
    /// A step failed.
    Error,
    /// A step was cancelled.
    Cancelled,
}

impl Outcome {
    /// Dynflow's rule: any cancelled → cancelled, else any error (or failed revert) → error,
    /// else any skipping or skipped (or a step that finished with a warning) → warning, else
    /// all success → success, otherwise pending. Each item is a step's state and whether it
    /// finished with a warning.
    pub fn derive(steps: impl IntoIterator<Item = (step::State, bool)>) -> Outcome {
        let (mut cancelled, mut error, mut skipped, mut all_success, mut any) =
            (false, false, false, true, false);
        for (s, warned) in steps {
            any = true;
            skipped |= warned;
            match s {
                step::State::Cancelled => cancelled = true,
                step::State::Error | step::State::RevertFailed => error = true,
                step::State::Skipping | step::State::Skipped => skipped = true,
                _ => {}
            }
            all_success &= s == step::State::Success;
        }
        if cancelled {
            Outcome::Cancelled
        } else if error {
            Outcome::Error
        } else if skipped {
            Outcome::Warning
        } else if all_success && any {
            Outcome::Success
        } else {
            Outcome::Pending
        }
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Success => "success",
            Outcome::Warning => "warning",
            Outcome::Error => "error",
            Outcome::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use step::State as S;

    #[test]
    fn stopped_is_terminal() {
        for to in State::ALL {
            assert!(!State::Stopped.allows(to));
        }
    }

    #[test]
    fn result_is_derived_in_dynflow_order() {
        let derive = |states: &[S]| Outcome::derive(states.iter().map(|&s| (s, false)));
        assert_eq!(
            derive(&[S::Success, S::Cancelled, S::Error]),
            Outcome::Cancelled
        );
        assert_eq!(derive(&[S::Success, S::Error, S::Skipped]), Outcome::Error);
        assert_eq!(derive(&[S::Success, S::Skipping]), Outcome::Warning);
        assert_eq!(derive(&[S::Success, S::Success]), Outcome::Success);
        assert_eq!(derive(&[S::Success, S::Pending]), Outcome::Pending);
        assert_eq!(derive(&[S::Reverted, S::Error]), Outcome::Error);
        assert_eq!(
            Outcome::derive([(S::Success, true), (S::Success, false)]),
            Outcome::Warning
        );
    }

    proptest! {
        #[test]
        fn random_sequences_never_take_a_disallowed_transition(
            targets in proptest::collection::vec(0usize..State::ALL.len(), 1..32)
        ) {
            let mut state = State::Pending;
            for t in targets {
                let to = State::ALL[t];
                match state.transition(to) {
                    Ok(next) => state = next,
                    Err(e) => prop_assert!(!e.from.allows(to)),
                }
            }
            // Whatever happened, stopped is never left.
            if state == State::Stopped {
                for to in State::ALL {
                    prop_assert!(state.transition(to).is_err());
                }
            }
        }
    }
}
