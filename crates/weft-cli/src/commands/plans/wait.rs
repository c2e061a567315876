//! `weft plans wait`: wait until a plan stops or pauses, wherever it runs; exit code by its end.

use crate::shared::{waiting, Fail, Global};
use clap::Args;

/// `weft plans wait`.
#[derive(Debug, Args)]
pub(crate) struct WaitArgs {
    /// The plan's id (or a unique prefix of it).
    id: String,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Waits for the plan's end.
pub(crate) async fn wait(args: WaitArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let id = store.resolve_id(args.id).await?;
    waiting::wait(store, id, args.global.json).await
}
