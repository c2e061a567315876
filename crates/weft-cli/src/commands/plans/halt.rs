//! `weft plans halt`: stop a plan now, through the process executing it, or directly in the
//! store when none is.

use crate::shared::{Fail, Global};
use clap::Args;
use weft_engine::{control, owner};

/// `weft plans halt`.
#[derive(Debug, Args)]
pub(crate) struct HaltArgs {
    /// The plan's id (or a unique prefix of it).
    id: String,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Halts a plan.
pub(crate) async fn halt(args: HaltArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let id = store.resolve_id(args.id).await?;
    control::halt(&store, id, &owner::me()).await?;
    eprintln!("plan {id} halted");
    Ok(0)
}
