//! The director: a pure decision loop, after Dynflow's.
//!
//! It owns the in-memory view of every plan it executes. Each call — [`Director::handle`] with
//! an [`Input`] — changes that view through the state machines of `weft-model` and records what
//! must follow in [`Actions`]: store changes to persist, then work items to run, timers to set
//! and plans that ended. The caller persists the changes before it runs the work (write-ahead).
//! The director does no I/O and takes the time as an argument.

mod plan_run;
mod recover;

use plan_run::PlanRun;
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::oneshot;
use weft_model::flow::Flow;
use weft_model::plan::{self, Outcome};
use weft_model::{Failure, Millis, PlanId};
use weft_store::{Change, PlanSnapshot};

pub use weft_model::flow::Rescue;

/// Who waits for an answer to an event or a halt: told once the outcome is durable.
#[derive(Debug)]
pub struct Answer {
    /// Told the outcome once it is durable (or why it is not).
    pub waiter: oneshot::Sender<Result<(), String>>,
    /// The mailbox message (of a plan) the event or halt came in, if it came through the
    /// store: its reply is written in the same transaction as the changes it answers.
    pub message: Option<(PlanId, i64)>,
}

impl From<oneshot::Sender<Result<(), String>>> for Answer {
    fn from(waiter: oneshot::Sender<Result<(), String>>) -> Self {
        Answer {
            waiter,
            message: None,
        }
    }
}

/// Why a plan is being started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Intent {
    /// Execute it: a first start, a resume, or a recovery.
    #[default]
    Run,
    /// An operator's cancel of a paused plan: what did not complete is cancelled, what did is
    /// reverted, and the plan stops with result `cancelled`.
    Cancel,
}

/// How an execution that did not fail ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// Done, with its output and perhaps a warning.
    Done {
        /// The output object.
        output: Value,
        /// Done, but with something to look at: the plan's result becomes `warning`.
        warning: Option<String>,
    },
    /// The task suspended itself: the step waits for an event (until `timeout`, if any).
    Suspend {
        /// Output so far; an event's data is merged into it.
        output: Value,
        /// How long to wait.
        timeout: Option<Duration>,
    },
}

/// Who waits for a plan to end: told how it ended, or why it did not go on here.
pub type Waiter = oneshot::Sender<Result<PlanEnd, Refusal>>;

/// Why a plan's execution did not go on here.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// Dynflow's reasons: already running, stopped, inhibited, …
    #[error("{0}")]
    Refused(String),
    /// The store failed while the plan ran; it is left for a resume.
    #[error("{0}")]
    StoreFailed(String),
}

/// A plan to store before it is started (`Input::Start::create`), and who to tell once it is
/// durable. Only the shell handles it; the director never does I/O.
pub struct Creation {
    /// The plan.
    pub plan: weft_store::NewPlan,
    /// Given the write once it is queued; it resolves when the plan is stored, or why not.
    pub stored: tokio::sync::oneshot::Sender<weft_store::BoxFuture<weft_store::Result<()>>>,
}

impl std::fmt::Debug for Creation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Creation")
            .field("plan", &self.plan.id)
            .finish()
    }
}

/// How a plan's execution ended.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanEnd {
    /// The plan.
    pub plan: PlanId,
    /// `stopped`, or `paused` when it needs an operator.
    pub state: plan::State,
    /// Its result.
    pub outcome: Outcome,
    /// The first failure, if any.
    pub failure: Option<Failure>,
    /// The plan's values when it ended — its inputs and what its steps provided, by name —
    /// for a caller that waits for it (empty otherwise).
    pub values: std::collections::BTreeMap<String, serde_json::Value>,
}

/// An input to the director.
#[derive(Debug)]
pub enum Input {
    /// Start (or resume) executing a plan.
    Start {
        /// The plan as stored.
        snapshot: Box<PlanSnapshot>,
        /// What to do when a step fails for good, unless the flow says (`on_error`).
        rescue: Rescue,
        /// Run it, or cancel it.
        intent: Intent,
        /// Whether an execution-inhibition lock is on it (it is then halted and refused).
        inhibited: bool,
        /// Told when the plan ends (or is refused).
        waiter: Option<Waiter>,
        /// A new plan to store first: the shell takes it out before the director sees the
        /// input, and writes it right ahead of the director's first changes for it.
        create: Option<Box<Creation>>,
        /// Its start was stored with its creation (a conductor's claim creates its job's plan
        /// `running`): it is not one taken over, and its start is not written again.
        started: bool,
    },
    /// An execution finished.
    Executed {
        /// The plan.
        plan: PlanId,
        /// The step.
        step: u32,
        /// The attempt that ran.
        attempt: u32,
        /// How it ended.
        result: Result<Completion, Failure>,
    },
    /// A running group step's tasks moved on: kept with the step, so that the group resumes
    /// from there after a crash.
    GroupProgress {
        /// The plan.
        plan: PlanId,
        /// The step.
        step: u32,
        /// The attempt running.
        attempt: u32,
        /// How far its tasks got.
        progress: weft_model::group::Progress,
    },
    /// A revert finished.
    Reverted {
        /// The plan.
        plan: PlanId,
        /// The step.
        step: u32,
        /// Whether it worked.
        result: Result<(), Failure>,
    },
    /// A retry's delay has passed.
    RetryDue {
        /// The plan.
        plan: PlanId,
        /// The step.
        step: u32,
    },
    /// A suspended step's timeout: it fails unless an event came first.
    Deadline {
        /// The plan.
        plan: PlanId,
        /// The step.
        step: u32,
        /// The deadline the timer was set for (a newer wait has another).
        at: Millis,
    },
    /// An event for a suspended step (Dynflow's `handle_event`).
    Event {
        /// The plan.
        plan: PlanId,
        /// The step.
        step: u32,
        /// An object: it becomes (part of) the step's output.
        data: Value,
        /// If the plan is not being executed here, drop the event quietly.
        optional: bool,
        /// Told whether the event was taken.
        answer: Option<Answer>,
    },
    /// Stop a plan now: running steps are cancelled and their processes killed.
    Halt {
        /// The plan.
        plan: PlanId,
        /// Told once the plan is stopped.
        answer: Option<Answer>,
    },
    /// The slots a plan (`step: None`) or a step asked for are held: it may start.
    SlotGranted {
        /// The plan.
        plan: PlanId,
        /// The step, or `None` for the plan's own slots.
        step: Option<u32>,
    },
    /// The node is shutting down: start nothing new; what runs may finish.
    Terminate,
    /// Persisting changes of these plans failed: they can no longer be executed safely here.
    PersistFailed {
        /// The plans.
        plans: Vec<PlanId>,
        /// What the store said.
        error: String,
    },
}

/// What a work item asks the executor to do.
#[derive(Debug, Clone)]
pub enum Work {
    /// Run the step's task.
    Execute,
    /// Undo the step's task.
    Revert {
        /// What its execution returned.
        result: Option<Value>,
        /// The failure that made the plan revert.
        cause: Failure,
    },
}

/// One piece of work for an executor.
#[derive(Debug, Clone)]
pub struct WorkItem {
    /// The plan.
    pub plan: PlanId,
    /// The flow (the step's definition is `flow.steps[step]`).
    pub flow: Arc<Flow>,
    /// The step.
    pub step: u32,
    /// The attempt.
    pub attempt: u32,
    /// Its required values.
    pub inputs: Map<String, Value>,
    /// Execute or revert.
    pub work: Work,
    /// For a group step resumed after a crash: how far its tasks had got.
    pub resume: Option<weft_model::group::Progress>,
}

/// Slots to ask the store for until they are granted (then feed back
/// [`Input::SlotGranted`]), or until the plan is no longer this engine's.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotAsk {
    /// The plan.
    pub plan: PlanId,
    /// The step, or `None` for the plan's own slots.
    pub step: Option<u32>,
    /// The slots, all at once.
    pub wants: Vec<weft_model::limit::SlotWant>,
}

/// A timer to set: after `after`, feed `input` back.
#[derive(Debug)]
pub struct Timer {
    /// The delay.
    pub after: Duration,
    /// What to feed back.
    pub input: Input,
}

/// Everything one call decided.
#[derive(Debug, Default)]
pub struct Actions {
    /// To persist first, in order.
    pub changes: Vec<Change>,
    /// To run once the changes are durable.
    pub work: Vec<WorkItem>,
    /// To set once the changes are durable.
    pub timers: Vec<Timer>,
    /// Plans that ended, to announce once the changes are durable.
    pub ended: Vec<(PlanEnd, Option<Waiter>)>,
    /// Starts refused, with why (Dynflow's messages).
    pub refused: Vec<(PlanId, Refusal, Option<Waiter>)>,
    /// Answers to events and halts, to send once the changes are durable.
    pub answers: Vec<(Answer, Result<(), String>)>,
    /// Steps whose processes must be killed now (halted).
    pub kill: Vec<(PlanId, u32)>,
    /// Slots to ask for once the changes are durable.
    pub slots: Vec<SlotAsk>,
    /// Transitions the director wanted but the state machines refused: bugs, never expected.
    pub illegal: Vec<String>,
}

impl Actions {
    /// Whether nothing was decided.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self.work.is_empty()
            && self.timers.is_empty()
            && self.ended.is_empty()
            && self.refused.is_empty()
            && self.answers.is_empty()
            && self.kill.is_empty()
            && self.slots.is_empty()
    }
}

/// Flows shared between the plans that run the same definition, so that ten thousand plans of
/// one flow hold one copy of it. Entries are weak: a flow no plan uses is dropped.
#[derive(Default)]
pub(crate) struct FlowCache {
    /// By name, version and step count; then compared in full.
    entries: HashMap<(String, String, usize), Vec<Shared>>,
}

/// For each step, the steps that depend on it directly.
pub(crate) type Dependents = Vec<Vec<u32>>;

/// One flow as shared between plans.
struct Shared {
    flow: Weak<Flow>,
    dependents: Weak<Dependents>,
}

impl FlowCache {
    /// The shared copy of `flow` and its dependents, adding it if new.
    pub(crate) fn intern(&mut self, flow: Flow) -> (Arc<Flow>, Arc<Dependents>) {
        let key = (flow.name.clone(), flow.version.clone(), flow.steps.len());
        let slot = self.entries.entry(key).or_default();
        slot.retain(|s| s.flow.strong_count() > 0);
        for shared in slot.iter() {
            if let (Some(f), Some(d)) = (shared.flow.upgrade(), shared.dependents.upgrade()) {
                if *f == flow {
                    return (f, d);
                }
            }
        }
        let dependents = Arc::new(flow.dependents());
        let flow = Arc::new(flow);
        slot.push(Shared {
            flow: Arc::downgrade(&flow),
            dependents: Arc::downgrade(&dependents),
        });
        (flow, dependents)
    }
}

/// The director. See the module documentation.
pub struct Director {
    plans: HashMap<PlanId, PlanRun>,
    flows: FlowCache,
    /// The most work items in flight at once.
    limit: usize,
    /// Shutting down: nothing new starts.
    terminating: bool,
    queue: Queue,
}

/// What the director has decided and what waits to be dispatched, across plans.
#[derive(Default)]
struct Queue {
    /// Decisions since the last [`Director::take`].
    out: Actions,
    /// Work items dispatched and not yet reported.
    in_flight: usize,
    /// Steps ready to start, oldest first.
    ready: VecDeque<(PlanId, u32)>,
    rng: u64,
}

impl Queue {
    fn ctx(&mut self, now: Millis) -> Ctx<'_> {
        Ctx {
            out: &mut self.out,
            in_flight: &mut self.in_flight,
            ready: &mut self.ready,
            now,
            rng: &mut self.rng,
        }
    }
}

/// What the per-plan logic needs from the director around it.
pub(crate) struct Ctx<'a> {
    pub out: &'a mut Actions,
    pub in_flight: &'a mut usize,
    pub ready: &'a mut VecDeque<(PlanId, u32)>,
    pub now: Millis,
    pub rng: &'a mut u64,
}

impl Ctx<'_> {
    /// Sends out a work item.
    pub(crate) fn push_work(&mut self, item: WorkItem) {
        *self.in_flight += 1;
        self.out.work.push(item);
    }

    /// A number in `[0, 1)` (xorshift), for retry jitter.
    pub(crate) fn jitter(&mut self) -> f64 {
        let mut x = *self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *self.rng = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Director {
    /// A director that keeps at most `limit` work items in flight.
    pub fn new(limit: usize, seed: u64) -> Self {
        Director {
            plans: HashMap::new(),
            flows: FlowCache::default(),
            limit: limit.max(1),
            terminating: false,
            queue: Queue {
                rng: seed | 1,
                ..Queue::default()
            },
        }
    }

    /// Work items in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.in_flight
    }

    /// Handles one input at time `now`; the decisions accumulate until [`Director::take`].
    pub fn handle(&mut self, input: Input, now: Millis) {
        let mut ctx = self.queue.ctx(now);
        let touched = match input {
            Input::Start {
                snapshot,
                rescue,
                intent,
                inhibited,
                waiter,
                create: _,
                started,
            } => {
                let id = snapshot.plan.id;
                if self.plans.contains_key(&id) {
                    ctx.out.refused.push((
                        id,
                        Refusal::Refused(format!("cannot execute plan {id}: it's already running")),
                        waiter,
                    ));
                    return;
                }
                if inhibited {
                    // Dynflow: an inhibited plan is halted, then refused.
                    let from = snapshot.plan.state;
                    if from.allows(plan::State::Stopped) {
                        let why = "halted: its execution is inhibited";
                        ctx.out.changes.push(Change::plan_state_because(
                            id,
                            from,
                            plan::State::Stopped,
                            now,
                            why,
                        ));
                    }
                    ctx.out.refused.push((
                        id,
                        Refusal::Refused(format!(
                            "cannot execute plan {id}: it's execution is inhibited"
                        )),
                        waiter,
                    ));
                    return;
                }
                let recovered = PlanRun::recover(
                    *snapshot,
                    rescue,
                    intent,
                    started,
                    waiter,
                    &mut self.flows,
                    &mut ctx,
                );
                match recovered {
                    Ok(mut run) => {
                        run.progress(&mut ctx);
                        self.plans.insert(id, run);
                        Some(id)
                    }
                    Err((reason, waiter)) => {
                        ctx.out.refused.push((id, Refusal::Refused(reason), waiter));
                        None
                    }
                }
            }
            Input::Executed {
                plan,
                step,
                attempt,
                result,
            } => {
                *ctx.in_flight = ctx.in_flight.saturating_sub(1);
                self.plans.get_mut(&plan).map(|run| {
                    run.executed(step as usize, attempt, result, &mut ctx);
                    run.progress(&mut ctx);
                    plan
                })
            }
            Input::GroupProgress {
                plan,
                step,
                attempt,
                progress,
            } => {
                if let Some(run) = self.plans.get_mut(&plan) {
                    run.group_progress(step as usize, attempt, progress, &mut ctx);
                }
                None
            }
            Input::Reverted { plan, step, result } => {
                *ctx.in_flight = ctx.in_flight.saturating_sub(1);
                self.plans.get_mut(&plan).map(|run| {
                    run.reverted(step as usize, result, &mut ctx);
                    run.progress(&mut ctx);
                    plan
                })
            }
            Input::RetryDue { plan, step } => {
                if let Some(run) = self.plans.get_mut(&plan) {
                    run.retry_due(step as usize, &mut ctx);
                }
                None
            }
            Input::Deadline { plan, step, at } => self.plans.get_mut(&plan).map(|run| {
                run.deadline(step as usize, at, &mut ctx);
                run.progress(&mut ctx);
                plan
            }),
            Input::Event {
                plan,
                step,
                data,
                optional,
                answer,
            } => {
                let result = match self.plans.get_mut(&plan) {
                    None if optional => Err(format!(
                        "plan {plan} is not being executed here; the optional event was dropped"
                    )),
                    None => Err(format!(
                        "plan {plan} is not running; it cannot receive events"
                    )),
                    Some(run) if step as usize >= run.steps.len() => {
                        Err(format!("plan {plan} has no step {step}"))
                    }
                    Some(run) => {
                        let r = run.event(step as usize, data, &mut ctx);
                        run.progress(&mut ctx);
                        r
                    }
                };
                if let Some(a) = answer {
                    ctx.out.answers.push((a, result));
                }
                Some(plan)
            }
            Input::Halt { plan, answer } => {
                let result = match self.plans.get_mut(&plan) {
                    Some(run) => {
                        run.halt(&mut ctx);
                        Ok(())
                    }
                    None => Err(format!("plan {plan} is not being executed here")),
                };
                if let Some(a) = answer {
                    ctx.out.answers.push((a, result));
                }
                Some(plan)
            }
            Input::SlotGranted { plan, step } => self.plans.get_mut(&plan).map(|run| {
                run.slot_granted(step, &mut ctx);
                run.progress(&mut ctx);
                plan
            }),
            Input::Terminate => {
                self.terminating = true;
                None
            }
            Input::PersistFailed { plans, error } => {
                for id in plans {
                    if let Some(mut run) = self.plans.remove(&id) {
                        *ctx.in_flight = ctx.in_flight.saturating_sub(run.in_flight as usize);
                        ctx.out.refused.push((
                            id,
                            Refusal::StoreFailed(format!(
                                "stopped executing plan {id}: the store failed: {error}"
                            )),
                            run.waiter.take(),
                        ));
                    }
                }
                None
            }
        };
        if let Some(id) = touched {
            self.forget_if_ended(id);
        }
        self.dispatch(now);
    }

    fn forget_if_ended(&mut self, id: PlanId) {
        if self.plans.get(&id).is_some_and(|r| r.ended) {
            self.plans.remove(&id);
        }
    }

    /// Starts ready steps while there is room.
    fn dispatch(&mut self, now: Millis) {
        let mut ctx = self.queue.ctx(now);
        let mut touched = Vec::new();
        while !self.terminating && *ctx.in_flight < self.limit {
            let Some((plan, step)) = ctx.ready.pop_front() else {
                break;
            };
            if let Some(run) = self.plans.get_mut(&plan) {
                run.start(step as usize, &mut ctx);
                run.progress(&mut ctx);
                if run.ended {
                    touched.push(plan);
                }
            }
        }
        for id in touched {
            self.forget_if_ended(id);
        }
    }

    /// Takes what was decided since the last call.
    pub fn take(&mut self) -> Actions {
        std::mem::take(&mut self.queue.out)
    }
}

#[cfg(test)]
mod tests;
