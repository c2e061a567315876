//! `weft event`: delivers an event to a suspended step, through the process executing its
//! plan, and waits until the step's new state is durable.

use crate::cli::Global;
use crate::{owner, Fail};
use clap::Args;
use std::time::{Duration, Instant};
use weft_model::{duration, step};
use weft_store::{Command, Reply, SharedStore};

/// `weft event`.
#[derive(Debug, Args)]
pub(crate) struct EventArgs {
    /// The plan's id (or a unique prefix).
    plan: String,
    /// The step's name.
    step: String,
    /// The event's data: a JSON object; its keys become the step's output.
    #[arg(long, default_value = "{}")]
    data: String,
    /// If the plan cannot take the event, drop it quietly (exit 0) instead of failing.
    #[arg(long)]
    optional: bool,
    /// How long to wait for the executing process to take the event.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    wait: Duration,
    #[command(flatten)]
    pub(crate) global: Global,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    duration::parse(s).map_err(|e| e.to_string())
}

/// How often the answer is looked for.
const ANSWER_POLL: Duration = Duration::from_millis(2);
/// How often a sender looks for its answer when the store wakes it (a backstop).
const HINTED_ANSWER_POLL: Duration = Duration::from_millis(100);

/// Sends the event.
pub(crate) async fn event(args: EventArgs) -> Result<u8, Fail> {
    let data: serde_json::Value = serde_json::from_str(&args.data)
        .map_err(|e| Fail::Input(format!("--data is not valid JSON: {e}")))?;
    if !data.is_object() {
        return Err(Fail::Input(
            "--data must be a JSON object, like '{\"approved\": true}'".into(),
        ));
    }
    let store = weft_store::open_existing(&args.global.db).await?;
    let id = store.resolve_id(args.plan.clone()).await?;
    let snap = store.load_plan(id).await?;
    let Some(index) = snap.steps.iter().position(|s| s.name == args.step) else {
        let names: Vec<&str> = snap.steps.iter().map(|s| s.name.as_str()).collect();
        return Err(Fail::Input(format!(
            "plan {id} has no step `{}`; its steps are: {}",
            args.step,
            names.join(", ")
        )));
    };
    let refuse = |reason: String| -> Result<u8, Fail> {
        if args.optional {
            eprintln!("event dropped: {reason}");
            Ok(0)
        } else {
            Err(Fail::Input(reason))
        }
    };
    let state = snap.steps[index].state;
    if state != step::State::Suspended {
        return refuse(format!(
            "step `{}` of plan {id} is {state}, not suspended; it cannot process events",
            args.step
        ));
    }
    let executing = match store.lock_owner(id).await? {
        Some(holder) => owner::is_alive(&store, &holder).await?,
        None => false,
    };
    if !executing {
        return refuse(format!(
            "plan {id} is {} and no process is executing it; resume it (weft plans resume) or start a node (weft serve)",
            snap.plan.state
        ));
    }
    let message = store
        .post(
            id,
            Command::Event {
                step: index as u32,
                data,
                optional: args.optional,
            },
        )
        .await?;
    match wait_for_answer(&store, message, args.wait).await? {
        Reply::Done => {
            if !args.global.json {
                eprintln!("event delivered to step `{}` of plan {id}", args.step);
            }
            Ok(0)
        }
        Reply::Refused(reason) => refuse(reason),
        Reply::Pending => Err(Fail::Other(format!(
            "no process took the event within {}; it was withdrawn",
            duration::format(args.wait)
        ))),
    }
}

/// Waits for a message's answer. If none comes within `wait`, the message is withdrawn (so
/// that it is never acted on later) and `Pending` is returned.
pub(crate) async fn wait_for_answer(
    store: &SharedStore,
    message: i64,
    wait: Duration,
) -> Result<Reply, Fail> {
    let deadline = Instant::now() + wait;
    // Woken when a reply is written (polling only as a backstop), where the store can.
    let mut hints = store.hints();
    loop {
        if let Some(rx) = hints.as_mut() {
            rx.borrow_and_update();
        }
        let reply = store.reply_of(message).await?;
        if reply != Reply::Pending {
            return Ok(reply);
        }
        if Instant::now() >= deadline {
            let withdrawn = store
                .reply(
                    message,
                    Reply::Refused("withdrawn: the sender stopped waiting".into()),
                )
                .await?;
            if withdrawn {
                return Ok(Reply::Pending);
            }
        } else {
            match hints.as_mut() {
                Some(rx) => {
                    tokio::select! {
                        _ = rx.changed() => {}
                        _ = tokio::time::sleep(HINTED_ANSWER_POLL) => {}
                    }
                }
                None => tokio::time::sleep(ANSWER_POLL).await,
            }
        }
    }
}
