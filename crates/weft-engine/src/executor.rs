//! Runs one work item and reports how it went, as the director's next [`Input`].
//!
//! A command runs in its own process group with an argument list (never a shell string). It
//! gets its required values as `WEFT_IN_<NAME>` variables and as one JSON object on stdin, plus
//! `WEFT_PLAN_ID`, `WEFT_STEP`, `WEFT_ATTEMPT`; a revert also gets `WEFT_RESULT` and
//! `WEFT_FAILURE`. Its output is the last line of stdout that is a JSON object. A timeout kills
//! the whole process group.

use crate::director::{Completion, Input, Work, WorkItem};
use crate::task::{Context, Registry, RevertContext, Suspension};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};
use weft_model::failure::STDERR_TAIL_BYTES;
use weft_model::flow::{Action, Command, StepDef};
use weft_model::{duration, Failure, PlanId};

/// Runs work items.
#[derive(Clone, Default)]
pub struct Executor {
    registry: Arc<Registry>,
    groups: ProcessGroups,
}

/// The process groups of the commands running now, by the step they run for, so that a
/// halted step's command — or every command, when the process is told to stop — can be killed.
/// A group step's runner also watches it, so that a halt stops the group for good instead of
/// looking like a task failure.
#[derive(Clone)]
pub struct ProcessGroups {
    inner: Arc<Mutex<Groups>>,
    /// Bumped on every kill, to wake group runners.
    kills: Arc<watch::Sender<u64>>,
}

#[derive(Default)]
struct Groups {
    pids: HashMap<u32, (PlanId, u32)>,
    /// Steps halted since they started.
    halted: HashSet<(PlanId, u32)>,
    /// Every command was killed: the process is stopping.
    closed: bool,
}

impl Default for ProcessGroups {
    fn default() -> Self {
        ProcessGroups {
            inner: Arc::default(),
            kills: Arc::new(watch::channel(0).0),
        }
    }
}

impl ProcessGroups {
    fn groups(&self) -> MutexGuard<'_, Groups> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(&self, pid: u32, plan: PlanId, step: u32) {
        self.groups().pids.insert(pid, (plan, step));
    }

    pub(crate) fn remove(&self, pid: u32) {
        self.groups().pids.remove(&pid);
    }

    /// SIGKILLs the process groups of a step's commands.
    pub fn kill_step(&self, plan: PlanId, step: u32) {
        let pids: Vec<u32> = {
            let mut g = self.groups();
            g.halted.insert((plan, step));
            g.pids
                .iter()
                .filter(|(_, owner)| **owner == (plan, step))
                .map(|(pid, _)| *pid)
                .collect()
        };
        for pid in pids {
            kill_group(pid);
        }
        self.kills.send_modify(|n| *n += 1);
    }

    /// SIGKILLs every running command's process group; returns how many there were.
    pub fn kill_all(&self) -> usize {
        let pids: Vec<u32> = {
            let mut g = self.groups();
            g.closed = true;
            g.pids.drain().map(|(pid, _)| pid).collect()
        };
        for &pid in &pids {
            kill_group(pid);
        }
        self.kills.send_modify(|n| *n += 1);
        pids.len()
    }

    /// A step starts running: forget an earlier halt of it.
    pub(crate) fn started(&self, plan: PlanId, step: u32) {
        self.groups().halted.remove(&(plan, step));
    }

    /// Whether the step was halted, or every command killed, since it started.
    pub(crate) fn is_halted(&self, plan: PlanId, step: u32) -> bool {
        let g = self.groups();
        g.closed || g.halted.contains(&(plan, step))
    }

    /// Changes on every kill.
    pub(crate) fn kills(&self) -> watch::Receiver<u64> {
        self.kills.subscribe()
    }
}

impl Executor {
    /// An executor for the tasks in `registry` (and every command).
    pub fn new(registry: Arc<Registry>) -> Self {
        Executor {
            registry,
            groups: ProcessGroups::default(),
        }
    }

    /// The process groups of its running commands.
    pub fn process_groups(&self) -> ProcessGroups {
        self.groups.clone()
    }

    /// Runs `item` to the end and says how it went; a group step reports its tasks' progress
    /// to `progress` as it goes.
    pub async fn run(&self, item: WorkItem, progress: &mpsc::UnboundedSender<Input>) -> Input {
        let def = &item.flow.steps[item.step as usize];
        match &item.work {
            Work::Execute => {
                let result = match &def.action {
                    Action::Gate => Ok(Completion::Done {
                        output: Value::Object(Map::new()),
                        warning: None,
                    }),
                    // Boxed: a command's future is large, and a Rust task's should not pay for it.
                    Action::Command(cmd) => {
                        let inv = Invocation::of_step(&cmd.run, cmd, def, &item, &[]);
                        Box::pin(run_command(inv, &self.groups, |_| {})).await
                    }
                    Action::Group(group) => {
                        Box::pin(crate::group::run(group, &item, &self.groups, progress)).await
                    }
                    Action::Task { name, version } => self.run_task(name, version, &item).await,
                };
                let result = result.and_then(|c| match c {
                    Completion::Done { output, warning } => check_provides(output, &def.provides)
                        .map(|output| Completion::Done { output, warning }),
                    // Provides are checked when the event completes the step.
                    suspend @ Completion::Suspend { .. } => Ok(suspend),
                });
                Input::Executed {
                    plan: item.plan,
                    step: item.step,
                    attempt: item.attempt,
                    result,
                }
            }
            Work::Revert { result, cause } => {
                let outcome = match &def.action {
                    Action::Gate | Action::Group(_) => Ok(()),
                    Action::Command(cmd) => match &cmd.revert {
                        Some(argv) => {
                            let env = [
                                (
                                    "WEFT_RESULT".to_string(),
                                    result.clone().unwrap_or(Value::Null).to_string(),
                                ),
                                ("WEFT_FAILURE".to_string(), failure_json(cause)),
                            ];
                            let inv = Invocation::of_step(argv, cmd, def, &item, &env);
                            Box::pin(run_command(inv, &self.groups, |_| {}))
                                .await
                                .map(drop)
                        }
                        None => Ok(()),
                    },
                    Action::Task { name, version } => match self.registry.get(name, version) {
                        Some(task) => {
                            let ctx = RevertContext {
                                context: context(&item),
                                result: result.clone(),
                                failure: cause.clone(),
                            };
                            task.revert(ctx).await
                        }
                        None => Err(unknown_task(name, version)),
                    },
                };
                Input::Reverted {
                    plan: item.plan,
                    step: item.step,
                    result: outcome,
                }
            }
        }
    }

    async fn run_task(
        &self,
        name: &str,
        version: &str,
        item: &WorkItem,
    ) -> Result<Completion, Failure> {
        let task = self
            .registry
            .get(name, version)
            .ok_or_else(|| unknown_task(name, version))?;
        let def = &item.flow.steps[item.step as usize];
        let ctx = context(item);
        let suspension = ctx.suspension.clone();
        let fut = task.execute(ctx);
        let output = match def.timeout {
            Some(t) => tokio::time::timeout(t, fut).await.unwrap_or_else(|_| {
                Err(Failure::new(
                    "timeout",
                    format!("timed out after {}", duration::format(t)),
                ))
            }),
            None => fut.await,
        }?;
        Ok(match suspension.take() {
            Some(timeout) => Completion::Suspend { output, timeout },
            None => Completion::Done {
                output,
                warning: None,
            },
        })
    }
}

fn context(item: &WorkItem) -> Context {
    Context {
        plan: item.plan,
        step: item.flow.steps[item.step as usize].name.clone(),
        attempt: item.attempt,
        inputs: item.inputs.clone(),
        suspension: Suspension::default(),
    }
}

fn unknown_task(name: &str, version: &str) -> Failure {
    Failure::new(
        "unknown_task",
        format!("no task `{name}` at version `{version}` is registered"),
    )
}

fn failure_json(f: &Failure) -> String {
    serde_json::to_string(f).unwrap_or_else(|_| "null".into())
}

/// Every name in `provides` must be a key of the output object.
fn check_provides(output: Value, provides: &[String]) -> Result<Value, Failure> {
    for p in provides {
        if output.get(p).is_none() {
            let msg = if output.as_object().is_some_and(|o| o.is_empty()) {
                format!("printed no JSON object with key `{p}` on stdout, but provides `{p}`")
            } else {
                format!("output has no key `{p}`, which the task provides")
            };
            return Err(Failure::new("missing_output", msg));
        }
    }
    Ok(output)
}

/// A value as a `WEFT_IN_` variable holds it: strings as they are, the rest as JSON.
pub(crate) fn input_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `WEFT_IN_<NAME>`: upper case, anything but letters and digits as `_`.
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

/// One run of a command: what to run, for which step, with what.
pub(crate) struct Invocation<'a> {
    /// Program and arguments.
    pub argv: &'a [String],
    /// Its environment and working directory.
    pub cmd: &'a Command,
    /// The plan.
    pub plan: PlanId,
    /// The step it runs for (its processes are killed with the step's).
    pub step: u32,
    /// `WEFT_STEP`.
    pub step_name: &'a str,
    /// `WEFT_ATTEMPT`.
    pub attempt: u32,
    /// Its required values.
    pub inputs: &'a Map<String, Value>,
    /// More variables.
    pub extra_env: &'a [(String, String)],
    /// Exit codes that mean success with a warning.
    pub warn_codes: &'a [i32],
    /// How long it may run.
    pub timeout: Option<Duration>,
}

impl<'a> Invocation<'a> {
    fn of_step(
        argv: &'a [String],
        cmd: &'a Command,
        def: &'a StepDef,
        item: &'a WorkItem,
        extra_env: &'a [(String, String)],
    ) -> Self {
        Invocation {
            argv,
            cmd,
            plan: item.plan,
            step: item.step,
            step_name: &def.name,
            attempt: item.attempt,
            inputs: &item.inputs,
            extra_env,
            // Warning exit codes apply to execution, not to a revert.
            warn_codes: if matches!(item.work, Work::Execute) {
                &cmd.warn_exit_codes
            } else {
                &[]
            },
            timeout: def.timeout,
        }
    }
}

/// Runs a command to its end; `spawned` is told its pid (its process group's id) once it runs.
pub(crate) async fn run_command(
    inv: Invocation<'_>,
    groups: &ProcessGroups,
    spawned: impl FnOnce(u32),
) -> Result<Completion, Failure> {
    let program = &inv.argv[0];
    let cmd = inv.cmd;
    let mut command = tokio::process::Command::new(program);
    command
        .args(&inv.argv[1..])
        .envs(&cmd.env)
        .env("WEFT_PLAN_ID", inv.plan.to_string())
        .env("WEFT_STEP", inv.step_name)
        .env("WEFT_ATTEMPT", inv.attempt.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for (k, v) in inv.inputs {
        command.env(input_var(k), input_text(v));
    }
    for (k, v) in inv.extra_env {
        command.env(k, v);
    }
    if let Some(dir) = &cmd.cwd {
        command.current_dir(dir);
    }
    let child = command.spawn().map_err(|e| {
        Failure::new("spawn", format!("cannot start `{program}`: {e}")).with_kind("command")
    })?;
    let pid = child.id();
    if let Some(pid) = pid {
        groups.insert(pid, inv.plan, inv.step);
        spawned(pid);
    }
    let stdin_json = Value::Object(inv.inputs.clone()).to_string();
    let result = supervise(child, program, inv.warn_codes, inv.timeout, stdin_json, pid).await;
    if let Some(pid) = pid {
        groups.remove(pid);
    }
    result
}

/// Feeds a spawned command its stdin, collects its output and stderr tail, enforces its
/// timeout, and turns how it ended into the step's result.
async fn supervise(
    mut child: tokio::process::Child,
    program: &str,
    warn_codes: &[i32],
    timeout: Option<Duration>,
    stdin_json: String,
    pid: Option<u32>,
) -> Result<Completion, Failure> {
    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let feed = async move {
        if let Some(mut s) = stdin.take() {
            // A program that does not read stdin closes it early; that is fine.
            let _ = s.write_all(stdin_json.as_bytes()).await;
            let _ = s.shutdown().await;
        }
    };
    let read_out = async move {
        let mut last: Option<Map<String, Value>> = None;
        if let Some(out) = stdout {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let trimmed = line.trim();
                if trimmed.starts_with('{') {
                    if let Ok(Value::Object(obj)) = serde_json::from_str(trimmed) {
                        last = Some(obj);
                    }
                }
            }
        }
        last
    };
    let read_err = async move {
        let mut tail: Vec<u8> = Vec::new();
        if let Some(mut err) = stderr {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * STDERR_TAIL_BYTES {
                    tail.drain(..tail.len() - STDERR_TAIL_BYTES);
                }
            }
        }
        tail
    };
    let all = async { tokio::join!(feed, read_out, read_err, child.wait()) };
    let (output, stderr_tail, status) = match timeout {
        None => {
            let (_, out, err, status) = all.await;
            (out, err, status)
        }
        Some(limit) => match tokio::time::timeout(limit, all).await {
            Ok((_, out, err, status)) => (out, err, status),
            Err(_) => {
                if let Some(pid) = pid {
                    kill_group(pid);
                }
                let _ = child.wait().await;
                return Err(Failure::new(
                    "timeout",
                    format!(
                        "timed out after {}; its process group was killed",
                        duration::format(limit)
                    ),
                )
                .with_kind("command"));
            }
        },
    };
    let status =
        status.map_err(|e| Failure::new("wait", format!("cannot wait for `{program}`: {e}")))?;
    let output = Value::Object(output.unwrap_or_default());
    if status.success() {
        return Ok(Completion::Done {
            output,
            warning: None,
        });
    }
    if let Some(code) = status.code().filter(|c| warn_codes.contains(c)) {
        let warning = format!("`{program}` exited with code {code}, a warning");
        return Ok(Completion::Done {
            output,
            warning: Some(warning),
        });
    }
    use std::os::unix::process::ExitStatusExt;
    let failure = match (status.code(), status.signal()) {
        (Some(code), _) => {
            let mut f = Failure::new(
                "command_failed",
                format!("`{program}` exited with code {code}"),
            )
            .with_kind("command");
            f.exit_code = Some(code);
            f
        }
        (None, Some(sig)) => {
            let mut f = Failure::new("killed", format!("`{program}` was killed by signal {sig}"))
                .with_kind("command");
            f.signal = Some(sig);
            f
        }
        (None, None) => {
            Failure::new("command_failed", format!("`{program}` failed")).with_kind("command")
        }
    };
    Err(failure.with_stderr(&stderr_tail))
}

/// SIGKILLs the process group led by `pid`.
pub fn kill_group(pid: u32) {
    signal_group(pid, libc::SIGKILL);
}

/// Sends `signal` to the process group led by `pid`.
pub(crate) fn signal_group(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory.
    unsafe {
        libc::kill(-(pid as libc::pid_t), signal);
    }
}
