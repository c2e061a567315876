//! `weft plans`: list, show, history, and the operator's actions — halt, cancel, skip, inhibit.

use crate::cli::Global;
use crate::{owner, view, Fail};
use weft_model::{now_millis, plan, step};
use weft_store::{Command, PlanFilter, Reply};

/// Lists plans.
pub(crate) async fn list(
    global: &Global,
    state: Option<plan::State>,
    limit: u32,
) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&global.db).await?;
    let plans = store
        .list_plans(PlanFilter {
            state,
            limit: Some(limit),
        })
        .await?;
    if global.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&plans).map_err(|e| Fail::Other(e.to_string()))?
        );
    } else {
        out!("{}", view::plan_list(&plans));
    }
    Ok(0)
}

/// Shows one plan.
pub(crate) async fn show(global: &Global, id: &str, with_history: bool) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&global.db).await?;
    let id = store.resolve_id(id.to_string()).await?;
    let mut snap = store.load_plan(id).await?;
    let plan = &mut snap.plan;
    plan.flow.redact(&mut plan.inputs);
    let history = if with_history {
        Some(store.history(id).await?)
    } else {
        None
    };
    if global.json {
        let mut value = serde_json::to_value(&snap).map_err(|e| Fail::Other(e.to_string()))?;
        value["result"] = serde_json::Value::String(snap.outcome().to_string());
        if let Some(h) = &history {
            value["history"] = serde_json::to_value(h).map_err(|e| Fail::Other(e.to_string()))?;
        }
        outln!(
            "{}",
            serde_json::to_string_pretty(&value).map_err(|e| Fail::Other(e.to_string()))?
        );
    } else {
        out!("{}", view::plan_detail(&snap, history.as_deref()));
    }
    Ok(0)
}

/// Prints a plan's history: every transition of the plan and its steps, with why.
pub(crate) async fn history(global: &Global, id: &str) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&global.db).await?;
    let id = store.resolve_id(id.to_string()).await?;
    let snap = store.load_plan(id).await?;
    let history = store.history(id).await?;
    if global.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&history).map_err(|e| Fail::Other(e.to_string()))?
        );
    } else {
        out!("{}", view::history(&snap, &history));
    }
    Ok(0)
}

/// Puts an execution-inhibition lock on a plan: no process will execute it again.
pub(crate) async fn inhibit(global: &Global, id: &str) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&global.db).await?;
    let id = store.resolve_id(id.to_string()).await?;
    store.inhibit(id).await?;
    eprintln!("plan {id} is inhibited: it will not be executed again (a start halts it)");
    Ok(0)
}

/// How long an operator command waits for the process executing a plan to answer.
const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Halts a plan: through the process executing it, or directly when none is.
pub(crate) async fn halt(global: &Global, id: &str) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&global.db).await?;
    let id = store.resolve_id(id.to_string()).await?;
    let snap = store.load_plan(id).await?;
    if snap.plan.state == plan::State::Stopped {
        return Err(Fail::Input(format!(
            "plan {id} is already stopped; there is nothing to halt"
        )));
    }
    // Dynflow's halt takes the execution-inhibition lock first, so no one starts it again.
    store.inhibit(id).await?;
    match live_owner(&store, id).await? {
        Some(holder) => {
            let message = store.post(id, Command::Halt).await?;
            match crate::event::wait_for_answer(&store, message, ANSWER_WAIT).await? {
                Reply::Done => {}
                Reply::Refused(reason) => return Err(Fail::Input(reason)),
                Reply::Pending => {
                    return Err(Fail::Other(format!(
                        "{holder}, which executes plan {id}, did not answer the halt"
                    )))
                }
            }
        }
        None => {
            let changes =
                weft_engine::operator::halt(&snap, now_millis()).map_err(|r| Fail::Input(r.0))?;
            store.apply(&owner::me(), changes).await?;
        }
    }
    eprintln!("plan {id} halted");
    Ok(0)
}

/// Cancels a plan that is paused (reverting what completed) or has not started.
pub(crate) async fn cancel(global: &Global, id: &str) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&global.db).await?;
    let id = store.resolve_id(id.to_string()).await?;
    crate::run::take_over(&store, id).await?;
    let snap = store.load_plan(id).await?;
    match snap.plan.state {
        plan::State::Paused => crate::run::cancel_paused(store, id, global).await,
        plan::State::Planned | plan::State::Scheduled | plan::State::Pending => {
            let changes = weft_engine::operator::cancel_unstarted(&snap, now_millis()).map_err(|r| Fail::Input(r.0))?;
            store.apply(&owner::me(), changes).await?;
            eprintln!("plan {id} cancelled before it started");
            Ok(0)
        }
        other => Err(Fail::Input(format!(
            "cannot cancel plan {id}: it's {other}; cancel works on a paused plan or one that has not started (halt stops a running one)"
        ))),
    }
}

/// Skips a failed step of a paused plan, and what depends on it.
pub(crate) async fn skip(global: &Global, id: &str, step_name: &str) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&global.db).await?;
    let id = store.resolve_id(id.to_string()).await?;
    crate::run::take_over(&store, id).await?;
    let snap = store.load_plan(id).await?;
    let Some(index) = snap.steps.iter().position(|s| s.name == step_name) else {
        return Err(Fail::Input(format!("plan {id} has no step `{step_name}`")));
    };
    let changes =
        weft_engine::operator::skip(&snap, index, now_millis()).map_err(|r| Fail::Input(r.0))?;
    let skipped = changes.iter().filter(|c| matches!(c, weft_store::Change::Step { step, .. } if step.state == step::State::Skipped)).count();
    store.apply(&owner::me(), changes).await?;
    eprintln!("skipped `{step_name}` and {} step(s) depending on it; continue with: weft plans resume {id}", skipped - 1);
    Ok(0)
}

/// The live process holding a plan's execution lock, if any.
async fn live_owner(
    store: &weft_store::SharedStore,
    id: weft_model::PlanId,
) -> Result<Option<String>, Fail> {
    match store.lock_owner(id).await? {
        Some(holder) if owner::is_alive(store, &holder).await? => Ok(Some(holder)),
        _ => Ok(None),
    }
}
