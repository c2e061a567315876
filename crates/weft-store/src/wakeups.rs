//! Waiting for the store's wake-up hints without losing one: a loop that looks for work marks
//! what was hinted before it looks, then waits for anything hinted after — so a hint that
//! comes while it is looking wakes it at once. Nodes' claimers and mailboxes, conductors, the
//! job board's `wait` and the worker transport all wait this way.

use crate::Hints;
use tokio::sync::watch;

/// One counter of a store's hints ([`Hints::plans`], [`Hints::jobs`], …), as a waiting loop
/// sees it.
pub struct Wakeups {
    rx: Option<watch::Receiver<Hints>>,
    of: fn(&Hints) -> u64,
    seen: u64,
}

impl Wakeups {
    /// Waits on the counter `of` of `rx` (a store's [`crate::Store::hints`]; `None` for a store
    /// that sends none).
    pub fn new(rx: Option<watch::Receiver<Hints>>, of: fn(&Hints) -> u64) -> Self {
        Wakeups { rx, of, seen: 0 }
    }

    /// Whether the store sends hints at all (if not, the caller polls more often).
    pub fn exist(&self) -> bool {
        self.rx.is_some()
    }

    /// Everything hinted so far counts as seen: call it just before looking.
    pub fn mark(&mut self) {
        if let Some(rx) = &mut self.rx {
            self.seen = (self.of)(&rx.borrow_and_update());
        }
    }

    /// Resolves once something was hinted after the last mark; never, without hints.
    pub async fn next(&mut self) {
        let Some(rx) = &mut self.rx else {
            return std::future::pending().await;
        };
        loop {
            if (self.of)(&rx.borrow_and_update()) != self.seen {
                return;
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_hint_that_comes_while_a_node_looks_for_work_is_not_lost() {
        let (tx, rx) = tokio::sync::watch::channel(crate::Hints::default());
        let mut wake = Wakeups::new(Some(rx), |h| h.plans);
        wake.mark();
        // A plan is submitted while the node is claiming (after its mark, before it waits).
        tx.send_modify(|h| h.plans += 1);
        tokio::time::timeout(Duration::from_millis(1), wake.next())
            .await
            .expect("the hint wakes the node at once");
        // Once it looked again, it waits for the next hint.
        wake.mark();
        assert!(tokio::time::timeout(Duration::from_secs(1), wake.next())
            .await
            .is_err());
        // Hints of the other counter do not wake it.
        tx.send_modify(|h| h.mailbox += 1);
        assert!(tokio::time::timeout(Duration::from_secs(1), wake.next())
            .await
            .is_err());
        // Without hints, it never wakes.
        let mut none = Wakeups::new(None, |h| h.plans);
        none.mark();
        assert!(tokio::time::timeout(Duration::from_secs(1), none.next())
            .await
            .is_err());
    }
}
