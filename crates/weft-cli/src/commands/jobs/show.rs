//! `weft jobs show`: one job — where it stands, its plan, what it waits for, its history.

use crate::shared::{capable, pretty, view, Fail, Global};
use clap::Args;
use weft_model::job::State;

/// `weft jobs show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The job's id (or a unique prefix of it).
    id: String,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Shows one job, its secret inputs redacted.
pub(crate) async fn show(args: ShowArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let id = store.resolve_job(args.id).await?;
    let mut job = store.job(id).await?;
    job.flow.redact(&mut job.inputs);
    let history = store.job_history(id).await?;
    let plan = match store.load_plan(job.plan).await {
        Ok(snap) => Some((snap.plan.state, snap.outcome())),
        Err(weft_store::Error::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let waiting = if job.state == State::Unclaimed {
        capable::unmet(&store, &job.needs).await?
    } else {
        None
    };
    if args.global.json {
        let mut value = serde_json::to_value(&job).map_err(|e| Fail::Other(e.to_string()))?;
        if let Some(w) = &waiting {
            value["waiting_for"] = serde_json::Value::String(w.clone());
        }
        if let Some((state, outcome)) = plan {
            value["plan_state"] = serde_json::Value::String(state.to_string());
            value["plan_result"] = serde_json::Value::String(outcome.to_string());
        }
        value["history"] =
            serde_json::to_value(&history).map_err(|e| Fail::Other(e.to_string()))?;
        outln!("{}", pretty(&value)?);
    } else {
        if let Some(w) = &waiting {
            outln!("{w}");
        }
        let now = store.clock().await?;
        out!("{}", view::job_detail(&job, plan, &history, now));
    }
    Ok(0)
}
