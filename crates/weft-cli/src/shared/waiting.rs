//! Waiting for a plan that a node executes, without polling from the caller's side: `weft
//! submit --wait` and `weft plans wait`. The exit code is the plan's end, as for `weft run`.

use super::foreground::exit_code;
use super::{pretty, view, Fail};
use weft::PlanHandle;
use weft_model::PlanId;
use weft_store::SharedStore;

/// Waits until plan `id` stops or pauses; prints its summary (or, with `json`, its state,
/// result and values) and returns the exit code of its end.
pub(crate) async fn wait(store: SharedStore, id: PlanId, json: bool) -> Result<u8, Fail> {
    let end = PlanHandle::of(store.clone(), id)
        .wait()
        .await
        .map_err(|e| match e {
            weft::Error::Store(e) => Fail::from(e),
            other => Fail::Other(other.to_string()),
        })?;
    let snap = store.load_plan(id).await?;
    if json {
        let value = serde_json::json!({
            "plan": id.to_string(),
            "state": snap.plan.state.to_string(),
            "result": snap.outcome().to_string(),
            "values": weft::values_of(&snap),
            "failure": end.failure,
        });
        outln!("{}", pretty(&value)?);
    } else {
        out!("{}", view::summary(&snap));
    }
    Ok(exit_code(&end))
}
