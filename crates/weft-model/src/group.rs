//! Groups: tasks that run together under lifecycle hooks, the way a Nomad task group does —
//! their definition (one [`Group`] is one step of a plan) and the record of how far a running
//! group got ([`Progress`]), which the store keeps so that a group resumes after a crash.

use crate::command::Command;
use crate::{Failure, Millis};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// The default time between a sidecar's SIGTERM and its SIGKILL (Nomad's `kill_timeout`).
pub const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// The default time between two runs of a readiness probe.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// The default time a readiness probe has to pass.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// A group step: its tasks and its restart policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Its tasks, in declaration order.
    pub tasks: Vec<GroupTask>,
    /// How often the whole group may be restarted after it failed.
    pub restart: Restart,
}

/// A group's restart policy: after a failure, every task is stopped and the group starts again
/// from its prestart tasks, `attempts` times at most, `delay` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Restart {
    /// Restarts allowed (0: a failure fails the group).
    pub attempts: u32,
    /// The pause before each restart.
    #[serde(with = "crate::duration::as_millis")]
    pub delay: Duration,
}

/// One task of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupTask {
    /// Unique within the group; the task is `group/name` in the plan.
    pub name: String,
    /// Its hook; `None` is a main task.
    pub lifecycle: Option<Lifecycle>,
    /// What it runs.
    pub command: Command,
    /// A probe polled once it runs, until it passes; a prestart sidecar must pass it before
    /// main starts.
    pub ready: Option<Probe>,
    /// How long it has to exit after SIGTERM before it is SIGKILLed.
    #[serde(with = "crate::duration::as_millis")]
    pub kill_timeout: Duration,
    /// Whether it may run again after a crash interrupted it (sidecars always may).
    pub idempotent: bool,
}

impl Group {
    /// What is wrong with the group, if anything: a task name that is empty, holds a `/` or
    /// is used twice, an empty `run`, no main task, or a poststop sidecar.
    pub fn check(&self, name: &str) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for t in &self.tasks {
            if t.name.is_empty() || t.name.contains('/') {
                return Err(format!(
                    "group `{name}`: task name `{}` must be non-empty and hold no `/`",
                    t.name
                ));
            }
            if !seen.insert(t.name.as_str()) {
                return Err(format!("group `{name}`: duplicate task name `{}`", t.name));
            }
            if t.command.run.first().is_none_or(|p| p.is_empty()) {
                return Err(format!(
                    "group `{name}`: task `{}` has an empty `run`",
                    t.name
                ));
            }
            if t.hook() == Some(Hook::Poststop) && t.is_sidecar() {
                return Err(format!(
                    "group `{name}`: task `{}`: a poststop task cannot be a sidecar",
                    t.name
                ));
            }
        }
        if !self.tasks.iter().any(|t| t.lifecycle.is_none()) {
            return Err(format!(
                "group `{name}` has no main task (a task without a lifecycle hook)"
            ));
        }
        Ok(())
    }
}

impl GroupTask {
    /// Whether it keeps running beside main.
    pub fn is_sidecar(&self) -> bool {
        self.lifecycle.is_some_and(|l| l.sidecar)
    }

    /// Its hook, `None` for main.
    pub fn hook(&self) -> Option<Hook> {
        self.lifecycle.map(|l| l.hook)
    }

    /// How `plans show` names its hook: `prestart`, `prestart sidecar`, `main`, …
    pub fn role(&self) -> &'static str {
        match self.lifecycle {
            None => "main",
            Some(Lifecycle { hook, sidecar }) => match (hook, sidecar) {
                (Hook::Prestart, false) => "prestart",
                (Hook::Prestart, true) => "prestart sidecar",
                (Hook::Poststart, false) => "poststart",
                (Hook::Poststart, true) => "poststart sidecar",
                (Hook::Poststop, _) => "poststop",
            },
        }
    }
}

/// A task's lifecycle hook and whether it is a sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    /// When it runs.
    pub hook: Hook,
    /// Whether it keeps running beside main (prestart and poststart only).
    pub sidecar: bool,
}

/// When a group task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// Before main.
    Prestart,
    /// Once main has started.
    Poststart,
    /// After every other task stopped, whatever happened.
    Poststop,
}

impl std::str::FromStr for Hook {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "prestart" => Ok(Hook::Prestart),
            "poststart" => Ok(Hook::Poststart),
            "poststop" => Ok(Hook::Poststop),
            other => Err(format!(
                "unknown hook `{other}`; use \"prestart\", \"poststart\" or \"poststop\""
            )),
        }
    }
}

/// A readiness probe: a command that exits 0 once the task is ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// Program and arguments.
    pub run: Vec<String>,
    /// The pause between two runs (each run may take this long at most).
    #[serde(with = "crate::duration::as_millis")]
    pub interval: Duration,
    /// How long the task has to become ready; past it, the task fails.
    #[serde(with = "crate::duration::as_millis")]
    pub timeout: Duration,
}

/// How far a running step got, as the store keeps it while it runs: a group's tasks and
/// restarts; for a task, the last progress event it sent (TaskFlow's `EVENT`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Restarts of the whole group so far.
    pub restarts: u32,
    /// Every task, in the group's order.
    pub tasks: Vec<TaskRun>,
    /// The last progress event of a task step (local or remote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<TaskEvent>,
}

/// A progress event a task sent while it ran (`Context::progress`; a remote worker's `EVENT`
/// response).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    /// Its type (`update_progress`, …).
    pub event_type: String,
    /// Its details.
    pub details: serde_json::Map<String, serde_json::Value>,
    /// When it arrived.
    #[serde(with = "crate::time::rfc3339")]
    pub at: Millis,
}

impl Progress {
    /// The progress of a task step that sent `event`.
    pub fn of_event(event: TaskEvent) -> Self {
        Progress {
            event: Some(event),
            ..Progress::default()
        }
    }
}

/// One group task's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRun {
    /// The task's name within the group.
    pub name: String,
    /// Its state.
    pub state: TaskState,
    /// When it last started.
    #[serde(
        with = "crate::time::opt_rfc3339",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub started_at: Option<Millis>,
    /// When it last ended.
    #[serde(
        with = "crate::time::opt_rfc3339",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ended_at: Option<Millis>,
    /// Its output (the last JSON object it printed), once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// While it runs: where its process runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
}

impl TaskRun {
    /// A task that has not started.
    pub fn pending(name: impl Into<String>) -> Self {
        TaskRun {
            name: name.into(),
            state: TaskState::Pending,
            started_at: None,
            ended_at: None,
            output: None,
            failure: None,
            process: None,
        }
    }
}

/// Where a group task's process runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// The host it runs on.
    pub host: String,
    /// Its pid, which is also its process group's id.
    pub pid: u32,
}

/// A group task's state; stored and shown with the names of step states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Not started (or to be started again).
    Pending,
    /// Running, its readiness probe not yet passed.
    Running,
    /// Running and ready (tasks without a probe are ready as soon as they run).
    Ready,
    /// Exited successfully.
    #[serde(rename = "success")]
    Succeeded,
    /// Failed (or, for a sidecar, died before it was told to stop).
    #[serde(rename = "error")]
    Failed,
    /// A sidecar stopped once main was done.
    Stopped,
    /// Never run: the group failed before its turn.
    Skipped,
}

impl TaskState {
    /// Whether it is over.
    pub fn is_dead(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Stopped | TaskState::Skipped
        )
    }

    /// Whether it is running.
    pub fn is_running(self) -> bool {
        matches!(self, TaskState::Running | TaskState::Ready)
    }

    /// Its name, as `plans show` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Ready => "ready",
            TaskState::Succeeded => "success",
            TaskState::Failed => "error",
            TaskState::Stopped => "stopped",
            TaskState::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}
