//! Flow files: TOML with `name`, `version`, `description`, `[inputs]`, `[defaults]` and
//! `[[task]]` tables. Reading a file gives a validated [`Flow`] or an [`Error`] that names the
//! file, the line and the field.

use super::raw::{argv, check_cwd, check_env, Lines, RawDefaults, RawRetry};
use super::tree::{Body, TaskSpec, Tree};
use super::{Action, Backoff, Command, Error, ErrorKind, Flow, Input, Retry};
use crate::duration;
use crate::suggest::closest;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Reads, parses and validates the flow file at `path`, with its subflows.
pub fn load(path: &Path) -> Result<Flow, Error> {
    let tree = load_tree(path, &mut Vec::new())?;
    let file = tree.file.clone();
    tree.compile().map_err(|e| e.at(file.as_ref(), None))
}

/// Reads a flow file: a regular file (not a device, a FIFO or a directory) of at most
/// [`MAX_FLOW_FILE`] bytes, in UTF-8.
fn read_flow_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file; a flow is a TOML file".into());
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_FLOW_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FLOW_FILE {
        return Err(format!(
            "larger than {} MiB, the most a flow file may be",
            MAX_FLOW_FILE >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".into())
}

/// Parses flow TOML held in memory; `dir` resolves relative subflow paths and `cwd`s.
pub fn parse(text: &str, file: &Path, dir: &Path) -> Result<Flow, Error> {
    let tree = parse_tree(text, file, dir, &mut Vec::new())?;
    tree.compile()
        .map_err(|e| e.at(Some(&file.to_path_buf()), None))
}

/// The largest flow file weft reads (64 MiB: a flow of a million tasks fits).
pub const MAX_FLOW_FILE: u64 = 64 << 20;

fn load_tree(path: &Path, stack: &mut Vec<PathBuf>) -> Result<Tree, Error> {
    let shown = path.to_path_buf();
    let io = |m: String| Error::new(ErrorKind::Io(m)).at(Some(&shown), None);
    let text = read_flow_file(path).map_err(io)?;
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if stack.contains(&canonical) {
        let mut chain = stack.clone();
        chain.push(canonical);
        return Err(Error::new(ErrorKind::SubflowCycle(chain)));
    }
    let dir = canonical
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    stack.push(canonical);
    let tree = parse_tree(&text, &shown, &dir, stack);
    stack.pop();
    tree
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    name: Spanned<String>,
    #[serde(default)]
    version: Option<toml::Value>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    inputs: BTreeMap<String, Spanned<RawInput>>,
    #[serde(default)]
    defaults: Option<Spanned<RawDefaults>>,
    #[serde(default, rename = "task")]
    tasks: Vec<RawTask>,
    #[serde(default, rename = "group")]
    groups: Vec<super::group_file::RawGroup>,
    #[serde(default)]
    on_error: Option<Spanned<String>>,
    #[serde(default)]
    concurrency: Option<Spanned<crate::limit::Concurrency>>,
    #[serde(default)]
    queue: Option<Spanned<String>>,
    #[serde(default)]
    schedule: Option<Spanned<RawSchedule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    cron: String,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    inputs: BTreeMap<String, toml::Value>,
    #[serde(default)]
    overlap: Option<String>,
    #[serde(default)]
    catch_up: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    #[serde(default)]
    required: Option<bool>,
    #[serde(default)]
    default: Option<toml::Value>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    secret: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    run: Option<Spanned<toml::Value>>,
    revert: Option<Spanned<toml::Value>>,
    flow: Option<Spanned<String>>,
    #[serde(default)]
    after: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    requires: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    provides: Option<Spanned<Vec<String>>>,
    retry: Option<Spanned<RawRetry>>,
    timeout: Option<Spanned<String>>,
    kill_timeout: Option<Spanned<String>>,
    env: Option<Spanned<BTreeMap<String, String>>>,
    idempotent: Option<bool>,
    cwd: Option<Spanned<String>>,
    wait_for_event: Option<Spanned<RawWait>>,
    phase: Option<Spanned<String>>,
    warn_exit_codes: Option<Spanned<Vec<i32>>>,
    task: Option<Spanned<String>>,
    executor: Option<Spanned<String>>,
    concurrency: Option<Spanned<crate::limit::Concurrency>>,
    queue: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWait {
    timeout: Option<String>,
}

/// [`Lines`] for spans that count from `base` (a task read from a piece of its file).
struct Shifted<'a> {
    lines: &'a Lines,
    base: usize,
}

impl Shifted<'_> {
    fn of(&self, offset: usize) -> usize {
        self.lines.of(self.base + offset)
    }
}

/// The task tables of one piece of a large flow file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTasks {
    #[serde(rename = "task")]
    tasks: Vec<RawTask>,
}

fn parse_tree(
    text: &str,
    file: &Path,
    dir: &Path,
    stack: &mut Vec<PathBuf>,
) -> Result<Tree, Error> {
    let lines = Lines::new(text);
    let file_buf = file.to_path_buf();
    let parse_err = |e: toml::de::Error, base: usize| {
        let line = e.span().map(|s| lines.of(base + s.start));
        toml_error(e.message()).at(Some(&file_buf), line)
    };
    // Each task with the offset its spans count from. A large file is read in pieces, each
    // parsed only when the tasks before it have been turned into specs: at no time are all
    // the raw tables in memory.
    type RawTasksOf<'a> = Box<dyn Iterator<Item = Result<(usize, RawTask), Error>> + 'a>;
    let (raw, raw_tasks): (RawFlow, RawTasksOf<'_>) = match super::chunks::split(text) {
        None => {
            let mut raw: RawFlow = toml::from_str(text).map_err(|e| parse_err(e, 0))?;
            let tasks = std::mem::take(&mut raw.tasks);
            (raw, Box::new(tasks.into_iter().map(|t| Ok((0, t)))))
        }
        Some(split) => {
            let raw: RawFlow = toml::from_str(&split.rest).map_err(|e| parse_err(e, 0))?;
            let parse_err = &parse_err;
            let pieces = split.runs.into_iter().flat_map(move |(base, run)| {
                let tasks: Vec<Result<(usize, RawTask), Error>> =
                    match toml::from_str::<RawTasks>(run) {
                        Ok(part) => part.tasks.into_iter().map(|t| Ok((base, t))).collect(),
                        Err(e) => vec![Err(parse_err(e, base))],
                    };
                tasks
            });
            (raw, Box::new(pieces))
        }
    };
    let at = |e: Error, offset: usize| e.at(Some(&file_buf), Some(lines.of(offset)));

    let version = match raw.version {
        None => String::new(),
        Some(toml::Value::String(s)) => s,
        Some(other) => other.to_string(),
    };

    let mut inputs = BTreeMap::new();
    let mut variables: BTreeMap<String, String> = BTreeMap::new();
    for (name, spanned) in raw.inputs {
        let offset = spanned.span().start;
        if let Some(other) = variables.insert(super::input_var(&name), name.clone()) {
            return Err(at(
                Error::new(ErrorKind::Invalid(format!(
                    "inputs `{other}` and `{name}` would both reach tasks as {}; rename one",
                    super::input_var(&name)
                )))
                .field("inputs"),
                offset,
            ));
        }
        let input = spanned.into_inner();
        let default = input.default.map(toml_to_json);
        if input.required == Some(true) && default.is_some() {
            return Err(at(
                Error::new(ErrorKind::Invalid(format!(
                    "input `{name}` is required and has a default; choose one"
                )))
                .field("inputs"),
                offset,
            ));
        }
        if input.required != Some(true) && default.is_none() {
            return Err(at(
                Error::new(ErrorKind::Invalid(format!(
                    "input `{name}` needs `required = true` or a `default`"
                )))
                .field("inputs"),
                offset,
            ));
        }
        inputs.insert(
            name,
            Input {
                default,
                description: input.description,
                secret: input.secret,
            },
        );
    }

    let raw_defaults = raw.defaults.map(Spanned::into_inner).unwrap_or_default();
    let task_defaults = task_defaults(&raw_defaults, &at)?;

    // Tasks and groups, each with where it starts: declaration order is plan order.
    let mut tasks: Vec<(usize, TaskSpec)> = Vec::new();
    for raw_group in raw.groups {
        let offset = raw_group.name.span().start;
        let spec = super::group_file::group(raw_group, &raw_defaults, dir, &lines)
            .map_err(|e| e.at(Some(&file_buf), None))?;
        tasks.push((offset, spec));
    }
    for item in raw_tasks {
        let (base, raw_task) = item?;
        tasks.push(task_spec(
            raw_task,
            base,
            &lines,
            &file_buf,
            &task_defaults,
            dir,
            stack,
        )?);
    }
    tasks.sort_by_key(|(offset, _)| *offset);
    let tasks = tasks.into_iter().map(|(_, t)| t).collect();

    let on_error = match &raw.on_error {
        Some(r) => Some(r.get_ref().parse().map_err(|m: String| {
            at(
                Error::new(ErrorKind::Invalid(m)).field("on_error"),
                r.span().start,
            )
        })?),
        None => None,
    };
    let has_input = |n: &str| inputs.contains_key(n);
    let (limits, offset) = limits(raw.concurrency, raw.queue);
    limits
        .check(&has_input)
        .map_err(|m| at(Error::new(ErrorKind::Invalid(m)), offset))?;
    let schedule = match raw.schedule {
        Some(s) => {
            let offset = s.span().start;
            Some(
                schedule(s.into_inner())
                    .map_err(|m| at(Error::new(ErrorKind::Invalid(m)).field("schedule"), offset))?,
            )
        }
        None => None,
    };
    Ok(Tree {
        name: raw.name.into_inner(),
        version,
        description: raw.description,
        inputs,
        tasks,
        on_error,
        limits,
        schedule,
        file: Some(file_buf),
    })
}

/// `concurrency` and `queue` as [`Limits`](crate::limit::Limits), with the offset of the first.
fn limits(
    concurrency: Option<Spanned<crate::limit::Concurrency>>,
    queue: Option<Spanned<String>>,
) -> (crate::limit::Limits, usize) {
    let offset = concurrency
        .as_ref()
        .map(|c| c.span().start)
        .or_else(|| queue.as_ref().map(|q| q.span().start))
        .unwrap_or(0);
    let limits = crate::limit::Limits {
        concurrency: concurrency.map(Spanned::into_inner),
        queue: queue.map(Spanned::into_inner),
    };
    (limits, offset)
}

/// A `[schedule]` table, checked (the zone defaults to UTC).
fn schedule(raw: RawSchedule) -> Result<crate::schedule::Spec, String> {
    let spec = crate::schedule::Spec {
        cron: raw.cron,
        timezone: raw.timezone.unwrap_or_else(|| "UTC".into()),
        inputs: raw
            .inputs
            .into_iter()
            .map(|(k, v)| (k, toml_to_json(v)))
            .collect(),
        overlap: raw.overlap.as_deref().unwrap_or("skip").parse()?,
        catch_up: raw.catch_up.as_deref().unwrap_or("none").parse()?,
    };
    spec.check()?;
    Ok(spec)
}

/// `[defaults]`, as every task starts from them.
struct TaskDefaults<'a> {
    raw: &'a RawDefaults,
    retry: Retry,
    timeout: Option<std::time::Duration>,
    kill_timeout: std::time::Duration,
    executor: super::ExecutorKind,
}

/// Reads `[defaults]`; `at` places an error at an offset of the file.
fn task_defaults<'a>(
    raw: &'a RawDefaults,
    at: &dyn Fn(Error, usize) -> Error,
) -> Result<TaskDefaults<'a>, Error> {
    let retry = match &raw.retry {
        Some(r) => retry(r.get_ref(), Retry::default())
            .map_err(|e| at(e.field("defaults.retry"), r.span().start))?,
        None => Retry::default(),
    };
    let duration_of = |t: &Spanned<String>, field: &str| {
        duration::parse(t.get_ref())
            .map_err(|e| at(Error::new(e.into()).field(field), t.span().start))
    };
    let timeout = match &raw.timeout {
        Some(t) => Some(duration_of(t, "defaults.timeout")?),
        None => None,
    };
    let kill_timeout = match &raw.kill_timeout {
        Some(t) => duration_of(t, "defaults.kill_timeout")?,
        None => crate::group::DEFAULT_KILL_TIMEOUT,
    };
    let executor = match &raw.executor {
        Some(e) => e.get_ref().parse().map_err(|m| {
            at(
                Error::new(ErrorKind::Invalid(m)).field("executor"),
                e.span().start,
            )
        })?,
        None => super::ExecutorKind::Local,
    };
    Ok(TaskDefaults {
        raw,
        retry,
        timeout,
        kill_timeout,
        executor,
    })
}

/// What a task runs: a command (with its environment and working directory), a subflow
/// (loaded from its file), or a gate.
fn task_body(
    raw_task: &RawTask,
    task_err: &dyn Fn(Error, usize) -> Error,
    lines: &Shifted<'_>,
    file_buf: &PathBuf,
    defaults: &TaskDefaults<'_>,
    dir: &Path,
    stack: &mut Vec<PathBuf>,
) -> Result<Body, Error> {
    let name_offset = raw_task.name.span().start;
    if let Some(t) = &raw_task.task {
        return named_task(raw_task, t).map_err(|e| task_err(e, t.span().start));
    }
    Ok(match (&raw_task.run, &raw_task.flow) {
        (Some(_), Some(f)) => {
            return Err(task_err(
                Error::new(ErrorKind::RunAndFlow).field("flow"),
                f.span().start,
            ))
        }
        (None, None) if raw_task.wait_for_event.is_some() => {
            for (field, present) in [
                ("revert", raw_task.revert.is_some()),
                ("warn_exit_codes", raw_task.warn_exit_codes.is_some()),
            ] {
                if present {
                    return Err(task_err(
                        Error::new(ErrorKind::Invalid(format!(
                            "a gate (wait_for_event without run) has no `{field}`"
                        )))
                        .field(field),
                        name_offset,
                    ));
                }
            }
            Body::Action(Action::Gate)
        }
        (None, None) => return Err(task_err(Error::new(ErrorKind::NothingToRun), name_offset)),
        (Some(run), None) => {
            let run_argv = argv(run, "run").map_err(|e| task_err(e, run.span().start))?;
            let revert = match &raw_task.revert {
                Some(r) => Some(argv(r, "revert").map_err(|e| task_err(e, r.span().start))?),
                None => None,
            };
            let mut env = defaults.raw.env.clone().unwrap_or_default();
            if let Some(e) = &raw_task.env {
                env.extend(e.get_ref().clone());
            }
            let env_offset = raw_task
                .env
                .as_ref()
                .map_or(name_offset, |e| e.span().start);
            check_env(&env).map_err(|e| task_err(e, env_offset))?;
            let cwd = raw_task
                .cwd
                .as_ref()
                .map(|c| c.get_ref().clone())
                .or_else(|| defaults.raw.cwd.clone())
                .map(|c| dir.join(c))
                .unwrap_or_else(|| dir.to_path_buf());
            let cwd_offset = raw_task
                .cwd
                .as_ref()
                .map_or(name_offset, |c| c.span().start);
            check_cwd(&cwd).map_err(|e| task_err(e, cwd_offset))?;
            let warn_exit_codes = raw_task
                .warn_exit_codes
                .as_ref()
                .map(|w| w.get_ref().clone())
                .unwrap_or_default();
            if let Some(w) = &raw_task.warn_exit_codes {
                if warn_exit_codes.contains(&0) {
                    return Err(task_err(
                        Error::new(ErrorKind::Invalid(
                            "exit code 0 is success; it cannot be a warning".into(),
                        ))
                        .field("warn_exit_codes"),
                        w.span().start,
                    ));
                }
            }
            Body::Action(Action::Command(Command {
                run: run_argv,
                revert,
                env,
                cwd: Some(cwd),
                warn_exit_codes,
            }))
        }
        (None, Some(f)) => {
            if raw_task.revert.is_some() {
                return Err(task_err(
                    Error::new(ErrorKind::Invalid(
                        "a subflow task has no `revert`; its tasks revert themselves".into(),
                    ))
                    .field("revert"),
                    name_offset,
                ));
            }
            let path = dir.join(f.get_ref());
            if !path.exists() {
                return Err(task_err(
                    Error::new(ErrorKind::SubflowMissing(PathBuf::from(f.get_ref()))).field("flow"),
                    f.span().start,
                ));
            }
            let sub = load_tree(&path, stack).map_err(|e| match *e.kind {
                ErrorKind::SubflowCycle(_) => e
                    .task(raw_task.name.get_ref())
                    .field("flow")
                    .at(Some(file_buf), Some(lines.of(f.span().start))),
                _ => e,
            })?;
            Body::Subflow(Box::new(sub))
        }
    })
}

/// A `task = "name@version"` step: a task registered by an application or offered by a
/// remote worker (version `1` when none is written). What runs and how it reverts is the
/// task's own, so the fields of a command or a subflow do not go with it.
fn named_task(raw_task: &RawTask, task: &Spanned<String>) -> Result<Body, Error> {
    for (field, present) in [
        ("run", raw_task.run.is_some()),
        ("flow", raw_task.flow.is_some()),
        ("revert", raw_task.revert.is_some()),
        ("env", raw_task.env.is_some()),
        ("cwd", raw_task.cwd.is_some()),
        ("warn_exit_codes", raw_task.warn_exit_codes.is_some()),
    ] {
        if present {
            return Err(Error::new(ErrorKind::Invalid(format!(
                "a named task (`task`) has no `{field}`: what runs is the registered task's"
            )))
            .field(field));
        }
    }
    let (name, version) = match task.get_ref().rsplit_once('@') {
        Some((n, v)) => (n.to_string(), v.to_string()),
        None => (task.get_ref().clone(), "1".to_string()),
    };
    if name.is_empty() || version.is_empty() || name.contains('\0') || version.contains('\0') {
        return Err(Error::new(ErrorKind::Invalid(format!(
            "`{}` is no task name: write `name@version` (or `name` for version 1)",
            task.get_ref().replace('\0', "\\0")
        )))
        .field("task"));
    }
    Ok(Body::Action(Action::Task { name, version }))
}

/// One `[[task]]` table as a task spec, and the offset in the file that orders it among the
/// flow's tasks and groups. Its spans count from `base` (a large file is read in pieces).
fn task_spec(
    raw_task: RawTask,
    base: usize,
    file_lines: &Lines,
    file_buf: &PathBuf,
    defaults: &TaskDefaults<'_>,
    dir: &Path,
    stack: &mut Vec<PathBuf>,
) -> Result<(usize, TaskSpec), Error> {
    // Spans count from `base`: every line is looked up through these two.
    let lines = Shifted {
        lines: file_lines,
        base,
    };
    let at = |e: Error, offset: usize| e.at(Some(file_buf), Some(lines.of(offset)));
    let name = raw_task.name.get_ref().clone();
    let name_offset = raw_task.name.span().start;
    let task_err = |e: Error, offset: usize| at(e.task(&name), offset);
    if name.is_empty() || name.contains('/') || name.contains('\0') {
        return Err(task_err(
            Error::new(ErrorKind::Invalid(
                "a task name must be non-empty and hold no `/` or NUL byte".into(),
            ))
            .field("name"),
            name_offset,
        ));
    }
    let mut lines_of = std::collections::HashMap::new();
    lines_of.insert("name", lines.of(name_offset));
    let _ = &raw_task.description;

    let body = task_body(&raw_task, &task_err, &lines, file_buf, defaults, dir, stack)?;
    let mut task = TaskSpec::new(name.clone(), body);
    let mut list = |field: &'static str, v: Option<Spanned<Vec<String>>>| -> Vec<String> {
        match v {
            Some(s) => {
                lines_of.insert(field, lines.of(s.span().start));
                s.into_inner()
            }
            None => Vec::new(),
        }
    };
    task.after = list("after", raw_task.after);
    let requires_offset = raw_task.requires.as_ref().map(|r| r.span().start);
    task.requires = list("requires", raw_task.requires);
    task.provides = list("provides", raw_task.provides);
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for r in &task.requires {
        if let Some(other) = seen.insert(super::input_var(r), r) {
            return Err(task_err(
                Error::new(ErrorKind::Invalid(format!(
                    "it requires `{other}` and `{r}`, which would both reach it as {}; rename one",
                    super::input_var(r)
                )))
                .field("requires"),
                requires_offset.unwrap_or(name_offset),
            ));
        }
    }
    task.retry = match &raw_task.retry {
        Some(r) => retry(r.get_ref(), defaults.retry)
            .map_err(|e| task_err(e.field("retry"), r.span().start))?,
        None => defaults.retry,
    };
    task.timeout = match &raw_task.timeout {
        Some(t) => Some(
            duration::parse(t.get_ref())
                .map_err(|e| task_err(Error::new(e.into()).field("timeout"), t.span().start))?,
        ),
        None => defaults.timeout,
    };
    task.kill_timeout = match &raw_task.kill_timeout {
        Some(t) => duration::parse(t.get_ref())
            .map_err(|e| task_err(Error::new(e.into()).field("kill_timeout"), t.span().start))?,
        None => defaults.kill_timeout,
    };
    task.executor = match &raw_task.executor {
        Some(e) => {
            lines_of.insert("executor", lines.of(e.span().start));
            e.get_ref().parse().map_err(|m| {
                task_err(
                    Error::new(ErrorKind::Invalid(m)).field("executor"),
                    e.span().start,
                )
            })?
        }
        // `[defaults]` sends what can go (commands, named tasks); the rest stays.
        None if matches!(&task.body, Body::Action(a) if a.can_run_remotely()) => defaults.executor,
        None => super::ExecutorKind::Local,
    };
    let (limits, offset) = limits(raw_task.concurrency, raw_task.queue);
    // A task's key may use any value of its plan: inputs, or what earlier steps provide.
    limits
        .check(&|_| true)
        .map_err(|m| task_err(Error::new(ErrorKind::Invalid(m)), offset))?;
    if !limits.is_none() && matches!(&task.body, Body::Subflow(_)) {
        return Err(task_err(
            Error::new(ErrorKind::Invalid(
                "a subflow takes no `concurrency` or `queue`: put them on its tasks".into(),
            )),
            offset,
        ));
    }
    task.limits = limits;
    task.idempotent = raw_task
        .idempotent
        .or(defaults.raw.idempotent)
        .unwrap_or(true);
    if let Some(w) = &raw_task.wait_for_event {
        let timeout = match &w.get_ref().timeout {
            Some(t) => Some(duration::parse(t).map_err(|e| {
                task_err(
                    Error::new(e.into()).field("wait_for_event.timeout"),
                    w.span().start,
                )
            })?),
            None => None,
        };
        task.wait = Some(super::Wait { timeout });
    }
    if let Some(p) = &raw_task.phase {
        task.phase = match p.get_ref().as_str() {
            "run" => super::Phase::Run,
            "finalize" => super::Phase::Finalize,
            other => {
                return Err(task_err(
                    Error::new(ErrorKind::Invalid(format!(
                        "unknown phase `{other}`; use \"run\" or \"finalize\""
                    )))
                    .field("phase"),
                    p.span().start,
                ))
            }
        };
        if task.phase == super::Phase::Finalize && matches!(task.body, Body::Subflow(_)) {
            return Err(task_err(
                Error::new(ErrorKind::Invalid(
                    "a subflow cannot run in the finalize phase".into(),
                ))
                .field("phase"),
                p.span().start,
            ));
        }
    }
    task.lines = lines_of;
    Ok((base + name_offset, task))
}

fn retry(raw: &RawRetry, base: Retry) -> Result<Retry, Error> {
    let mut r = base;
    if let Some(a) = raw.attempts {
        if a == 0 {
            return Err(Error::new(ErrorKind::Invalid(
                "`attempts` must be at least 1".into(),
            )));
        }
        r.attempts = a;
    }
    if let Some(b) = &raw.backoff {
        r.backoff = match b.as_str() {
            "fixed" => Backoff::Fixed,
            "exponential" => Backoff::Exponential,
            other => {
                return Err(Error::new(ErrorKind::Invalid(format!(
                    "unknown backoff `{other}`; use \"fixed\" or \"exponential\""
                ))))
            }
        };
    }
    if let Some(d) = &raw.delay {
        r.delay = duration::parse(d).map_err(|e| Error::new(e.into()))?;
    }
    if let Some(d) = &raw.max_delay {
        r.max_delay = duration::parse(d).map_err(|e| Error::new(e.into()))?;
    }
    Ok(r)
}

/// Turns serde's "unknown field `x`, expected one of `a`, `b`" into a did-you-mean.
fn toml_error(message: &str) -> Error {
    let backticked: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    if message.starts_with("unknown field") {
        if let Some((key, known)) = backticked.split_first() {
            let suggestion = closest(key, known.iter().copied()).map(str::to_string);
            return Error::new(ErrorKind::UnknownKey {
                key: key.to_string(),
                suggestion,
            });
        }
    }
    if message.starts_with("missing field") {
        if let Some(key) = backticked.first() {
            return Error::new(ErrorKind::MissingKey(key.to_string()));
        }
    }
    Error::new(ErrorKind::Syntax(message.trim().to_string()))
}

fn toml_to_json(v: toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => serde_json::Value::String(s),
        toml::Value::Integer(i) => serde_json::Value::from(i),
        toml::Value::Float(f) => serde_json::Value::from(f),
        toml::Value::Boolean(b) => serde_json::Value::Bool(b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(toml_to_json).collect())
        }
        toml::Value::Table(t) => {
            serde_json::Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Flow, Error> {
        parse(text, Path::new("flow.toml"), Path::new("/tmp"))
    }

    fn err(text: &str) -> String {
        parse_str(text).expect_err("should be refused").to_string()
    }

    /// A flow of 2,500 tasks with every kind of field, groups and defaults among them.
    fn large_flow(header: &str) -> String {
        let mut f = format!("name = \"big\"\n{header}[inputs]\nseed = {{ default = 1 }}\n[defaults]\ntimeout = \"1m\"\n");
        for i in 0..2500 {
            f.push_str(&format!("[[task]]\nname = \"t{i}\"\nrun = [\"sh\", \"-c\", 'echo \"{{\\\"v{i}\\\": 1}}\"']\nprovides = [\"v{i}\"]\nenv = {{ K = \"[{i}]\" }}\nretry = {{ attempts = 2 }}\n"));
            if i > 0 {
                f.push_str(&format!("requires = [\"v{}\"]\n", i - 1));
            }
            if i == 1200 {
                f.push_str("[[group]]\nname = \"g\"\nafter = [\"t1200\"]\n[[group.task]]\nname = \"m\"\nrun = [\"true\"]\n");
            }
        }
        f
    }

    #[test]
    fn a_large_flow_read_in_pieces_is_the_flow_read_whole() {
        let pieces = parse_str(&large_flow("")).expect("valid");
        // A multi-line string keeps the file from being split.
        let mut whole = parse_str(&large_flow("description = \"\"\"whole\"\"\"\n")).expect("valid");
        whole.description = pieces.description.clone();
        assert_eq!(pieces, whole);
        assert_eq!(pieces.steps.len(), 2501);
    }

    #[test]
    fn an_error_deep_in_a_large_flow_names_its_line() {
        let text =
            large_flow("").replacen("name = \"t2300\"\n", "name = \"t2300\"\nbogus = 1\n", 1);
        let line = text
            .lines()
            .position(|l| l == "bogus = 1")
            .expect("inserted")
            + 1;
        let e = err(&text);
        assert!(
            e.starts_with(&format!("flow.toml:{line}:")),
            "line {line}: {e}"
        );
        assert!(e.contains("bogus"), "{e}");
        let text = large_flow("")
            .replacen("timeout = \"1m\"", "timeout = \"1m\"\n", 1)
            .replacen(
                "provides = [\"v2400\"]",
                "provides = [\"v2400\"]\nkill_timeout = \"soon\"",
                1,
            );
        let line = text
            .lines()
            .position(|l| l == "kill_timeout = \"soon\"")
            .expect("inserted")
            + 1;
        let e = err(&text);
        assert!(
            e.starts_with(&format!("flow.toml:{line}: task `t2400`")),
            "line {line}: {e}"
        );
    }

    #[test]
    fn parses_a_diamond_with_data_flow() {
        let flow = parse_str(
            r#"
name = "diamond"
[inputs]
seed = { default = 1 }
[[task]]
name = "a"
run = ["echo"]
requires = ["seed"]
provides = ["x"]
[[task]]
name = "b"
run = ["echo"]
requires = ["x"]
provides = ["y"]
[[task]]
name = "c"
run = ["echo"]
after = ["a"]
provides = ["z"]
[[task]]
name = "d"
run = ["echo"]
requires = ["y", "z"]
retry = { attempts = 3, backoff = "exponential", delay = "10ms", max_delay = "1s" }
timeout = "5s"
"#,
        )
        .expect("valid flow");
        let deps: Vec<Vec<u32>> = flow.steps.iter().map(|s| s.deps.clone()).collect();
        assert_eq!(deps, vec![vec![], vec![0], vec![0], vec![1, 2]]);
        assert_eq!(flow.steps[3].retry.attempts, 3);
        assert_eq!(
            flow.steps[3].timeout,
            Some(std::time::Duration::from_secs(5))
        );
    }

    #[test]
    fn names_file_line_and_field_of_an_unknown_after() {
        let e = err("name = \"f\"\n[[task]]\nname = \"build\"\nrun = [\"true\"]\n[[task]]\nname = \"test\"\nrun = [\"true\"]\nafter = [\"biuld\"]\n");
        assert_eq!(
            e,
            "flow.toml:8: task `test`: field `after`: unknown task `biuld` (did you mean `build`?)"
        );
    }

    #[test]
    fn suggests_the_key_meant() {
        let e = err("name = \"f\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\nretyr = 3\n");
        assert!(e.starts_with("flow.toml:5: "), "{e}");
        assert!(
            e.contains("unknown key `retyr` (did you mean `retry`?)"),
            "{e}"
        );
    }

    #[test]
    fn lists_the_tasks_of_a_cycle() {
        let e = err(
            "name = \"f\"\n[[task]]\nname = \"a\"\nrun = [\"true\"]\nafter = [\"c\"]\n[[task]]\nname = \"b\"\nrun = [\"true\"]\nafter = [\"a\"]\n[[task]]\nname = \"c\"\nrun = [\"true\"]\nafter = [\"b\"]\n",
        );
        assert!(e.contains("cycle between tasks:"), "{e}");
        for t in ["a", "b", "c"] {
            assert!(e.contains(&format!("{t} -> ")) || e.ends_with(t), "{e}");
        }
    }

    #[test]
    fn refuses_each_kind_of_bad_definition() {
        let cases = [
            ("[[task]]\nname = \"a\"\nrun = [\"x\"]\n[[task]]\nname = \"a\"\nrun = [\"y\"]\n", "duplicate task name `a`"),
            ("[[task]]\nname = \"a\"\nrun = [\"x\"]\nrequires = [\"nope\"]\n", "requires `nope`, which no task provides"),
            ("[[task]]\nname = \"a\"\nrun = [\"x\"]\nprovides = [\"v\"]\n[[task]]\nname = \"b\"\nrun = [\"x\"]\nprovides = [\"v\"]\n", "value `v` is provided by both `a` and `b`"),
            ("[[task]]\nname = \"a\"\nrun = [\"x\"]\ntimeout = \"10x\"\n", "bad duration `10x`"),
            ("[[task]]\nname = \"a\"\nrun = []\n", "`run` is empty"),
            ("[[task]]\nname = \"a\"\nrun = \"make build\"\n", "must be an argument list"),
            ("[[task]]\nname = \"a\"\nflow = \"missing.toml\"\n", "subflow file `missing.toml` does not exist"),
            ("[[task]]\nname = \"a\"\n", "needs `run`"),
            ("[[task]]\nname = \"a\"\nrun = [\"x\"]\nretry = { attempts = 0 }\n", "`attempts` must be at least 1"),
        ];
        for (body, want) in cases {
            let e = err(&format!("name = \"f\"\n{body}"));
            assert!(e.contains(want), "{e:?} should contain {want:?}");
            assert!(e.starts_with("flow.toml:"), "{e:?} should name the file");
        }
    }

    #[test]
    fn missing_inputs_are_named() {
        let flow = parse_str("name = \"f\"\n[inputs]\nversion = { required = true }\nlevel = { default = 2 }\n[[task]]\nname = \"a\"\nrun = [\"x\"]\nrequires = [\"version\"]\n").expect("valid");
        let e = flow.bind_inputs(BTreeMap::new()).expect_err("missing");
        assert!(
            e.to_string().contains("missing required input: version"),
            "{e}"
        );
        let bound = flow
            .bind_inputs(BTreeMap::from([("version".into(), "1.2.3".into())]))
            .expect("bound");
        assert_eq!(bound["level"], 2);
    }

    #[test]
    fn parses_gates_rescue_finalize_and_warnings() {
        let flow = parse_str(
            r#"
name = "g"
on_error = "skip"
[[task]]
name = "approve"
wait_for_event = { timeout = "1h" }
provides = ["approver"]
[[task]]
name = "deploy"
requires = ["approver"]
run = ["true"]
warn_exit_codes = [3]
[[task]]
name = "announce"
phase = "finalize"
run = ["true"]
[[task]]
name = "tidy"
phase = "finalize"
run = ["true"]
[[task]]
name = "side"
run = ["true"]
"#,
        )
        .expect("valid");
        assert_eq!(flow.on_error, Some(super::super::Rescue::Skip));
        assert_eq!(flow.steps[0].action, Action::Gate);
        assert_eq!(
            flow.steps[0].wait.and_then(|w| w.timeout),
            Some(std::time::Duration::from_secs(3600))
        );
        match &flow.steps[1].action {
            Action::Command(c) => assert_eq!(c.warn_exit_codes, vec![3]),
            other => panic!("{other:?}"),
        }
        // Finalize steps wait for every run-phase step and for each other, in plan order.
        assert_eq!(flow.steps[2].deps, vec![0, 1, 4]);
        assert_eq!(flow.steps[3].deps, vec![0, 1, 2, 4]);
    }

    const GROUP: &str = r#"
name = "g"
[[task]]
name = "build"
run = ["true"]
[[group]]
name = "db"
after = ["build"]
restart = { attempts = 2, delay = "10ms" }
[[group.task]]
name = "server"
run = ["sleep", "60"]
lifecycle = { hook = "prestart", sidecar = true }
ready = { run = ["true"], interval = "50ms", timeout = "2s" }
kill_timeout = "1s"
[[group.task]]
name = "migrate"
run = ["true"]
lifecycle = { hook = "prestart" }
[[group.task]]
name = "work"
run = ["true"]
[[group.task]]
name = "cleanup"
run = ["true"]
lifecycle = { hook = "poststop" }
[[task]]
name = "report"
run = ["true"]
requires = ["db/work"]
"#;

    #[test]
    fn parses_a_group_as_one_step_in_declaration_order() {
        use crate::group::{Hook, Lifecycle};
        let flow = parse_str(GROUP).expect("valid");
        let names: Vec<&str> = flow.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["build", "db", "report"]);
        assert_eq!(flow.steps[1].deps, vec![0]);
        assert_eq!(
            flow.steps[2].deps,
            vec![1],
            "requires db/work orders after the group"
        );
        assert_eq!(
            flow.steps[1].provides,
            ["db/server", "db/migrate", "db/work", "db/cleanup"]
        );
        let Action::Group(g) = &flow.steps[1].action else {
            panic!("{:?}", flow.steps[1].action)
        };
        assert_eq!(g.restart.attempts, 2);
        assert_eq!(
            g.tasks[0].lifecycle,
            Some(Lifecycle {
                hook: Hook::Prestart,
                sidecar: true
            })
        );
        assert_eq!(g.tasks[0].kill_timeout, std::time::Duration::from_secs(1));
        let probe = g.tasks[0].ready.as_ref().expect("probe");
        assert_eq!(probe.interval, std::time::Duration::from_millis(50));
        assert_eq!(g.tasks[2].lifecycle, None);
        assert_eq!(g.tasks[3].role(), "poststop");
    }

    #[test]
    fn refuses_bad_groups_naming_file_and_line() {
        let cases = [
            (
                GROUP.replace("name = \"work\"\nrun = [\"true\"]\n", "name = \"work\"\nrun = [\"true\"]\nlifecycle = { hook = \"poststart\" }\n"),
                "flow.toml:7: task `db`: group `db` has no main task",
            ),
            (
                GROUP.replace("hook = \"poststop\" }", "hook = \"poststop\", sidecar = true }"),
                "flow.toml:26: task `db/cleanup`: field `lifecycle.sidecar`: a poststop task cannot be a sidecar",
            ),
            (
                GROUP.replace("hook = \"prestart\" }", "hook = \"prestrat\" }"),
                "flow.toml:19: task `db/migrate`: field `lifecycle.hook`: unknown hook `prestrat`",
            ),
            (
                GROUP.replace("requires = [\"db/work\"]", "after = [\"db/work\"]"),
                "flow.toml:30: task `report`: field `after`: `db/work` is a task inside group `db`",
            ),
            (
                GROUP.replace("kill_timeout = \"1s\"", "kill_timeout = \"soon\""),
                "flow.toml:15: task `db/server`: field `kill_timeout`: bad duration `soon`",
            ),
            (
                GROUP.replace("name = \"migrate\"", "name = \"server\""),
                "flow.toml:17: task `db/server`: field `name`: duplicate task name `server`",
            ),
            (
                GROUP.replace("kill_timeout = \"1s\"", "after = [\"migrate\"]"),
                "flow.toml:15: unknown key `after`",
            ),
        ];
        for (text, want) in cases {
            let e = err(&text);
            assert!(e.starts_with(want), "{e:?} should start with {want:?}");
        }
    }

    #[test]
    fn refuses_bad_rescue_phase_and_gate_fields() {
        let cases = [
            (
                "on_error = \"explode\"\n[[task]]\nname = \"a\"\nrun = [\"x\"]\n",
                "unknown on_error `explode`",
            ),
            (
                "[[task]]\nname = \"a\"\nrun = [\"x\"]\nphase = \"later\"\n",
                "unknown phase `later`",
            ),
            (
                "[[task]]\nname = \"a\"\nwait_for_event = {}\nrevert = [\"x\"]\n",
                "a gate (wait_for_event without run) has no `revert`",
            ),
            (
                "[[task]]\nname = \"a\"\nwait_for_event = { timeout = \"soon\" }\n",
                "bad duration `soon`",
            ),
            (
                "[[task]]\nname = \"a\"\nrun = [\"x\"]\nwarn_exit_codes = [0]\n",
                "exit code 0 is success",
            ),
        ];
        for (body, want) in cases {
            let e = err(&format!("name = \"f\"\n{body}"));
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
    }
}

#[cfg(test)]
mod remote_tests {
    use super::super::{Action, ExecutorKind};
    use super::parse;

    fn flow(text: &str) -> Result<super::super::Flow, String> {
        parse(
            text,
            std::path::Path::new("f.toml"),
            std::path::Path::new("."),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn remote_steps_are_named_and_left_out_of_what_a_node_needs() {
        let f = flow(
            "name = \"img\"\nversion = \"2\"\n[defaults]\nexecutor = \"remote\"\n\
             [[task]]\nname = \"fetch\"\nrun = [\"true\"]\n\
             [[task]]\nname = \"resize\"\ntask = \"image.resize@3\"\n\
             [[task]]\nname = \"here\"\ntask = \"count\"\nexecutor = \"local\"\n\
             [[task]]\nname = \"ok\"\nwait_for_event = {}\n",
        )
        .expect("valid");
        let kinds: Vec<ExecutorKind> = f.steps.iter().map(|s| s.executor).collect();
        use ExecutorKind::*;
        assert_eq!(kinds, [Remote, Remote, Local, Local]);
        assert_eq!(
            f.steps[2].action,
            Action::Task {
                name: "count".into(),
                version: "1".into()
            }
        );
        assert_eq!(f.needs(), ["count@1"]);
        assert_eq!(f.remote_needs(), ["image.resize@3", "img/fetch@2"]);
        assert_eq!(f.remote_task(2), None);
    }

    #[test]
    fn what_cannot_run_remotely_is_refused_by_name() {
        let cases = [
            (
                "[[task]]\nname = \"a\"\nwait_for_event = {}\nexecutor = \"remote\"\n",
                "only a command",
            ),
            (
                "[[task]]\nname = \"a\"\nrun = [\"x\"]\nexecutor = \"elsewhere\"\n",
                "unknown executor `elsewhere`",
            ),
            (
                "[defaults]\nexecutor = \"far\"\n[[task]]\nname = \"a\"\nrun = [\"x\"]\n",
                "unknown executor `far`",
            ),
            (
                "[[task]]\nname = \"a\"\ntask = \"x@1\"\nrun = [\"x\"]\n",
                "a named task (`task`) has no `run`",
            ),
            ("[[task]]\nname = \"a\"\ntask = \"@1\"\n", "no task name"),
        ];
        for (body, want) in cases {
            let e = flow(&format!("name = \"f\"\n{body}")).expect_err(body);
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
    }

    #[test]
    fn limits_and_schedules_are_read_from_flows_and_tasks() {
        let f = flow(
            "name = \"send\"\nconcurrency = { key = \"${inputs.tenant}\", limit = 2 }\n\
             queue = \"mail\"\n\
             [inputs]\ntenant = { required = true }\n\
             [schedule]\ncron = \"0 3 * * *\"\ntimezone = \"Europe/Berlin\"\n\
             inputs = { tenant = \"acme\" }\noverlap = \"queue\"\ncatch_up = \"one\"\n\
             [[task]]\nname = \"a\"\nrun = [\"true\"]\nconcurrency = { limit = 1 }\n\
             [[task]]\nname = \"b\"\nrun = [\"true\"]\nqueue = \"smtp\"\n",
        )
        .expect("valid");
        let c = f.limits.concurrency.as_ref().expect("flow concurrency");
        assert_eq!((c.key.as_str(), c.limit), ("${inputs.tenant}", 2));
        assert_eq!(f.limits.queue.as_deref(), Some("mail"));
        assert_eq!(
            f.steps[0].limits.concurrency.as_ref().map(|c| c.limit),
            Some(1)
        );
        assert_eq!(f.steps[1].limits.queue.as_deref(), Some("smtp"));
        let s = f.schedule.as_ref().expect("schedule");
        assert_eq!(
            (s.cron.as_str(), s.timezone.as_str()),
            ("0 3 * * *", "Europe/Berlin")
        );
        assert_eq!(s.inputs["tenant"], serde_json::json!("acme"));
        assert_eq!(s.overlap, crate::schedule::Overlap::Queue);
        assert_eq!(s.catch_up, crate::schedule::CatchUp::One);
    }

    #[test]
    fn bad_limits_and_schedules_are_refused_by_name() {
        let cases = [
            (
                "concurrency = { key = \"${inputs.who}\", limit = 2 }\n[[task]]\nname = \"a\"\nrun = [\"x\"]\n",
                "f.toml:2: concurrency.key uses `${inputs.who}`, but the flow has no input `who`",
            ),
            (
                "concurrency = { limit = 0 }\n[[task]]\nname = \"a\"\nrun = [\"x\"]\n",
                "at least 1",
            ),
            (
                "concurrency = { key = \"k\" }\n[[task]]\nname = \"a\"\nrun = [\"x\"]\n",
                "missing key `limit`",
            ),
            (
                "[[task]]\nname = \"a\"\nrun = [\"x\"]\nqueue = \"no spaces\"\n",
                "task `a`: queue: queue name `no spaces` holds ` `",
            ),
            (
                "[[task]]\nname = \"a\"\nrun = [\"x\"]\nconcurrency = { key = \"${env.X}\", limit = 1 }\n",
                "only `${inputs.NAME}`",
            ),
            (
                "[schedule]\ncron = \"61 * * * *\"\n[[task]]\nname = \"a\"\nrun = [\"x\"]\n",
                "field `schedule`: cron `61 * * * *`",
            ),
            (
                "[schedule]\ncron = \"* * * * *\"\ntimezone = \"Mars/Olympus\"\n[[task]]\nname = \"a\"\nrun = [\"x\"]\n",
                "unknown timezone `Mars/Olympus`",
            ),
            (
                "[schedule]\ncron = \"* * * * *\"\noverlap = \"sometimes\"\n[[task]]\nname = \"a\"\nrun = [\"x\"]\n",
                "overlap `sometimes` is not one of: skip, queue, allow",
            ),
        ];
        for (body, want) in cases {
            let e = flow(&format!("name = \"f\"\n{body}")).expect_err(body);
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
    }
}

#[cfg(test)]
mod lines_tests {
    use super::Lines;

    #[test]
    fn offsets_map_to_their_lines() {
        let text = "a\nbc\n\nd";
        let lines = Lines::new(text);
        let of = |o| lines.of(o);
        assert_eq!(
            [of(0), of(1), of(2), of(4), of(5), of(6), of(99)],
            [1, 1, 2, 2, 3, 4, 4]
        );
    }
}
