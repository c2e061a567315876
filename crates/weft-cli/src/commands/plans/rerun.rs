//! `weft plans rerun`: a new plan of a plan's flow that runs again from one step, with the
//! outputs of every step not downstream of it copied from the original.

use crate::shared::foreground::{execute, ExecArgs};
use crate::shared::{Fail, Global};
use clap::Args;
use weft_engine::{control, owner, Intent};

/// `weft plans rerun`.
#[derive(Debug, Args)]
pub(crate) struct RerunArgs {
    /// The original plan's id (or a unique prefix of it).
    id: String,
    /// The step to run again; every step that depends on it runs again too.
    #[arg(long)]
    from: String,
    /// Store the new plan for a node (`weft serve`) to execute, print its id, and return.
    #[arg(long)]
    detach: bool,
    #[command(flatten)]
    exec: ExecArgs,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Reruns.
pub(crate) async fn rerun(args: RerunArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let original = store.resolve_id(args.id).await?;
    let me = owner::me();
    let id = control::rerun(&store, original, &args.from, &me).await?;
    if args.detach {
        store.release_lock(id, Some(me)).await?;
        outln!("{id}");
        eprintln!(
            "plan {id} reruns plan {original} from `{}`; a node (weft serve) executes it",
            args.from
        );
        return Ok(0);
    }
    if !args.global.json {
        eprintln!(
            "plan {id} reruns plan {original} from `{}`; if interrupted, continue with: weft plans resume {id}",
            args.from
        );
    }
    execute(store, id, Intent::Run, &args.exec, &args.global).await
}
