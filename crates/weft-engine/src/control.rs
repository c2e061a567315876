//! What an operator asks of a stored plan, from wherever they ask (the CLI, the HTTP API): halt
//! it, inhibit it, cancel one that has not started, skip a failed step, deliver an event to a
//! suspended step, take over a plan whose executor is gone — and prune old stopped plans. A plan that a live process executes
//! is acted on through that process (its mailbox, answered within a wait); one that no live
//! process holds, directly in the store ([`crate::operator`]'s pure functions).

use crate::{operator, owner};
use std::time::Duration;
use weft_model::{duration, now_millis, plan, step, PlanId};
use weft_store::{Change, Instruction, Reply, SharedStore};

/// The most plans one prune transaction deletes: short transactions, so nodes keep working
/// between them.
pub const PRUNE_BATCH: u32 = 500;

/// Deletes stopped plans that ended more than `older_than` ago — with their steps, history,
/// mailbox and output — in batches of [`PRUNE_BATCH`]; returns how many. Plans that a
/// scheduled plan waits for are kept.
pub async fn prune(store: &SharedStore, older_than: Duration) -> Result<usize, weft_store::Error> {
    let age = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
    let before = now_millis().saturating_sub(age);
    let mut total = 0;
    loop {
        let batch = store.prune_plans(before, PRUNE_BATCH).await?.len();
        total += batch;
        if batch < PRUNE_BATCH as usize {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// A new plan of `id`'s flow and inputs that runs again from step `from` (Temporal's reset,
/// DBOS's fork): every step that is neither `from` nor downstream of it and succeeded in the
/// original keeps its output — copied, its history saying from which plan — and `from` and
/// its dependents run afresh. The new plan is stored locked by `owner` (so no node takes it
/// before its copies are in); the caller executes it or releases it for nodes.
pub async fn rerun(
    store: &SharedStore,
    id: PlanId,
    from: &str,
    owner: &str,
) -> Result<PlanId, ControlError> {
    let original = store.load_plan(id).await?;
    let start = step_index(&original, from)?;
    let flow = &original.plan.flow;
    let dependents = flow.dependents();
    let mut again = vec![false; flow.steps.len()];
    let mut todo = vec![start];
    while let Some(i) = todo.pop() {
        if !std::mem::replace(&mut again[i], true) {
            todo.extend(dependents[i].iter().map(|&d| d as usize));
        }
    }
    let mut new = weft_store::NewPlan::new(flow.clone(), original.plan.inputs.clone());
    new.owner = Some(owner.to_string());
    let new_id = new.id;
    store.create_plan(new).await?;
    let now = now_millis();
    let mut changes = Vec::new();
    for (i, old) in original.steps.iter().enumerate() {
        if again.get(i).copied().unwrap_or(true) || old.state != step::State::Success {
            continue;
        }
        let mut running = weft_store::StepRecord::pending(old.index, old.name.clone());
        running.state = step::State::Running;
        running.attempt = 1;
        running.started_at = old.started_at.or(Some(now));
        let mut done = running.clone();
        done.state = step::State::Success;
        done.ended_at = old.ended_at.or(Some(now));
        done.output = old.output.clone();
        done.warning = old.warning.clone();
        changes.push(Change::Step {
            plan: new_id,
            from: step::State::Pending,
            step: running,
            at: now,
        });
        changes.push(Change::Step {
            plan: new_id,
            from: step::State::Running,
            step: done,
            at: now,
        });
    }
    if !changes.is_empty() {
        store
            .apply(&format!("copied from plan {id}"), changes)
            .await?;
    }
    Ok(new_id)
}

/// How long the process executing a plan has to answer a halt.
pub const HALT_WAIT: Duration = Duration::from_secs(30);

/// Why an operator's request was not carried out. Nothing changed in any case.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The request names something the plan lacks (a step), or its data is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The plan, as it is, cannot do that: a state it is not in, a step it lacks, an event
    /// it cannot take.
    #[error("{0}")]
    Refused(String),
    /// The process executing the plan did not answer in time (the request was withdrawn).
    #[error("{0}")]
    NoAnswer(String),
    /// The store failed, or has no such plan.
    #[error(transparent)]
    Store(#[from] weft_store::Error),
}

/// The index of the step named `name`, or a refusal that lists the plan's steps.
pub fn step_index(snap: &weft_store::PlanSnapshot, name: &str) -> Result<usize, ControlError> {
    snap.steps
        .iter()
        .position(|s| s.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = snap.steps.iter().map(|s| s.name.as_str()).collect();
            ControlError::Invalid(format!(
                "plan {} has no step `{name}`; its steps are: {}",
                snap.plan.id,
                names.join(", ")
            ))
        })
}

/// Releases a plan whose execution lock is held by a process that is gone; refuses one that a
/// live process executes.
pub async fn take_over(store: &SharedStore, id: PlanId) -> Result<(), ControlError> {
    if let Some(holder) = store.lock_owner(id).await? {
        if !owner::is_alive(store, &holder).await? {
            store.release_lock(id, None).await?;
        } else {
            let state = store.load_plan(id).await?.plan.state;
            return Err(ControlError::Refused(format!(
                "plan {id} is {state} and being executed by {holder}, which is alive"
            )));
        }
    }
    Ok(())
}

/// Stops a plan now (Dynflow's halt): the execution-inhibition lock first, so no one starts
/// it again; then through the process executing it, or in the store when none is.
pub async fn halt(store: &SharedStore, id: PlanId, by: &str) -> Result<(), ControlError> {
    let snap = store.load_plan(id).await?;
    if snap.plan.state == plan::State::Stopped {
        return Err(ControlError::Refused(format!(
            "plan {id} is already stopped; there is nothing to halt"
        )));
    }
    store.inhibit(id).await?;
    match owner::live_holder(store, id).await? {
        Some(holder) => {
            let message = store.post(id, Instruction::Halt).await?;
            match weft_store::wait_for_reply(&**store, message, HALT_WAIT).await? {
                Reply::Done => Ok(()),
                Reply::Refused(reason) => Err(ControlError::Refused(reason)),
                Reply::Pending => Err(ControlError::NoAnswer(format!(
                    "{holder}, which executes plan {id}, did not answer the halt"
                ))),
            }
        }
        None => {
            let changes =
                operator::halt(&snap, now_millis()).map_err(|r| ControlError::Refused(r.0))?;
            store.apply(by, changes).await?;
            Ok(())
        }
    }
}

/// Cancels a plan that has not started (planned, scheduled or pending): it stops, cancelled,
/// with nothing to revert. A paused plan is cancelled by executing it with
/// [`crate::Intent::Cancel`], which reverts what completed.
pub async fn cancel_unstarted(
    store: &SharedStore,
    id: PlanId,
    by: &str,
) -> Result<(), ControlError> {
    take_over(store, id).await?;
    let snap = store.load_plan(id).await?;
    let changes =
        operator::cancel_unstarted(&snap, now_millis()).map_err(|r| ControlError::Refused(r.0))?;
    store.apply(by, changes).await?;
    Ok(())
}

/// Skips a failed step of a paused plan and every step that depends on it; returns how many
/// steps were skipped (the step itself included). The plan stays paused: resume it next.
pub async fn skip(
    store: &SharedStore,
    id: PlanId,
    step_name: &str,
    by: &str,
) -> Result<usize, ControlError> {
    take_over(store, id).await?;
    let snap = store.load_plan(id).await?;
    let index = step_index(&snap, step_name)?;
    let changes =
        operator::skip(&snap, index, now_millis()).map_err(|r| ControlError::Refused(r.0))?;
    let skipped = changes
        .iter()
        .filter(|c| matches!(c, Change::Step { step, .. } if step.state == step::State::Skipped))
        .count();
    store.apply(by, changes).await?;
    Ok(skipped)
}

/// Delivers an event to a suspended step through the process executing its plan, and waits
/// (up to `wait`) until the step's new state is durable. The data must be a JSON object.
pub async fn event(
    store: &SharedStore,
    id: PlanId,
    step_name: &str,
    data: serde_json::Value,
    optional: bool,
    wait: Duration,
) -> Result<(), ControlError> {
    if !data.is_object() {
        return Err(ControlError::Invalid(
            "an event's data must be a JSON object, like {\"approved\": true}".into(),
        ));
    }
    let snap = store.load_plan(id).await?;
    let index = step_index(&snap, step_name)?;
    let state = snap.steps[index].state;
    if state != step::State::Suspended {
        return Err(ControlError::Refused(format!(
            "step `{step_name}` of plan {id} is {state}, not suspended; it cannot process events"
        )));
    }
    if owner::live_holder(store, id).await?.is_none() {
        return Err(ControlError::Refused(format!(
            "plan {id} is {} and no process is executing it; resume it (weft plans resume) or start a node (weft serve)",
            snap.plan.state
        )));
    }
    let message = store
        .post(
            id,
            Instruction::Event {
                step: index as u32,
                data,
                optional,
            },
        )
        .await?;
    match weft_store::wait_for_reply(&**store, message, wait).await? {
        Reply::Done => Ok(()),
        Reply::Refused(reason) => Err(ControlError::Refused(reason)),
        Reply::Pending => Err(ControlError::NoAnswer(format!(
            "no process took the event within {}; it was withdrawn",
            duration::format(wait)
        ))),
    }
}
