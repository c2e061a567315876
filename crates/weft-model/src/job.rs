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

/// A job's id: a UUIDv7, so ids sort by posting time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub uuid::Uuid);

impl JobId {
    /// A fresh id.
    pub fn new() -> Self {
        JobId(uuid::Uuid::now_v7())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(JobId)
    }
}

/// How many times a job may be claimed without being consumed before it goes to the trash
/// (TaskFlow's "endless cycling" fix, made automatic).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

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

/// A job's state (TaskFlow's `states.UNCLAIMED`, `CLAIMED`, `COMPLETE`), and `trashed`: off
/// the board, kept for review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// On the board, owned by no one: claimable.
    Unclaimed,
    /// Owned by one entity, which works on it.
    Claimed,
    /// Consumed (done) — or gone from the board.
    Complete,
    /// Broken: taken off the board by its owner, an operator, or after too many attempts;
    /// kept for review, and put back by a retry.
    Trashed,
}

impl State {
    /// Whether the job may move from `self` to `to`: `unclaimed → claimed`, `claimed →
    /// unclaimed` (abandoned, or the claim lost), `claimed → complete`; to `trashed` from the
    /// board (`unclaimed` only by force), and back by a retry. Moving to the same state is
    /// allowed and changes nothing.
    pub fn allows(self, to: State) -> bool {
        self == to
            || matches!(
                (self, to),
                (State::Unclaimed, State::Claimed)
                    | (State::Claimed, State::Unclaimed)
                    | (State::Claimed, State::Complete)
                    | (State::Claimed | State::Unclaimed, State::Trashed)
                    | (State::Trashed, State::Unclaimed)
            )
    }

    /// Its name in the store and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unclaimed => "unclaimed",
            State::Claimed => "claimed",
            State::Complete => "complete",
            State::Trashed => "trashed",
        }
    }

    /// Whether the job is on the board (claimable now or later).
    pub fn on_board(self) -> bool {
        matches!(self, State::Unclaimed | State::Claimed)
    }
}

impl std::str::FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            State::Unclaimed,
            State::Claimed,
            State::Complete,
            State::Trashed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| format!("unknown job state `{s}`"))
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
        State::Complete | State::Trashed => {
            Err(BoardError::NotFound("the job is not on the board".into()))
        }
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

/// How a claim ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Done: the job leaves the board (TaskFlow's `consume`).
    Consume,
    /// Given back for another to claim (TaskFlow's `abandon`); once the job has been claimed
    /// `max_attempts` times, it goes to the trash instead.
    Abandon,
    /// Broken: off the board, kept for review (TaskFlow's `trash`). With `force`, an operator
    /// trashes a job that is not theirs, claimed or not.
    Trash {
        /// Whether someone other than the owner may trash it.
        force: bool,
    },
}

impl Release {
    /// The verb, for messages and history: `consume`, `abandon`, `trash`.
    pub fn verb(self) -> &'static str {
        match self {
            Release::Consume => "consume",
            Release::Abandon => "abandon",
            Release::Trash { .. } => "trash",
        }
    }
}

/// What the board holds of a job, as far as its transitions care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing<'a> {
    /// Its state.
    pub state: State,
    /// Who holds its claim.
    pub owner: Option<&'a str>,
    /// How many times it has been claimed (the number of the current claim, if claimed).
    pub attempts: u32,
    /// How many claims it gets before it goes to the trash.
    pub max_attempts: u32,
}

/// Where a decision moves a job, and why (for its history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The state it goes to.
    pub to: State,
    /// Why, when it is not plain from the move (a job trashed after too many attempts).
    pub note: Option<String>,
}

/// Whether `who` may claim the job (TaskFlow's rules: a claimed job is unclaimable, even by
/// its owner; one off the board is not found).
pub fn claim(job: Standing<'_>, who: &str) -> Result<Move, BoardError> {
    may_claim(job.state.on_board(), job.owner, who)?;
    Ok(Move {
        to: State::Claimed,
        note: None,
    })
}

/// Whether `who` may end its claim on the job `how`, and where the job goes. `attempt`, when
/// given, fences the write: a claimer whose claim was lost and taken again (a later attempt)
/// is refused with `JobFailure` even if it has the same name.
pub fn release(
    job: Standing<'_>,
    who: &str,
    attempt: Option<u32>,
    how: Release,
) -> Result<Move, BoardError> {
    check_who(who)?;
    let verb = how.verb();
    match job.state {
        State::Complete => {
            return Err(BoardError::NotFound(format!(
                "cannot {verb} a job that is complete"
            )))
        }
        State::Trashed => {
            return Err(BoardError::NotFound(format!(
                "cannot {verb} a job that is in the trash"
            )))
        }
        State::Unclaimed | State::Claimed => {}
    }
    if how == (Release::Trash { force: true }) {
        return Ok(Move {
            to: State::Trashed,
            note: Some(format!("trashed by {who}")),
        });
    }
    may_release(true, job.owner, who, verb)?;
    if let Some(attempt) = attempt.filter(|a| *a != job.attempts) {
        return Err(BoardError::JobFailure(format!(
            "cannot {verb} the job: claim {attempt} was lost (the job is on claim {})",
            job.attempts
        )));
    }
    Ok(match how {
        Release::Consume => Move {
            to: State::Complete,
            note: None,
        },
        Release::Abandon => lose(job, &format!("abandoned by {who}")),
        Release::Trash { .. } => Move {
            to: State::Trashed,
            note: Some(format!("trashed by {who}")),
        },
    })
}

/// Where a claimed job goes when its claim ends without consuming it (abandoned, or its owner
/// lost): back on the board, or to the trash once it has had `max_attempts` claims.
pub fn lose(job: Standing<'_>, why: &str) -> Move {
    if job.attempts >= job.max_attempts {
        Move {
            to: State::Trashed,
            note: Some(format!(
                "{why}, after {} of {} attempts",
                job.attempts, job.max_attempts
            )),
        }
    } else {
        Move {
            to: State::Unclaimed,
            note: Some(why.to_string()),
        }
    }
}

/// Whether a trashed job may go back on the board.
pub fn retry(job: Standing<'_>) -> Result<Move, BoardError> {
    if job.state != State::Trashed {
        return Err(BoardError::NotFound(format!(
            "only a trashed job can be retried; this one is {}",
            job.state
        )));
    }
    Ok(Move {
        to: State::Unclaimed,
        note: Some("retried from the trash".into()),
    })
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
            (Claimed, Trashed, true),
            (Trashed, Unclaimed, true),
            (Trashed, Claimed, false),
            (Complete, Trashed, false),
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

    fn standing(state: State, owner: Option<&str>, attempts: u32) -> Standing<'_> {
        Standing {
            state,
            owner,
            attempts,
            max_attempts: 3,
        }
    }

    #[test]
    fn a_lost_claim_cannot_release_and_abandons_end_in_the_trash() {
        let held = standing(State::Claimed, Some("a"), 2);
        assert_eq!(
            release(held, "a", Some(2), Release::Consume).map(|m| m.to),
            Ok(State::Complete)
        );
        // The claim was lost and taken again by the same name: attempt 1 is fenced off.
        assert!(matches!(
            release(held, "a", Some(1), Release::Consume),
            Err(BoardError::JobFailure(_))
        ));
        assert_eq!(
            release(held, "a", None, Release::Abandon).map(|m| m.to),
            Ok(State::Unclaimed)
        );
        let last = standing(State::Claimed, Some("a"), 3);
        assert_eq!(
            release(last, "a", None, Release::Abandon).map(|m| m.to),
            Ok(State::Trashed)
        );
        assert_eq!(lose(last, "owner lost").to, State::Trashed);
        // Forced trash by an operator, claimed or not; never of a finished job.
        assert_eq!(
            release(held, "ops", None, Release::Trash { force: true }).map(|m| m.to),
            Ok(State::Trashed)
        );
        assert!(matches!(
            release(held, "ops", None, Release::Trash { force: false }),
            Err(BoardError::JobFailure(_))
        ));
        assert!(matches!(
            release(
                standing(State::Complete, None, 1),
                "ops",
                None,
                Release::Trash { force: true }
            ),
            Err(BoardError::NotFound(_))
        ));
        assert_eq!(
            retry(standing(State::Trashed, None, 3)).map(|m| m.to),
            Ok(State::Unclaimed)
        );
        assert!(retry(held).is_err());
        assert!(matches!(
            claim(standing(State::Trashed, None, 3), "a"),
            Err(BoardError::NotFound(_))
        ));
    }
}
