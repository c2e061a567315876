//! What the stores' writers count, for Prometheus: commits, how long each took, and how many
//! writes each carried (the group commit at work). One set per process; the engine's registry
//! (`weft_engine::metrics`) shows them.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use std::sync::OnceLock;
use std::time::Duration;

/// The writers' metrics.
pub struct StoreMetrics {
    /// Commits (successful or not).
    pub commits: Counter,
    /// How long each commit took, from its first statement to its end.
    pub commit_seconds: Histogram,
    /// How many writes each commit carried.
    pub commit_writes: Histogram,
}

/// This process's store metrics.
pub fn store_metrics() -> &'static StoreMetrics {
    static METRICS: OnceLock<StoreMetrics> = OnceLock::new();
    METRICS.get_or_init(|| StoreMetrics {
        commits: Counter::default(),
        // 50 µs to about 13 s.
        commit_seconds: Histogram::new(exponential_buckets(0.00005, 4.0, 10)),
        // 1 to 4,096 writes.
        commit_writes: Histogram::new(exponential_buckets(1.0, 4.0, 7)),
    })
}

/// A writer committed `writes` writes in `took`.
pub(crate) fn committed(writes: usize, took: Duration) {
    let m = store_metrics();
    m.commits.inc();
    m.commit_seconds.observe(took.as_secs_f64());
    m.commit_writes.observe(writes as f64);
}
