//! The sender's side of the mailbox: waiting for the answer to a posted [`Instruction`](crate::Instruction)
//! from the process that executes the plan, withdrawing it when no answer comes in time.

use crate::{Reply, Result, Store};
use std::time::{Duration, Instant};

/// How often the answer is looked for on a store that cannot wake the sender.
const ANSWER_POLL: Duration = Duration::from_millis(2);
/// How often a sender looks for its answer when the store wakes it (a backstop).
const HINTED_ANSWER_POLL: Duration = Duration::from_millis(100);

/// Waits for message `message`'s answer. If none comes within `wait`, the message is withdrawn
/// (answered `Refused` by the sender, so that it is never acted on later) and `Pending` is
/// returned; an answer that raced the withdrawal is returned instead.
pub async fn wait_for_reply(store: &dyn Store, message: i64, wait: Duration) -> Result<Reply> {
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
