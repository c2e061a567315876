//! One plan under execution: its steps' states, its values, and the decisions that move it —
//! forward (start, finish, retry, suspend and event), backward (revert, in reverse dependency
//! order), and sideways (rescue: pause, skip, fail; halt).

use super::{Completion, Ctx, Dependents, PlanEnd, SlotAsk, Timer, Waiter, Work, WorkItem};
use crate::director::Input;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use weft_model::flow::{Action, Flow, Rescue};
use weft_model::plan::{self, Outcome};
use weft_model::{duration, step, Failure, Millis, PlanId};
use weft_store::{Change, StepRecord};

/// The director's bookkeeping that must survive a crash; stored as the plan's `phase` column.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Bookkeeping {
    /// The revert under way, if any.
    #[serde(default)]
    pub revert: Option<RevertScope>,
    /// Attempts used by each subflow that has been retried (absent: 1).
    #[serde(default)]
    pub subflow_attempts: BTreeMap<u32, u32>,
    /// Steps whose failure a rescue strategy has already handled. A strategy is applied only
    /// to a failure of a step not in this set — Dynflow's guard against rescuing the same
    /// failure for ever; a repeat pauses the plan instead.
    #[serde(default)]
    pub rescued: BTreeSet<u32>,
}

/// What is being reverted and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RevertScope {
    /// `None`: the whole plan (it ends once reverted); `Some(s)`: subflow `s`, which runs
    /// again once reverted.
    pub subflow: Option<u32>,
    /// The failure that started it.
    pub cause: Failure,
}

pub(crate) struct StepRun {
    pub state: step::State,
    pub attempt: u32,
    /// The first attempt of the current retry budget.
    pub budget_from: u32,
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    pub output: Option<Value>,
    pub failure: Option<Failure>,
    pub deadline: Option<Millis>,
    pub warning: Option<String>,
    /// Dependencies not yet successful.
    pub waiting: u32,
    /// Re-run after a crash: the attempt number stays.
    pub interrupted: bool,
    /// For a group step: how far its tasks got.
    pub group: Option<weft_model::group::Progress>,
    /// Its slots, under a concurrency limit or a queue.
    pub slot: Slot,
}

/// Where a plan or a step stands with the slots its limits ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Slot {
    /// None asked for (no limits, or none needed now).
    #[default]
    Free,
    /// Asked for, not yet granted: it waits.
    Asked,
    /// Granted: it may run; given back when it stops running.
    Held,
}

impl StepRun {
    /// The run of a step as stored; `waiting` counts its unfinished dependencies.
    pub(super) fn from_record(r: &StepRecord, waiting: u32) -> StepRun {
        StepRun {
            state: r.state,
            attempt: r.attempt,
            budget_from: 1,
            started_at: r.started_at,
            ended_at: r.ended_at,
            output: r.output.clone(),
            failure: r.failure.clone(),
            deadline: r.deadline,
            warning: r.warning.clone(),
            waiting,
            interrupted: false,
            group: r.group.clone(),
            slot: Slot::Free,
        }
    }

    /// The stored form of step `index` (the name is left out: changes do not carry it).
    pub(super) fn to_record(&self, index: u32) -> StepRecord {
        StepRecord {
            index,
            name: String::new(),
            state: self.state,
            attempt: self.attempt,
            started_at: self.started_at,
            ended_at: self.ended_at,
            output: self.output.clone(),
            failure: self.failure.clone(),
            deadline: self.deadline,
            warning: self.warning.clone(),
            group: self.group.clone(),
        }
    }
}

/// What the plan does once nothing of it is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopping {
    /// Keep going.
    No,
    /// A failure asked for a pause.
    Pause,
    /// A failure asked to stop with result error (rescue `fail`).
    Fail,
}

pub(crate) struct PlanRun {
    pub id: PlanId,
    pub flow: Arc<Flow>,
    pub dependents: Arc<Dependents>,
    pub state: plan::State,
    pub steps: Vec<StepRun>,
    pub values: HashMap<String, Value>,
    pub bookkeeping: Bookkeeping,
    pub rescue: Rescue,
    /// Start nothing new; end as said once nothing is in flight.
    pub stopping: Stopping,
    /// Work items of this plan in flight.
    pub in_flight: u32,
    /// Steps in `success` or `skipped`: when all are, the plan is done.
    pub settled: usize,
    pub waiter: Option<Waiter>,
    pub first_failure: Option<Failure>,
    pub ended: bool,
    /// The plan's own slots (its flow's limits).
    pub slot: Slot,
}

fn is_settled(s: step::State) -> bool {
    matches!(s, step::State::Success | step::State::Skipped)
}

impl PlanRun {
    /// Moves step `i` to `to` through the state machine, then lets `edit` update its fields,
    /// and records the change. Returns false (and records a bug) if the move is illegal.
    pub(super) fn record(
        &mut self,
        i: usize,
        to: step::State,
        ctx: &mut Ctx<'_>,
        edit: impl FnOnce(&mut StepRun),
    ) -> bool {
        let s = &mut self.steps[i];
        let from = s.state;
        if let Err(e) = from.transition(to) {
            ctx.out.illegal.push(format!(
                "plan {} step {}: {e}",
                self.id, self.flow.steps[i].name
            ));
            return false;
        }
        s.state = to;
        if from == step::State::Running && to != step::State::Running && s.slot == Slot::Held {
            s.slot = Slot::Free;
            ctx.out.changes.push(Change::Release {
                plan: self.id,
                step: Some(i as u32),
            });
        }
        if is_settled(from) {
            self.settled -= 1;
        }
        if is_settled(to) {
            self.settled += 1;
        }
        edit(s);
        ctx.out.changes.push(Change::Step {
            plan: self.id,
            from,
            step: s.to_record(i as u32),
            at: ctx.now,
        });
        true
    }

    /// Moves the plan to `to`, recording the change and why.
    pub(super) fn set_state(&mut self, to: plan::State, reason: String, ctx: &mut Ctx<'_>) -> bool {
        match self.state.transition(to) {
            Ok(_) => {
                ctx.out.changes.push(Change::plan_state_because(
                    self.id, self.state, to, ctx.now, reason,
                ));
                self.state = to;
                true
            }
            Err(e) => {
                ctx.out.illegal.push(format!("plan {}: {e}", self.id));
                false
            }
        }
    }

    pub(super) fn persist_bookkeeping(&self, ctx: &mut Ctx<'_>) {
        let bookkeeping = serde_json::to_value(&self.bookkeeping).unwrap_or(Value::Null);
        ctx.out.changes.push(Change::Bookkeeping {
            plan: self.id,
            bookkeeping,
        });
    }

    fn in_subflow(&self, subflow: u32, i: usize) -> bool {
        self.flow.subflows[subflow as usize]
            .steps
            .contains(&(i as u32))
    }

    pub(super) fn in_scope(&self, scope: &RevertScope, i: usize) -> bool {
        scope.subflow.is_none_or(|s| self.in_subflow(s, i))
    }

    /// Whether step `i` is in the scope of the revert under way, if one is.
    pub(super) fn reverting(&self, i: usize) -> bool {
        self.bookkeeping
            .revert
            .as_ref()
            .is_some_and(|scope| self.in_scope(scope, i))
    }

    /// How many of step `i`'s dependencies have not succeeded.
    fn unfinished_deps(&self, i: usize) -> u32 {
        self.flow.steps[i]
            .deps
            .iter()
            .filter(|&&d| self.steps[d as usize].state != step::State::Success)
            .count() as u32
    }

    /// Whether step `i` may start now.
    fn can_start(&self, i: usize) -> bool {
        self.state == plan::State::Running
            && self.stopping == Stopping::No
            && !self.ended
            && self.slot != Slot::Asked
            && !self.reverting(i)
    }

    /// Whether the flow or any of its steps has limits (slots to give back).
    pub(super) fn has_limits(&self) -> bool {
        !self.flow.limits.is_none() || self.flow.steps.iter().any(|s| !s.limits.is_none())
    }

    /// The slots of the flow's limits (`None`) or step `i`'s, keys rendered from its values.
    fn wants(&self, step: Option<usize>) -> Vec<weft_model::limit::SlotWant> {
        let lookup = |name: &str| self.values.get(name).cloned();
        match step {
            None => self
                .flow
                .limits
                .wants(&format!("flow:{}", self.flow.name), &lookup),
            Some(i) => self.flow.steps[i].limits.wants(
                &format!("task:{}/{}", self.flow.name, self.flow.steps[i].name),
                &lookup,
            ),
        }
    }

    /// Asks for the plan's own slots: no step starts until they are held.
    pub(super) fn ask_plan_slot(&mut self, ctx: &mut Ctx<'_>) {
        self.slot = Slot::Asked;
        ctx.out.slots.push(SlotAsk {
            plan: self.id,
            step: None,
            wants: self.wants(None),
        });
    }

    /// Slots came: the plan's (its steps that can run are queued) or a step's (queued again,
    /// or its slots given back if it can no longer start).
    pub(super) fn slot_granted(&mut self, step: Option<u32>, ctx: &mut Ctx<'_>) {
        match step {
            None => {
                if self.slot != Slot::Asked {
                    return;
                }
                self.slot = Slot::Held;
                if self.state == plan::State::Planned {
                    self.set_state(plan::State::Running, "started".into(), ctx);
                }
                for i in 0..self.steps.len() {
                    let s = &self.steps[i];
                    let ready = match s.state {
                        step::State::Pending => s.waiting == 0,
                        step::State::Error => self.stopping == Stopping::No && self.budget_left(i),
                        _ => false,
                    };
                    if ready {
                        self.mark_ready(i, ctx);
                    }
                }
            }
            Some(i) => {
                let i = i as usize;
                let Some(s) = self.steps.get_mut(i) else {
                    return;
                };
                if s.slot != Slot::Asked {
                    return;
                }
                s.slot = Slot::Held;
                if self.can_start(i) {
                    ctx.ready.push_back((self.id, i as u32));
                } else {
                    self.give_back(i, ctx);
                }
            }
        }
    }

    /// Step `i` will not start now: the slots it holds or asked for go back.
    fn give_back(&mut self, i: usize, ctx: &mut Ctx<'_>) {
        if self.steps[i].slot != Slot::Free {
            self.steps[i].slot = Slot::Free;
            ctx.out.changes.push(Change::Release {
                plan: self.id,
                step: Some(i as u32),
            });
        }
    }

    pub(super) fn mark_ready(&self, i: usize, ctx: &mut Ctx<'_>) {
        if self.can_start(i) {
            ctx.ready.push_back((self.id, i as u32));
        }
    }

    pub(super) fn budget_left(&self, i: usize) -> bool {
        let s = &self.steps[i];
        s.attempt + 1 - s.budget_from.min(s.attempt + 1) < self.flow.steps[i].retry.attempts
    }

    /// The values step `i` requires, or the name of one that is missing.
    pub(super) fn inputs(&self, i: usize) -> Result<Map<String, Value>, String> {
        let def = &self.flow.steps[i];
        let mut out = Map::new();
        for name in &def.requires {
            let v = self
                .values
                .get(name)
                .or_else(|| def.defaults.get(name))
                .ok_or_else(|| name.clone())?;
            out.insert(name.clone(), v.clone());
        }
        Ok(out)
    }

    /// Starts step `i` if it is still startable (it came off the ready queue).
    pub(super) fn start(&mut self, i: usize, ctx: &mut Ctx<'_>) {
        let s = &self.steps[i];
        // `waiting` says when to look; the dependencies' states decide.
        let startable = match s.state {
            step::State::Pending | step::State::Error => {
                s.waiting == 0 && self.unfinished_deps(i) == 0
            }
            _ => false,
        };
        if !startable || !self.can_start(i) {
            if self.steps[i].slot == Slot::Held {
                self.give_back(i, ctx);
            }
            return;
        }
        let inputs = match self.inputs(i) {
            Ok(inputs) => inputs,
            Err(missing) => {
                let f = Failure::new(
                    "missing_input",
                    format!("required value `{missing}` is not available"),
                );
                if self.steps[i].state != step::State::Error {
                    let now = ctx.now;
                    self.record(i, step::State::Error, ctx, |s| {
                        s.failure = Some(f.clone());
                        s.ended_at = Some(now);
                    });
                }
                self.exhausted(i, f, ctx);
                return;
            }
        };
        // Under limits, it first waits for its slots; granted, it comes back here.
        if !self.flow.steps[i].limits.is_none() && self.steps[i].slot != Slot::Held {
            if self.steps[i].slot == Slot::Free {
                self.steps[i].slot = Slot::Asked;
                ctx.out.slots.push(SlotAsk {
                    plan: self.id,
                    step: Some(i as u32),
                    wants: self.wants(Some(i)),
                });
            }
            return;
        }
        let s = &self.steps[i];
        let attempt = if s.interrupted {
            s.attempt.max(1)
        } else {
            s.attempt + 1
        };
        // A group interrupted by a crash resumes from where its tasks had got.
        let resume = if s.interrupted { s.group.clone() } else { None };
        let now = ctx.now;
        if !self.record(i, step::State::Running, ctx, |s| {
            s.attempt = attempt;
            s.started_at = Some(now);
            s.ended_at = None;
            s.output = None;
            s.failure = None;
            s.warning = None;
            s.interrupted = false;
            s.group = resume.clone();
        }) {
            return;
        }
        if self.flow.steps[i].action == Action::Gate {
            // Nothing to run: straight to waiting for its event.
            self.suspend(i, Value::Object(Map::new()), ctx);
            return;
        }
        self.in_flight += 1;
        ctx.push_work(WorkItem {
            plan: self.id,
            flow: self.flow.clone(),
            step: i as u32,
            attempt,
            inputs,
            work: Work::Execute,
            resume,
        });
    }

    /// A running group step's tasks moved on: keep it with the step.
    pub(super) fn group_progress(
        &mut self,
        i: usize,
        attempt: u32,
        progress: weft_model::group::Progress,
        ctx: &mut Ctx<'_>,
    ) {
        let Some(s) = self.steps.get_mut(i) else {
            return;
        };
        if s.state != step::State::Running || s.attempt != attempt {
            return;
        }
        s.group = Some(progress.clone());
        ctx.out.changes.push(Change::Group {
            plan: self.id,
            step: i as u32,
            attempt,
            progress,
        });
    }

    /// Step `i` (running) waits for an event, until its timeout if it has one.
    fn suspend(&mut self, i: usize, output: Value, ctx: &mut Ctx<'_>) {
        self.suspend_for(
            i,
            output,
            self.flow.steps[i].wait.and_then(|w| w.timeout),
            ctx,
        );
    }

    fn suspend_for(
        &mut self,
        i: usize,
        output: Value,
        timeout: Option<Duration>,
        ctx: &mut Ctx<'_>,
    ) {
        let deadline = timeout.map(|t| weft_model::after(ctx.now, t));
        if self.record(i, step::State::Suspended, ctx, |s| {
            s.output = Some(output);
            s.deadline = deadline;
        }) {
            if let (Some(at), Some(t)) = (deadline, timeout) {
                ctx.out.timers.push(Timer {
                    after: t,
                    input: Input::Deadline {
                        plan: self.id,
                        step: i as u32,
                        at,
                    },
                });
            }
        }
    }

    /// Step `i` succeeded with `output` (and perhaps a warning): record it, pass its values
    /// on, and release what waited for it.
    fn succeed(&mut self, i: usize, output: Value, warning: Option<String>, ctx: &mut Ctx<'_>) {
        for p in &self.flow.steps[i].provides {
            if let Some(v) = output.get(p) {
                self.values.insert(p.clone(), v.clone());
            }
        }
        let now = ctx.now;
        self.record(i, step::State::Success, ctx, |s| {
            s.output = Some(output);
            s.warning = warning;
            s.deadline = None;
            s.ended_at = Some(now);
        });
        let dependents = self.dependents.clone();
        for &d in &dependents[i] {
            let dep = &mut self.steps[d as usize];
            dep.waiting = dep.waiting.saturating_sub(1);
            if dep.waiting == 0 && dep.state == step::State::Pending {
                self.mark_ready(d as usize, ctx);
            }
        }
    }

    /// Step `i` (running or suspended) failed: retry it after its backoff, or rescue.
    fn fail(&mut self, i: usize, failure: Failure, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        self.record(i, step::State::Error, ctx, |s| {
            s.failure = Some(failure.clone());
            s.deadline = None;
            s.ended_at = Some(now);
        });
        if self.can_start(i) && self.budget_left(i) {
            let s = &self.steps[i];
            let retry_no = s.attempt + 1 - s.budget_from.min(s.attempt);
            let after = self.flow.steps[i]
                .retry
                .delay_before(retry_no.max(1), ctx.jitter());
            ctx.out.timers.push(Timer {
                after,
                input: Input::RetryDue {
                    plan: self.id,
                    step: i as u32,
                },
            });
        } else {
            self.exhausted(i, failure, ctx);
        }
    }

    /// An execution reported back.
    pub(super) fn executed(
        &mut self,
        i: usize,
        attempt: u32,
        result: Result<Completion, Failure>,
        ctx: &mut Ctx<'_>,
    ) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let s = &self.steps[i];
        if s.state != step::State::Running || s.attempt != attempt {
            return; // a stale report (the step was halted, or this is an older attempt)
        }
        match result {
            Ok(Completion::Done { output, warning }) => {
                if self.flow.steps[i].wait.is_some() {
                    self.suspend(i, output, ctx);
                } else {
                    self.succeed(i, output, warning, ctx);
                }
            }
            Ok(Completion::Suspend { output, timeout }) => {
                self.suspend_for(i, output, timeout, ctx)
            }
            Err(failure) => self.fail(i, failure, ctx),
        }
    }

    /// An event for step `i`: its data (an object) completes the step's output.
    pub(super) fn event(&mut self, i: usize, data: Value, ctx: &mut Ctx<'_>) -> Result<(), String> {
        let name = &self.flow.steps[i].name;
        let state = self.steps[i].state;
        if state != step::State::Suspended {
            return Err(format!(
                "step `{name}` of plan {} is {state}, not suspended; it cannot process events",
                self.id
            ));
        }
        let Value::Object(data) = data else {
            return Err("event data must be a JSON object".into());
        };
        let mut output = match &self.steps[i].output {
            Some(Value::Object(o)) => o.clone(),
            _ => Map::new(),
        };
        output.extend(data);
        if let Some(missing) = self.flow.steps[i]
            .provides
            .iter()
            .find(|p| !output.contains_key(*p))
        {
            // Refused: the step keeps the output it had.
            return Err(format!(
                "the event has no key `{missing}`, which step `{name}` provides"
            ));
        }
        self.succeed(i, Value::Object(output), None, ctx);
        Ok(())
    }

    /// A suspended step's timeout: if it still waits for that deadline, it fails.
    pub(super) fn deadline(&mut self, i: usize, at: Millis, ctx: &mut Ctx<'_>) {
        let s = &self.steps[i];
        if s.state != step::State::Suspended || s.deadline != Some(at) {
            return;
        }
        let waited = s
            .started_at
            .map(|t| Duration::from_millis((at - t).max(0) as u64))
            .unwrap_or_default();
        let f = Failure::new(
            "timeout",
            format!("no event arrived within {}", duration::format(waited)),
        );
        self.fail(i, f, ctx);
    }

    /// A retry's delay has passed.
    pub(super) fn retry_due(&mut self, i: usize, ctx: &mut Ctx<'_>) {
        let s = &self.steps[i];
        let due =
            s.state == step::State::Error || (s.state == step::State::Pending && s.waiting == 0);
        if due {
            self.mark_ready(i, ctx);
        }
    }

    /// Step `i` failed for good: retry its subflow, or rescue the plan.
    pub(super) fn exhausted(&mut self, i: usize, failure: Failure, ctx: &mut Ctx<'_>) {
        if self.first_failure.is_none() {
            self.first_failure = Some(failure.clone());
        }
        match &self.bookkeeping.revert {
            Some(scope) if scope.subflow.is_none() => return,
            Some(scope) if self.in_scope(scope, i) => return,
            Some(_) => {}
            None => {
                for s in self.flow.subflow_chain(i) {
                    let used = self
                        .bookkeeping
                        .subflow_attempts
                        .get(&s)
                        .copied()
                        .unwrap_or(1);
                    if used < self.flow.subflows[s as usize].retry.attempts {
                        self.bookkeeping.revert = Some(RevertScope {
                            subflow: Some(s),
                            cause: failure,
                        });
                        self.persist_bookkeeping(ctx);
                        return;
                    }
                }
            }
        }
        if self.rescue == Rescue::Pause || !self.bookkeeping.rescued.insert(i as u32) {
            // Pause is no strategy to apply; and a step already rescued once is not rescued
            // again: the plan waits for an operator.
            self.stopping = Stopping::Pause;
            return;
        }
        self.persist_bookkeeping(ctx);
        match self.rescue {
            Rescue::Revert => {
                self.bookkeeping.revert = Some(RevertScope {
                    subflow: None,
                    cause: failure,
                });
                self.persist_bookkeeping(ctx);
            }
            Rescue::Fail => self.stopping = Stopping::Fail,
            Rescue::Skip => self.skip(i, ctx),
            Rescue::Pause => {}
        }
    }

    /// Skips step `i` (failed or pending) and, transitively, every pending step that depends
    /// on it.
    pub(super) fn skip(&mut self, i: usize, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        match self.steps[i].state {
            step::State::Error => {
                self.record(i, step::State::Skipping, ctx, |_| {});
                self.record(i, step::State::Skipped, ctx, |s| s.ended_at = Some(now));
            }
            step::State::Pending => {
                self.record(i, step::State::Skipped, ctx, |s| s.ended_at = Some(now));
            }
            _ => return,
        }
        let dependents = self.dependents.clone();
        for &d in &dependents[i] {
            if self.steps[d as usize].state == step::State::Pending {
                self.skip(d as usize, ctx);
            }
        }
    }

    /// A revert reported back.
    pub(super) fn reverted(&mut self, i: usize, result: Result<(), Failure>, ctx: &mut Ctx<'_>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.steps[i].state != step::State::Reverting {
            return;
        }
        let now = ctx.now;
        match result {
            Ok(()) => self.record(i, step::State::Reverted, ctx, |s| s.ended_at = Some(now)),
            Err(f) => self.record(i, step::State::RevertFailed, ctx, |s| {
                s.failure = Some(f.with_kind("revert"));
                s.ended_at = Some(now);
            }),
        };
    }

    /// Halt: running and reverting steps are cancelled (the caller kills their processes),
    /// suspended ones stay as they are, and the plan stops now.
    pub(super) fn halt(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        for i in 0..self.steps.len() {
            if matches!(
                self.steps[i].state,
                step::State::Running | step::State::Reverting
            ) {
                self.record(i, step::State::Cancelled, ctx, |s| {
                    s.ended_at = Some(now);
                    s.failure = Some(Failure::new("halted", "cancelled: the plan was halted"));
                });
                ctx.out.kill.push((self.id, i as u32));
            }
        }
        self.end(plan::State::Stopped, "halted".into(), ctx);
    }

    /// Decides what follows from the plan's current state: finish, pause, or revert more.
    pub(super) fn progress(&mut self, ctx: &mut Ctx<'_>) {
        if self.ended || self.state != plan::State::Running {
            return;
        }
        if let Some(scope) = self.bookkeeping.revert.clone() {
            self.advance_revert(&scope, ctx);
            // A subflow reverted for its retry clears the scope; if the plan is stopping, it
            // stops now rather than wait for a retry that may not start.
            if self.ended || self.bookkeeping.revert.is_some() {
                return;
            }
        }
        match self.stopping {
            Stopping::Pause if self.in_flight == 0 => {
                let why = self.failure_note("paused for an operator");
                self.end(plan::State::Paused, why, ctx)
            }
            Stopping::Fail if self.in_flight == 0 => {
                let why = self.failure_note("stopped by the fail rescue");
                self.end(plan::State::Stopped, why, ctx)
            }
            Stopping::No if self.settled == self.steps.len() => {
                self.end(plan::State::Stopped, "every step settled".into(), ctx)
            }
            _ => {}
        }
    }

    fn has_revert(&self, i: usize) -> bool {
        match &self.flow.steps[i].action {
            Action::Command(c) => c.revert.is_some(),
            Action::Task { .. } => true,
            // A group cleans up after itself (its poststop tasks); a gate did nothing.
            Action::Gate | Action::Group(_) => false,
        }
    }

    /// Reverts what can be reverted now: successful steps in scope none of whose dependents
    /// still stand (succeeded, running or reverting). Independent branches go in parallel.
    fn advance_revert(&mut self, scope: &RevertScope, ctx: &mut Ctx<'_>) {
        let members: Vec<usize> = match scope.subflow {
            None => (0..self.steps.len()).collect(),
            Some(s) => self.flow.subflows[s as usize]
                .steps
                .iter()
                .map(|&i| i as usize)
                .collect(),
        };
        // Let running executions finish first.
        if members
            .iter()
            .any(|&i| self.steps[i].state == step::State::Running)
        {
            return;
        }
        // A step still waiting for its event will not get one: it fails, so that what it
        // depends on can be reverted.
        let now = ctx.now;
        for &i in &members {
            if self.steps[i].state == step::State::Suspended {
                let f = Failure::new(
                    "abandoned",
                    "the plan reverted while this step waited for its event",
                );
                self.record(i, step::State::Error, ctx, |s| {
                    s.failure = Some(f);
                    s.deadline = None;
                    s.ended_at = Some(now);
                });
            }
        }
        loop {
            let mut cascaded = false;
            for &i in members.iter().rev() {
                if self.steps[i].state != step::State::Success {
                    continue;
                }
                let blocked = self.dependents[i].iter().any(|&d| {
                    matches!(
                        self.steps[d as usize].state,
                        step::State::Success
                            | step::State::Running
                            | step::State::Reverting
                            | step::State::RevertFailed
                            | step::State::Suspended
                    )
                });
                if blocked {
                    continue;
                }
                let now = ctx.now;
                if self.has_revert(i) {
                    let inputs = self.inputs(i).unwrap_or_default();
                    let result = self.steps[i].output.clone();
                    if self.record(i, step::State::Reverting, ctx, |s| s.started_at = Some(now)) {
                        self.in_flight += 1;
                        ctx.push_work(WorkItem {
                            plan: self.id,
                            flow: self.flow.clone(),
                            step: i as u32,
                            attempt: self.steps[i].attempt,
                            inputs,
                            work: Work::Revert {
                                result,
                                cause: scope.cause.clone(),
                            },
                            resume: None,
                        });
                    }
                } else {
                    self.record(i, step::State::Reverted, ctx, |s| s.ended_at = Some(now));
                    cascaded = true;
                }
            }
            if !cascaded {
                break;
            }
        }
        if members
            .iter()
            .any(|&i| self.steps[i].state == step::State::Reverting)
        {
            return;
        }
        if members
            .iter()
            .any(|&i| self.steps[i].state == step::State::RevertFailed)
        {
            // Steps outside a subflow's revert may still run: start nothing more, and pause
            // once they have reported (a plan never ends with a step it ran left `running`).
            if self.in_flight > 0 {
                self.stopping = Stopping::Pause;
                return;
            }
            self.end(
                plan::State::Paused,
                "paused: a revert failed; resume retries it".into(),
                ctx,
            );
            return;
        }
        match scope.subflow {
            None => {
                let why = format!("reverted: {}", scope.cause.message);
                self.end(plan::State::Stopped, why, ctx)
            }
            Some(s) => self.restart_subflow(s, &members, ctx),
        }
    }

    /// A subflow was reverted for a retry: everything in it goes back to pending and runs again.
    fn restart_subflow(&mut self, s: u32, members: &[usize], ctx: &mut Ctx<'_>) {
        for &i in members {
            if matches!(
                self.steps[i].state,
                step::State::Error | step::State::Reverted
            ) {
                self.record(i, step::State::Pending, ctx, |st| {
                    st.budget_from = st.attempt + 1;
                    st.output = None;
                });
            }
        }
        // The members are no longer `success`: every step that waits on one of them — inside
        // the subflow or after it — counts them again.
        for i in 0..self.steps.len() {
            if self.steps[i].state == step::State::Pending {
                self.steps[i].waiting = self.unfinished_deps(i);
            }
        }
        let used = self
            .bookkeeping
            .subflow_attempts
            .get(&s)
            .copied()
            .unwrap_or(1);
        self.bookkeeping.subflow_attempts.insert(s, used + 1);
        self.bookkeeping.revert = None;
        self.persist_bookkeeping(ctx);
        let after = self.flow.subflows[s as usize]
            .retry
            .delay_before(used, ctx.jitter());
        for &i in members {
            if self.steps[i].state == step::State::Pending && self.steps[i].waiting == 0 {
                ctx.out.timers.push(Timer {
                    after,
                    input: Input::RetryDue {
                        plan: self.id,
                        step: i as u32,
                    },
                });
            }
        }
    }

    /// Ends the plan's execution here in `state` (`stopped` or `paused`).
    /// `what`, with the first failure if there was one.
    fn failure_note(&self, what: &str) -> String {
        match &self.first_failure {
            Some(f) => format!("{what}: {}", f.message),
            None => what.to_string(),
        }
    }

    pub(super) fn end(&mut self, state: plan::State, reason: String, ctx: &mut Ctx<'_>) {
        if !self.set_state(state, reason, ctx) {
            return;
        }
        self.ended = true;
        if self.has_limits() {
            // Every slot it holds or waits for goes back with its end.
            ctx.out.changes.push(Change::Release {
                plan: self.id,
                step: None,
            });
        }
        let end = PlanEnd {
            plan: self.id,
            state,
            outcome: Outcome::derive(self.steps.iter().map(|s| (s.state, s.warning.is_some()))),
            failure: self.first_failure.clone(),
            values: match &self.waiter {
                Some(_) => self
                    .values
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                None => Default::default(),
            },
        };
        ctx.out.ended.push((end, self.waiter.take()));
    }
}
