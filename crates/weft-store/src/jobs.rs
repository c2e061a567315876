//! The job board as the stores hold it: jobs (TaskFlow's postings, each carrying a flow and its
//! inputs), their transitions, and the entities registered with the board. What may happen to
//! a job is decided by [`weft_model::job`]; the backends read, ask it, and write.

use crate::NewPlan;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use weft_model::flow::Flow;
use weft_model::job::{JobId, Priority, Standing, State};
use weft_model::{Millis, PlanId};

/// A job to post.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Its id.
    pub id: JobId,
    /// What it is called (not unique).
    pub name: String,
    /// The flow its conductor runs.
    pub flow: Flow,
    /// The flow's inputs, defaults filled in.
    pub inputs: BTreeMap<String, Value>,
    /// How urgent it is.
    pub priority: Priority,
    /// How many claims it gets before it goes to the trash.
    pub max_attempts: u32,
    /// Free-form details kept with the posting (TaskFlow's `details`).
    pub details: Value,
}

impl NewJob {
    /// A job running `flow` with `inputs`, named after the flow, at normal priority.
    pub fn new(flow: Flow, inputs: BTreeMap<String, Value>) -> Self {
        NewJob {
            id: JobId::new(),
            name: flow.name.clone(),
            flow,
            inputs,
            priority: Priority::Normal,
            max_attempts: weft_model::job::DEFAULT_MAX_ATTEMPTS,
            details: Value::Object(Default::default()),
        }
    }

    /// The job as stored the moment it is posted.
    pub fn record(&self, at: Millis) -> JobRecord {
        JobRecord {
            id: self.id,
            name: self.name.clone(),
            flow: self.flow.clone(),
            inputs: self.inputs.clone(),
            details: self.details.clone(),
            priority: self.priority,
            state: State::Unclaimed,
            owner: None,
            attempts: 0,
            max_attempts: self.max_attempts,
            plan: PlanId::new(),
            needs: self.flow.needs(),
            created_at: at,
            modified_at: at,
            note: None,
        }
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Its id.
    pub id: JobId,
    /// Its name.
    pub name: String,
    /// The flow its conductor runs.
    pub flow: Flow,
    /// The flow's inputs.
    pub inputs: BTreeMap<String, Value>,
    /// Free-form details posted with it.
    pub details: Value,
    /// How urgent it is.
    pub priority: Priority,
    /// Where it stands.
    pub state: State,
    /// Who holds its claim, while claimed (and, once complete, who consumed it).
    pub owner: Option<String>,
    /// How many times it has been claimed; a claim's number is the value after it was taken,
    /// and every later write of that claim is fenced by it.
    pub attempts: u32,
    /// How many claims it gets before it goes to the trash.
    pub max_attempts: u32,
    /// The plan that runs its flow: one per job (a new one only when it is retried from the
    /// trash), so a job taken over after a crash resumes its plan rather than starting another.
    pub plan: PlanId,
    /// The Rust tasks its flow needs (`name@version`): only a claimer that runs them all gets it.
    pub needs: Vec<String>,
    /// When it was posted.
    #[serde(with = "weft_model::time::rfc3339")]
    pub created_at: Millis,
    /// When it last changed.
    #[serde(with = "weft_model::time::rfc3339")]
    pub modified_at: Millis,
    /// Why it last moved, when that is not plain (trashed after too many attempts, …).
    pub note: Option<String>,
}

impl JobRecord {
    /// What its transitions depend on.
    pub fn standing(&self) -> Standing<'_> {
        Standing {
            state: self.state,
            owner: self.owner.as_deref(),
            attempts: self.attempts,
            max_attempts: self.max_attempts,
        }
    }
}

/// A job a conductor claimed to run at once: its plan is created with the claim, unless it
/// existed already.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    /// The job, as the claim left it.
    pub job: JobRecord,
    /// Whether the claim created the job's plan ([`JobRecord::plan_to_run`], its lock held by
    /// the claimer); if not, the plan is an earlier claim's, to resume.
    pub plan_created: bool,
    /// Whether the claim also started the plan it created ([`JobRecord::starts_with_claim`]):
    /// stored `running`, its history holding its start (`planned → running`, why `started`,
    /// by the claimer) — the write the director makes when it starts a plan.
    pub plan_started: bool,
}

impl JobRecord {
    /// The plan a conductor's claim creates for the job: the job's plan id, flow and inputs,
    /// created when the job was claimed (`modified_at`), its lock held by `owner`.
    pub fn plan_to_run(&self, owner: &str) -> NewPlan {
        NewPlan {
            id: self.plan,
            created_at: self.modified_at,
            owner: Some(owner.to_string()),
            ..NewPlan::new(self.flow.clone(), self.inputs.clone())
        }
    }

    /// Whether a conductor's claim starts the plan it creates: unless its flow has limits
    /// (such a plan waits `planned` for its slots).
    pub fn starts_with_claim(&self) -> bool {
        self.flow.limits.is_none()
    }

    /// The start a conductor's claim records for the plan it creates and starts.
    pub fn plan_start(&self) -> crate::Change {
        crate::Change::plan_state_because(
            self.plan,
            weft_model::plan::State::Planned,
            weft_model::plan::State::Running,
            self.modified_at,
            "started",
        )
    }
}

/// Which jobs to list. Jobs come in claim order: most urgent first, oldest first within a
/// priority.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only unclaimed jobs (TaskFlow's `only_unclaimed`).
    pub only_unclaimed: bool,
    /// The trash instead of the board.
    pub trashed: bool,
    /// At most this many.
    pub limit: Option<u32>,
    /// Only the jobs this owner holds claimed (the other flags are then ignored).
    pub owner: Option<String>,
}

impl JobFilter {
    /// Whether a job in `state`, held by `owner`, is listed.
    pub fn admits_job(&self, job: &JobRecord) -> bool {
        match &self.owner {
            Some(o) => job.state == State::Claimed && job.owner.as_ref() == Some(o),
            None => self.admits(job.state),
        }
    }

    /// The states it lists (without an owner).
    pub(crate) fn states(&self) -> &'static [&'static str] {
        if self.owner.is_some() {
            &["claimed"]
        } else if self.trashed {
            &["trashed"]
        } else if self.only_unclaimed {
            &["unclaimed"]
        } else {
            &["unclaimed", "claimed"]
        }
    }

    /// Whether a job in `state` is listed (without an owner).
    pub fn admits(&self, state: State) -> bool {
        if self.trashed {
            state == State::Trashed
        } else if self.only_unclaimed {
            state == State::Unclaimed
        } else {
            state.on_board()
        }
    }
}

/// One transition in a job's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobTransition {
    /// When.
    #[serde(with = "weft_model::time::rfc3339")]
    pub at: Millis,
    /// The state before (`None`: posted).
    pub from: Option<State>,
    /// The state after.
    pub to: State,
    /// Who made it.
    pub by: String,
    /// The claim it belongs to.
    pub attempt: u32,
    /// Why, when that is not plain.
    pub note: Option<String>,
}

/// An entity registered with the board (TaskFlow's `register_entity`): a conductor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// Its kind; only `conductor` is known.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// What it says about itself.
    pub metadata: Value,
}

/// The one kind of entity a board registers (as TaskFlow's ZooKeeper board does).
pub const CONDUCTOR: &str = "conductor";

/// The claim order as a sort key: priority, then posting order (ids are time-ordered).
pub(crate) fn claim_order(job: &JobRecord) -> (Priority, JobId) {
    (job.priority, job.id)
}

/// A priority as stored: 0 (very high) to 4 (very low), so that an index sorts claim order.
pub(crate) fn priority_rank(p: Priority) -> i64 {
    Priority::ALL.iter().position(|q| *q == p).unwrap_or(2) as i64
}

/// A stored priority rank back.
pub(crate) fn priority_of(rank: i64) -> crate::Result<Priority> {
    usize::try_from(rank)
        .ok()
        .and_then(|i| Priority::ALL.get(i).copied())
        .ok_or_else(|| crate::Error::Corrupt(format!("stored job priority {rank} is unknown")))
}

/// Refuses an entity of a kind the board does not know (TaskFlow raises `NotImplementedError`).
pub(crate) fn check_entity(entity: &Entity) -> crate::Result<()> {
    if entity.kind != CONDUCTOR {
        return Err(crate::Error::Unsupported(format!(
            "cannot register an entity of kind `{}`; only `{CONDUCTOR}` is known",
            entity.kind
        )));
    }
    weft_model::job::check_who(&entity.name)?;
    Ok(())
}

/// Refuses a job id prefix that no id could start with.
pub(crate) fn check_prefix(text: &str) -> crate::Result<()> {
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(unknown(text));
    }
    Ok(())
}

fn unknown(text: &str) -> crate::Error {
    crate::Error::Job(weft_model::job::BoardError::NotFound(format!(
        "no job `{text}`"
    )))
}

/// The one id a prefix matched (at most two asked for).
pub(crate) fn resolved(text: &str, ids: Vec<String>) -> crate::Result<JobId> {
    match ids.as_slice() {
        [one] => one
            .parse()
            .map_err(|e| crate::Error::Corrupt(format!("stored job id: {e}"))),
        [] => Err(unknown(text)),
        _ => Err(crate::Error::Ambiguous(text.to_string())),
    }
}
