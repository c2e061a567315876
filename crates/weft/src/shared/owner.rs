//! Who holds a plan's execution lock when `weft run` or `weft plans resume` executes it, and
//! whether that holder is still alive: `weft@HOST:PID:START`, where START is the process's
//! start time in clock ticks since boot, so that a reused pid is not mistaken for the holder.

use weft_engine::process::identity;

/// How old a node's heartbeat may be for the CLI to still count it alive. Nodes declare each
/// other dead after their (shorter) lease; this only decides whether to wait for an answer.
const NODE_SILENCE: i64 = 60_000;

/// Whether the holder of an execution lock is alive: a `weft run` process that still exists,
/// or a node whose heartbeat is recent.
pub(crate) async fn is_alive(
    store: &weft_store::SharedStore,
    holder: &str,
) -> Result<bool, weft_store::Error> {
    if holder.starts_with("weft@") {
        return Ok(!is_dead(holder));
    }
    let now = weft_model::now_millis();
    Ok(store
        .nodes()
        .await?
        .iter()
        .any(|n| n.id == holder && now - n.heartbeat_at < NODE_SILENCE))
}

/// This process's lock-owner name.
pub(crate) fn me() -> String {
    identity::this_process()
}

/// Whether `owner` names a process on this host that is gone. Owners on other hosts, or in a
/// form this build does not know, are presumed alive.
pub(crate) fn is_dead(owner: &str) -> bool {
    identity::is_gone(owner)
}

/// The live holder of plan `id`'s execution lock, if it has one.
pub(crate) async fn live_holder(
    store: &weft_store::SharedStore,
    id: weft_model::PlanId,
) -> Result<Option<String>, weft_store::Error> {
    match store.lock_owner(id).await? {
        Some(holder) if is_alive(store, &holder).await? => Ok(Some(holder)),
        _ => Ok(None),
    }
}
