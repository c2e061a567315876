//! `weft plans list` and `weft plans show`.

use crate::cli::Global;
use crate::{view, Fail};
use weft_model::plan;
use weft_store::PlanFilter;

/// Lists plans.
pub async fn list(global: &Global, state: Option<plan::State>, limit: u32) -> Result<u8, Fail> {
    let store = weft_store::open(&global.db)?;
    let plans = store
        .list_plans(PlanFilter {
            state,
            limit: Some(limit),
        })
        .await?;
    if global.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plans).map_err(|e| Fail::Other(e.to_string()))?
        );
    } else {
        print!("{}", view::plan_list(&plans));
    }
    Ok(0)
}

/// Shows one plan.
pub async fn show(global: &Global, id: &str, with_history: bool) -> Result<u8, Fail> {
    let store = weft_store::open(&global.db)?;
    let id = store.resolve_id(id.to_string()).await?;
    let snap = store.load_plan(id).await?;
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
        println!(
            "{}",
            serde_json::to_string_pretty(&value).map_err(|e| Fail::Other(e.to_string()))?
        );
    } else {
        print!("{}", view::plan_detail(&snap, history.as_deref()));
    }
    Ok(0)
}
