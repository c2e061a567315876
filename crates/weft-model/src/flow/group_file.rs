//! `[[group]]` tables of flow files: a group step and its `[[group.task]]` entries, each with
//! an optional `lifecycle = { hook, sidecar }`, `ready` probe and `kill_timeout`.

use super::raw::{argv, check_cwd, check_env, Lines, RawDefaults};
use super::tree::{Body, TaskSpec};
use super::{Action, Command, Error, ErrorKind};
use crate::duration;
use crate::group::{self, Group, GroupTask, Hook, Lifecycle, Probe, Restart};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    after: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    requires: Option<Spanned<Vec<String>>>,
    restart: Option<Spanned<RawRestart>>,
    #[serde(default, rename = "task")]
    tasks: Vec<RawGroupTask>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRestart {
    attempts: Option<u32>,
    delay: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroupTask {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    run: Option<Spanned<toml::Value>>,
    lifecycle: Option<Spanned<RawLifecycle>>,
    ready: Option<Spanned<RawProbe>>,
    kill_timeout: Option<Spanned<String>>,
    env: Option<BTreeMap<String, String>>,
    cwd: Option<String>,
    idempotent: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLifecycle {
    hook: String,
    #[serde(default)]
    sidecar: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    run: Spanned<toml::Value>,
    interval: Option<String>,
    timeout: Option<String>,
}

/// The step a `[[group]]` table makes; errors carry their line (the caller adds the file).
pub(super) fn group(
    raw: RawGroup,
    defaults: &RawDefaults,
    dir: &Path,
    lines: &Lines,
) -> Result<TaskSpec, Error> {
    let name = raw.name.get_ref().clone();
    let name_line = lines.of(raw.name.span().start);
    let _ = &raw.description;
    let err = |e: Error, offset: usize| e.task(&name).at(None, Some(lines.of(offset)));
    if name.is_empty() || name.contains('/') {
        return Err(err(
            Error::new(ErrorKind::Invalid(
                "a group name must be non-empty and hold no `/`".into(),
            ))
            .field("name"),
            raw.name.span().start,
        ));
    }
    let mut tasks: Vec<GroupTask> = Vec::new();
    for t in raw.tasks {
        let task_name = t.name.get_ref().clone();
        let full = format!("{name}/{task_name}");
        let terr = |e: Error, offset: usize| e.task(&full).at(None, Some(lines.of(offset)));
        let _ = &t.description;
        if task_name.is_empty() || task_name.contains('/') || task_name.contains('\0') {
            return Err(terr(
                Error::new(ErrorKind::Invalid(
                    "a task name must be non-empty and hold no `/`".into(),
                ))
                .field("name"),
                t.name.span().start,
            ));
        }
        if tasks.iter().any(|x| x.name == task_name) {
            return Err(terr(
                Error::new(ErrorKind::DuplicateTask(task_name)).field("name"),
                t.name.span().start,
            ));
        }
        let run = match &t.run {
            Some(run) => argv(run, "run").map_err(|e| terr(e, run.span().start))?,
            None => {
                return Err(terr(
                    Error::new(ErrorKind::NothingToRun),
                    t.name.span().start,
                ))
            }
        };
        let lifecycle = match &t.lifecycle {
            None => None,
            Some(l) => {
                let raw_l = l.get_ref();
                let hook: Hook = raw_l.hook.parse().map_err(|m: String| {
                    terr(
                        Error::new(ErrorKind::Invalid(m)).field("lifecycle.hook"),
                        l.span().start,
                    )
                })?;
                if hook == Hook::Poststop && raw_l.sidecar {
                    return Err(terr(
                        Error::new(ErrorKind::Invalid(
                            "a poststop task cannot be a sidecar: nothing runs beside it".into(),
                        ))
                        .field("lifecycle.sidecar"),
                        l.span().start,
                    ));
                }
                Some(Lifecycle {
                    hook,
                    sidecar: raw_l.sidecar,
                })
            }
        };
        let ready = match &t.ready {
            None => None,
            Some(p) => {
                let raw_p = p.get_ref();
                let at = p.span().start;
                let parse = |v: &Option<String>, field: &str, default| match v {
                    Some(text) => duration::parse(text)
                        .map_err(|e| terr(Error::new(e.into()).field(field), at)),
                    None => Ok(default),
                };
                Some(Probe {
                    run: argv(&raw_p.run, "ready.run")
                        .map_err(|e| terr(e, raw_p.run.span().start))?,
                    interval: parse(
                        &raw_p.interval,
                        "ready.interval",
                        group::DEFAULT_PROBE_INTERVAL,
                    )?,
                    timeout: parse(
                        &raw_p.timeout,
                        "ready.timeout",
                        group::DEFAULT_PROBE_TIMEOUT,
                    )?,
                })
            }
        };
        let kill_timeout = match &t.kill_timeout {
            Some(k) => duration::parse(k.get_ref())
                .map_err(|e| terr(Error::new(e.into()).field("kill_timeout"), k.span().start))?,
            None => match &defaults.kill_timeout {
                Some(k) => duration::parse(k.get_ref()).map_err(|e| {
                    terr(
                        Error::new(e.into()).field("defaults.kill_timeout"),
                        k.span().start,
                    )
                })?,
                None => group::DEFAULT_KILL_TIMEOUT,
            },
        };
        let mut env = defaults.env.clone().unwrap_or_default();
        env.extend(t.env.clone().unwrap_or_default());
        check_env(&env).map_err(|e| terr(e, t.name.span().start))?;
        let cwd = t
            .cwd
            .clone()
            .or_else(|| defaults.cwd.clone())
            .map(|c| dir.join(c))
            .unwrap_or_else(|| dir.to_path_buf());
        check_cwd(&cwd).map_err(|e| terr(e, t.name.span().start))?;
        tasks.push(GroupTask {
            name: task_name,
            lifecycle,
            command: Command {
                run,
                revert: None,
                env,
                cwd: Some(cwd),
                warn_exit_codes: Vec::new(),
            },
            ready,
            kill_timeout,
            idempotent: t.idempotent.or(defaults.idempotent).unwrap_or(true),
        });
    }
    if !tasks.iter().any(|t| t.lifecycle.is_none()) {
        return Err(Error::new(ErrorKind::Invalid(format!(
            "group `{name}` has no main task (a `[[group.task]]` without `lifecycle`)"
        )))
        .task(&name)
        .at(None, Some(name_line)));
    }
    let restart = match &raw.restart {
        None => Restart::default(),
        Some(r) => {
            let raw_r = r.get_ref();
            Restart {
                attempts: raw_r.attempts.unwrap_or(0),
                delay: match &raw_r.delay {
                    Some(d) => duration::parse(d).map_err(|e| {
                        err(Error::new(e.into()).field("restart.delay"), r.span().start)
                    })?,
                    None => std::time::Duration::from_secs(1),
                },
            }
        }
    };
    let provides = tasks.iter().map(|t| format!("{name}/{}", t.name)).collect();
    let mut spec = TaskSpec::new(
        name.clone(),
        Body::Action(Action::Group(Group { tasks, restart })),
    );
    let mut lines_of = HashMap::new();
    lines_of.insert("name", name_line);
    if let Some(a) = raw.after {
        lines_of.insert("after", lines.of(a.span().start));
        spec.after = a.into_inner();
    }
    if let Some(r) = raw.requires {
        lines_of.insert("requires", lines.of(r.span().start));
        spec.requires = r.into_inner();
    }
    spec.provides = provides;
    // The group resumes itself after a crash, task by task (each task's own `idempotent`).
    spec.idempotent = true;
    spec.lines = lines_of;
    Ok(spec)
}
