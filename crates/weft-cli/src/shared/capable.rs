//! Whether some live node can run what a plan or a job needs: the line `plans show` and `jobs
//! show` print when the answer is no (`waiting for a node that runs \`fetch\`@1`); and, for
//! a plan's running remote steps, whether a live worker offers their task; and what a plan
//! or its steps wait for under concurrency limits and queues.

use super::Fail;
use weft_store::SharedStore;

/// Why work needing the Rust tasks `needs` (`name@version`) waits: no live node has registered
/// them all. `None` when it needs none, or some live node runs them all.
pub(crate) async fn unmet(store: &SharedStore, needs: &[String]) -> Result<Option<String>, Fail> {
    if needs.is_empty() {
        return Ok(None);
    }
    let live = weft_engine::owner::live_nodes(store).await?;
    if live
        .iter()
        .any(|n| needs.iter().all(|x| n.capabilities.contains(x)))
    {
        return Ok(None);
    }
    let named = |need: &String| match need.rsplit_once('@') {
        Some((task, version)) => format!("`{task}`@{version}"),
        None => format!("`{need}`"),
    };
    let nowhere: Vec<String> = needs
        .iter()
        .filter(|x| !live.iter().any(|n| n.capabilities.contains(x)))
        .map(named)
        .collect();
    Ok(Some(if nowhere.is_empty() {
        format!(
            "waiting for a node that runs all of {}",
            needs.iter().map(named).collect::<Vec<_>>().join(", ")
        )
    } else {
        format!("waiting for a node that runs {}", nowhere.join(", "))
    }))
}

/// For each running remote step of the plan whose task no live worker offers (a worker heard
/// from within its lease), the line saying so: the request waits for one, and fails
/// after the request timeout.
pub(crate) async fn workers_missing(
    store: &SharedStore,
    snap: &weft_store::PlanSnapshot,
) -> Result<Vec<String>, Fail> {
    let flow = &snap.plan.flow;
    let running: Vec<(String, String)> = snap
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.state == weft_model::step::State::Running)
        .filter_map(|(i, _)| {
            flow.remote_task(i).map(|(t, v)| {
                (
                    flow.steps[i].name.clone(),
                    weft_model::flow::capability(&t, &v),
                )
            })
        })
        .collect();
    if running.is_empty() {
        return Ok(Vec::new());
    }
    let now = store.clock().await?;
    let live: Vec<weft_store::WorkerRecord> = store
        .workers()
        .await?
        .into_iter()
        .filter(|w| now - w.heartbeat_at <= w.lease_ms)
        .collect();
    Ok(running
        .into_iter()
        .filter(|(_, need)| !live.iter().any(|w| w.tasks.contains(need)))
        .map(|(step, need)| {
            let (task, version) = need.rsplit_once('@').unwrap_or((need.as_str(), ""));
            format!(
                "step {step} is waiting for a worker that runs `{task}`@{version} (none is \
                 registered; it fails after the request timeout, {} s)",
                weft_model::worker::REQUEST_TIMEOUT.as_secs()
            )
        })
        .collect())
}

/// A line for the plan and each of its steps waiting in line for slots
/// ([`weft_store::slots::waits`]).
pub(crate) async fn slots_waited(
    store: &SharedStore,
    snap: &weft_store::PlanSnapshot,
) -> Result<Vec<String>, Fail> {
    let rows = store.slots_of(snap.plan.id).await?;
    let steps = &snap.plan.flow.steps;
    Ok(weft_store::slots::waits(&rows, |i| {
        steps.get(i as usize).map(|s| s.name.clone())
    }))
}
