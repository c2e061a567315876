//! Taking up a plan from what the store holds: a fresh start, an operator's resume or cancel
//! of a paused plan, or recovery after the process that ran it died.
//!
//! After a crash, a step found `running` is re-run if its task is idempotent (with the same
//! attempt number), and otherwise becomes `error` ("abnormal termination", as in Dynflow) and
//! the plan pauses for an operator. A step found `reverting` has its revert run again. A step
//! found `suspended` keeps waiting, and its timeout — stored with it — still fires.

use super::plan_run::{Bookkeeping, PlanRun, RevertScope, StepRun, Stopping};
use super::{Ctx, FlowCache, Intent, Rescue, Timer, Waiter, Work, WorkItem};
use crate::director::Input;
use std::collections::HashMap;
use std::time::Duration;
use weft_model::plan;
use weft_model::{step, Failure};
use weft_store::PlanSnapshot;

impl PlanRun {
    /// Builds the run of a stored plan and moves it to `running`; refuses, with Dynflow's
    /// message, a plan that cannot be executed.
    pub(crate) fn recover(
        snapshot: PlanSnapshot,
        rescue: Rescue,
        intent: Intent,
        started: bool,
        waiter: Option<Waiter>,
        flows: &mut FlowCache,
        ctx: &mut Ctx<'_>,
    ) -> Result<PlanRun, (String, Option<Waiter>)> {
        let PlanSnapshot {
            plan: record,
            steps,
        } = snapshot;
        let id = record.id;
        let was = record.state;
        if let Err(why) = startable(id, was, intent) {
            return Err((why, waiter));
        }
        if steps.len() != record.flow.steps.len() {
            return Err((
                format!("cannot execute plan {id}: its stored steps do not match its flow"),
                waiter,
            ));
        }
        let rescue = record.flow.on_error.unwrap_or(rescue);
        let (flow, dependents) = flows.intern(record.flow);
        let mut values: HashMap<String, serde_json::Value> = record.inputs.into_iter().collect();
        for (i, s) in steps.iter().enumerate() {
            if s.state == step::State::Success {
                if let Some(out) = &s.output {
                    for p in &flow.steps[i].provides {
                        if let Some(v) = out.get(p) {
                            values.insert(p.clone(), v.clone());
                        }
                    }
                }
            }
        }
        let bookkeeping: Bookkeeping =
            serde_json::from_value(record.bookkeeping).unwrap_or_default();
        let step_runs: Vec<StepRun> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let waiting = flow.steps[i]
                    .deps
                    .iter()
                    .filter(|&&d| steps[d as usize].state != step::State::Success)
                    .count();
                StepRun::from_record(s, waiting as u32)
            })
            .collect();
        let settled = step_runs
            .iter()
            .filter(|s| matches!(s.state, step::State::Success | step::State::Skipped))
            .count();
        let mut run = PlanRun {
            id,
            flow,
            dependents,
            state: was,
            steps: step_runs,
            values,
            bookkeeping,
            rescue,
            stopping: Stopping::No,
            in_flight: 0,
            settled,
            waiter,
            first_failure: None,
            ended: false,
            slot: super::plan_run::Slot::Free,
        };

        // The plan's own moves: a plan found running was abandoned by a dead process; like
        // Dynflow's invalidation, it passes through paused.
        if was == plan::State::Running && !started {
            run.set_state(
                plan::State::Paused,
                "taken over: the process executing it is gone".into(),
                ctx,
            );
        }
        let why = match (was, intent) {
            (_, Intent::Cancel) => "cancelling, by an operator",
            (plan::State::Planned, _) => "started",
            _ => "resumed",
        };
        // A new plan under a limit stays `planned` until its slots are granted: it has not
        // started, and its start lands with its first steps' (one write less).
        let waits =
            intent == Intent::Run && was == plan::State::Planned && !run.flow.limits.is_none();
        if !waits && !started {
            run.set_state(plan::State::Running, why.into(), ctx);
        }
        if run.has_limits() {
            // Slots left by a process that ran it before are not this run's (a plan never
            // started has none).
            if was != plan::State::Planned && !started {
                ctx.out.changes.push(weft_store::Change::Release {
                    plan: id,
                    step: None,
                });
            }
            if intent == Intent::Run && !run.flow.limits.is_none() {
                run.ask_plan_slot(ctx);
            }
        }

        let resumed_by_operator = was == plan::State::Paused;
        if intent == Intent::Cancel {
            run.cancel_remaining(ctx);
        }
        run.settle_interrupted(resumed_by_operator, ctx);
        run.resume_reverts(ctx);
        if run.first_failure.is_none() {
            run.first_failure = run
                .steps
                .iter()
                .find(|s| s.state == step::State::Error)
                .and_then(|s| s.failure.clone());
        }
        run.mark_what_can_run(resumed_by_operator, ctx);
        Ok(run)
    }

    /// Steps the dead run left in the middle: an interrupted idempotent step runs again, any
    /// other becomes `error` ("abnormal termination") and the plan pauses; a suspended step's
    /// deadline is armed again; an operator's resume gives failed steps a fresh budget and
    /// failed reverts another try.
    fn settle_interrupted(&mut self, resumed_by_operator: bool, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        for i in 0..self.steps.len() {
            match self.steps[i].state {
                step::State::Running => {
                    if self.flow.steps[i].idempotent {
                        self.record(i, step::State::Pending, ctx, |s| s.interrupted = true);
                    } else {
                        let f = Failure::new(
                            "interrupted",
                            "abnormal termination (previous state: running); the task is not idempotent, so it was not re-run",
                        );
                        self.first_failure.get_or_insert_with(|| f.clone());
                        self.record(i, step::State::Error, ctx, |s| {
                            s.failure = Some(f);
                            s.ended_at = Some(now);
                        });
                        self.stopping = Stopping::Pause;
                    }
                }
                step::State::Suspended => {
                    if let Some(at) = self.steps[i].deadline {
                        let after = Duration::from_millis((at - now).max(0) as u64);
                        ctx.out.timers.push(Timer {
                            after,
                            input: Input::Deadline {
                                plan: self.id,
                                step: i as u32,
                                at,
                            },
                        });
                    }
                }
                step::State::Error if resumed_by_operator && !self.reverting(i) => {
                    // The operator asked for the failed steps to run again: a fresh budget,
                    // and a fresh chance for auto-rescue.
                    self.steps[i].budget_from = self.steps[i].attempt + 1;
                }
                step::State::RevertFailed if resumed_by_operator => {
                    self.record(i, step::State::Reverting, ctx, |s| s.started_at = Some(now));
                }
                _ => {}
            }
        }
    }

    /// Reverts that were under way (or that the operator asked to retry) are sent again.
    fn resume_reverts(&mut self, ctx: &mut Ctx<'_>) {
        let needs_revert = self.steps.iter().any(|s| s.state == step::State::Reverting);
        if needs_revert && self.bookkeeping.revert.is_none() {
            let cause = self
                .steps
                .iter()
                .find_map(|s| s.failure.clone().filter(|_| s.state == step::State::Error))
                .unwrap_or_else(|| Failure::new("recovered", "revert resumed after a restart"));
            self.bookkeeping.revert = Some(RevertScope {
                subflow: None,
                cause,
            });
        }
        // Re-send reverts that were under way (or that the operator asked to retry).
        for i in 0..self.steps.len() {
            if self.steps[i].state == step::State::Reverting {
                let cause = self
                    .bookkeeping
                    .revert
                    .as_ref()
                    .map(|r| r.cause.clone())
                    .unwrap_or_else(|| Failure::new("recovered", "revert resumed after a restart"));
                self.in_flight += 1;
                ctx.push_work(WorkItem {
                    plan: self.id,
                    flow: self.flow.clone(),
                    step: i as u32,
                    attempt: self.steps[i].attempt,
                    inputs: self.inputs(i).unwrap_or_default(),
                    work: Work::Revert {
                        result: self.steps[i].output.clone(),
                        cause,
                    },
                    resume: None,
                });
            }
        }
    }

    /// Marks ready what can run now; a failed step out of budget goes to its rescue.
    fn mark_what_can_run(&mut self, resumed_by_operator: bool, ctx: &mut Ctx<'_>) {
        // What can run now.
        for i in 0..self.steps.len() {
            let s = &self.steps[i];
            match s.state {
                step::State::Pending if s.waiting == 0 => self.mark_ready(i, ctx),
                // Outside a subflow being reverted for its retry, a failed step goes on as it
                // would have without the crash.
                step::State::Error if !self.reverting(i) && self.stopping == Stopping::No => {
                    if resumed_by_operator || self.budget_left(i) {
                        self.mark_ready(i, ctx);
                    } else {
                        let f = s
                            .failure
                            .clone()
                            .unwrap_or_else(|| Failure::new("error", "failed"));
                        self.exhausted(i, f, ctx);
                    }
                }
                _ => {}
            }
        }
    }

    /// An operator's cancel: everything that did not complete is cancelled, and a revert of
    /// what did begins.
    fn cancel_remaining(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        let cause = Failure::new("cancelled", "cancelled by an operator");
        for i in 0..self.steps.len() {
            let to = match self.steps[i].state {
                step::State::Pending | step::State::Error | step::State::Suspended => {
                    step::State::Cancelled
                }
                step::State::RevertFailed => step::State::Reverting,
                _ => continue,
            };
            self.record(i, to, ctx, |s| {
                s.ended_at = Some(now);
                s.deadline = None;
            });
        }
        if self
            .bookkeeping
            .revert
            .as_ref()
            .is_none_or(|r| r.subflow.is_some())
        {
            self.bookkeeping.revert = Some(RevertScope {
                subflow: None,
                cause: cause.clone(),
            });
            self.persist_bookkeeping(ctx);
        }
        self.first_failure.get_or_insert(cause);
    }
}

/// Whether a plan in state `was` may be taken up for `intent` (Dynflow's refusals).
fn startable(id: weft_model::PlanId, was: plan::State, intent: Intent) -> Result<(), String> {
    match (was, intent) {
        (plan::State::Planned | plan::State::Paused | plan::State::Running, Intent::Run) => {}
        (plan::State::Paused, Intent::Cancel) => {}
        (plan::State::Stopped, _) => return Err(format!("cannot execute plan {id}: it's stopped")),
        (other, Intent::Run) => return Err(format!("cannot execute plan {id}: it is {other}")),
        (other, Intent::Cancel) => {
            return Err(format!(
                "cannot cancel plan {id}: it is {other}; only a paused plan is cancelled"
            ))
        }
    }
    Ok(())
}
