//! Remote steps: what the engine asks of a remote executor, and the tasks a worker offers for a
//! flow's commands.
//!
//! A step with `executor = "remote"` is not run here: the executor hands it to a [`Remote`]
//! (weft-worker's executor, which sends it to a worker as a TaskFlow request) and waits for
//! its result — within the step's timeout, and stopped by a halt like any step. The engine
//! defines the trait and weft-worker implements it, since workers run the engine's tasks.
//!
//! [`CommandTask`] is the other side: a worker given a flow file (`weft worker --tasks`) offers
//! each of its commands as a task named [`weft_model::flow::command_task`], and runs it as
//! the engine would — own process group, inputs as `WEFT_IN_*` and on stdin, output the last
//! JSON line of stdout, its revert command with `WEFT_RESULT` and `WEFT_FAILURE`.

use crate::logs::LogSink;
use crate::process::{run_command, Invocation, ProcessGroups};
use crate::task::{Context, Registry, RevertContext, Task};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;
use weft_model::flow::{Action, Flow};
use weft_model::worker::Action as Do;
use weft_model::{Failure, PlanId};
use weft_store::{BoxFuture, SharedStore};

/// A step to run (or revert) on a remote worker.
#[derive(Debug, Clone)]
pub struct RemoteCall {
    /// The task's name as workers offer it.
    pub task: String,
    /// Its version.
    pub version: String,
    /// The step's name.
    pub step: String,
    /// The plan.
    pub plan: PlanId,
    /// The step's attempt: a late answer from an earlier attempt is ignored.
    pub attempt: u32,
    /// Its arguments (the step's required values).
    pub arguments: Map<String, Value>,
    /// Execute, or revert (then `result` and `failure` say how execution ended).
    pub action: Do,
    /// For a revert: what the execution returned.
    pub result: Option<Value>,
    /// For a revert: why the flow reverts.
    pub failure: Option<Failure>,
}

/// Runs steps on remote workers.
pub trait Remote: Send + Sync + 'static {
    /// Runs `call` on a worker that offers its task; resolves with the task's result or its
    /// failure — its own, or the executor's (`RequestTimeout` when no worker took it in time,
    /// `WorkerLost` when the worker running it died).
    /// The task's progress events (the worker's `EVENT` responses) go to `events`.
    fn call(
        &self,
        call: RemoteCall,
        events: crate::task::Events,
    ) -> BoxFuture<Result<Value, Failure>>;
}

/// Makes the [`Remote`] of an engine, over the engine's store (a node's store is replaced when
/// it is bounced; its engine and remote executor with it).
pub trait RemoteFactory: Send + Sync + 'static {
    /// The remote executor of an engine that persists to `store` as `owner`.
    fn remote(&self, store: SharedStore, owner: &str) -> Arc<dyn Remote>;
}

impl fmt::Debug for dyn RemoteFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RemoteFactory")
    }
}

/// The failure of a remote step in an engine without a remote executor.
pub(crate) fn no_remote() -> Failure {
    Failure::new(
        "no_remote_executor",
        "this step runs on a remote worker, and this engine has no remote executor \
         (`weft` nodes and applications have one; set `engine::Config::remote`)",
    )
}

/// A command of a flow, offered by a worker as a task.
#[derive(Clone)]
pub struct CommandTask {
    flow: Arc<Flow>,
    step: u32,
    groups: ProcessGroups,
    logs: Option<LogSink>,
}

impl Registry {
    /// Registers every command of `flow` as the task a remote step of it asks for
    /// ([`weft_model::flow::command_task`] at the flow's version), and returns their
    /// capabilities (`name@version`). With `logs`, what they print is kept under the plan,
    /// step and attempt that asked (`weft logs` shows it as the step's).
    pub fn add_commands(&mut self, flow: &Flow, logs: Option<LogSink>) -> Vec<String> {
        let flow = Arc::new(flow.clone());
        let groups = ProcessGroups::default();
        let mut added = Vec::new();
        for (i, s) in flow.steps.iter().enumerate() {
            if let Action::Command(_) = &s.action {
                let name = weft_model::flow::command_task(&flow.name, &s.name);
                added.push(weft_model::flow::capability(&name, &flow.version));
                let task = CommandTask {
                    flow: flow.clone(),
                    step: i as u32,
                    groups: groups.clone(),
                    logs: logs.clone(),
                };
                self.register(name, flow.version.clone(), task);
            }
        }
        added
    }
}

impl CommandTask {
    async fn run(
        &self,
        ctx: Context,
        revert: Option<(Option<Value>, Failure)>,
    ) -> Result<Value, Failure> {
        let def = &self.flow.steps[self.step as usize];
        let Action::Command(cmd) = &def.action else {
            return Err(Failure::new("not_a_command", "this step runs no command"));
        };
        let (argv, env, warn_codes) = match &revert {
            None => (&cmd.run, Vec::new(), &cmd.warn_exit_codes[..]),
            Some((result, failure)) => match &cmd.revert {
                Some(argv) => (
                    argv,
                    vec![
                        (
                            "WEFT_RESULT".to_string(),
                            result.clone().unwrap_or(Value::Null).to_string(),
                        ),
                        (
                            "WEFT_FAILURE".to_string(),
                            serde_json::to_string(failure).unwrap_or_else(|_| "null".into()),
                        ),
                    ],
                    &[][..],
                ),
                None => return Ok(Value::Null),
            },
        };
        self.groups.started(ctx.plan, self.step);
        let inv = Invocation {
            argv,
            cmd,
            plan: ctx.plan,
            step: self.step,
            step_name: &def.name,
            group_task: "",
            attempt: ctx.attempt,
            inputs: &ctx.inputs,
            extra_env: &env,
            warn_codes,
            timeout: def.timeout,
            kill_timeout: def.kill_timeout,
            logs: self.logs.as_ref(),
            action: if revert.is_some() {
                "revert"
            } else {
                "execute"
            },
        };
        match Box::pin(run_command(inv, &self.groups, |_| {})).await? {
            crate::director::Completion::Done { output, .. } => Ok(output),
            crate::director::Completion::Suspend { output, .. } => Ok(output),
        }
    }
}

impl Task for CommandTask {
    fn execute(&self, ctx: Context) -> BoxFuture<Result<Value, Failure>> {
        let this = self.clone();
        Box::pin(async move { this.run(ctx, None).await })
    }

    fn revert(&self, ctx: RevertContext) -> BoxFuture<Result<(), Failure>> {
        let this = self.clone();
        Box::pin(async move {
            this.run(ctx.context, Some((ctx.result, ctx.failure)))
                .await
                .map(drop)
        })
    }
}
