//! Who holds a plan's execution lock, and whether that holder is alive. A process that
//! executes plans without being a node (`weft run`, an application's engine) holds locks as
//! `weft@HOST:PID:START` ([`crate::process::identity`]): on the same machine anyone can tell
//! that it is gone, and take its plans over at once. A node holds them as its id, and is alive
//! while its heartbeat is recent.

use crate::process::identity;
use weft_model::PlanId;
use weft_store::SharedStore;

/// How old a node's heartbeat may be for it to still count as alive here. Nodes declare each
/// other dead after their (shorter) lease; this only decides whether to wait for an answer.
const NODE_SILENCE: i64 = 60_000;

/// This process's lock-owner name, `weft@HOST:PID:START`.
pub fn me() -> String {
    identity::this_process()
}

/// Whether `owner` names a process on this machine that is gone. Owners on other machines,
/// nodes, or names in a form this build does not know are presumed alive.
pub fn is_dead(owner: &str) -> bool {
    identity::is_gone(owner)
}

/// Whether the holder of an execution lock is alive: a process that still exists, or a node
/// whose heartbeat is recent.
pub async fn is_alive(store: &SharedStore, holder: &str) -> Result<bool, weft_store::Error> {
    if holder.starts_with("weft@") {
        return Ok(!is_dead(holder));
    }
    Ok(live_nodes(store).await?.iter().any(|n| n.id == holder))
}

/// The nodes whose heartbeat is recent, by the store's clock.
pub async fn live_nodes(
    store: &SharedStore,
) -> Result<Vec<weft_store::NodeRecord>, weft_store::Error> {
    let now = store.clock().await?;
    let mut nodes = store.nodes().await?;
    nodes.retain(|n| now - n.heartbeat_at < NODE_SILENCE);
    Ok(nodes)
}

/// The live holder of plan `id`'s execution lock, if it has one.
pub async fn live_holder(
    store: &SharedStore,
    id: PlanId,
) -> Result<Option<String>, weft_store::Error> {
    match store.lock_owner(id).await? {
        Some(holder) if is_alive(store, &holder).await? => Ok(Some(holder)),
        _ => Ok(None),
    }
}

/// Releases every lock held by a process on this machine that is gone; returns the plans
/// released. A node runs this, so that what a killed `weft run` or application held is
/// claimed again without waiting for anyone.
pub async fn release_dead_holders(store: &SharedStore) -> Result<Vec<PlanId>, weft_store::Error> {
    let mut released = Vec::new();
    for holder in store.lock_holders().await? {
        if is_dead(&holder) {
            let plans = store.release_locks(holder.clone()).await?;
            if !plans.is_empty() {
                tracing::warn!(%holder, plans = plans.len(), "released the plans of a process that is gone");
            }
            released.extend(plans);
        }
    }
    Ok(released)
}
