//! `weft plans skip`: skip a failed step of a paused plan, and every step that depends on it.

use crate::shared::{Fail, Global};
use clap::Args;
use weft_engine::{control, owner};

/// `weft plans skip`.
#[derive(Debug, Args)]
pub(crate) struct SkipArgs {
    /// The plan's id (or a unique prefix of it).
    id: String,
    /// The step's name.
    step: String,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Skips the step and what depends on it.
pub(crate) async fn skip(args: SkipArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let id = store.resolve_id(args.id).await?;
    let skipped = control::skip(&store, id, &args.step, &owner::me()).await?;
    eprintln!(
        "skipped `{}` and {} step(s) depending on it; continue with: weft plans resume {id}",
        args.step,
        skipped - 1
    );
    Ok(0)
}
