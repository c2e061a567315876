//! Runs one work item and reports how it went, as the director's next [`Input`]: a command
//! (started by [`crate::process`]), a group step (by the group runner), a gate, a Rust
//! [`crate::Task`], or a remote step (sent to a worker through [`crate::remote`]). A revert of a command also gets `WEFT_RESULT` (the task's output) and
//! `WEFT_FAILURE` (the failure that made the plan revert).

use crate::director::{Completion, Input, Work, WorkItem};
use crate::logs::LogSink;
use crate::metrics::StepMetrics;
use crate::process::{run_command, Invocation, ProcessGroups};
use crate::remote::{Remote, RemoteCall};
use crate::task::{Context, Registry, RevertContext, Suspension};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use weft_model::flow::{Action, Command, Flow, StepDef};
use weft_model::group::{Progress, TaskEvent};
use weft_model::worker::Action as Do;
use weft_model::{duration, Failure};

/// Runs work items.
#[derive(Clone, Default)]
pub struct Executor {
    registry: Arc<Registry>,
    groups: ProcessGroups,
    remote: Option<Arc<dyn Remote>>,
    logs: Option<LogSink>,
    metrics: StepMetricsCache,
}

/// Each flow's tasks' metrics, looked up once: by the flow's allocation (kept alive with the
/// entry, so its address cannot be reused while cached), then by task. Bounded: cleared when
/// it holds too many flows.
#[derive(Clone, Default)]
struct StepMetricsCache(Arc<std::sync::Mutex<HashMap<usize, CachedFlow>>>);

/// A flow kept alive while cached, and its tasks' metrics.
type CachedFlow = (Arc<Flow>, HashMap<String, StepMetrics>);

/// The most cached flows.
const CACHED_FLOWS: usize = 1024;

/// What a step's metrics call its task: a Rust task's name, a command's program, `group` or
/// `gate` — few values however many steps a flow has (a label per step would not scale).
fn task_label(def: &StepDef) -> &str {
    match &def.action {
        Action::Task { name, .. } => name,
        Action::Command(cmd) => cmd
            .run
            .first()
            .map(|p| p.rsplit('/').next().unwrap_or(p))
            .unwrap_or("command"),
        Action::Group(_) => "group",
        Action::Gate => "gate",
    }
}

impl StepMetricsCache {
    fn get(&self, flow: &Arc<Flow>, step: u32) -> StepMetrics {
        let task = task_label(&flow.steps[step as usize]);
        let mut cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHED_FLOWS {
            cache.clear();
        }
        let (_, tasks) = cache
            .entry(Arc::as_ptr(flow) as usize)
            .or_insert_with(|| (flow.clone(), HashMap::new()));
        if let Some(m) = tasks.get(task) {
            return m.clone();
        }
        let m = crate::metrics::metrics().step(&flow.name, task);
        tasks.insert(task.to_string(), m.clone());
        m
    }
}

impl Executor {
    /// An executor for the tasks in `registry` (and every command), sending remote steps to
    /// `remote`.
    pub fn new(registry: Arc<Registry>, remote: Option<Arc<dyn Remote>>) -> Self {
        Executor {
            registry,
            groups: ProcessGroups::default(),
            remote,
            logs: None,
            metrics: StepMetricsCache::default(),
        }
    }

    /// The same executor, keeping what its commands print through `logs`.
    pub fn with_logs(mut self, logs: LogSink) -> Self {
        self.logs = Some(logs);
        self
    }

    /// The process groups of its running commands.
    pub fn process_groups(&self) -> ProcessGroups {
        self.groups.clone()
    }

    /// Runs `item` to the end and says how it went; a group step reports its tasks' progress
    /// to `progress` as it goes.
    pub async fn run(&self, item: WorkItem, progress: &mpsc::UnboundedSender<Input>) -> Input {
        let executes = matches!(item.work, Work::Execute);
        let (flow, step, plan, attempt) = (item.flow.clone(), item.step, item.plan, item.attempt);
        let (flow_name, task) = (&flow.name, &flow.steps[step as usize].name);
        let metrics = executes.then(|| self.metrics.get(&flow, step));
        if let Some(m) = &metrics {
            m.started();
        }
        let started = std::time::Instant::now();
        let started_at = std::time::SystemTime::now();
        let input = self.run_item(item, progress).await;
        let (result, failure) = match &input {
            Input::Executed {
                result: Ok(Completion::Done { .. }),
                ..
            } => ("success", None),
            Input::Executed {
                result: Ok(Completion::Suspend { .. }),
                ..
            } => ("suspended", None),
            Input::Reverted { result: Ok(()), .. } => ("reverted", None),
            Input::Executed { result: Err(f), .. } | Input::Reverted { result: Err(f), .. } => {
                ("error", Some(f.message.clone()))
            }
            _ => ("error", None),
        };
        if let Some(m) = &metrics {
            m.finished(result, started.elapsed().as_secs_f64());
        }
        if let Some(tracer) = crate::traces::tracer() {
            let action = if executes { "execute" } else { "revert" };
            tracer.step_ended(
                plan,
                flow_name,
                (step, task),
                attempt,
                action,
                started_at,
                result,
                failure,
            );
        }
        input
    }

    async fn run_item(&self, item: WorkItem, progress: &mpsc::UnboundedSender<Input>) -> Input {
        let def = &item.flow.steps[item.step as usize];
        if let Some((task, version)) = item.flow.remote_task(item.step as usize) {
            return self.run_remote(task, version, &item, progress).await;
        }
        match &item.work {
            Work::Execute => {
                let result = match &def.action {
                    Action::Gate => Ok(Completion::Done {
                        output: Value::Object(Map::new()),
                        warning: None,
                    }),
                    // Boxed: a command's future is large, and a Rust task's should not pay for it.
                    Action::Command(cmd) => {
                        // A halt of an earlier attempt no longer applies.
                        self.groups.started(item.plan, item.step);
                        let inv = invocation(&cmd.run, cmd, def, &item, &[], self.logs.as_ref());
                        Box::pin(run_command(inv, &self.groups, |_| {})).await
                    }
                    Action::Group(group) => {
                        Box::pin(crate::group::run(
                            group,
                            &item,
                            &self.groups,
                            progress,
                            self.logs.as_ref(),
                        ))
                        .await
                    }
                    Action::Task { name, version } => {
                        self.run_task(name, version, &item, progress).await
                    }
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
                            self.groups.started(item.plan, item.step);
                            let env = [
                                (
                                    "WEFT_RESULT".to_string(),
                                    result.clone().unwrap_or(Value::Null).to_string(),
                                ),
                                ("WEFT_FAILURE".to_string(), failure_json(cause)),
                            ];
                            let inv = invocation(argv, cmd, def, &item, &env, self.logs.as_ref());
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

    /// Sends a remote step to a worker and waits for its answer — within the step's timeout,
    /// and no longer once it is halted (the worker's late answer is then ignored).
    async fn run_remote(
        &self,
        task: String,
        version: String,
        item: &WorkItem,
        progress: &mpsc::UnboundedSender<Input>,
    ) -> Input {
        let def = &item.flow.steps[item.step as usize];
        let (action, result, failure) = match &item.work {
            Work::Execute => (Do::Execute, None, None),
            Work::Revert { result, cause } => (Do::Revert, result.clone(), Some(cause.clone())),
        };
        let call = RemoteCall {
            task,
            version,
            step: def.name.clone(),
            plan: item.plan,
            attempt: item.attempt,
            arguments: item.inputs.clone(),
            action,
            result,
            failure,
        };
        self.groups.started(item.plan, item.step);
        let outcome = match &self.remote {
            None => Err(crate::remote::no_remote()),
            Some(remote) => {
                let (events, mut got) = mpsc::unbounded_channel();
                let mut answer = remote.call(call, events);
                let timeout = crate::process::time_out(def.timeout);
                let halted = self.groups.halted(item.plan, item.step);
                tokio::pin!(timeout, halted);
                loop {
                    tokio::select! {
                        r = &mut answer => break r,
                        Some(event) = got.recv() => report_event(progress, item, event),
                        limit = &mut timeout => break Err(Failure::new(
                            "timeout",
                            format!(
                                "timed out after {} waiting for the remote worker",
                                duration::format(limit)
                            ),
                        )),
                        () = &mut halted => break Err(Failure::new(
                            "halted",
                            "halted; the remote worker's answer will be ignored",
                        )),
                    }
                }
            }
        };
        match &item.work {
            Work::Execute => Input::Executed {
                plan: item.plan,
                step: item.step,
                attempt: item.attempt,
                result: outcome
                    .and_then(|output| check_provides(output, &def.provides))
                    .map(|output| Completion::Done {
                        output,
                        warning: None,
                    }),
            },
            Work::Revert { .. } => Input::Reverted {
                plan: item.plan,
                step: item.step,
                result: outcome.map(drop),
            },
        }
    }

    async fn run_task(
        &self,
        name: &str,
        version: &str,
        item: &WorkItem,
        progress: &mpsc::UnboundedSender<Input>,
    ) -> Result<Completion, Failure> {
        let task = self
            .registry
            .get(name, version)
            .ok_or_else(|| unknown_task(name, version))?;
        let def = &item.flow.steps[item.step as usize];
        let (events, mut got) = mpsc::unbounded_channel();
        let ctx = context(item).with_events(events);
        let suspension = ctx.suspension.clone();
        let cancel = ctx.cancel.clone();
        // A halt of an earlier attempt no longer applies.
        self.groups.started(item.plan, item.step);
        let mut fut = task.execute(ctx);
        /// How the task's future ended, or why it was stopped.
        enum Ended {
            Returned(Result<Value, Failure>),
            Stopped(&'static str, String),
        }
        let timeout = crate::process::time_out(def.timeout);
        let halted = self.groups.halted(item.plan, item.step);
        tokio::pin!(timeout, halted);
        let ended = loop {
            tokio::select! {
                output = &mut fut => break Ended::Returned(output),
                Some(event) = got.recv() => report_event(progress, item, event),
                limit = &mut timeout => break Ended::Stopped(
                    "timeout",
                    format!("timed out after {}", duration::format(limit)),
                ),
                () = &mut halted => break Ended::Stopped("halted", "halted".into()),
            }
        };
        let output = match ended {
            Ended::Returned(output) => output?,
            Ended::Stopped(kind, why) => {
                // Asked to stop through its context; `kill_timeout` to return, then dropped.
                cancel.cancel();
                let how = match tokio::time::timeout(def.kill_timeout, fut).await {
                    Ok(_) => "the task stopped when asked",
                    Err(_) => "the task did not stop when asked and was dropped",
                };
                return Err(Failure::new(kind, format!("{why}; {how}")));
            }
        };
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
        cancel: tokio_util::sync::CancellationToken::new(),
        events: None,
    }
}

/// Passes a running step's progress event to the director, to keep with the step.
fn report_event(progress: &mpsc::UnboundedSender<Input>, item: &WorkItem, event: TaskEvent) {
    let _ = progress.send(Input::GroupProgress {
        plan: item.plan,
        step: item.step,
        attempt: item.attempt,
        progress: Progress::of_event(event),
    });
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

/// A step's command (or its revert) as one run of it.
fn invocation<'a>(
    argv: &'a [String],
    cmd: &'a Command,
    def: &'a StepDef,
    item: &'a WorkItem,
    extra_env: &'a [(String, String)],
    logs: Option<&'a LogSink>,
) -> Invocation<'a> {
    Invocation {
        argv,
        cmd,
        plan: item.plan,
        step: item.step,
        step_name: &def.name,
        group_task: "",
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
        kill_timeout: def.kill_timeout,
        logs,
        action: if matches!(item.work, Work::Execute) {
            "execute"
        } else {
            "revert"
        },
    }
}
