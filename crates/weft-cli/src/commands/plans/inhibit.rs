//! `weft plans inhibit`: an execution-inhibition lock, so that no process executes a plan again.

use crate::shared::{Fail, Global};
use clap::Args;

/// `weft plans inhibit`.
#[derive(Debug, Args)]
pub(crate) struct InhibitArgs {
    /// The plan's id (or a unique prefix of it).
    id: String,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Inhibits a plan.
pub(crate) async fn inhibit(args: InhibitArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let id = store.resolve_id(args.id).await?;
    store.inhibit(id).await?;
    eprintln!("plan {id} is inhibited: it will not be executed again (a start halts it)");
    Ok(0)
}
