//! Building flows in Rust: linear, unordered and graph flows of registered tasks, with
//! requires / provides data flow and nested subflows.
//!
//! ```
//! use weft_model::flow::FlowBuilder;
//! let flow = FlowBuilder::linear("release")
//!     .input("version", None)
//!     .task("build", "build", "1", |t| t.requires(["version"]).provides(["artifact"]))
//!     .task("publish", "publish", "1", |t| t.requires(["artifact"]))
//!     .build()
//!     .unwrap();
//! assert_eq!(flow.steps[1].deps, vec![0]);
//! ```

use super::tree::{Body, TaskSpec, Tree};
use super::{Action, Error, Flow, Input, Retry};
use serde_json::Value;
use std::time::Duration;

/// How the tasks of a builder are ordered, beyond requires / provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Each task after the one before (TaskFlow's linear flow).
    Linear,
    /// No ordering but data flow (TaskFlow's unordered flow).
    Unordered,
    /// Ordering from `after` and data flow only (TaskFlow's graph flow).
    Graph,
}

/// Builds a [`Flow`] of Rust tasks.
#[derive(Debug, Clone)]
pub struct FlowBuilder {
    pattern: Pattern,
    tree: Tree,
}

/// Settings of one task being added to a [`FlowBuilder`].
#[derive(Debug, Clone)]
pub struct TaskBuilder(TaskSpec);

impl TaskBuilder {
    /// Value names the task takes.
    pub fn requires<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.0.requires.extend(names.into_iter().map(Into::into));
        self
    }

    /// Value names the task's output holds.
    pub fn provides<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.0.provides.extend(names.into_iter().map(Into::into));
        self
    }

    /// Tasks that must finish first.
    pub fn after<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.0.after.extend(names.into_iter().map(Into::into));
        self
    }

    /// The retry policy.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.0.retry = retry;
        self
    }

    /// A limit on one attempt.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.0.timeout = Some(timeout);
        self
    }

    /// The time between SIGTERM and SIGKILL when a timeout or a halt stops a command (5 s).
    pub fn kill_timeout(mut self, grace: Duration) -> Self {
        self.0.kill_timeout = grace;
        self
    }

    /// Whether the task may be re-run after a crash interrupted it (default: true).
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.0.idempotent = idempotent;
        self
    }

    /// After the task succeeds, wait for an event addressed to the step (`None`: for ever).
    pub fn wait_for_event(mut self, timeout: Option<Duration>) -> Self {
        self.0.wait = Some(super::Wait { timeout });
        self
    }

    /// Runs in the finalize phase: after every run-phase step succeeded, one at a time.
    pub fn finalize(mut self) -> Self {
        self.0.phase = super::Phase::Finalize;
        self
    }
}

impl FlowBuilder {
    /// A flow whose tasks run one after another.
    pub fn linear(name: impl Into<String>) -> Self {
        Self::new(name, Pattern::Linear)
    }

    /// A flow whose tasks run in parallel, ordered only by data flow.
    pub fn unordered(name: impl Into<String>) -> Self {
        Self::new(name, Pattern::Unordered)
    }

    /// A flow ordered by `after` and data flow.
    pub fn graph(name: impl Into<String>) -> Self {
        Self::new(name, Pattern::Graph)
    }

    fn new(name: impl Into<String>, pattern: Pattern) -> Self {
        FlowBuilder {
            pattern,
            tree: Tree {
                name: name.into(),
                ..Tree::default()
            },
        }
    }

    /// Sets the version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.tree.version = version.into();
        self
    }

    /// Declares a secret input, required: the task gets it, weft never shows it.
    pub fn secret_input(mut self, name: impl Into<String>) -> Self {
        self.tree.inputs.insert(
            name.into(),
            Input {
                default: None,
                description: String::new(),
                secret: true,
            },
        );
        self
    }

    /// Declares an input; `default: None` makes it required.
    pub fn input(mut self, name: impl Into<String>, default: Option<Value>) -> Self {
        self.tree.inputs.insert(
            name.into(),
            Input {
                default,
                description: String::new(),
                secret: false,
            },
        );
        self
    }

    /// Adds a step running the registered task `task` at `version`.
    pub fn task(
        self,
        name: impl Into<String>,
        task: impl Into<String>,
        version: impl Into<String>,
        settings: impl FnOnce(TaskBuilder) -> TaskBuilder,
    ) -> Self {
        let action = Action::Task {
            name: task.into(),
            version: version.into(),
        };
        self.push(TaskSpec::new(name, Body::Action(action)), settings)
    }

    /// Adds a pure gate: a step that does nothing but wait for an event (`None`: for ever).
    pub fn gate(
        self,
        name: impl Into<String>,
        timeout: Option<Duration>,
        settings: impl FnOnce(TaskBuilder) -> TaskBuilder,
    ) -> Self {
        let mut spec = TaskSpec::new(name, Body::Action(Action::Gate));
        spec.wait = Some(super::Wait { timeout });
        self.push(spec, settings)
    }

    /// Adds a group: its tasks run together under lifecycle hooks (prestart, sidecars, main,
    /// poststart, poststop); each task's output is the value `name/task`.
    pub fn group(
        self,
        name: impl Into<String>,
        group: crate::group::Group,
        settings: impl FnOnce(TaskBuilder) -> TaskBuilder,
    ) -> Self {
        let name = name.into();
        let provides = group
            .tasks
            .iter()
            .map(|t| format!("{name}/{}", t.name))
            .collect();
        let mut spec = TaskSpec::new(name, Body::Action(Action::Group(group)));
        spec.provides = provides;
        self.push(spec, settings)
    }

    /// What to do when a step fails for good.
    pub fn on_error(mut self, rescue: super::Rescue) -> Self {
        self.tree.on_error = Some(rescue);
        self
    }

    /// Adds a nested flow as one node; its steps are named `name/child`.
    pub fn subflow(
        self,
        name: impl Into<String>,
        flow: FlowBuilder,
        settings: impl FnOnce(TaskBuilder) -> TaskBuilder,
    ) -> Self {
        let sub = flow.into_tree();
        self.push(TaskSpec::new(name, Body::Subflow(Box::new(sub))), settings)
    }

    fn push(mut self, spec: TaskSpec, settings: impl FnOnce(TaskBuilder) -> TaskBuilder) -> Self {
        let mut spec = settings(TaskBuilder(spec)).0;
        if self.pattern == Pattern::Linear {
            if let Some(prev) = self.tree.tasks.last() {
                if !spec.after.contains(&prev.name) {
                    spec.after.push(prev.name.clone());
                }
            }
        }
        self.tree.tasks.push(spec);
        self
    }

    fn into_tree(self) -> Tree {
        self.tree
    }

    /// Validates and returns the flow.
    pub fn build(self) -> Result<Flow, Error> {
        self.tree.compile()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unordered_flows_have_no_edges_but_data_flow() {
        let flow = FlowBuilder::unordered("u")
            .task("a", "noop", "1", |t| t)
            .task("b", "noop", "1", |t| t.provides(["v"]))
            .task("c", "noop", "1", |t| t.requires(["v"]))
            .build()
            .expect("valid");
        assert_eq!(flow.steps[0].deps, Vec::<u32>::new());
        assert_eq!(flow.steps[2].deps, vec![1]);
    }

    #[test]
    fn groups_are_one_step_providing_each_task_and_are_checked() {
        use crate::group::{Group, GroupTask, Hook, Lifecycle, Restart};
        let task = |name: &str, lifecycle| GroupTask {
            name: name.into(),
            lifecycle,
            command: super::super::Command {
                run: vec!["true".into()],
                revert: None,
                env: Default::default(),
                cwd: None,
                warn_exit_codes: Vec::new(),
            },
            ready: None,
            kill_timeout: crate::group::DEFAULT_KILL_TIMEOUT,
            idempotent: true,
        };
        let sidecar = Some(Lifecycle {
            hook: Hook::Prestart,
            sidecar: true,
        });
        let group = Group {
            tasks: vec![task("db", sidecar), task("work", None)],
            restart: Restart::default(),
        };
        let flow = FlowBuilder::linear("g")
            .group("svc", group.clone(), |t| t)
            .task("after", "noop", "1", |t| t.requires(["svc/work"]))
            .build()
            .expect("valid");
        assert_eq!(flow.steps[0].provides, ["svc/db", "svc/work"]);
        assert_eq!(flow.steps[1].deps, vec![0]);
        let no_main = Group {
            tasks: vec![task("db", sidecar)],
            ..group
        };
        let e = FlowBuilder::linear("g")
            .group("svc", no_main, |t| t)
            .build()
            .expect_err("no main task");
        assert!(
            e.to_string().contains("group `svc` has no main task"),
            "{e}"
        );
    }

    #[test]
    fn subflow_steps_are_named_under_their_parent_and_ordered_as_one_node() {
        let inner = FlowBuilder::linear("inner")
            .task("x", "noop", "1", |t| t)
            .task("y", "noop", "1", |t| t.provides(["out"]));
        let flow = FlowBuilder::graph("outer")
            .task("first", "noop", "1", |t| t)
            .subflow("sub", inner, |t| t.after(["first"]))
            .task("last", "noop", "1", |t| t.requires(["out"]))
            .build()
            .expect("valid");
        let names: Vec<&str> = flow.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["first", "sub/x", "sub/y", "last"]);
        assert_eq!(flow.steps[1].deps, vec![0]);
        assert_eq!(flow.steps[2].deps, vec![0, 1]);
        // `last` needs a value from inside `sub`, so it waits for all of `sub`.
        assert_eq!(flow.steps[3].deps, vec![1, 2]);
    }
}
