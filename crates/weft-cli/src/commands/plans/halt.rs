//! `weft plans halt`: stop a plan now, through the process executing it, or directly in the
//! store when none is.

use crate::shared::{Fail, Global};
use clap::Args;
use std::time::Duration;
use weft_engine::owner;
use weft_model::{now_millis, plan};
use weft_store::{Instruction, Reply};

/// How long halting waits for the process executing the plan to answer.
const ANSWER_WAIT: Duration = Duration::from_secs(30);

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
    let snap = store.load_plan(id).await?;
    if snap.plan.state == plan::State::Stopped {
        return Err(Fail::Input(format!(
            "plan {id} is already stopped; there is nothing to halt"
        )));
    }
    // Dynflow's halt takes the execution-inhibition lock first, so no one starts it again.
    store.inhibit(id).await?;
    match owner::live_holder(&store, id).await? {
        Some(holder) => {
            let message = store.post(id, Instruction::Halt).await?;
            match weft_store::wait_for_reply(&*store, message, ANSWER_WAIT).await? {
                Reply::Done => {}
                Reply::Refused(reason) => return Err(Fail::Input(reason)),
                Reply::Pending => {
                    return Err(Fail::Other(format!(
                        "{holder}, which executes plan {id}, did not answer the halt"
                    )))
                }
            }
        }
        None => {
            let changes =
                weft_engine::operator::halt(&snap, now_millis()).map_err(|r| Fail::Input(r.0))?;
            store.apply(&owner::me(), changes).await?;
        }
    }
    eprintln!("plan {id} halted");
    Ok(0)
}
