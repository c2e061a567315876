//! What the store holds and the changes it applies, in backend-neutral types.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use weft_model::flow::Flow;
use weft_model::plan::{self, Outcome};
use weft_model::{group, step, Failure, Millis, PlanId};

/// A plan to create, with its steps all `pending`.
#[derive(Debug, Clone)]
pub struct NewPlan {
    /// Its id.
    pub id: PlanId,
    /// The flow it runs.
    pub flow: Flow,
    /// Its inputs, defaults filled in.
    pub inputs: BTreeMap<String, Value>,
    /// Its initial state: `planned`, or `scheduled` for a delayed or chained plan.
    pub state: plan::State,
    /// When it was created.
    pub created_at: Millis,
    /// For a scheduled plan: not before this time.
    pub start_at: Option<Millis>,
    /// For a chained plan: the plans that must have stopped first.
    pub after: Vec<PlanId>,
    /// Who takes its execution lock as it is created (a foreground run), so that no node
    /// claims it first.
    pub owner: Option<String>,
}

impl NewPlan {
    /// A plan of `flow` ready to run now: a fresh id, `planned`.
    pub fn new(flow: Flow, inputs: BTreeMap<String, Value>) -> Self {
        NewPlan {
            id: PlanId::new(),
            flow,
            inputs,
            state: plan::State::Planned,
            created_at: weft_model::now_millis(),
            start_at: None,
            after: Vec::new(),
            owner: None,
        }
    }
}

/// A plan as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanRecord {
    /// Its id.
    pub id: PlanId,
    /// The flow it runs.
    pub flow: Flow,
    /// Its inputs.
    pub inputs: BTreeMap<String, Value>,
    /// Its state.
    pub state: plan::State,
    /// When it was created.
    #[serde(with = "weft_model::time::rfc3339")]
    pub created_at: Millis,
    /// When it first started running.
    #[serde(with = "weft_model::time::opt_rfc3339")]
    pub started_at: Option<Millis>,
    /// When it stopped.
    #[serde(with = "weft_model::time::opt_rfc3339")]
    pub ended_at: Option<Millis>,
    /// The director's persisted bookkeeping (reverting or not, subflow attempts); opaque here.
    /// Stored in the `phase` column and shown as `phase` in JSON, as before its rename.
    #[serde(rename = "phase")]
    pub bookkeeping: Value,
    /// For a scheduled plan: not before this time.
    #[serde(with = "weft_model::time::opt_rfc3339", default)]
    pub start_at: Option<Millis>,
    /// For a chained plan: the plans that must have stopped first.
    #[serde(default)]
    pub after: Vec<PlanId>,
}

/// A step as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Its index in the flow.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: step::State,
    /// Its attempt number, from 1 once started.
    pub attempt: u32,
    /// When its current attempt started.
    #[serde(with = "weft_model::time::opt_rfc3339")]
    pub started_at: Option<Millis>,
    /// When it last finished.
    #[serde(with = "weft_model::time::opt_rfc3339")]
    pub ended_at: Option<Millis>,
    /// Its output.
    pub output: Option<Value>,
    /// Its failure.
    pub failure: Option<Failure>,
    /// For a suspended step: when its wait times out.
    #[serde(
        with = "weft_model::time::opt_rfc3339",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub deadline: Option<Millis>,
    /// A warning it finished with (the plan's result is then `warning`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// For a group step: how far its tasks got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<group::Progress>,
}

impl StepRecord {
    /// A step as it is before it ever runs.
    pub fn pending(index: u32, name: impl Into<String>) -> Self {
        StepRecord {
            index,
            name: name.into(),
            state: step::State::Pending,
            attempt: 0,
            started_at: None,
            ended_at: None,
            output: None,
            failure: None,
            deadline: None,
            warning: None,
            group: None,
        }
    }
}

/// A plan with its steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanSnapshot {
    /// The plan.
    pub plan: PlanRecord,
    /// Its steps, by index.
    pub steps: Vec<StepRecord>,
}

impl PlanSnapshot {
    /// The plan's result, derived from its steps.
    pub fn outcome(&self) -> Outcome {
        Outcome::derive(self.steps.iter().map(|s| (s.state, s.warning.is_some())))
    }
}

/// A line of `plans list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanSummary {
    /// Its id.
    pub id: PlanId,
    /// The flow's name.
    pub flow: String,
    /// Its state.
    pub state: plan::State,
    /// Its result.
    pub result: Outcome,
    /// When it was created.
    #[serde(with = "weft_model::time::rfc3339")]
    pub created_at: Millis,
    /// When it stopped.
    #[serde(with = "weft_model::time::opt_rfc3339")]
    pub ended_at: Option<Millis>,
    /// How many steps it has.
    pub steps: u32,
    /// Who holds its execution lock.
    pub owner: Option<String>,
    /// For a scheduled plan: not before this time.
    #[serde(with = "weft_model::time::opt_rfc3339")]
    pub start_at: Option<Millis>,
}

/// Which plans to list.
#[derive(Debug, Clone, Default)]
pub struct PlanFilter {
    /// Only plans in this state.
    pub state: Option<plan::State>,
    /// Only plans of the flow with this name.
    pub flow: Option<String>,
    /// Only plans whose flow's name holds this text, or whose id starts with it.
    pub search: Option<String>,
    /// Only plans older than this one (the next page after it, newest first).
    pub before: Option<PlanId>,
    /// At most this many (newest first).
    pub limit: Option<u32>,
}

impl PlanFilter {
    /// Whether a plan of `flow` with `id` in `state` is one it asks for (`limit` aside).
    pub fn admits(&self, id: PlanId, flow: &str, state: plan::State) -> bool {
        self.state.is_none_or(|s| s == state)
            && self.flow.as_ref().is_none_or(|f| f == flow)
            && self
                .search
                .as_ref()
                .is_none_or(|s| flow.contains(s.as_str()) || id.to_string().starts_with(s.as_str()))
            && self.before.is_none_or(|b| id < b)
    }
}

/// One fenced write.
// Step changes are nearly all changes: boxing their record to shrink the rare variants would
// cost an allocation per transition on the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Change {
    /// A plan changes state.
    Plan {
        /// The plan.
        plan: PlanId,
        /// The state it must be in.
        from: plan::State,
        /// The state it goes to.
        to: plan::State,
        /// When.
        at: Millis,
        /// Why, for the history (halted by an operator, a prerequisite failed, …).
        reason: Option<String>,
    },
    /// A step changes: state and the fields that go with it.
    Step {
        /// The plan.
        plan: PlanId,
        /// The state it must be in.
        from: step::State,
        /// Its new row (name is ignored).
        step: StepRecord,
        /// When.
        at: Millis,
    },
    /// A running group step's tasks moved on (the step itself stays `running`).
    Group {
        /// The plan.
        plan: PlanId,
        /// The step.
        step: u32,
        /// The attempt it must be running.
        attempt: u32,
        /// How far its tasks got.
        progress: group::Progress,
    },
    /// The director's bookkeeping for a plan.
    Bookkeeping {
        /// The plan.
        plan: PlanId,
        /// The new value.
        bookkeeping: Value,
    },
    /// The answer to a mailbox message about the plan (an event, a halt), written in the same
    /// transaction as the changes it answers: the sender learns "done" only once they are
    /// durable, and pays for one commit less. A message no longer pending (its sender gave up)
    /// keeps its reply.
    Reply {
        /// The plan.
        plan: PlanId,
        /// The message.
        message: i64,
        /// The answer.
        reply: Reply,
    },
    /// The execution lock on the plan is released if `owner` holds it — written with the
    /// change that stops or pauses the plan, so that its end costs no commit of its own.
    Unlock {
        /// The plan.
        plan: PlanId,
        /// Who must hold it.
        owner: String,
    },
    /// Slots of a plan are given back (held or waited for): a step's (`Some`), or every one
    /// of the plan (`None`) — written with the step's end, or the plan's.
    Release {
        /// The plan.
        plan: PlanId,
        /// The step, or `None` for all.
        step: Option<u32>,
    },
}

impl Change {
    /// A plan's move from `from` to `to` at `at`.
    pub fn plan_state(plan: PlanId, from: plan::State, to: plan::State, at: Millis) -> Change {
        Change::Plan {
            plan,
            from,
            to,
            at,
            reason: None,
        }
    }

    /// A plan's move, with why.
    pub fn plan_state_because(
        plan: PlanId,
        from: plan::State,
        to: plan::State,
        at: Millis,
        reason: impl Into<String>,
    ) -> Change {
        Change::Plan {
            plan,
            from,
            to,
            at,
            reason: Some(reason.into()),
        }
    }

    /// The plan it touches.
    pub fn plan(&self) -> PlanId {
        match self {
            Change::Plan { plan, .. }
            | Change::Step { plan, .. }
            | Change::Group { plan, .. }
            | Change::Bookkeeping { plan, .. }
            | Change::Reply { plan, .. }
            | Change::Unlock { plan, .. }
            | Change::Release { plan, .. } => *plan,
        }
    }

    /// The transition it records in the history, if it is one.
    pub fn transition(&self) -> Option<Transition<'_>> {
        match self {
            Change::Plan {
                from,
                to,
                at,
                reason,
                ..
            } => Some(Transition {
                at: *at,
                step: None,
                from: from.as_str(),
                to: to.as_str(),
                attempt: None,
                why: reason.as_deref(),
            }),
            Change::Step { from, step, at, .. } => Some(Transition {
                at: *at,
                step: Some(step.index),
                from: from.as_str(),
                to: step.state.as_str(),
                attempt: Some(step.attempt),
                why: step
                    .failure
                    .as_ref()
                    .map(|f| f.message.as_str())
                    .or(step.warning.as_deref()),
            }),
            Change::Group { .. }
            | Change::Bookkeeping { .. }
            | Change::Reply { .. }
            | Change::Unlock { .. }
            | Change::Release { .. } => None,
        }
    }
}

/// A transition as a change carries it, borrowed: cheap to take on the hot path.
#[derive(Debug, Clone, Copy)]
pub struct Transition<'a> {
    /// When.
    pub at: Millis,
    /// The step, or `None` for the plan.
    pub step: Option<u32>,
    /// The state before.
    pub from: &'static str,
    /// The state after.
    pub to: &'static str,
    /// The step's attempt.
    pub attempt: Option<u32>,
    /// Why: a step's failure (or warning), or a plan's reason.
    pub why: Option<&'a str>,
}

impl Transition<'_> {
    /// The `data` of its history entry as JSON text (`{"attempt":…,"why":…}`), if any.
    pub fn data_json(&self) -> Option<String> {
        // Built by hand: this runs for every transition on the hot path.
        let why = self.why.map(|w| serde_json::Value::from(w).to_string());
        match (self.attempt, why) {
            (None, None) => None,
            (Some(a), None) => Some(format!("{{\"attempt\":{a}}}")),
            (None, Some(w)) => Some(format!("{{\"why\":{w}}}")),
            (Some(a), Some(w)) => Some(format!("{{\"attempt\":{a},\"why\":{w}}}")),
        }
    }

    /// The history entry it becomes, recorded by `by`.
    pub fn to_entry(&self, by: Option<&str>) -> HistoryEntry {
        HistoryEntry {
            at: self.at,
            step: self.step,
            from: self.from.to_string(),
            to: self.to.to_string(),
            by: by.map(str::to_string),
            data: (self.attempt.is_some() || self.why.is_some()).then(|| {
                let mut data = serde_json::Map::new();
                if let Some(attempt) = self.attempt {
                    data.insert("attempt".into(), attempt.into());
                }
                if let Some(why) = self.why {
                    data.insert("why".into(), why.into());
                }
                Value::Object(data)
            }),
        }
    }
}

/// One transition in a plan's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When.
    #[serde(with = "weft_model::time::rfc3339")]
    pub at: Millis,
    /// The step, or `None` for the plan itself.
    pub step: Option<u32>,
    /// The state before.
    pub from: String,
    /// The state after.
    pub to: String,
    /// Who made the change: a node's id, or a `weft` process.
    #[serde(default)]
    pub by: Option<String>,
    /// The attempt (steps) and why (a step's failure, a plan's reason).
    pub data: Option<Value>,
}

impl NewPlan {
    /// The stored form of the new plan and its `pending` steps.
    pub fn records(&self) -> (PlanRecord, Vec<StepRecord>) {
        let plan = PlanRecord {
            id: self.id,
            flow: self.flow.clone(),
            inputs: self.inputs.clone(),
            state: self.state,
            created_at: self.created_at,
            started_at: None,
            ended_at: None,
            bookkeeping: Value::Null,
            start_at: self.start_at,
            after: self.after.clone(),
        };
        let steps = self
            .flow
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| StepRecord::pending(i as u32, &s.name))
            .collect();
        (plan, steps)
    }
}

/// A node: one `weft serve` process, known to the others by its heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Unique per incarnation (`NAME/UUID`).
    pub id: String,
    /// What the operator called it; the same across restarts.
    pub name: String,
    /// When it started.
    #[serde(with = "weft_model::time::rfc3339")]
    pub started_at: Millis,
    /// Its last heartbeat.
    #[serde(with = "weft_model::time::rfc3339")]
    pub heartbeat_at: Millis,
    /// Its last live report (its manifolds' states), if it wrote one.
    #[serde(default)]
    pub report: Option<Value>,
    /// The process it runs in, `weft@HOST:PID:START` (START: the process's start time in clock
    /// ticks since boot), so that its next incarnation on the same machine can tell at once
    /// that it is dead, without waiting for its lease to lapse.
    #[serde(default)]
    pub process: Option<String>,
    /// The Rust tasks it can run, as `name@version`: it claims only plans that need no others.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// An operator's or another process's request about a plan, for the node executing it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Instruction {
    /// Deliver an event to a suspended step.
    Event {
        /// The step.
        step: u32,
        /// The event's data; an object becomes the step's output.
        data: Value,
        /// Drop quietly, rather than refuse, when the plan cannot take it.
        optional: bool,
    },
    /// Stop the plan now.
    Halt,
}

/// A [`Instruction`] in the mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Its id.
    pub id: i64,
    /// The plan.
    pub plan: PlanId,
    /// What is asked.
    pub instruction: Instruction,
    /// When it was posted.
    #[serde(with = "weft_model::time::rfc3339")]
    pub created_at: Millis,
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "reason")]
pub enum Reply {
    /// Not taken yet.
    Pending,
    /// Done.
    Done,
    /// Refused, with why.
    Refused(String),
}

/// Whether a due scheduled plan may start, judged from its prerequisites: each with its state
/// and result, or `None` if it does not exist (it can never stop, so it counts as failed).
pub(crate) fn judge_prerequisites(
    prerequisites: impl IntoIterator<Item = (PlanId, Option<(plan::State, Outcome)>)>,
) -> Readiness {
    let mut all_stopped = true;
    for (p, found) in prerequisites {
        match found {
            Some((plan::State::Stopped, Outcome::Error)) | None => return Readiness::Failed(p),
            Some((plan::State::Stopped, _)) => {}
            Some(_) => all_stopped = false,
        }
    }
    if all_stopped {
        Readiness::Ready
    } else {
        Readiness::Waiting
    }
}

/// What [`judge_prerequisites`] says of a due scheduled plan.
pub(crate) enum Readiness {
    /// Every prerequisite stopped without error: start it.
    Ready,
    /// Some prerequisite still runs.
    Waiting,
    /// This prerequisite failed (or does not exist).
    Failed(PlanId),
}

/// The changes that promote a due scheduled plan to `planned`.
pub(crate) fn promotion(plan: PlanId, now: Millis) -> [Change; 2] {
    [
        Change::plan_state(plan, plan::State::Scheduled, plan::State::Planning, now),
        Change::plan_state(plan, plan::State::Planning, plan::State::Planned, now),
    ]
}

/// What promoting a due scheduled plan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// It is `planned` now, ready to claim.
    Ready(PlanId),
    /// A plan it is chained after ended in error: it was not started.
    FailedDependency {
        /// The chained plan.
        plan: PlanId,
        /// The prerequisite that failed.
        prerequisite: PlanId,
    },
}

#[cfg(test)]
mod prerequisite_tests {
    use super::*;

    #[test]
    fn a_failed_or_missing_prerequisite_wins_over_one_still_running() {
        let (a, b) = (PlanId::new(), PlanId::new());
        let running = Some((plan::State::Running, Outcome::Pending));
        let failed = Some((plan::State::Stopped, Outcome::Error));
        let done = Some((plan::State::Stopped, Outcome::Warning));
        assert!(
            matches!(judge_prerequisites([(a, running), (b, failed)]), Readiness::Failed(p) if p == b)
        );
        assert!(
            matches!(judge_prerequisites([(a, running), (b, None)]), Readiness::Failed(p) if p == b)
        );
        assert!(matches!(
            judge_prerequisites([(a, done), (b, running)]),
            Readiness::Waiting
        ));
        assert!(matches!(
            judge_prerequisites([(a, done), (b, done)]),
            Readiness::Ready
        ));
        assert!(matches!(judge_prerequisites([]), Readiness::Ready));
    }
}
