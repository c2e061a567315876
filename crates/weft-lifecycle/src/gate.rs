//! A gate: closed or open; waiters pass while it is open and block while it is closed.

use tokio::sync::watch;

/// Starts closed. [`Gate::open`] lets every waiter through (now and until closed again);
/// [`Gate::close`] holds them. After shutdown the gate is inert: opening it does nothing and
/// waiters stay blocked.
#[derive(Debug)]
pub struct Gate {
    open: watch::Sender<bool>,
    shutdown: watch::Receiver<bool>,
}

impl Gate {
    /// A closed gate that goes inert once `shutdown` turns true.
    pub fn new(shutdown: watch::Receiver<bool>) -> Gate {
        let (open, _) = watch::channel(false);
        Gate { open, shutdown }
    }

    fn is_shut(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Lets waiters through.
    pub fn open(&self) {
        if !self.is_shut() {
            self.open.send_replace(true);
        }
    }

    /// Holds waiters.
    pub fn close(&self) {
        if !self.is_shut() {
            self.open.send_replace(false);
        }
    }

    /// Whether it is open now.
    pub fn is_open(&self) -> bool {
        *self.open.borrow() && !self.is_shut()
    }

    /// Resolves as soon as the gate is open (at once if it is); never after shutdown.
    pub fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut open = self.open.subscribe();
        let mut shutdown = self.shutdown.clone();
        async move {
            // A shutdown sender dropped without shutting down never shuts down: stop watching
            // it (a closed channel is always "changed", and the loop would spin).
            let mut watching = true;
            loop {
                if *shutdown.borrow_and_update() {
                    return std::future::pending().await;
                }
                if *open.borrow_and_update() {
                    return;
                }
                tokio::select! {
                    changed = open.changed() => if changed.is_err() { return std::future::pending().await },
                    changed = shutdown.changed(), if watching => watching = changed.is_ok(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Nomad's gate_test.go: starts blocked, block, allow, block twice, allow twice,
    //! allow-block-allow, shutdown.
    use super::*;
    use std::time::Duration;

    fn gate() -> (Gate, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        (Gate::new(rx), tx)
    }

    async fn passes(g: &Gate) -> bool {
        tokio::time::timeout(Duration::from_millis(10), g.wait())
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn starts_blocked() {
        let (g, _s) = gate();
        assert!(!passes(&g).await);
    }

    #[tokio::test(start_paused = true)]
    async fn block_allow_and_twice_each() {
        let (g, _s) = gate();
        g.close();
        g.close();
        assert!(!passes(&g).await);
        g.open();
        g.open();
        assert!(passes(&g).await);
        assert!(passes(&g).await, "stays open for every waiter");
    }

    #[tokio::test(start_paused = true)]
    async fn allow_block_allow() {
        let (g, _s) = gate();
        g.open();
        assert!(passes(&g).await);
        g.close();
        assert!(!passes(&g).await);
        g.open();
        assert!(passes(&g).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_blocked_before_opening_passes_once_opened() {
        let (g, _s) = gate();
        let waiter = tokio::spawn(g.wait());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!waiter.is_finished());
        g.open();
        tokio::time::timeout(Duration::from_millis(10), waiter)
            .await
            .expect("released")
            .expect("join");
    }

    /// Regression (issue 11): a gate whose shutdown sender was dropped without sending `true`
    /// busy-looped in `wait` (a closed channel is always ready), taking a core.
    #[test]
    fn a_dropped_shutdown_sender_neither_spins_nor_shuts_the_gate() {
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let (g, shutdown) = gate();
                drop(shutdown);
                let blocked = !passes(&g).await;
                g.open();
                let _ = done_tx.send((blocked, passes(&g).await));
            });
        });
        let (blocked, passed) = done
            .recv_timeout(Duration::from_secs(5))
            .expect("wait() returned control instead of spinning");
        assert!(blocked, "a closed gate blocks");
        assert!(passed, "and opens as before");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_makes_the_gate_inert() {
        let (g, shutdown) = gate();
        g.open();
        shutdown.send_replace(true);
        assert!(!passes(&g).await, "waiters block after shutdown");
        g.open();
        assert!(!passes(&g).await, "opening does nothing after shutdown");
        assert!(!g.is_open());
    }
}
