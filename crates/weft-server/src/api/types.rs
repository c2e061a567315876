//! The API's JSON shapes, apart from the store's records so that the API stays what its OpenAPI
//! document says when the store changes: ids as strings, times as RFC 3339 UTC, states as
//! their snake_case names. Built from the store's records by `From`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use weft_model::time::format_rfc3339;
use weft_model::Millis;
use weft_store::{HistoryEntry, JobRecord, NodeRecord, PlanSnapshot, PlanSummary, WorkerRecord};

fn time(ms: Millis) -> String {
    format_rfc3339(ms)
}

fn kind(action: &weft_model::flow::Action) -> &'static str {
    use weft_model::flow::Action;
    match action {
        Action::Command(_) => "command",
        Action::Gate => "gate",
        Action::Group(_) => "group",
        Action::Task { .. } => "task",
    }
}

fn opt_time(ms: Option<Millis>) -> Option<String> {
    ms.map(format_rfc3339)
}

/// A plan in a listing.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlanItem {
    /// Its id (a UUIDv7: ids sort by creation time).
    pub id: String,
    /// The flow's name.
    pub flow: String,
    /// `pending`, `scheduled`, `planned`, `running`, `paused` or `stopped`.
    pub state: String,
    /// `pending`, `success`, `warning`, `error` or `cancelled`.
    pub result: String,
    /// When it was created.
    pub created_at: String,
    /// When it stopped.
    pub ended_at: Option<String>,
    /// For a scheduled plan: when it starts.
    pub start_at: Option<String>,
    /// How many steps it has.
    pub steps: u32,
    /// The node or process executing it.
    pub executed_by: Option<String>,
}

impl From<PlanSummary> for PlanItem {
    fn from(p: PlanSummary) -> PlanItem {
        PlanItem {
            id: p.id.to_string(),
            flow: p.flow,
            state: p.state.to_string(),
            result: p.result.to_string(),
            created_at: time(p.created_at),
            ended_at: opt_time(p.ended_at),
            start_at: opt_time(p.start_at),
            steps: p.steps,
            executed_by: p.owner,
        }
    }
}

/// A page of plans, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlanPage {
    /// The plans.
    pub plans: Vec<PlanItem>,
    /// Pass as `before` for the next page; absent on the last.
    pub next: Option<String>,
}

/// Which plans to list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlanQuery {
    /// Only plans in this state.
    pub state: Option<String>,
    /// Only plans of this flow.
    pub flow: Option<String>,
    /// Only plans whose flow's name holds this text, or whose id starts with it.
    pub search: Option<String>,
    /// Only plans older than this id (the `next` of the previous page).
    pub before: Option<String>,
    /// At most this many (1 to 1000; 50 when absent).
    pub limit: Option<u32>,
}

/// Why a step failed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FailureView {
    /// Its kinds, most specific first (`command`, `timeout`, `RequestTimeout`, …).
    pub kinds: Vec<String>,
    /// What happened.
    pub message: String,
    /// A command's exit code.
    pub exit_code: Option<i32>,
    /// The signal that ended a command.
    pub signal: Option<i32>,
    /// The end of what a command printed on stderr.
    pub stderr_tail: Option<String>,
    /// What caused it.
    #[schema(no_recursion)]
    pub cause: Option<Box<FailureView>>,
}

impl From<weft_model::Failure> for FailureView {
    fn from(f: weft_model::Failure) -> FailureView {
        FailureView {
            kinds: f.kinds,
            message: f.message,
            exit_code: f.exit_code,
            signal: f.signal,
            stderr_tail: f.stderr_tail,
            cause: f.cause.map(|c| Box::new(FailureView::from(*c))),
        }
    }
}

/// A step of a plan.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepView {
    /// Its index in the flow.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// `pending`, `running`, `success`, `error`, `suspended`, `skipped`, …
    pub state: String,
    /// Its attempt, from 1 once started.
    pub attempt: u32,
    /// When its current attempt started.
    pub started_at: Option<String>,
    /// When it last finished.
    pub ended_at: Option<String>,
    /// Its output (a JSON object).
    pub output: Option<Value>,
    /// Why it failed.
    pub failure: Option<FailureView>,
    /// For a suspended step: when its wait times out.
    pub deadline: Option<String>,
    /// A warning it finished with.
    pub warning: Option<String>,
    /// The indices of the steps it waits for (`after` and the values it takes).
    pub deps: Vec<u32>,
    /// The values it takes from steps before it or the plan's inputs.
    pub requires: Vec<String>,
    /// What it runs: `command`, `task` (a Rust or remote task), `group` or `gate`.
    pub kind: String,
    /// For a group step: its tasks and restarts; for any running task: its last progress
    /// event.
    pub group: Option<Value>,
}

/// A plan with its steps.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlanView {
    /// Its id.
    pub id: String,
    /// The flow's name.
    pub flow: String,
    /// `pending`, `scheduled`, `planned`, `running`, `paused` or `stopped`.
    pub state: String,
    /// `pending`, `success`, `warning`, `error` or `cancelled`.
    pub result: String,
    /// Its inputs; secret ones redacted.
    pub inputs: BTreeMap<String, Value>,
    /// When it was created.
    pub created_at: String,
    /// When it first started.
    pub started_at: Option<String>,
    /// When it stopped.
    pub ended_at: Option<String>,
    /// For a scheduled plan: when it starts.
    pub start_at: Option<String>,
    /// Plans that must stop before it starts.
    pub after: Vec<String>,
    /// The node or process executing it.
    pub executed_by: Option<String>,
    /// Its steps, by index.
    pub steps: Vec<StepView>,
    /// What it or its steps wait for under concurrency limits and queues, a line each.
    #[serde(default)]
    pub waiting: Vec<String>,
}

impl PlanView {
    /// The view of a stored plan (its secret inputs redacted) and who executes it.
    pub fn new(mut snap: PlanSnapshot, executed_by: Option<String>) -> PlanView {
        let result = snap.outcome().to_string();
        let plan = &mut snap.plan;
        plan.flow.redact(&mut plan.inputs);
        let defs = &plan.flow.steps;
        let steps = snap
            .steps
            .into_iter()
            .map(|s| {
                let def = defs.get(s.index as usize);
                StepView {
                    index: s.index,
                    name: s.name,
                    state: s.state.to_string(),
                    attempt: s.attempt,
                    started_at: opt_time(s.started_at),
                    ended_at: opt_time(s.ended_at),
                    output: s.output,
                    failure: s.failure.map(FailureView::from),
                    deadline: opt_time(s.deadline),
                    warning: s.warning,
                    deps: def.map(|d| d.deps.clone()).unwrap_or_default(),
                    requires: def.map(|d| d.requires.clone()).unwrap_or_default(),
                    kind: def.map(|d| kind(&d.action)).unwrap_or_default().to_string(),
                    group: s.group.and_then(|g| serde_json::to_value(g).ok()),
                }
            })
            .collect();
        PlanView {
            id: plan.id.to_string(),
            flow: plan.flow.name.clone(),
            state: plan.state.to_string(),
            result,
            inputs: std::mem::take(&mut plan.inputs),
            created_at: time(plan.created_at),
            started_at: opt_time(plan.started_at),
            ended_at: opt_time(plan.ended_at),
            start_at: opt_time(plan.start_at),
            after: plan.after.iter().map(|p| p.to_string()).collect(),
            executed_by,
            steps,
            waiting: Vec::new(),
        }
    }
}

/// One transition in a plan's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HistoryItem {
    /// When.
    pub at: String,
    /// The step's index; absent for the plan's own transitions.
    pub step: Option<u32>,
    /// The state before.
    pub from: String,
    /// The state after.
    pub to: String,
    /// Who made it (a node or process).
    pub by: Option<String>,
    /// What came with it (attempt, failure, output).
    pub data: Option<Value>,
}

impl From<HistoryEntry> for HistoryItem {
    fn from(h: HistoryEntry) -> HistoryItem {
        HistoryItem {
            at: time(h.at),
            step: h.step,
            from: h.from,
            to: h.to,
            by: h.by,
            data: h.data,
        }
    }
}

/// What to submit: a flow (TOML text, or the name of a flow the server was started with) and
/// its inputs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// A flow file's text (TOML), as `weft submit` reads from a file.
    pub flow: Option<String>,
    /// Or: the name of a flow the server was started with (`weft serve --flows DIR`).
    pub name: Option<String>,
    /// Its inputs by name.
    #[serde(default)]
    pub inputs: BTreeMap<String, Value>,
    /// Where its commands and named tasks run: `local` or `remote`; overrides the flow.
    pub executor: Option<String>,
    /// Start it at this time rather than now: RFC 3339 with `Z` or an offset, or a civil time
    /// with a zone (`2026-11-23T20:30[Europe/Berlin]`). A time in the past is refused unless
    /// `allow_past`.
    pub start_at: Option<String>,
    /// With `start_at`: a time already past starts the plan at once.
    #[serde(default)]
    pub allow_past: bool,
    /// An idempotency key: if a plan was submitted with it within `key_window`, that plan's id
    /// comes back (200) and nothing is submitted.
    pub key: Option<String>,
    /// How long a key holds: `24h` (default), `30m`, …
    pub key_window: Option<String>,
}

/// A plan submitted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Submitted {
    /// Its id.
    pub id: String,
    /// `planned` (a node takes it) or `scheduled`; for a key already taken, the state of the
    /// plan that took it.
    pub state: String,
    /// Whether the key was already taken: this is the earlier plan, nothing new was stored.
    #[serde(default)]
    pub deduplicated: bool,
}

/// An event for a suspended step.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventRequest {
    /// The step's name.
    pub step: String,
    /// The event's data: a JSON object; its keys become the step's output.
    #[serde(default = "empty_object")]
    pub data: Value,
    /// Drop the event, rather than fail, when the step cannot take it.
    #[serde(default)]
    pub optional: bool,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// A step to skip.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkipRequest {
    /// The failed step's name.
    pub step: String,
}

/// Where to run a plan again from.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RerunRequest {
    /// The step to run again; every step depending on it runs again too, the others' outputs
    /// are copied from the original.
    pub from: String,
}

/// What an operator action did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Done {
    /// The plan.
    pub plan: String,
    /// What happened, in words.
    pub message: String,
}

/// Which output to read.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// Only this step (by name).
    pub step: Option<String>,
    /// Only this attempt.
    pub attempt: Option<u32>,
    /// `stdout` or `stderr`.
    pub stream: Option<String>,
    /// Only chunks after this one (the `next` of the previous read: following).
    pub after: Option<i64>,
    /// At most this many chunks (1 to 1000; 200 when absent).
    pub limit: Option<u32>,
}

/// Some bytes a step printed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogItem {
    /// Increasing in the order chunks were written.
    pub id: i64,
    /// The step's name.
    pub step: String,
    /// Its attempt.
    pub attempt: u32,
    /// A group task's name; empty for the step's own command.
    pub task: String,
    /// `execute` or `revert`.
    pub action: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// Where in the stream its first byte is (a gap before it: the middle was cut).
    pub offset: u64,
    /// When it was read.
    pub at: String,
    /// The bytes as text (invalid UTF-8 replaced).
    pub text: String,
}

/// Chunks of output, in the order they were written.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogPage {
    /// The chunks.
    pub chunks: Vec<LogItem>,
    /// Pass as `after` to read what comes next.
    pub next: i64,
}

/// A job on the board.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The flow's name.
    pub flow: String,
    /// Its inputs; secret ones redacted.
    pub inputs: BTreeMap<String, Value>,
    /// What the poster attached.
    pub details: Value,
    /// `VERY_HIGH`, `HIGH`, `NORMAL`, `LOW` or `VERY_LOW`.
    pub priority: String,
    /// `unclaimed`, `claimed`, `complete` or `trashed`.
    pub state: String,
    /// Who holds its claim.
    pub owner: Option<String>,
    /// Claims so far.
    pub attempts: u32,
    /// Claims before it is trashed.
    pub max_attempts: u32,
    /// The plan it runs as.
    pub plan: String,
    /// The Rust tasks a conductor must have to claim it.
    pub needs: Vec<String>,
}

impl From<JobRecord> for JobView {
    fn from(mut j: JobRecord) -> JobView {
        j.flow.redact(&mut j.inputs);
        JobView {
            id: j.id.to_string(),
            name: j.name,
            flow: j.flow.name.clone(),
            inputs: j.inputs,
            details: j.details,
            priority: serde_json::to_value(j.priority)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            state: serde_json::to_value(j.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            owner: j.owner,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            plan: j.plan.to_string(),
            needs: j.needs,
        }
    }
}

/// Which jobs to list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// `board` (default: unclaimed and claimed jobs, in claim order), `unclaimed`, or
    /// `trashed` (the trash, kept for review).
    pub state: Option<String>,
    /// At most this many (1 to 1000; 100 when absent).
    pub limit: Option<u32>,
}

/// A job to post.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostJobRequest {
    /// A flow file's text (TOML).
    pub flow: Option<String>,
    /// Or: the name of a flow the server was started with.
    pub flow_name: Option<String>,
    /// Its inputs by name.
    #[serde(default)]
    pub inputs: BTreeMap<String, Value>,
    /// Its name (default: the flow's).
    pub name: Option<String>,
    /// `VERY_HIGH`, `HIGH`, `NORMAL` (default), `LOW` or `VERY_LOW`.
    pub priority: Option<String>,
    /// Claims before it is trashed (default 3).
    pub max_attempts: Option<u32>,
    /// `local` or `remote`; overrides the flow.
    pub executor: Option<String>,
}

/// A remote worker.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    /// The topic it listens on.
    pub topic: String,
    /// The tasks it offers, `name@version`.
    pub tasks: Vec<String>,
    /// When it started.
    pub started_at: String,
    /// Its last heartbeat.
    pub heartbeat_at: String,
    /// Its process (`host:pid`).
    pub process: Option<String>,
    /// Requests it is running.
    pub running: u32,
    /// How long its heartbeat stays good, in milliseconds.
    pub lease_ms: i64,
}

impl From<WorkerRecord> for WorkerView {
    fn from(w: WorkerRecord) -> WorkerView {
        WorkerView {
            topic: w.topic,
            tasks: w.tasks,
            started_at: time(w.started_at),
            heartbeat_at: time(w.heartbeat_at),
            process: w.process,
            running: w.running,
            lease_ms: w.lease_ms,
        }
    }
}

/// A node sharing the store.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it started.
    pub started_at: String,
    /// Its last heartbeat.
    pub heartbeat_at: String,
    /// Its process.
    pub process: Option<String>,
    /// The Rust tasks it runs.
    pub capabilities: Vec<String>,
    /// Its manifolds as it last reported them: each one's state, inputs, start count and last
    /// error.
    pub report: Option<Value>,
}

impl From<NodeRecord> for NodeView {
    fn from(n: NodeRecord) -> NodeView {
        NodeView {
            id: n.id,
            name: n.name,
            started_at: time(n.started_at),
            heartbeat_at: time(n.heartbeat_at),
            process: n.process,
            capabilities: n.capabilities,
            report: n.report.as_ref().map(report_view),
        }
    }
}

/// A node's report as a user reads it: the engine's state and each manifold's state, inputs,
/// starts and last error, with RFC 3339 times (not the engine's internal resource log).
pub fn report_view(report: &serde_json::Value) -> serde_json::Value {
    let time = |v: &serde_json::Value| v.as_i64().map(format_rfc3339);
    let manifolds: serde_json::Map<String, serde_json::Value> = report["manifolds"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(name, m)| {
                    let view = serde_json::json!({
                        "state": m["state"],
                        "inputs": m["inputs"],
                        "starts": m["start_count"],
                        "started_at": time(&m["started_at"]),
                        "error": m["error"],
                        "error_at": time(&m["error_at"]),
                    });
                    (name.clone(), view)
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({
        "state": report["state"],
        "error": report["error"],
        "manifolds": manifolds,
    })
}
