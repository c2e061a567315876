//! The store's errors.

use weft_model::PlanId;

/// What went wrong in the store.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A fenced write found another state than it expected; nothing of its batch landed.
    #[error("conflict on plan {plan}{}: expected {expected}, found {found}", .step.map(|s| format!(" step {s}")).unwrap_or_default())]
    Conflict {
        /// The plan.
        plan: PlanId,
        /// The step, if the conflict was on a step.
        step: Option<u32>,
        /// The state the write expected.
        expected: String,
        /// The state it found.
        found: String,
    },
    /// No such plan.
    #[error("no plan {0}")]
    NotFound(String),
    /// An id prefix matching several plans.
    #[error("id `{0}` is ambiguous; give more of it")]
    Ambiguous(String),
    /// Someone else holds the plan's execution lock.
    #[error("plan {plan} is being executed by {owner}")]
    Locked {
        /// The plan.
        plan: PlanId,
        /// Who holds the lock.
        owner: String,
    },
    /// A plan with this id exists already.
    #[error("plan {0} exists already")]
    Exists(PlanId),
    /// The database was written by a newer weft.
    #[error("database schema version {found} is newer than this weft supports ({supported}); upgrade weft")]
    SchemaTooNew {
        /// The version found.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// The file is not a weft database, or is damaged.
    #[error("{0}")]
    Corrupt(String),
    /// The database cannot be opened or reached.
    #[error("{0}")]
    Unavailable(String),
    /// A command that only reads or acts on existing plans found no store where it looked;
    /// nothing was created.
    #[error(
        "there is no weft store at {0} (nothing was created); run a flow there first, or pass --db"
    )]
    NoStore(String),
    /// A database URL that does not parse.
    #[error("{0}")]
    BadUrl(String),
    /// Something this build does not do.
    #[error("{0}")]
    Unsupported(String),
    /// The job board refused (TaskFlow's `NotFound`, `UnclaimableJob`, `JobFailure`, or an
    /// empty owner).
    #[error("{0}")]
    Job(#[from] weft_model::job::BoardError),
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
    /// Any other backend error.
    #[error("store error: {0}")]
    Backend(String),
}

impl Error {
    /// Whether the error means the database cannot be reached or used at all (exit code 3),
    /// as opposed to a problem with one request.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Error::Unavailable(_) | Error::Corrupt(_) | Error::SchemaTooNew { .. } | Error::Closed
        )
    }
}
