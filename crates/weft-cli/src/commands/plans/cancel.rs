//! `weft plans cancel`: cancel a paused plan (reverting, here, what completed) or one that has
//! not started.

use crate::shared::foreground::{cancel_paused, take_over};
use crate::shared::{Fail, Global};
use clap::Args;
use weft_engine::owner;
use weft_model::{now_millis, plan};

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
    take_over(&store, id).await?;
    let snap = store.load_plan(id).await?;
    match snap.plan.state {
        plan::State::Paused => cancel_paused(store, id, &args.global).await,
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
