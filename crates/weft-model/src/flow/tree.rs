//! The unvalidated shape of a flow, as a file or a builder writes it, and its compilation into
//! a [`Flow`]: flattening subflows, resolving `after` and requires/provides into step
//! dependencies, and refusing duplicates, unknown names, unresolved values and cycles.

use super::{Action, Error, ErrorKind, Flow, Input, Retry, StepDef, Subflow};
use crate::suggest::closest;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

/// A flow before validation: what a file or a builder says.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// The flow's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// What it is for.
    pub description: String,
    /// Its inputs.
    pub inputs: BTreeMap<String, Input>,
    /// Its tasks, in order.
    pub tasks: Vec<TaskSpec>,
    /// What to do when a step fails for good (top-level flows only).
    pub on_error: Option<super::Rescue>,
    /// Limits on its plans (top-level flows only).
    pub limits: crate::limit::Limits,
    /// When to start it by itself (top-level flows only).
    pub schedule: Option<crate::schedule::Spec>,
    /// The file it came from.
    pub(crate) file: Option<PathBuf>,
}

/// One task of a [`Tree`].
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// Unique at its level.
    pub name: String,
    /// What runs.
    pub body: Body,
    /// Names of tasks (at the same level) that must finish first.
    pub after: Vec<String>,
    /// Value names it takes.
    pub requires: Vec<String>,
    /// Value names it provides.
    pub provides: Vec<String>,
    /// Retry policy (for a subflow: of the whole subflow).
    pub retry: Retry,
    /// Limit on one attempt.
    pub timeout: Option<Duration>,
    /// SIGTERM to SIGKILL when a timeout or a halt stops its command.
    pub kill_timeout: Duration,
    /// Whether it may be re-run after a crash.
    pub idempotent: bool,
    /// Wait for an event after the action.
    pub wait: Option<super::Wait>,
    /// Run or finalize phase.
    pub phase: super::Phase,
    /// Where its action runs.
    pub executor: super::ExecutorKind,
    /// Limits on its steps.
    pub limits: crate::limit::Limits,
    /// Source lines of its fields, for error messages.
    pub(crate) lines: HashMap<&'static str, usize>,
}

/// What a [`TaskSpec`] holds.
#[derive(Debug, Clone)]
pub enum Body {
    /// A step.
    Action(Action),
    /// A nested flow.
    Subflow(Box<Tree>),
}

impl TaskSpec {
    /// A task running `action`, with default settings.
    pub fn new(name: impl Into<String>, body: Body) -> Self {
        TaskSpec {
            name: name.into(),
            body,
            after: Vec::new(),
            requires: Vec::new(),
            provides: Vec::new(),
            retry: Retry::default(),
            timeout: None,
            kill_timeout: crate::group::DEFAULT_KILL_TIMEOUT,
            idempotent: true,
            wait: None,
            phase: super::Phase::Run,
            executor: super::ExecutorKind::Local,
            limits: crate::limit::Limits::default(),
            lines: HashMap::new(),
        }
    }

    fn line(&self, field: &str) -> Option<usize> {
        self.lines
            .get(field)
            .or_else(|| self.lines.get("name"))
            .copied()
    }
}

/// Where a flattened top-level task of one tree went.
enum Unit {
    Step(u32),
    Subflow,
}

struct Compiler {
    steps: Vec<StepDef>,
    subflows: Vec<Subflow>,
    /// Per step: the (file, line) of its task, for error messages.
    origins: Vec<(Option<PathBuf>, Option<usize>)>,
    /// Per step: extra dependency sources (after/requires of enclosing subflow tasks).
    inherited: Vec<Vec<Inherited>>,
    /// Per step: defaults from enclosing subflows' inputs; a `None` is a required subflow input.
    scoped_inputs: Vec<BTreeMap<String, Option<Value>>>,
}

/// An `after` or `requires` of an enclosing subflow task, applied to each step inside it.
#[derive(Clone)]
enum Inherited {
    After(Vec<u32>),
    Requires(String, Option<PathBuf>, Option<usize>, String),
}

impl Tree {
    /// Flattens and validates the tree into a [`Flow`].
    pub fn compile(self) -> Result<Flow, Error> {
        let mut c = Compiler {
            steps: Vec::new(),
            subflows: Vec::new(),
            origins: Vec::new(),
            inherited: Vec::new(),
            scoped_inputs: Vec::new(),
        };
        c.flatten(&self, "", None, &BTreeMap::new())?;
        c.resolve_values(&self.inputs)?;
        c.order_finalize();
        // Grown by doubling: give back what a large flow does not use.
        c.steps.shrink_to_fit();
        let flow = Flow {
            name: self.name,
            version: self.version,
            description: self.description,
            inputs: self.inputs,
            steps: c.steps,
            subflows: c.subflows,
            on_error: self.on_error,
            limits: self.limits,
            schedule: self.schedule,
        };
        check_acyclic(&flow)?;
        Ok(flow)
    }
}

/// If `name` is `group/task` for a group at this level: the group's name.
fn inside_group<'a>(tree: &'a Tree, name: &str) -> Option<&'a str> {
    let (group, _) = name.split_once('/')?;
    tree.tasks
        .iter()
        .find(|t| t.name == group && matches!(t.body, Body::Action(Action::Group(_))))
        .map(|t| t.name.as_str())
}

impl Compiler {
    /// Adds the tree's tasks under `prefix`; resolves `after` at this level.
    fn flatten(
        &mut self,
        tree: &Tree,
        prefix: &str,
        parent: Option<u32>,
        scope: &BTreeMap<String, Option<Value>>,
    ) -> Result<Vec<u32>, Error> {
        let file = tree.file.as_ref();
        let mut units: Vec<(String, Unit, Vec<u32>)> = Vec::new();
        // Each unit's index in `units`, by name: lookups stay O(1) in flows of 100k tasks.
        let mut by_name: HashMap<&str, usize> = HashMap::with_capacity(tree.tasks.len());
        let mut all = Vec::new();
        for task in &tree.tasks {
            let err_at = |e: Error, field: &str| e.task(&task.name).at(file, task.line(field));
            if by_name.insert(task.name.as_str(), units.len()).is_some() {
                return Err(err_at(
                    Error::new(ErrorKind::DuplicateTask(task.name.clone())).field("name"),
                    "name",
                ));
            }
            let full = format!("{prefix}{}", task.name);
            if let Body::Action(Action::Group(g)) = &task.body {
                g.check(&task.name)
                    .map_err(|m| err_at(Error::new(ErrorKind::Invalid(m)), "name"))?;
            }
            if !task.executor.is_local()
                && !matches!(&task.body, Body::Action(a) if a.can_run_remotely())
            {
                return Err(err_at(
                    Error::new(ErrorKind::Invalid(
                        "only a command (`run`) or a named task (`task`) can run on a remote \
                         worker; a gate, a group or a subflow cannot"
                            .into(),
                    ))
                    .field("executor"),
                    "executor",
                ));
            }
            let (unit, members) = match &task.body {
                Body::Action(action) => {
                    let idx = self.steps.len() as u32;
                    self.steps.push(StepDef {
                        name: full,
                        action: action.clone(),
                        deps: Vec::new(),
                        requires: task.requires.clone(),
                        provides: task.provides.clone(),
                        defaults: BTreeMap::new(),
                        retry: task.retry,
                        timeout: task.timeout,
                        kill_timeout: task.kill_timeout,
                        idempotent: task.idempotent,
                        subflow: parent,
                        wait: task.wait,
                        phase: task.phase,
                        executor: task.executor,
                        limits: task.limits.clone(),
                    });
                    self.origins.push((file.cloned(), task.line("name")));
                    self.inherited.push(Vec::new());
                    self.scoped_inputs.push(scope.clone());
                    (Unit::Step(idx), vec![idx])
                }
                Body::Subflow(sub) => {
                    let sidx = self.subflows.len() as u32;
                    self.subflows.push(Subflow {
                        name: full.clone(),
                        parent,
                        steps: Vec::new(),
                        retry: task.retry,
                    });
                    let mut inner_scope = scope.clone();
                    for (name, input) in &sub.inputs {
                        inner_scope.insert(name.clone(), input.default.clone());
                    }
                    let members =
                        self.flatten(sub, &format!("{full}/"), Some(sidx), &inner_scope)?;
                    for p in &task.provides {
                        if !members
                            .iter()
                            .any(|&m| self.steps[m as usize].provides.contains(p))
                        {
                            return Err(err_at(
                                Error::new(ErrorKind::SubflowProvides(p.clone())),
                                "provides",
                            ));
                        }
                    }
                    for r in &task.requires {
                        for &m in &members {
                            self.inherited[m as usize].push(Inherited::Requires(
                                r.clone(),
                                file.cloned(),
                                task.line("requires"),
                                task.name.clone(),
                            ));
                        }
                    }
                    self.subflows[sidx as usize].steps = members.clone();
                    (Unit::Subflow, members)
                }
            };
            all.extend(members.iter().copied());
            units.push((task.name.clone(), unit, members));
        }
        // `after` names tasks at this level.
        for task in &tree.tasks {
            let mut deps = Vec::new();
            for name in &task.after {
                match by_name.get(name.as_str()).map(|&u| &units[u]) {
                    Some((_, _, members)) => deps.extend(members.iter().copied()),
                    None => {
                        if let Some(group) = inside_group(tree, name) {
                            return Err(Error::new(ErrorKind::Invalid(format!(
                                "`{name}` is a task inside group `{group}`; a task outside \
                                 the group can only come after the whole group: \
                                 `after = [\"{group}\"]`"
                            )))
                            .task(&task.name)
                            .field("after")
                            .at(file, task.line("after")));
                        }
                        let suggestion = closest(name, units.iter().map(|(n, _, _)| n.as_str()))
                            .map(str::to_string);
                        return Err(Error::new(ErrorKind::UnknownTask {
                            name: name.clone(),
                            suggestion,
                        })
                        .task(&task.name)
                        .field("after")
                        .at(file, task.line("after")));
                    }
                }
            }
            if deps.is_empty() {
                continue;
            }
            let (_, unit, members) = &units[by_name[task.name.as_str()]];
            match unit {
                Unit::Step(i) => self.steps[*i as usize].deps.extend(deps),
                Unit::Subflow => {
                    for &m in members {
                        self.inherited[m as usize].push(Inherited::After(deps.clone()));
                    }
                }
            }
        }
        Ok(all)
    }

    /// Resolves every `requires` to the step providing it, an input, or a subflow default.
    fn resolve_values(&mut self, inputs: &BTreeMap<String, Input>) -> Result<(), Error> {
        let mut providers: HashMap<String, u32> = HashMap::new();
        for (i, s) in self.steps.iter().enumerate() {
            for p in &s.provides {
                if let Some(&first) = providers.get(p) {
                    let (file, line) = &self.origins[i];
                    return Err(Error::new(ErrorKind::DuplicateProvider {
                        value: p.clone(),
                        first: self.steps[first as usize].name.clone(),
                        second: s.name.clone(),
                    })
                    .task(&s.name)
                    .field("provides")
                    .at(file.as_ref(), *line));
                }
                if inputs.contains_key(p) {
                    let (file, line) = &self.origins[i];
                    return Err(Error::new(ErrorKind::InputShadowed {
                        value: p.clone(),
                        task: s.name.clone(),
                    })
                    .task(&s.name)
                    .field("provides")
                    .at(file.as_ref(), *line));
                }
                providers.insert(p.clone(), i as u32);
            }
        }
        for i in 0..self.steps.len() {
            let mut deps: BTreeSet<u32> = self.steps[i].deps.iter().copied().collect();
            let own: Vec<(String, Option<PathBuf>, Option<usize>, String)> = self.steps[i]
                .requires
                .iter()
                .map(|r| {
                    let (f, l) = &self.origins[i];
                    (r.clone(), f.clone(), *l, self.steps[i].name.clone())
                })
                .collect();
            let mut wanted = own;
            for inh in self.inherited[i].clone() {
                match inh {
                    Inherited::After(d) => deps.extend(d),
                    Inherited::Requires(v, f, l, t) => wanted.push((v, f, l, t)),
                }
            }
            for (value, file, line, task) in wanted {
                if let Some(&p) = providers.get(&value) {
                    if p as usize == i {
                        return Err(Error::new(ErrorKind::Invalid(format!(
                            "requires `{value}`, which it provides itself"
                        )))
                        .task(&task)
                        .field("requires")
                        .at(file.as_ref(), line));
                    }
                    deps.extend(self.dependency_on(i, p as usize));
                } else if inputs.contains_key(&value) {
                    // a plan input
                } else if let Some(Some(default)) = self.scoped_inputs[i].get(&value) {
                    self.steps[i]
                        .defaults
                        .insert(value.clone(), default.clone());
                } else {
                    return Err(Error::new(ErrorKind::Unresolved(value))
                        .task(&task)
                        .field("requires")
                        .at(file.as_ref(), line));
                }
            }
            deps.remove(&(i as u32));
            self.steps[i].deps = deps.into_iter().collect();
        }
        Ok(())
    }

    /// Dynflow's finalize phase as dependencies: each finalize step waits for every run-phase
    /// step and for the finalize step before it, so they run one at a time, in plan order,
    /// once the run phase has succeeded.
    fn order_finalize(&mut self) {
        let run: Vec<u32> = (0..self.steps.len() as u32)
            .filter(|&i| self.steps[i as usize].phase == super::Phase::Run)
            .collect();
        let mut previous: Option<u32> = None;
        for i in 0..self.steps.len() {
            if self.steps[i].phase != super::Phase::Finalize {
                continue;
            }
            let mut deps: BTreeSet<u32> = self.steps[i].deps.iter().copied().collect();
            deps.extend(run.iter().copied());
            deps.extend(previous);
            self.steps[i].deps = deps.into_iter().collect();
            previous = Some(i as u32);
        }
    }

    /// What step `from` depends on to get a value from step `provider`: the provider itself,
    /// or, when the provider sits in a subflow that `from` is outside of, that whole subflow
    /// (a subflow is one node to its siblings).
    fn dependency_on(&self, from: usize, provider: usize) -> Vec<u32> {
        let from_chain = chain(&self.subflows, self.steps[from].subflow);
        let provider_chain = chain(&self.subflows, self.steps[provider].subflow);
        // outermost subflow holding the provider but not `from`
        match provider_chain
            .iter()
            .rev()
            .find(|s| !from_chain.contains(s))
        {
            Some(&s) => self.subflows[s as usize].steps.clone(),
            None => vec![provider as u32],
        }
    }
}

fn chain(subflows: &[Subflow], mut cur: Option<u32>) -> Vec<u32> {
    let mut out = Vec::new();
    while let Some(s) = cur {
        out.push(s);
        cur = subflows[s as usize].parent;
    }
    out
}

/// Refuses a flow whose dependencies form a cycle, naming the steps in it.
fn check_acyclic(flow: &Flow) -> Result<(), Error> {
    let n = flow.steps.len();
    let mut indegree: Vec<usize> = flow.steps.iter().map(|s| s.deps.len()).collect();
    let dependents = flow.dependents();
    let mut queue: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut seen = 0;
    while let Some(i) = queue.pop() {
        seen += 1;
        for &d in &dependents[i] {
            indegree[d as usize] -= 1;
            if indegree[d as usize] == 0 {
                queue.push(d as usize);
            }
        }
    }
    if seen == n {
        return Ok(());
    }
    // Walk deps among the leftover steps until one repeats: that loop is a cycle.
    let start = (0..n).find(|&i| indegree[i] > 0).unwrap_or(0);
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let next = flow.steps[cur]
            .deps
            .iter()
            .map(|&d| d as usize)
            .find(|&d| indegree[d] > 0)
            .unwrap_or(start);
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle: Vec<String> = path[pos..]
                .iter()
                .rev()
                .map(|&i| flow.steps[i].name.clone())
                .collect();
            cycle.push(cycle[0].clone());
            return Err(Error::new(ErrorKind::Cycle(cycle)));
        }
        path.push(next);
        cur = next;
    }
}
