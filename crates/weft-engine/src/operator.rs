//! What an operator does to a plan no process is executing, as pure functions from the stored
//! plan to the changes to persist: halt, cancel (of a plan that never started), and skip.
//! Plans that a process is executing are acted on through that process instead (its mailbox).

use std::collections::VecDeque;
use weft_model::plan;
use weft_model::{step, Failure, Millis};
use weft_store::{Change, PlanSnapshot, StepRecord};

/// Why an operator's action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

fn step_change(
    snap: &PlanSnapshot,
    s: &StepRecord,
    to: step::State,
    now: Millis,
    failure: Option<Failure>,
) -> Change {
    let rec = StepRecord {
        state: to,
        ended_at: Some(now),
        deadline: None,
        failure: failure.or(s.failure.clone()),
        ..s.clone()
    };
    Change::Step {
        plan: snap.plan.id,
        from: s.state,
        step: rec,
        at: now,
    }
}

/// Halting a plan that is not being executed: it stops; steps left running (by a process that
/// died) are cancelled. Dynflow halts a plan in any state but `stopped`.
pub fn halt(snap: &PlanSnapshot, now: Millis) -> Result<Vec<Change>, Refusal> {
    let id = snap.plan.id;
    let from = snap.plan.state;
    if from == plan::State::Stopped {
        return Err(Refusal(format!(
            "plan {id} is already stopped; there is nothing to halt"
        )));
    }
    let halted = Failure::new("halted", "cancelled: the plan was halted");
    let mut changes: Vec<Change> = snap
        .steps
        .iter()
        .filter(|s| matches!(s.state, step::State::Running | step::State::Reverting))
        .map(|s| step_change(snap, s, step::State::Cancelled, now, Some(halted.clone())))
        .collect();
    changes.push(Change::plan_state(id, from, plan::State::Stopped, now));
    Ok(changes)
}

/// Cancelling a plan that never started (`planned` or `scheduled`): its steps are cancelled
/// and it stops with result `cancelled`, as Dynflow cancels a scheduled plan. A paused plan is
/// cancelled by executing it with the cancel intent, since what completed must be reverted.
pub fn cancel_unstarted(snap: &PlanSnapshot, now: Millis) -> Result<Vec<Change>, Refusal> {
    let id = snap.plan.id;
    let from = snap.plan.state;
    if !matches!(
        from,
        plan::State::Planned | plan::State::Scheduled | plan::State::Pending
    ) {
        return Err(Refusal(format!(
            "plan {id} is {from}; only a plan that has not started can be cancelled this way"
        )));
    }
    let cancelled = Failure::new("cancelled", "cancelled by an operator before it started");
    let mut changes: Vec<Change> = snap
        .steps
        .iter()
        .filter(|s| s.state == step::State::Pending)
        .map(|s| {
            step_change(
                snap,
                s,
                step::State::Cancelled,
                now,
                Some(cancelled.clone()),
            )
        })
        .collect();
    changes.push(Change::plan_state(id, from, plan::State::Stopped, now));
    Ok(changes)
}

/// Skipping a failed (or pending) step of a paused plan: it and, transitively, every pending
/// step that depends on it become `skipped`; a later resume runs the rest.
pub fn skip(snap: &PlanSnapshot, index: usize, now: Millis) -> Result<Vec<Change>, Refusal> {
    let id = snap.plan.id;
    if snap.plan.state != plan::State::Paused {
        return Err(Refusal(format!(
            "plan {id} is {}; only a paused plan's steps can be skipped",
            snap.plan.state
        )));
    }
    let target = &snap.steps[index];
    if !matches!(target.state, step::State::Error | step::State::Pending) {
        return Err(Refusal(format!(
            "step `{}` of plan {id} is {}; only a failed or pending step can be skipped",
            target.name, target.state
        )));
    }
    let dependents = snap.plan.flow.dependents();
    let mut changes = Vec::new();
    let mut queue = VecDeque::from([index]);
    let mut seen = vec![false; snap.steps.len()];
    while let Some(i) = queue.pop_front() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        let s = &snap.steps[i];
        match s.state {
            step::State::Error => {
                changes.push(step_change(snap, s, step::State::Skipping, now, None));
                let skipping = StepRecord {
                    state: step::State::Skipping,
                    ..s.clone()
                };
                changes.push(step_change(
                    snap,
                    &skipping,
                    step::State::Skipped,
                    now,
                    None,
                ));
            }
            step::State::Pending => {
                changes.push(step_change(snap, s, step::State::Skipped, now, None))
            }
            _ => continue,
        }
        queue.extend(dependents[i].iter().map(|&d| d as usize));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use weft_model::flow::FlowBuilder;
    use weft_store::NewPlan;

    fn snapshot(state: plan::State, steps: &[step::State]) -> PlanSnapshot {
        let flow = FlowBuilder::linear("l")
            .task("a", "t", "1", |t| t)
            .task("b", "t", "1", |t| t)
            .task("c", "t", "1", |t| t)
            .build()
            .expect("valid");
        let (mut plan, mut records) = NewPlan::new(flow, BTreeMap::new()).records();
        plan.state = state;
        for (r, s) in records.iter_mut().zip(steps) {
            r.state = *s;
        }
        PlanSnapshot {
            plan,
            steps: records,
        }
    }

    fn moves(changes: &[Change]) -> Vec<(Option<u32>, String)> {
        changes
            .iter()
            .map(|c| match c {
                Change::Step { step, .. } => (Some(step.index), step.state.to_string()),
                Change::Plan { to, .. } => (None, to.to_string()),
                Change::Group { step, .. } => (Some(*step), "group".into()),
                Change::Bookkeeping { .. } => (None, "phase".into()),
                Change::Reply { .. } => (None, "reply".into()),
                Change::Unlock { .. } => (None, "unlock".into()),
                Change::Release { .. } => (None, "release".into()),
            })
            .collect()
    }

    #[test]
    fn skipping_a_failed_step_skips_what_depends_on_it() {
        use step::State::*;
        let snap = snapshot(plan::State::Paused, &[Success, Error, Pending]);
        let changes = skip(&snap, 1, 5).expect("skip");
        assert_eq!(
            moves(&changes),
            vec![
                (Some(1), "skipping".into()),
                (Some(1), "skipped".into()),
                (Some(2), "skipped".into())
            ]
        );
    }

    #[test]
    fn only_failed_steps_of_paused_plans_are_skipped() {
        use step::State::*;
        let running = snapshot(plan::State::Running, &[Success, Error, Pending]);
        assert!(skip(&running, 1, 5)
            .unwrap_err()
            .0
            .contains("only a paused plan"));
        let paused = snapshot(plan::State::Paused, &[Success, Error, Pending]);
        assert!(skip(&paused, 0, 5).unwrap_err().0.contains("step `a`"));
    }

    #[test]
    fn halting_stops_any_plan_but_a_stopped_one() {
        use step::State::*;
        let snap = snapshot(plan::State::Running, &[Success, Running, Pending]);
        let changes = halt(&snap, 5).expect("halt");
        assert_eq!(
            moves(&changes),
            vec![(Some(1), "cancelled".into()), (None, "stopped".into())]
        );
        let stopped = snapshot(plan::State::Stopped, &[Success, Success, Success]);
        assert!(halt(&stopped, 5).unwrap_err().0.contains("already stopped"));
    }

    #[test]
    fn cancelling_a_scheduled_plan_cancels_its_steps() {
        use step::State::*;
        let snap = snapshot(plan::State::Scheduled, &[Pending, Pending, Pending]);
        let changes = cancel_unstarted(&snap, 5).expect("cancel");
        assert_eq!(changes.len(), 4);
        assert!(cancel_unstarted(
            &snapshot(plan::State::Paused, &[Error, Pending, Pending]),
            5
        )
        .is_err());
    }
}
