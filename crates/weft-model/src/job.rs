//! The job board's rules (TaskFlow's `taskflow.jobs.base`), free of any store: job priorities
//! and their order, the job state machine, who may claim, consume, abandon and trash a job,
//! and the errors TaskFlow raises. The stores hold jobs; these functions decide.
//!
//! ```
//! use weft_model::job::{self, Priority, State};
//! assert_eq!("very_high".parse::<Priority>(), Ok(Priority::VeryHigh));
//! assert_eq!(job::state_of(true, None), State::Unclaimed);
//! // Claiming a claimed job fails, even for its owner (TaskFlow's test_posting_claim_same_owner).
//! assert!(matches!(job::may_claim(true, Some("me"), "me"), Err(job::BoardError::UnclaimableJob(_))));
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;

/// A job's priority (modelled after Hadoop's, as TaskFlow's is). Ordered most urgent first:
/// `VeryHigh < High < Normal < Low < VeryLow`, so sorting puts what to claim first first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Priority {
    /// Extremely urgent.
    VeryHigh,
    /// Mildly urgent.
    High,
    /// The default.
    #[default]
    Normal,
    /// Not needed any time soon.
    Low,
    /// Very much not needed any time soon.
    VeryLow,
}

impl Priority {
    /// Every priority, most urgent first.
    pub const ALL: [Priority; 5] = [
        Priority::VeryHigh,
        Priority::High,
        Priority::Normal,
        Priority::Low,
        Priority::VeryLow,
    ];

    /// Its name as TaskFlow writes it: `VERY_HIGH`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::VeryHigh => "VERY_HIGH",
            Priority::High => "HIGH",
            Priority::Normal => "NORMAL",
            Priority::Low => "LOW",
            Priority::VeryLow => "VERY_LOW",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Priority {
    type Err = String;

    /// TaskFlow's `JobPriority.convert`: case-insensitive; an unknown value names the valid ones.
    fn from_str(s: &str) -> Result<Self, String> {
        let upper = s.to_ascii_uppercase();
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str() == upper)
            .ok_or_else(|| {
                let valid: Vec<&str> = Priority::ALL.iter().map(|p| p.as_str()).collect();
                format!(
                    "'{s}' is not a valid priority, valid priorities are {}",
                    valid.join(", ")
                )
            })
    }
}

/// TaskFlow's `JobPriority.reorder`: the values, most urgent priority first, keeping the given
/// order within a priority. At least one pair is required.
pub fn reorder<T>(pairs: Vec<(Priority, T)>) -> Result<Vec<T>, String> {
    if pairs.is_empty() {
        return Err("At least one (priority, value) pair is required".into());
    }
    let mut pairs = pairs;
    // A stable sort: equal priorities keep their order.
    pairs.sort_by_key(|(p, _)| *p);
    Ok(pairs.into_iter().map(|(_, v)| v).collect())
}

/// A job's state (TaskFlow's `states.UNCLAIMED`, `CLAIMED`, `COMPLETE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// On the board, owned by no one: claimable.
    Unclaimed,
    /// Owned by one entity, which works on it.
    Claimed,
    /// Consumed (done) — or gone from the board.
    Complete,
}

impl State {
    /// Whether the job may move from `self` to `to`: `unclaimed → claimed`, `claimed →
    /// unclaimed` (abandoned, or the claim lost), `claimed → complete`. Moving to the same
    /// state is allowed and changes nothing.
    pub fn allows(self, to: State) -> bool {
        self == to
            || matches!(
                (self, to),
                (State::Unclaimed, State::Claimed)
                    | (State::Claimed, State::Unclaimed)
                    | (State::Claimed, State::Complete)
            )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Unclaimed => "unclaimed",
            State::Claimed => "claimed",
            State::Complete => "complete",
        })
    }
}

/// A job's state as TaskFlow derives it from what the board holds: no posting means
/// complete; a posting without an owner, unclaimed; with one, claimed.
pub fn state_of(posted: bool, owner: Option<&str>) -> State {
    match (posted, owner) {
        (false, _) => State::Complete,
        (true, None) => State::Unclaimed,
        (true, Some(_)) => State::Claimed,
    }
}

/// Why a board operation was refused, as TaskFlow names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoardError {
    /// The job is not on the board (or, for consume and abandon, not claimed).
    #[error("{0}")]
    NotFound(String),
    /// The job is claimed already — by anyone, its owner included.
    #[error("{0}")]
    UnclaimableJob(String),
    /// The job is someone else's.
    #[error("{0}")]
    JobFailure(String),
    /// `who` is empty (TaskFlow's `check_who`).
    #[error("job applicant must be non-empty")]
    EmptyWho,
}

/// TaskFlow's `check_who`: the entity acting on a job must be named.
pub fn check_who(who: &str) -> Result<(), BoardError> {
    if who.is_empty() {
        Err(BoardError::EmptyWho)
    } else {
        Ok(())
    }
}

/// Whether `who` may claim a job that is `posted` (or not) and owned by `owner`.
pub fn may_claim(posted: bool, owner: Option<&str>, who: &str) -> Result<(), BoardError> {
    check_who(who)?;
    match state_of(posted, owner) {
        State::Complete => Err(BoardError::NotFound("the job is not on the board".into())),
        State::Claimed => Err(BoardError::UnclaimableJob(format!(
            "the job is already claimed by {}",
            owner.unwrap_or_default()
        ))),
        State::Unclaimed => Ok(()),
    }
}

/// Whether `who` may consume, abandon or trash a job: only its owner may (`JobFailure` for
/// anyone else); an unknown or unclaimed job is `NotFound` (TaskFlow's
/// `test_posting_abandon_no_owner`).
pub fn may_release(
    posted: bool,
    owner: Option<&str>,
    who: &str,
    action: &str,
) -> Result<(), BoardError> {
    check_who(who)?;
    match (posted, owner) {
        (false, _) => Err(BoardError::NotFound(format!(
            "cannot {action} a job that is not on the board"
        ))),
        (true, None) => Err(BoardError::NotFound(format!(
            "cannot {action} an unclaimed job"
        ))),
        (true, Some(o)) if o != who => Err(BoardError::JobFailure(format!(
            "cannot {action} a job owned by {o} (not {who})"
        ))),
        (true, Some(_)) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_convert_case_insensitively_and_name_the_valid_ones() {
        assert_eq!("HIGH".parse::<Priority>(), Ok(Priority::High));
        assert_eq!("very_low".parse::<Priority>(), Ok(Priority::VeryLow));
        assert_eq!("Normal".parse::<Priority>(), Ok(Priority::Normal));
        let err = "urgent".parse::<Priority>().expect_err("not a priority");
        assert_eq!(
            err,
            "'urgent' is not a valid priority, valid priorities are VERY_HIGH, HIGH, NORMAL, LOW, VERY_LOW"
        );
        assert_eq!(Priority::default(), Priority::Normal);
    }

    #[test]
    fn reorder_puts_the_most_urgent_first_and_keeps_order_within_a_priority() {
        assert_eq!(reorder(vec![(Priority::Low, 1)]), Ok(vec![1]));
        assert_eq!(
            reorder(vec![(Priority::Low, "a"), (Priority::High, "b")]),
            Ok(vec!["b", "a"])
        );
        assert_eq!(
            reorder(vec![
                (Priority::Normal, 1),
                (Priority::VeryLow, 2),
                (Priority::VeryHigh, 3),
                (Priority::Normal, 4),
                (Priority::High, 5),
            ]),
            Ok(vec![3, 5, 1, 4, 2])
        );
        assert!(reorder::<u8>(vec![]).is_err());
    }

    #[test]
    fn the_state_machine_has_taskflows_moves_and_ignores_same_state() {
        use State::*;
        for (from, to, ok) in [
            (Unclaimed, Claimed, true),
            (Claimed, Unclaimed, true),
            (Claimed, Complete, true),
            (Unclaimed, Unclaimed, true),
            (Complete, Complete, true),
            (Unclaimed, Complete, false),
            (Complete, Claimed, false),
            (Complete, Unclaimed, false),
        ] {
            assert_eq!(from.allows(to), ok, "{from} -> {to}");
        }
        assert_eq!(state_of(false, Some("x")), Complete);
        assert_eq!(state_of(true, None), Unclaimed);
        assert_eq!(state_of(true, Some("x")), Claimed);
    }

    #[test]
    fn claims_and_releases_follow_taskflows_errors() {
        assert_eq!(may_claim(true, None, ""), Err(BoardError::EmptyWho));
        assert_eq!(may_claim(true, None, "a"), Ok(()));
        // test_posting_claim_same_owner: a second claim fails, even by the owner.
        assert!(matches!(
            may_claim(true, Some("a"), "a"),
            Err(BoardError::UnclaimableJob(_))
        ));
        assert!(matches!(
            may_claim(false, None, "a"),
            Err(BoardError::NotFound(_))
        ));
        for action in ["consume", "abandon", "trash"] {
            assert_eq!(may_release(true, Some("a"), "a", action), Ok(()));
            assert!(matches!(
                may_release(true, Some("a"), "b", action),
                Err(BoardError::JobFailure(_))
            ));
            // test_posting_abandon_no_owner.
            assert!(matches!(
                may_release(true, None, "a", action),
                Err(BoardError::NotFound(_))
            ));
            assert!(matches!(
                may_release(false, None, "a", action),
                Err(BoardError::NotFound(_))
            ));
            assert_eq!(
                may_release(true, Some("a"), "", action),
                Err(BoardError::EmptyWho)
            );
        }
    }
}
