//! `weft backup`: copy the whole store, while it is in use, into a new SQLite file.

use crate::shared::{Fail, Global};
use clap::Args;
use std::path::PathBuf;

/// `weft backup`.
#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// The new file.
    path: PathBuf,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Backs the store up.
pub(crate) async fn backup(args: BackupArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    store.backup(args.path.clone()).await?;
    eprintln!(
        "backed up {} to {}",
        weft_store::redact(&args.global.db),
        args.path.display()
    );
    Ok(0)
}
