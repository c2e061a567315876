//! `weft schedules pause | resume | remove | trigger NAME`.

use crate::shared::{Fail, Global};
use clap::Args;
use weft_model::now_millis;

/// A schedule by name.
#[derive(Debug, Args)]
pub(crate) struct NameArgs {
    /// The schedule's name.
    name: String,
    #[command(flatten)]
    pub(crate) global: Global,
}

async fn find(
    store: &weft_store::SharedStore,
    name: &str,
) -> Result<weft_store::ScheduleRecord, Fail> {
    store
        .schedules()
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            Fail::Input(format!(
                "there is no schedule `{name}` (weft schedules list)"
            ))
        })
}

/// Pauses: no tick fires until it is resumed.
pub(crate) async fn pause(args: NameArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let mut s = find(&store, &args.name).await?;
    s.paused = true;
    store.put_schedule(s).await?;
    eprintln!("schedule {} paused", args.name);
    Ok(0)
}

/// Resumes from now: ticks missed while paused do not fire.
pub(crate) async fn resume(args: NameArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let mut s = find(&store, &args.name).await?;
    s.paused = false;
    s.next_at = s.first_after(now_millis()).map_err(Fail::Input)?;
    store.put_schedule(s).await?;
    eprintln!("schedule {} resumed", args.name);
    Ok(0)
}

/// Removes a schedule (the plans it started stay).
pub(crate) async fn remove(args: NameArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    store
        .remove_schedule(args.name.clone())
        .await
        .map_err(|e| match e {
            weft_store::Error::NotFound(_) => {
                Fail::Input(format!("there is no schedule `{}`", args.name))
            }
            e => e.into(),
        })?;
    eprintln!("schedule {} removed", args.name);
    Ok(0)
}

/// Starts the schedule's flow once now, whatever its cron says; prints the plan's id.
pub(crate) async fn trigger(args: NameArgs) -> Result<u8, Fail> {
    let store = weft_store::open_existing(&args.global.db).await?;
    let fired = store
        .fire_schedules(now_millis(), Some(args.name.clone()))
        .await
        .map_err(|e| match e {
            weft_store::Error::NotFound(_) => {
                Fail::Input(format!("there is no schedule `{}`", args.name))
            }
            e => e.into(),
        })?;
    for (_, plan) in fired {
        outln!("{plan}");
    }
    Ok(0)
}
