//! What a process running plans counts, for Prometheus: steps started and finished by flow
//! and task, how long they took, steps running, plans by state (a node's count of the store)
//! and ended by state and result, a node's
//! claims, heartbeats and manifold starts, and its store writer's commits (their duration and
//! how many writes each carried). One set per process ([`metrics`]), updated where things happen (the
//! executor, the shell, the node's loops) with atomics; [`encode`] writes it in the Prometheus
//! text format (`weft serve --metrics`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::OnceLock;

/// Labels: name and value pairs.
type Labels = Vec<(&'static str, String)>;

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    /// Steps started, by flow and task.
    pub steps_started: Family<Labels, Counter>,
    /// Steps finished, by flow, task and result (`success`, `error`).
    pub steps_finished: Family<Labels, Counter>,
    /// How long steps ran, by flow.
    pub step_seconds: Family<Labels, Histogram>,
    /// Steps running now.
    pub steps_running: Gauge,
    /// Plans in the store by state, as a node last counted them (every half lease).
    pub plans: Family<Labels, Gauge>,
    /// Plans ended (stopped or paused), by state and result.
    pub plans_ended: Family<Labels, Counter>,
    /// Plans a node claimed.
    pub claims: Counter,
    /// A node's heartbeats (lease renewals).
    pub heartbeats: Counter,
    /// How many times each manifold of the node has started.
    pub manifold_starts: Family<Labels, Gauge>,
    /// Nodes whose lease holds, as this node last saw them (itself included).
    pub nodes_live: Gauge,
    /// Batches of the director's changes written and not yet acknowledged by the store (the
    /// writer's queue, as the engine sees it).
    pub batches_queued: Gauge,
}

fn step_histogram() -> Histogram {
    // 1 ms to about 9 minutes.
    Histogram::new(exponential_buckets(0.001, 4.0, 10))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("weft");
        let steps_started = Family::<Labels, Counter>::default();
        let steps_finished = Family::<Labels, Counter>::default();
        let step_seconds =
            Family::<Labels, Histogram>::new_with_constructor(step_histogram as fn() -> Histogram);
        let steps_running = Gauge::default();
        let plans_ended = Family::<Labels, Counter>::default();
        let plans = Family::<Labels, Gauge>::default();
        let claims = Counter::default();
        let heartbeats = Counter::default();
        let manifold_starts = Family::<Labels, Gauge>::default();
        let nodes_live = Gauge::default();
        let batches_queued = Gauge::default();
        registry.register(
            "nodes_live",
            "Nodes whose lease holds, as this node last saw them",
            nodes_live.clone(),
        );
        registry.register(
            "engine_batches_queued",
            "Batches of changes waiting for the store writer's acknowledgement",
            batches_queued.clone(),
        );
        registry.register(
            "steps_started",
            "Steps started, by flow and task",
            steps_started.clone(),
        );
        registry.register(
            "steps_finished",
            "Steps finished, by flow, task and result",
            steps_finished.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "How long steps ran, by flow",
            step_seconds.clone(),
        );
        registry.register("steps_running", "Steps running now", steps_running.clone());
        registry.register(
            "plans",
            "Plans in the store by state, as this node last counted them",
            plans.clone(),
        );
        registry.register(
            "plans_ended",
            "Plans that stopped or paused, by state and result",
            plans_ended.clone(),
        );
        registry.register("plan_claims", "Plans this node claimed", claims.clone());
        registry.register(
            "node_heartbeats",
            "Heartbeats this node wrote (lease renewals)",
            heartbeats.clone(),
        );
        registry.register(
            "manifold_starts",
            "How many times each of the node's manifolds has started (restarts show here)",
            manifold_starts.clone(),
        );
        let store = weft_store::metrics::store_metrics();
        registry.register(
            "store_commits",
            "Commits of this process's store writer",
            store.commits.clone(),
        );
        registry.register(
            "store_commit_duration_seconds",
            "How long each commit of the store writer took",
            store.commit_seconds.clone(),
        );
        registry.register(
            "store_commit_writes",
            "How many writes each commit carried (group commit)",
            store.commit_writes.clone(),
        );
        Metrics {
            registry,
            steps_started,
            steps_finished,
            step_seconds,
            steps_running,
            plans,
            plans_ended,
            claims,
            heartbeats,
            manifold_starts,
            nodes_live,
            batches_queued,
        }
    }

    /// The metrics of the steps of `flow` running `task`, to keep and update without
    /// looking them up (and building their labels) each time.
    pub fn step(&self, flow: &str, task: &str) -> StepMetrics {
        let labels = |result: Option<&str>| {
            let mut l = vec![("flow", flow.to_string()), ("task", task.to_string())];
            if let Some(r) = result {
                l.push(("result", r.to_string()));
            }
            l
        };
        let finished = |r| self.steps_finished.get_or_create(&labels(Some(r))).clone();
        StepMetrics {
            started: self.steps_started.get_or_create(&labels(None)).clone(),
            success: finished("success"),
            suspended: finished("suspended"),
            error: finished("error"),
            seconds: self
                .step_seconds
                .get_or_create(&vec![("flow", flow.to_string())])
                .clone(),
            running: self.steps_running.clone(),
        }
    }
}

/// The metrics of one flow's step, looked up once.
#[derive(Clone)]
pub struct StepMetrics {
    started: Counter,
    success: Counter,
    suspended: Counter,
    error: Counter,
    seconds: Histogram,
    running: Gauge,
}

impl StepMetrics {
    /// It started.
    pub fn started(&self) {
        self.started.inc();
        self.running.inc();
    }

    /// It ended, after `seconds`, with `result` (`success`, `suspended`, else `error`).
    pub fn finished(&self, result: &str, seconds: f64) {
        match result {
            "success" => self.success.inc(),
            "suspended" => self.suspended.inc(),
            _ => self.error.inc(),
        };
        self.seconds.observe(seconds);
        self.running.dec();
    }
}

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Every metric in the Prometheus text format (OpenMetrics flavour).
pub fn encode() -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &metrics().registry) {
        tracing::warn!("cannot encode the metrics: {e}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_counted_and_timed_by_flow_and_task() {
        let m = metrics().step("deploy", "build");
        m.started();
        m.finished("success", 0.02);
        let text = encode();
        assert!(
            text.contains("weft_steps_started_total{flow=\"deploy\",task=\"build\"} 1"),
            "{text}"
        );
        assert!(text.contains(
            "weft_steps_finished_total{flow=\"deploy\",task=\"build\",result=\"success\"} 1"
        ));
        assert!(text.contains("weft_step_duration_seconds_count{flow=\"deploy\"} 1"));
        assert!(text.ends_with("# EOF\n"));
    }
}
