//! Flow definitions.
//!
//! A flow is tasks plus ordering. It is written as a TOML file ([`mod@file`]) or built in Rust
//! ([`builder`]); both produce a tree that `tree::compile` flattens and validates into a
//! [`Flow`]: every step with its dependencies resolved to indices, subflow steps named
//! `parent/child`. Nothing downstream re-validates a `Flow`.

pub mod builder;
mod chunks;
mod error;
pub mod file;
mod group_file;
mod raw;
mod tree;

pub use crate::command::Command;
pub use builder::{FlowBuilder, TaskRef};
pub use error::{Error, ErrorKind, InputError};
pub use tree::{TaskSpec, Tree};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The default number of attempts of a task: one, no retry.
pub const DEFAULT_ATTEMPTS: u32 = 1;
/// The default delay before a retry.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// The default cap on an exponential backoff.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(300);

/// A validated flow, ready to be planned. Serialized into every plan, so that a plan resumes
/// with the definition it started with even if the file has changed since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    /// The flow's name.
    pub name: String,
    /// The flow's version, free-form.
    pub version: String,
    /// What it is for.
    pub description: String,
    /// Inputs the plan takes, by name.
    pub inputs: BTreeMap<String, Input>,
    /// Every step, subflows flattened, in declaration order.
    pub steps: Vec<StepDef>,
    /// Subflows, each with the steps it holds (transitively) and its own retry policy.
    pub subflows: Vec<Subflow>,
    /// What to do when a step fails for good; unset, the runner decides (a foreground
    /// `weft run` reverts, a node pauses).
    #[serde(default)]
    pub on_error: Option<Rescue>,
    /// Limits on its plans: how many run at once per key, and in which queue.
    #[serde(default, skip_serializing_if = "crate::limit::Limits::is_none")]
    pub limits: crate::limit::Limits,
    /// When to start it by itself: a flow file's `[schedule]` (applied by `weft schedules add
    /// FILE` and by a node given the file's directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::schedule::Spec>,
}

/// One input of a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    /// The value used when none is given; `None` means the input is required.
    pub default: Option<Value>,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// A secret (a password, a token): the task gets it, but weft never shows it — `plans
    /// show`, history and logs print [`REDACTED`] in its place.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

/// The variable a value named `name` reaches a command task in: `WEFT_IN_<NAME>`, upper case,
/// anything but ASCII letters and digits as `_` (so `db-host` and `db_host` collide; a flow
/// declaring both is refused).
pub fn input_var(name: &str) -> String {
    let mut v = String::from("WEFT_IN_");
    v.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    v
}

/// What is shown in place of a secret input's value.
pub const REDACTED: &str = "***";

/// One step of a flow: a task with its resolved dependencies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepDef {
    /// Unique within the flow; `parent/child` inside subflows.
    pub name: String,
    /// What runs.
    pub action: Action,
    /// Indices of the steps that must succeed before this one starts.
    pub deps: Vec<u32>,
    /// Value names it takes.
    pub requires: Vec<String>,
    /// Value names its output must hold.
    pub provides: Vec<String>,
    /// Values for requires that nothing in the plan provides (a subflow's input defaults).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub defaults: BTreeMap<String, Value>,
    /// Its retry policy.
    pub retry: Retry,
    /// How long one attempt may run.
    #[serde(with = "crate::duration::opt_millis")]
    pub timeout: Option<Duration>,
    /// When a timeout or a halt stops its command: the time between SIGTERM to its process
    /// group and SIGKILL (default [`crate::group::DEFAULT_KILL_TIMEOUT`], 5 s).
    #[serde(default = "default_kill_timeout", with = "crate::duration::as_millis")]
    pub kill_timeout: Duration,
    /// Whether it may be re-run after a crash interrupted it.
    pub idempotent: bool,
    /// The innermost subflow holding it.
    pub subflow: Option<u32>,
    /// After its action (if any) succeeds, wait for an event addressed to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Wait>,
    /// `run` (the default) or `finalize`: finalize steps run one at a time, in plan order,
    /// after every run-phase step has succeeded.
    #[serde(default)]
    pub phase: Phase,
    /// Where its action runs: here (the default), or on a remote worker.
    #[serde(default, skip_serializing_if = "ExecutorKind::is_local")]
    pub executor: ExecutorKind,
    /// Limits on its steps: how many run at once per key, and in which queue.
    #[serde(default, skip_serializing_if = "crate::limit::Limits::is_none")]
    pub limits: crate::limit::Limits,
}

/// Where a step's action runs (`executor = "local" | "remote"` in a flow file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    /// In the process executing the plan.
    #[default]
    Local,
    /// On a remote worker that offers the task (TaskFlow's worker-based execution): its
    /// execution and its revert travel as requests.
    Remote,
}

impl ExecutorKind {
    /// Whether it is [`ExecutorKind::Local`].
    pub fn is_local(&self) -> bool {
        *self == ExecutorKind::Local
    }
}

impl std::str::FromStr for ExecutorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "local" => Ok(ExecutorKind::Local),
            "remote" => Ok(ExecutorKind::Remote),
            other => Err(format!(
                "unknown executor `{other}`; use \"local\" or \"remote\""
            )),
        }
    }
}

impl Action {
    /// Whether it can run on a remote worker: a command or a named task (a gate runs
    /// nothing; a group's processes stay with the process supervising them).
    pub fn can_run_remotely(&self) -> bool {
        matches!(self, Action::Command(_) | Action::Task { .. })
    }
}

/// The task name under which a remote worker offers the command of step `step` of flow
/// `flow` (`weft worker --tasks FLOW.toml`): `flow/step`, at the flow's version.
pub fn command_task(flow: &str, step: &str) -> String {
    format!("{flow}/{step}")
}

fn default_kill_timeout() -> Duration {
    crate::group::DEFAULT_KILL_TIMEOUT
}

/// A step's wait for an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wait {
    /// How long to wait before the step fails; `None` waits for ever.
    #[serde(with = "crate::duration::opt_millis")]
    pub timeout: Option<Duration>,
}

/// The phase a step runs in (Dynflow's run and finalize phases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The main phase.
    #[default]
    Run,
    /// After every run-phase step succeeded; one at a time, in plan order.
    Finalize,
}

/// What to do when a step fails for good (its retries, and its subflows' retries, spent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rescue {
    /// TaskFlow's: undo every completed step in reverse dependency order; the plan ends
    /// `stopped` with result `error`.
    Revert,
    /// Dynflow's default: the plan becomes `paused` for an operator.
    Pause,
    /// Dynflow's Skip: the failed steps and every step that depends on them are skipped; the
    /// rest runs on, and the plan ends `stopped` with result `warning`.
    Skip,
    /// The plan stops at once with result `error`; nothing is undone.
    Fail,
}

impl std::str::FromStr for Rescue {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "revert" => Ok(Rescue::Revert),
            "pause" => Ok(Rescue::Pause),
            "skip" => Ok(Rescue::Skip),
            "fail" => Ok(Rescue::Fail),
            other => Err(format!(
                "unknown on_error `{other}`; use \"revert\", \"pause\", \"skip\" or \"fail\""
            )),
        }
    }
}

/// What a step runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Action {
    /// A program with an argument list (never a shell string).
    Command(Command),
    /// Nothing: a pure gate that waits for an event (an approval, a callback).
    Gate,
    /// A group of tasks run together under lifecycle hooks.
    Group(crate::group::Group),
    /// A Rust task registered by name and version.
    Task {
        /// The registered name.
        name: String,
        /// The registered version.
        version: String,
    },
}

/// A subflow: a group of steps with its own retry policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subflow {
    /// Its name in the plan (`parent/child` when nested).
    pub name: String,
    /// The enclosing subflow.
    pub parent: Option<u32>,
    /// Every step it holds, nested ones included.
    pub steps: Vec<u32>,
    /// Attempts of the whole subflow: when a step in it fails for good, the subflow's completed
    /// steps are reverted and all of it runs again, while attempts remain.
    pub retry: Retry,
}

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    /// Attempts in all, at least 1.
    pub attempts: u32,
    /// How the delay grows.
    pub backoff: Backoff,
    /// The delay before the first retry.
    #[serde(with = "crate::duration::as_millis")]
    pub delay: Duration,
    /// The longest delay.
    #[serde(with = "crate::duration::as_millis")]
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: DEFAULT_ATTEMPTS,
            backoff: Backoff::Fixed,
            delay: DEFAULT_RETRY_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
        }
    }
}

impl Retry {
    /// `attempts` in all (at least 1), with the default delays.
    pub fn attempts(attempts: u32) -> Self {
        Retry {
            attempts: attempts.max(1),
            ..Retry::default()
        }
    }

    /// The delay before retry number `retry` (1 for the first retry). `jitter` in `[0, 1)`
    /// spreads exponential delays over `[d/2, d]`, so that many failing steps do not retry in
    /// lockstep.
    pub fn delay_before(&self, retry: u32, jitter: f64) -> Duration {
        match self.backoff {
            Backoff::Fixed => self.delay.min(self.max_delay),
            Backoff::Exponential => {
                let factor = 2f64.powi(retry.saturating_sub(1).min(62) as i32);
                let full = self.delay.as_secs_f64() * factor;
                let capped = full.min(self.max_delay.as_secs_f64());
                Duration::from_secs_f64(capped * (0.5 + jitter.clamp(0.0, 1.0) / 2.0))
            }
        }
    }
}

/// How a retry delay grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// The same delay every time.
    Fixed,
    /// Doubling every time, with jitter, up to `max_delay`.
    Exponential,
}

/// How a Rust task is named where capabilities are compared: `name@version`.
pub fn capability(name: &str, version: &str) -> String {
    format!("{name}@{version}")
}

impl Flow {
    /// The Rust tasks its local steps run, as `name@version` ([`capability`]), sorted and
    /// without repeats: what a process must have registered to execute a plan of it.
    /// Commands, groups, gates and remote steps (a worker runs those) need nothing.
    pub fn needs(&self) -> Vec<String> {
        let mut needs: Vec<String> = self
            .steps
            .iter()
            .filter(|s| s.executor.is_local())
            .filter_map(|s| match &s.action {
                Action::Task { name, version } => Some(capability(name, version)),
                _ => None,
            })
            .collect();
        needs.sort();
        needs.dedup();
        needs
    }

    /// The task a remote worker runs for step `step`, as (name, version) — a named task's
    /// own, or [`command_task`] at the flow's version for a command — or `None` for a local
    /// step.
    pub fn remote_task(&self, step: usize) -> Option<(String, String)> {
        let s = self.steps.get(step)?;
        if s.executor.is_local() {
            return None;
        }
        match &s.action {
            Action::Task { name, version } => Some((name.clone(), version.clone())),
            Action::Command(_) => Some((command_task(&self.name, &s.name), self.version.clone())),
            Action::Gate | Action::Group(_) => None,
        }
    }

    /// What workers must offer to run its remote steps, as `name@version`, sorted, without
    /// repeats.
    pub fn remote_needs(&self) -> Vec<String> {
        let mut needs: Vec<String> = (0..self.steps.len())
            .filter_map(|i| self.remote_task(i))
            .map(|(n, v)| capability(&n, &v))
            .collect();
        needs.sort();
        needs.dedup();
        needs
    }

    /// Sends every command and named task to `executor` (`--executor`); gates and groups
    /// stay where they are.
    pub fn set_executor(&mut self, executor: ExecutorKind) {
        for s in &mut self.steps {
            if s.action.can_run_remotely() {
                s.executor = executor;
            }
        }
    }

    /// Checks the given inputs against the flow's: every required input given, nothing
    /// unknown; defaults filled in.
    pub fn bind_inputs(
        &self,
        given: BTreeMap<String, Value>,
    ) -> Result<BTreeMap<String, Value>, InputError> {
        if let Some(unknown) = given.keys().find(|k| !self.inputs.contains_key(*k)) {
            return Err(InputError::Unknown {
                name: unknown.clone(),
                known: self.inputs.keys().cloned().collect(),
            });
        }
        if let Some((name, _)) = given
            .iter()
            .find(|(_, v)| v.as_str().is_some_and(|s| s.contains('\0')))
        {
            return Err(InputError::Nul { name: name.clone() });
        }
        let mut bound = given;
        let mut missing = Vec::new();
        for (name, input) in &self.inputs {
            if bound.contains_key(name) {
                continue;
            }
            match &input.default {
                Some(v) => {
                    bound.insert(name.clone(), v.clone());
                }
                None => missing.push(name.clone()),
            }
        }
        if missing.is_empty() {
            Ok(bound)
        } else {
            Err(InputError::Missing { names: missing })
        }
    }

    /// Replaces the values of secret inputs in `inputs` — and their defaults in this flow —
    /// with [`REDACTED`], for showing.
    pub fn redact(&mut self, inputs: &mut BTreeMap<String, Value>) {
        for (name, input) in self.inputs.iter_mut().filter(|(_, i)| i.secret) {
            if let Some(v) = inputs.get_mut(name) {
                *v = Value::String(REDACTED.into());
            }
            if let Some(d) = input.default.as_mut() {
                *d = Value::String(REDACTED.into());
            }
        }
    }

    /// Indices of the steps that depend directly on each step.
    pub fn dependents(&self) -> Vec<Vec<u32>> {
        let mut out = vec![Vec::new(); self.steps.len()];
        for (i, s) in self.steps.iter().enumerate() {
            for &d in &s.deps {
                out[d as usize].push(i as u32);
            }
        }
        out
    }

    /// The chain of subflows holding step `i`, innermost first.
    pub fn subflow_chain(&self, i: usize) -> Vec<u32> {
        let mut chain = Vec::new();
        let mut cur = self.steps[i].subflow;
        while let Some(s) = cur {
            chain.push(s);
            cur = self.subflows[s as usize].parent;
        }
        chain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_backoff_doubles_and_caps() {
        let r = Retry {
            attempts: 5,
            backoff: Backoff::Exponential,
            delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
        };
        // jitter 1.0 gives the full delay
        assert_eq!(r.delay_before(1, 1.0), Duration::from_millis(100));
        assert_eq!(r.delay_before(2, 1.0), Duration::from_millis(200));
        assert_eq!(r.delay_before(3, 1.0), Duration::from_millis(300));
        assert_eq!(r.delay_before(3, 0.0), Duration::from_millis(150));
    }
}
