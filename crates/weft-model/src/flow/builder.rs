//! Building flows in Rust: linear, unordered and graph flows of registered tasks and commands,
//! with requires / provides data flow and nested subflows. Typed tasks ([`TaskRef`]s with
//! shapes) fill in their own requires / provides, and [`FlowBuilder::build`] checks that what
//! each step takes is of the type the step providing it gives.
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
use super::{Action, Error, ErrorKind, Flow, Input, Retry};
use crate::command::Command;
use crate::shape::Shape;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// A registered Rust task as flows name it: its name and version and, for a typed task, the
/// shapes of its input and output. `Registry::add` (in `weft-engine`) returns one.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRef {
    /// The registered name.
    pub name: String,
    /// The registered version.
    pub version: String,
    /// The input's fields, for a typed task.
    pub input: Option<Shape>,
    /// The output's fields, for a typed task.
    pub output: Option<Shape>,
}

impl TaskRef {
    /// An untyped task: its steps say what they require and provide.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        TaskRef {
            name: name.into(),
            version: version.into(),
            input: None,
            output: None,
        }
    }
}

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
    /// The typed tasks' shapes, by step name at this level.
    typed: HashMap<String, TaskRef>,
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

    /// Runs it on a remote worker that offers its task (a command or a named task; a flow
    /// that sends anything else is refused when built).
    pub fn remote(mut self) -> Self {
        self.0.executor = super::ExecutorKind::Remote;
        self
    }

    /// At most `limit` of this task's steps run at once per rendered `key` (a template of the
    /// plan's values: `"${inputs.tenant}"`; empty, one key for all).
    pub fn concurrency(mut self, key: impl Into<String>, limit: u32) -> Self {
        self.0.limits.concurrency = Some(crate::limit::Concurrency {
            key: key.into(),
            limit,
        });
        self
    }

    /// Its steps take a slot in the named queue (see `weft queues set`).
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.0.limits.queue = Some(name.into());
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
            typed: HashMap::new(),
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

    /// Adds a step running `task`. A typed task requires its input's fields and provides its
    /// output's; an untyped one what `settings` says.
    pub fn step(
        mut self,
        name: impl Into<String>,
        task: &TaskRef,
        settings: impl FnOnce(TaskBuilder) -> TaskBuilder,
    ) -> Self {
        let name = name.into();
        let action = Action::Task {
            name: task.name.clone(),
            version: task.version.clone(),
        };
        let mut spec = TaskSpec::new(name.clone(), Body::Action(action));
        if let Some(input) = &task.input {
            // Optional fields are required only where something provides them (in `build`).
            spec.requires = input
                .fields
                .iter()
                .filter(|(_, f)| !f.optional)
                .map(|(n, _)| n.clone())
                .collect();
        }
        if let Some(output) = &task.output {
            spec.provides = output.fields.keys().cloned().collect();
        }
        if task.input.is_some() || task.output.is_some() {
            self.typed.insert(name, task.clone());
        }
        self.push(spec, settings)
    }

    /// Adds a step running a command (its own process group; see [`Command`]). Its output is
    /// the last JSON object it prints on stdout.
    ///
    /// ```
    /// use weft_model::command::Command;
    /// use weft_model::flow::FlowBuilder;
    /// let flow = FlowBuilder::linear("archive")
    ///     .command("pack", Command::new(["tar", "czf", "out.tgz", "."]), |t| t)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(flow.steps[0].name, "pack");
    /// ```
    pub fn command(
        self,
        name: impl Into<String>,
        command: Command,
        settings: impl FnOnce(TaskBuilder) -> TaskBuilder,
    ) -> Self {
        self.push(
            TaskSpec::new(name, Body::Action(Action::Command(command))),
            settings,
        )
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

    /// At most `limit` plans of this flow run at once per rendered `key` (a template of its
    /// inputs: `"${inputs.tenant}"`; empty, one key for all).
    pub fn concurrency(mut self, key: impl Into<String>, limit: u32) -> Self {
        self.tree.limits.concurrency = Some(crate::limit::Concurrency {
            key: key.into(),
            limit,
        });
        self
    }

    /// Its plans take a slot in the named queue (see `weft queues set`).
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.tree.limits.queue = Some(name.into());
        self
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

    /// Validates and returns the flow: commands well formed, every required value provided,
    /// no cycle, and every value a typed step takes of the type its provider gives.
    pub fn build(mut self) -> Result<Flow, Error> {
        self.check_commands()?;
        self.check_limits()?;
        self.require_provided_options();
        let typed = std::mem::take(&mut self.typed);
        let tasks = self.tree.tasks.clone();
        let flow = self.tree.compile()?;
        check_types(&tasks, &typed)?;
        Ok(flow)
    }

    /// Limits name inputs the flow has, queues with good names, limits of at least one.
    fn check_limits(&self) -> Result<(), Error> {
        let inputs = &self.tree.inputs;
        self.tree
            .limits
            .check(&|n| inputs.contains_key(n))
            .map_err(|m| Error::new(ErrorKind::Invalid(m)))?;
        for task in &self.tree.tasks {
            task.limits.check(&|_| true).map_err(|m| {
                Error::new(ErrorKind::Invalid(format!("step `{}`: {m}", task.name)))
            })?;
        }
        Ok(())
    }

    /// A command's argv must name a program and hold no NUL byte; its environment names no
    /// variable with `=` or NUL — as flow files are checked.
    fn check_commands(&self) -> Result<(), Error> {
        for task in &self.tree.tasks {
            let Body::Action(Action::Command(c)) = &task.body else {
                continue;
            };
            let invalid = |why: String| {
                Error::new(ErrorKind::Invalid(format!("step `{}`: {why}", task.name)))
            };
            for (field, argv) in [("run", Some(&c.run)), ("revert", c.revert.as_ref())] {
                let Some(argv) = argv else { continue };
                if argv.first().is_none_or(|p| p.is_empty()) {
                    return Err(invalid(format!("its `{field}` names no program")));
                }
                if argv.iter().any(|a| a.contains('\0')) {
                    return Err(invalid(format!("its `{field}` holds a NUL byte")));
                }
            }
            super::raw::check_env(&c.env).map_err(|e| invalid(e.to_string()))?;
        }
        Ok(())
    }

    /// A typed step's optional fields are required where an input or another step provides
    /// them, so that the task gets them; elsewhere they stay absent.
    fn require_provided_options(&mut self) {
        let mut provided: std::collections::HashSet<String> =
            self.tree.inputs.keys().cloned().collect();
        for t in &self.tree.tasks {
            provided.extend(t.provides.iter().cloned());
        }
        for t in &mut self.tree.tasks {
            let Some(input) = self.typed.get(&t.name).and_then(|r| r.input.as_ref()) else {
                continue;
            };
            for (name, field) in &input.fields {
                let own = t.provides.contains(name);
                if field.optional && provided.contains(name) && !own && !t.requires.contains(name) {
                    t.requires.push(name.clone());
                }
            }
        }
    }
}

/// Every value a typed step takes must be of the kind its typed provider gives, and present
/// whenever the step needs it: `step \`b\` takes \`n\` as an integer, but step \`a\` provides a
/// string`.
fn check_types(tasks: &[TaskSpec], typed: &HashMap<String, TaskRef>) -> Result<(), Error> {
    for task in tasks {
        let Some(input) = typed.get(&task.name).and_then(|r| r.input.as_ref()) else {
            continue;
        };
        for name in &task.requires {
            let Some(wanted) = input.fields.get(name) else {
                continue;
            };
            for provider in tasks.iter().filter(|p| p.provides.contains(name)) {
                let Some(given) = typed
                    .get(&provider.name)
                    .and_then(|r| r.output.as_ref())
                    .and_then(|o| o.fields.get(name))
                else {
                    continue;
                };
                let mismatch = if !wanted.kind.accepts(given.kind) {
                    Some(format!(
                        "step `{}` takes `{name}` as {}, but step `{}` provides {}",
                        task.name,
                        wanted.kind.described(),
                        provider.name,
                        given.kind.described()
                    ))
                } else if given.optional && !wanted.optional {
                    Some(format!(
                        "step `{}` needs `{name}`, but step `{}` may leave it out (an Option); make the field an Option in `{}`'s input too",
                        task.name, provider.name, task.name
                    ))
                } else {
                    None
                };
                if let Some(why) = mismatch {
                    return Err(Error::new(ErrorKind::Invalid(why)).field(name));
                }
            }
        }
    }
    Ok(())
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
