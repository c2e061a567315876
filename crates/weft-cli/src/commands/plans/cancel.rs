//! `weft plans cancel`: cancel a paused plan (reverting, here, what completed) or one that has
//! not started.

use crate::shared::foreground::cancel_paused;
use crate::shared::{Fail, Global};
use clap::Args;
use weft_engine::{control, owner};
use weft_model::plan;

/// `weft plans cancel`.
#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    /// The plan's id (or a unique prefix of it).
    id: String,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Cancels a plan.
pub(crate) async fn cancel(args: CancelArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let id = store.resolve_id(args.id).await?;
    control::take_over(&store, id).await?;
    match store.load_plan(id).await?.plan.state {
        plan::State::Paused => cancel_paused(store, id, &args.global).await,
        plan::State::Planned | plan::State::Scheduled | plan::State::Pending => {
            control::cancel_unstarted(&store, id, &owner::me()).await?;
            eprintln!("plan {id} cancelled before it started");
            Ok(0)
        }
        other => Err(Fail::Input(format!(
            "cannot cancel plan {id}: it's {other}; cancel works on a paused plan or one that has not started (halt stops a running one)"
        ))),
    }
}
