//! The director: a pure decision loop, after Dynflow's.
//!
//! It owns the in-memory view of every plan it executes. Each call — [`Director::handle`] with
//! an [`Input`] — changes that view through the state machines of `weft-model` and records what
//! must follow in [`Actions`]: store changes to persist, then work items to run, timers to set
//! and plans that ended. The caller persists the changes before it runs the work (write-ahead).
//! The director does no I/O and takes the time as an argument.

mod recover;
mod run;

use run::PlanRun;
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::oneshot;
use weft_model::flow::Flow;
use weft_model::plan::{self, Outcome};
use weft_model::{Failure, Millis, PlanId};
use weft_store::{Change, PlanSnapshot};

/// What to do when a step fails for good (its retries, and its subflows' retries, spent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rescue {
    /// TaskFlow's: undo every completed step in reverse dependency order; the plan ends
    /// `stopped` with result `error`.
    #[default]
    Revert,
    /// Dynflow's: the plan becomes `paused` for an operator.
    Pause,
}

/// Who waits for a plan to end: told how it ended, or why it was refused.
pub type Waiter = oneshot::Sender<Result<PlanEnd, String>>;

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
}

/// An input to the director.
#[derive(Debug)]
pub enum Input {
    /// Start (or resume) executing a plan.
    Start {
        /// The plan as stored.
        snapshot: Box<PlanSnapshot>,
        /// What to do when a step fails for good.
        rescue: Rescue,
        /// Told when the plan ends (or is refused).
        waiter: Option<Waiter>,
    },
    /// An execution finished.
    Executed {
        /// The plan.
        plan: PlanId,
        /// The step.
        step: u32,
        /// The attempt that ran.
        attempt: u32,
        /// Its output, or why it failed.
        result: Result<Value, Failure>,
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
    pub refused: Vec<(PlanId, String, Option<Waiter>)>,
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
    pub fn intern(&mut self, flow: Flow) -> (Arc<Flow>, Arc<Dependents>) {
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
    pub fn push_work(&mut self, item: WorkItem) {
        *self.in_flight += 1;
        self.out.work.push(item);
    }

    /// A number in `[0, 1)` (xorshift), for retry jitter.
    pub fn jitter(&mut self) -> f64 {
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
            queue: Queue {
                rng: seed | 1,
                ..Queue::default()
            },
        }
    }

    /// Ids of the plans being executed.
    pub fn plan_ids(&self) -> impl Iterator<Item = &PlanId> {
        self.plans.keys()
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
                waiter,
            } => {
                let id = snapshot.plan.id;
                if self.plans.contains_key(&id) {
                    ctx.out.refused.push((
                        id,
                        format!("cannot execute plan {id}: it's already running"),
                        waiter,
                    ));
                    return;
                }
                match PlanRun::recover(*snapshot, rescue, waiter, &mut self.flows, &mut ctx) {
                    Ok(mut run) => {
                        run.progress(&mut ctx);
                        self.plans.insert(id, run);
                        Some(id)
                    }
                    Err((reason, waiter)) => {
                        ctx.out.refused.push((id, reason, waiter));
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
            Input::PersistFailed { plans, error } => {
                for id in plans {
                    if let Some(mut run) = self.plans.remove(&id) {
                        *ctx.in_flight = ctx.in_flight.saturating_sub(run.in_flight as usize);
                        ctx.out.refused.push((
                            id,
                            format!("stopped executing plan {id}: the store failed: {error}"),
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
        while *ctx.in_flight < self.limit {
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
