//! `weft plans skip`: skip a failed step of a paused plan, and every step that depends on it.

use crate::shared::foreground::take_over;
use crate::shared::{Fail, Global};
use clap::Args;
use weft_engine::owner;
use weft_model::{now_millis, step};

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
    take_over(&store, id).await?;
    let snap = store.load_plan(id).await?;
    let step_name = args.step;
    let Some(index) = snap.steps.iter().position(|s| s.name == step_name) else {
        return Err(Fail::Input(format!("plan {id} has no step `{step_name}`")));
    };
    let changes =
        weft_engine::operator::skip(&snap, index, now_millis()).map_err(|r| Fail::Input(r.0))?;
    let skipped = changes.iter().filter(|c| matches!(c, weft_store::Change::Step { step, .. } if step.state == step::State::Skipped)).count();
    store.apply(&owner::me(), changes).await?;
    eprintln!("skipped `{step_name}` and {} step(s) depending on it; continue with: weft plans resume {id}", skipped - 1);
    Ok(0)
}
