//! The state machine of one step of an execution plan.
//!
//! [`State::transition`] is the only way a step changes state; every code path goes through it.

use serde::{Deserialize, Serialize};

/// The state of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not started. The director moves it to `running` once every step it depends on succeeded,
    /// or to `skipped` / `cancelled` when the plan gives up on it.
    Pending,
    /// Persisted as running before its task starts (write-ahead). The executor's report moves
    /// it on; after a crash, recovery moves it back to `pending` (idempotent task) or to `error`.
    Running,
    /// Waiting for an event addressed to it; an event or its timeout moves it on.
    Suspended,
    /// Done; its output is recorded. A revert moves it to `reverting` (or straight to
    /// `reverted` when there is nothing to undo).
    Success,
    /// Failed. The director retries it (back to `running`) while attempts remain; an operator's
    /// resume re-runs it too.
    Error,
    /// Being skipped by a rescue; becomes `skipped`.
    Skipping,
    /// Given up on by a rescue or an operator. Final.
    Skipped,
    /// Its revert is running; the executor's report moves it to `reverted` or `revert_failed`
    /// (or a halt to `cancelled`).
    Reverting,
    /// Undone (or had nothing to undo). A subflow retry moves it back to `pending`.
    Reverted,
    /// Its revert failed; the plan pauses until an operator resumes it, which retries the revert.
    RevertFailed,
    /// Cancelled by halt or cancel. Final.
    Cancelled,
}

/// A transition the step state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("step cannot go from {from} to {to}")]
pub struct IllegalTransition {
    /// The state the step was in.
    pub from: State,
    /// The state that was asked for.
    pub to: State,
}

impl State {
    /// Every state, for tests and parsers.
    pub const ALL: [State; 11] = [
        State::Pending,
        State::Running,
        State::Suspended,
        State::Success,
        State::Error,
        State::Skipping,
        State::Skipped,
        State::Reverting,
        State::Reverted,
        State::RevertFailed,
        State::Cancelled,
    ];

    /// Whether a step may go from `self` to `to`.
    pub fn allows(self, to: State) -> bool {
        use State::*;
        matches!(
            (self, to),
            (Pending, Running | Skipped | Cancelled | Error)
                | (Running, Success | Error | Suspended | Cancelled | Pending)
                | (Suspended, Running | Success | Error | Cancelled)
                | (Success, Reverting | Reverted | Pending)
                | (Error, Running | Skipping | Skipped | Pending | Cancelled)
                | (Skipping, Skipped | Error)
                | (Reverting, Reverted | RevertFailed | Cancelled)
                | (Reverted, Pending)
                | (RevertFailed, Reverting | Reverted)
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

    /// No transition leaves this state.
    pub fn is_final(self) -> bool {
        matches!(self, State::Skipped | State::Cancelled)
    }

    /// The snake_case name used in the store, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        use State::*;
        match self {
            Pending => "pending",
            Running => "running",
            Suspended => "suspended",
            Success => "success",
            Error => "error",
            Skipping => "skipping",
            Skipped => "skipped",
            Reverting => "reverting",
            Reverted => "reverted",
            RevertFailed => "revert_failed",
            Cancelled => "cancelled",
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
            .ok_or_else(|| format!("unknown step state `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn final_states_have_no_way_out() {
        for from in State::ALL.into_iter().filter(|s| s.is_final()) {
            for to in State::ALL {
                assert!(!from.allows(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn no_state_transitions_to_itself() {
        for s in State::ALL {
            assert_eq!(s.transition(s), Err(IllegalTransition { from: s, to: s }));
        }
    }

    #[test]
    fn every_state_is_reachable_from_pending() {
        let mut seen = vec![State::Pending];
        let mut i = 0;
        while i < seen.len() {
            for to in State::ALL {
                if seen[i].allows(to) && !seen.contains(&to) {
                    seen.push(to);
                }
            }
            i += 1;
        }
        assert_eq!(seen.len(), State::ALL.len());
    }

    proptest! {
        /// Random event sequences: whatever is asked, the step only ever holds states reached by
        /// allowed transitions, and a refused transition leaves it where it was.
        #[test]
        fn random_sequences_never_take_a_disallowed_transition(
            targets in proptest::collection::vec(0usize..State::ALL.len(), 1..64)
        ) {
            let mut state = State::Pending;
            for t in targets {
                let to = State::ALL[t];
                match state.transition(to) {
                    Ok(next) => {
                        prop_assert!(state.allows(next));
                        state = next;
                    }
                    Err(e) => {
                        prop_assert_eq!(e.from, state);
                        prop_assert!(!state.allows(to));
                    }
                }
            }
        }

        #[test]
        fn names_round_trip(i in 0usize..State::ALL.len()) {
            let s = State::ALL[i];
            prop_assert_eq!(s.as_str().parse::<State>(), Ok(s));
        }
    }
}
