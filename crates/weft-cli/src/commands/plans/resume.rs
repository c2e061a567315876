//! `weft plans resume`: continue an interrupted or paused plan here; completed steps are not
//! run again.

use crate::shared::foreground::{execute, ExecArgs};
use crate::shared::{Fail, Global};
use clap::Args;
use weft_engine::Intent;
use weft_model::plan;

/// `weft plans resume`.
#[derive(Debug, Args)]
pub(crate) struct ResumeArgs {
    /// The plan's id (or a unique prefix of it).
    id: String,
    #[command(flatten)]
    exec: ExecArgs,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Resumes a stored plan here.
pub(crate) async fn resume(args: ResumeArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let id = store.resolve_id(args.id).await?;
    weft_engine::control::take_over(&store, id).await?;
    let state = store.load_plan(id).await?.plan.state;
    if matches!(state, plan::State::Stopped | plan::State::Scheduled) {
        return Err(Fail::Input(format!(
            "cannot resume plan {id}: it's {state}"
        )));
    }
    execute(store, id, Intent::Run, &args.exec, &args.global).await
}
