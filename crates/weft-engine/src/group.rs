//! Runs a group step: its tasks under Nomad's lifecycle, as `weft-lifecycle`'s
//! [`Coordinator`] opens each stage.
//!
//! One loop owns the group's state; each task's process is watched by a spawned task that
//! reports back on a channel. Prestart tasks run first (sidecars must also pass their readiness
//! probe), then main, then poststart; once main is done the sidecars are stopped (SIGTERM, then
//! SIGKILL after `kill_timeout`), and poststop tasks run whatever happened. A failure stops the
//! rest and either restarts the whole group (its `restart` policy) or fails it after poststop.
//! Every change of a task's state goes to the director as [`Input::GroupProgress`], which keeps
//! it with the step; after a crash, [`Coordinator::restore`] rebuilds the stage from it.

use crate::director::{Completion, Input, WorkItem};
use crate::logs::LogSink;
use crate::process::{
    base_command, end_leftovers, kill_group, run_command, signal_group, InputEnv, Invocation,
    ProcessGroups,
};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::process::Stdio;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weft_lifecycle::{Coordinator, Stage, TaskSpec, TaskState as Lifecycle};
use weft_model::group::{Group, GroupTask, Hook, Process, Progress, TaskRun, TaskState};
use weft_model::{now_millis, Failure};

/// Runs `group` (step `item.step` of `item.plan`) to its end.
pub(crate) async fn run(
    group: &Group,
    item: &WorkItem,
    processes: &ProcessGroups,
    report: &mpsc::UnboundedSender<Input>,
    logs: Option<&LogSink>,
) -> Result<Completion, Failure> {
    processes.started(item.plan, item.step);
    let (events_tx, events) = mpsc::unbounded_channel();
    let (shutdown_tx, shutdown) = watch::channel(false);
    let specs: Vec<TaskSpec> = group
        .tasks
        .iter()
        .map(|t| TaskSpec {
            name: t.name.clone(),
            stage: stage(t),
        })
        .collect();
    let mut runner = Runner {
        group,
        item,
        name: &item.flow.steps[item.step as usize].name,
        processes,
        report,
        logs: logs.cloned(),
        coordinator: Coordinator::new(&specs, shutdown),
        progress: Progress {
            restarts: 0,
            tasks: group
                .tasks
                .iter()
                .map(|t| TaskRun::pending(&t.name))
                .collect(),
            event: None,
        },
        reported: None,
        live: group.tasks.iter().map(|_| Live::default()).collect(),
        failure: None,
        restart_at: None,
        events_tx,
        generation: 0,
    };
    match &item.resume {
        Some(saved) => runner.restore(saved.clone()).await,
        None => runner.coordinator.task_state_updated(&runner.states()),
    }
    let result = runner.drive(events).await;
    let _ = shutdown_tx.send(true);
    result
}

fn stage(t: &GroupTask) -> Stage {
    Stage::of(
        t.hook().map(|h| match h {
            Hook::Prestart => weft_lifecycle::Hook::Prestart,
            Hook::Poststart => weft_lifecycle::Hook::Poststart,
            Hook::Poststop => weft_lifecycle::Hook::Poststop,
        }),
        t.is_sidecar(),
    )
}

/// What a task's watcher reports; `generation` tells a current run from an earlier one.
enum Event {
    Spawned {
        task: usize,
        gen: u64,
        pid: u32,
    },
    Ready {
        task: usize,
        gen: u64,
    },
    NotReady {
        task: usize,
        gen: u64,
        failure: Failure,
    },
    Exited {
        task: usize,
        gen: u64,
        result: Result<Completion, Failure>,
    },
    KillDue {
        task: usize,
        gen: u64,
    },
}

/// A task's run as only this process knows it.
#[derive(Default)]
struct Live {
    gen: u64,
    pid: Option<u32>,
    /// Told to stop (SIGTERM sent, or to be sent once it has a pid).
    stopping: bool,
    probe: Option<JoinHandle<()>>,
}

struct Runner<'a> {
    group: &'a Group,
    item: &'a WorkItem,
    name: &'a str,
    processes: &'a ProcessGroups,
    report: &'a mpsc::UnboundedSender<Input>,
    /// Where its tasks' output is kept, by task name.
    logs: Option<LogSink>,
    coordinator: Coordinator,
    progress: Progress,
    /// The progress last sent to the director.
    reported: Option<Progress>,
    live: Vec<Live>,
    /// Why the group (this round) failed.
    failure: Option<Failure>,
    /// When a restart is due.
    restart_at: Option<Instant>,
    events_tx: mpsc::UnboundedSender<Event>,
    generation: u64,
}

/// How a decision round ended.
enum Next {
    Wait,
    Done(Result<Completion, Failure>),
}

impl Runner<'_> {
    async fn drive(
        &mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
    ) -> Result<Completion, Failure> {
        let mut kills = self.processes.kills();
        loop {
            if self.processes.is_halted(self.item.plan, self.item.step) {
                return Err(self.halt());
            }
            if let Next::Done(result) = self.decide() {
                self.send_progress();
                return result;
            }
            self.send_progress();
            let restart_at = self.restart_at;
            tokio::select! {
                Some(event) = events.recv() => self.on(event),
                changed = kills.changed() => {
                    if changed.is_err() {
                        return Err(self.halt());
                    }
                }
                _ = sleep_until(restart_at) => {}
            }
        }
    }

    /// Halted (or the process is stopping): kill everything, start nothing more.
    fn halt(&mut self) -> Failure {
        for live in &mut self.live {
            if let Some(pid) = live.pid {
                kill_group(pid);
            }
            if let Some(p) = live.probe.take() {
                p.abort();
            }
        }
        Failure::new("halted", format!("group `{}` was halted", self.name))
    }

    fn states(&self) -> BTreeMap<String, Lifecycle> {
        self.progress
            .tasks
            .iter()
            .map(|t| {
                let s = match t.state {
                    TaskState::Pending => Lifecycle::Pending,
                    TaskState::Running => Lifecycle::Running { ready: false },
                    TaskState::Ready => Lifecycle::Running { ready: true },
                    TaskState::Succeeded | TaskState::Stopped | TaskState::Skipped => {
                        Lifecycle::Dead { failed: false }
                    }
                    TaskState::Failed => Lifecycle::Dead { failed: true },
                };
                (t.name.clone(), s)
            })
            .collect()
    }

    fn def(&self, i: usize) -> &GroupTask {
        &self.group.tasks[i]
    }

    fn is_poststop(&self, i: usize) -> bool {
        self.def(i).hook() == Some(Hook::Poststop)
    }

    /// Whether a failure of task `i` fails the group (poststart and poststop failures are
    /// warnings).
    fn fails_group(&self, i: usize) -> bool {
        let t = self.def(i);
        t.is_sidecar() || matches!(t.hook(), None | Some(Hook::Prestart))
    }

    /// One round of decisions: stop, skip, restart, start; or the end.
    fn decide(&mut self) -> Next {
        let n = self.group.tasks.len();
        self.coordinator.task_state_updated(&self.states());
        if self.failure.is_some() {
            for i in 0..n {
                if self.is_poststop(i) {
                    continue;
                }
                match self.progress.tasks[i].state {
                    TaskState::Pending => self.progress.tasks[i].state = TaskState::Skipped,
                    s if s.is_running() => self.stop(i),
                    _ => {}
                }
            }
            let others_dead = (0..n)
                .filter(|&i| !self.is_poststop(i))
                .all(|i| self.progress.tasks[i].state.is_dead());
            if others_dead && self.progress.restarts < self.group.restart.attempts {
                match self.restart_at {
                    None => {
                        self.restart_at = Some(Instant::now() + self.group.restart.delay);
                        return Next::Wait;
                    }
                    Some(at) if at > Instant::now() => return Next::Wait,
                    Some(_) => self.restart(),
                }
            }
            self.coordinator.task_state_updated(&self.states());
        } else if self.main_done() {
            for i in 0..n {
                if self.def(i).is_sidecar() && self.progress.tasks[i].state.is_running() {
                    self.stop(i);
                }
            }
        }
        let restarting =
            self.failure.is_some() && self.progress.restarts < self.group.restart.attempts;
        for i in 0..n {
            let may = self.progress.tasks[i].state == TaskState::Pending
                && self.coordinator.may_start(&self.group.tasks[i].name)
                && if self.is_poststop(i) {
                    !restarting
                } else {
                    self.failure.is_none()
                };
            if may {
                self.start(i);
            }
        }
        if self.progress.tasks.iter().all(|t| t.state.is_dead()) {
            return Next::Done(self.result());
        }
        Next::Wait
    }

    /// Every main task and every ephemeral poststart task is over.
    fn main_done(&self) -> bool {
        self.group
            .tasks
            .iter()
            .zip(&self.progress.tasks)
            .all(|(d, t)| {
                let waits =
                    d.hook().is_none() || (d.hook() == Some(Hook::Poststart) && !d.is_sidecar());
                !waits || t.state.is_dead()
            })
    }

    fn restart(&mut self) {
        self.progress.restarts += 1;
        tracing::info!(
            "group `{}` restarts ({} of {}) after: {}",
            self.name,
            self.progress.restarts,
            self.group.restart.attempts,
            self.failure
                .as_ref()
                .map(|f| f.message.as_str())
                .unwrap_or("")
        );
        for t in &mut self.progress.tasks {
            *t = TaskRun::pending(std::mem::take(&mut t.name));
        }
        self.failure = None;
        self.restart_at = None;
        self.coordinator.restart();
    }

    /// The group's end: its failure, or every task's output under `group/task`.
    fn result(&self) -> Result<Completion, Failure> {
        if let Some(f) = &self.failure {
            return Err(f.clone());
        }
        let mut output = Map::new();
        let mut warnings = Vec::new();
        for t in &self.progress.tasks {
            output.insert(
                format!("{}/{}", self.name, t.name),
                t.output
                    .clone()
                    .unwrap_or_else(|| Value::Object(Map::new())),
            );
            if t.state == TaskState::Failed {
                let why = t.failure.as_ref().map(|f| f.message.as_str()).unwrap_or("");
                warnings.push(format!("task `{}` failed: {why}", t.name));
            }
        }
        Ok(Completion::Done {
            output: Value::Object(output),
            warning: (!warnings.is_empty()).then(|| warnings.join("; ")),
        })
    }

    fn fail(&mut self, i: usize, cause: Failure) {
        if self.failure.is_none() && self.fails_group(i) {
            let mut f = Failure::new(
                "group_task_failed",
                format!(
                    "task `{}` of group `{}` failed: {}",
                    self.group.tasks[i].name, self.name, cause.message
                ),
            );
            f.cause = Some(Box::new(cause.clone()));
            self.failure = Some(f);
        }
        let t = &mut self.progress.tasks[i];
        t.state = TaskState::Failed;
        t.failure = Some(cause);
    }

    fn start(&mut self, i: usize) {
        self.generation += 1;
        let gen = self.generation;
        self.live[i] = Live {
            gen,
            ..Live::default()
        };
        let t = &mut self.progress.tasks[i];
        t.state = TaskState::Running;
        t.started_at = Some(now_millis());
        t.ended_at = None;
        t.output = None;
        t.failure = None;
        let def = self.group.tasks[i].clone();
        let step_name = format!("{}/{}", self.name, def.name);
        let plan = self.item.plan;
        let step = self.item.step;
        let attempt = self.item.attempt;
        let inputs = self.item.inputs.clone();
        let processes = self.processes.clone();
        let logs = self.logs.clone();
        let tx = self.events_tx.clone();
        let extra = [("WEFT_GROUP".to_string(), self.name.to_string())];
        tokio::spawn(async move {
            let spawned = tx.clone();
            let inv = Invocation {
                argv: &def.command.run,
                cmd: &def.command,
                plan,
                step,
                step_name: &step_name,
                group_task: &def.name,
                attempt,
                inputs: &inputs,
                extra_env: &extra,
                warn_codes: &[],
                timeout: None,
                kill_timeout: def.kill_timeout,
                logs: logs.as_ref(),
                action: "execute",
            };
            let result = run_command(inv, &processes, move |pid| {
                let _ = spawned.send(Event::Spawned { task: i, gen, pid });
            })
            .await;
            let _ = tx.send(Event::Exited {
                task: i,
                gen,
                result,
            });
        });
    }

    /// Asks task `i` to stop: SIGTERM now, SIGKILL after its `kill_timeout`.
    fn stop(&mut self, i: usize) {
        let live = &mut self.live[i];
        if live.stopping {
            return;
        }
        live.stopping = true;
        if let Some(pid) = live.pid {
            terminate(pid, i, live.gen, self.def(i).kill_timeout, &self.events_tx);
        }
    }

    fn on(&mut self, event: Event) {
        match event {
            Event::Spawned { task, gen, pid } if self.live[task].gen == gen => {
                self.live[task].pid = Some(pid);
                self.progress.tasks[task].process = Some(Process {
                    host: crate::process::identity::hostname().to_string(),
                    pid,
                });
                if self.live[task].stopping {
                    let timeout = self.def(task).kill_timeout;
                    terminate(pid, task, gen, timeout, &self.events_tx);
                    return;
                }
                match self.def(task).ready.clone() {
                    None => self.progress.tasks[task].state = TaskState::Ready,
                    Some(probe) => {
                        let tx = self.events_tx.clone();
                        let cmd = self.def(task).command.clone();
                        let inputs = self.item.inputs.clone();
                        self.live[task].probe = Some(tokio::spawn(async move {
                            let event = match poll_probe(&probe, &cmd, &inputs).await {
                                Ok(()) => Event::Ready { task, gen },
                                Err(failure) => Event::NotReady { task, gen, failure },
                            };
                            let _ = tx.send(event);
                        }));
                    }
                }
            }
            Event::Ready { task, gen }
                if self.live[task].gen == gen
                    && self.progress.tasks[task].state == TaskState::Running =>
            {
                self.progress.tasks[task].state = TaskState::Ready;
            }
            Event::NotReady { task, gen, failure }
                if self.live[task].gen == gen && self.progress.tasks[task].state.is_running() =>
            {
                // Recorded now; its exit, which the kill brings, is then not a stop.
                self.fail(task, failure);
                if let Some(pid) = self.live[task].pid {
                    kill_group(pid);
                }
            }
            Event::KillDue { task, gen } if self.live[task].gen == gen => {
                if let Some(pid) = self.live[task].pid {
                    kill_group(pid);
                }
            }
            Event::Exited { task, gen, result } if self.live[task].gen == gen => {
                let live = &mut self.live[task];
                live.pid = None;
                if let Some(p) = live.probe.take() {
                    p.abort();
                }
                let stopping = live.stopping;
                let sidecar = self.def(task).is_sidecar();
                let main_done = self.main_done();
                let t = &mut self.progress.tasks[task];
                t.ended_at = Some(now_millis());
                t.process = None;
                if t.state == TaskState::Failed {
                    return;
                }
                match result {
                    _ if stopping => t.state = TaskState::Stopped,
                    Ok(_) if sidecar && !main_done => {
                        let f = Failure::new(
                            "sidecar_exited",
                            "the sidecar exited before the main tasks were done",
                        );
                        self.fail(task, f);
                    }
                    Ok(Completion::Done { output, .. }) => {
                        t.state = TaskState::Succeeded;
                        t.output = Some(output);
                    }
                    Ok(Completion::Suspend { .. }) => t.state = TaskState::Succeeded,
                    Err(f) => self.fail(task, f),
                }
            }
            // From an earlier run of the task.
            _ => {}
        }
    }

    /// Resumes after a crash: what the dead run left running on this machine is killed; an
    /// interrupted sidecar, or idempotent task, runs again; another interrupted task failed.
    async fn restore(&mut self, saved: Progress) {
        end_leftovers(self.item.plan, Some(self.item.step)).await;
        self.progress.restarts = saved.restarts;
        for (i, old) in saved.tasks.into_iter().enumerate() {
            let Some(t) = self
                .progress
                .tasks
                .get_mut(i)
                .filter(|t| t.name == old.name)
            else {
                continue;
            };
            *t = old;
            t.process = None;
            if t.state.is_running() {
                let def = &self.group.tasks[i];
                if def.is_sidecar() || def.idempotent {
                    t.state = TaskState::Pending;
                } else {
                    let f = Failure::new(
                        "interrupted",
                        "abnormal termination (previous state: running); the task is not idempotent, so it was not re-run",
                    );
                    self.fail(i, f);
                }
            }
        }
        // A failure from before the crash still stands.
        if self.failure.is_none() {
            if let Some(i) = (0..self.progress.tasks.len())
                .find(|&i| self.progress.tasks[i].state == TaskState::Failed && self.fails_group(i))
            {
                let cause = self.progress.tasks[i]
                    .failure
                    .clone()
                    .unwrap_or_else(|| Failure::new("failed", "failed before a restart"));
                self.fail(i, cause);
            }
        }
        let states = self.states();
        self.coordinator.restore(&states);
    }

    fn send_progress(&mut self) {
        if self.reported.as_ref() == Some(&self.progress) {
            return;
        }
        self.reported = Some(self.progress.clone());
        let _ = self.report.send(Input::GroupProgress {
            plan: self.item.plan,
            step: self.item.step,
            attempt: self.item.attempt,
            progress: self.progress.clone(),
        });
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn terminate(
    pid: u32,
    task: usize,
    gen: u64,
    timeout: std::time::Duration,
    tx: &mpsc::UnboundedSender<Event>,
) {
    signal_group(pid, libc::SIGTERM);
    let tx = tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        let _ = tx.send(Event::KillDue { task, gen });
    });
}

/// Runs the probe every `interval` until it passes, or fails once `timeout` has passed. It
/// gets the task's environment and inputs.
async fn poll_probe(
    probe: &weft_model::group::Probe,
    cmd: &weft_model::flow::Command,
    inputs: &Map<String, Value>,
) -> Result<(), Failure> {
    let deadline = Instant::now() + probe.timeout;
    let env = InputEnv::new(inputs).map_err(|e| {
        Failure::new(
            "not_ready",
            format!("cannot write the inputs of its readiness probe to files: {e}"),
        )
    })?;
    loop {
        let mut command = base_command(&probe.run, cmd);
        env.apply(&mut command);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let round = Instant::now();
        let last = match tokio::time::timeout(
            probe.interval.max(std::time::Duration::from_secs(1)),
            command.status(),
        )
        .await
        {
            Ok(Ok(status)) if status.success() => return Ok(()),
            Ok(Ok(status)) => format!("it exited with {status}"),
            Ok(Err(e)) => format!("cannot start `{}`: {e}", probe.run[0]),
            Err(_) => "it did not answer in time".to_string(),
        };
        let next = round + probe.interval;
        if next >= deadline {
            return Err(Failure::new(
                "not_ready",
                format!(
                    "its readiness probe did not pass within {} (last: {last})",
                    weft_model::duration::format(probe.timeout)
                ),
            ));
        }
        tokio::time::sleep_until(next).await;
    }
}
