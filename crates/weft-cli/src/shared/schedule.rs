//! Schedules from flow files' `[schedule]` tables: the record `weft schedules add` stores, and
//! the schedules a node given `--flows DIR` installs for the files there.

use super::Fail;
use std::collections::BTreeMap;
use weft_model::flow::Flow;
use weft_model::now_millis;
use weft_store::{ScheduleRecord, SharedStore};

/// A schedule of `flow` named `name`, its first tick after now; `inputs` are bound to the flow.
pub(crate) fn record(
    name: String,
    flow: Flow,
    cron: String,
    timezone: String,
    inputs: BTreeMap<String, serde_json::Value>,
    overlap: weft_model::schedule::Overlap,
    catch_up: weft_model::schedule::CatchUp,
) -> Result<ScheduleRecord, Fail> {
    let mut schedule = ScheduleRecord {
        name,
        flow,
        inputs,
        cron,
        timezone,
        overlap,
        catch_up,
        paused: false,
        next_at: None,
        last_plan: None,
    };
    schedule.next_at = schedule.first_after(now_millis()).map_err(Fail::Input)?;
    if schedule.next_at.is_none() {
        return Err(Fail::Input(format!(
            "cron `{}` never fires again",
            schedule.cron
        )));
    }
    Ok(schedule)
}

/// Installs the `[schedule]` of every flow that has one, named after the flow. A schedule
/// already stored with the same settings is left as it is (its next tick, paused or not);
/// a changed one is replaced, keeping whether it was paused. Returns the names installed.
pub(crate) async fn install(
    store: &SharedStore,
    flows: &BTreeMap<String, Flow>,
) -> Result<Vec<String>, Fail> {
    let stored = store.schedules().await?;
    let mut installed = Vec::new();
    for flow in flows.values() {
        let Some(spec) = flow.schedule.clone() else {
            continue;
        };
        let inputs = flow
            .bind_inputs(spec.inputs.clone().into_iter().collect())
            .map_err(|e| Fail::Input(format!("flow `{}`: [schedule] inputs: {e}", flow.name)))?;
        let mut wanted = record(
            flow.name.clone(),
            flow.clone(),
            spec.cron,
            spec.timezone,
            inputs,
            spec.overlap,
            spec.catch_up,
        )?;
        if let Some(old) = stored.iter().find(|s| s.name == wanted.name) {
            let same = old.flow == wanted.flow
                && old.inputs == wanted.inputs
                && old.cron == wanted.cron
                && old.timezone == wanted.timezone
                && old.overlap == wanted.overlap
                && old.catch_up == wanted.catch_up;
            if same {
                continue;
            }
            wanted.paused = old.paused;
            wanted.last_plan = old.last_plan;
        }
        installed.push(wanted.name.clone());
        store.put_schedule(wanted).await?;
    }
    Ok(installed)
}
