//! `weft serve`: a long-lived node that executes the plans submitted to the store and, with
//! its conductor, the jobs posted to the board.

use crate::shared::{interrupted, parse_duration, Fail, Global};
use clap::Args;
use std::sync::Arc;
use std::time::Duration;
use weft_engine::node::{Node, NodeConfig};
use weft_engine::Registry;
use weft_model::duration;

/// `weft serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The node's name, the same across restarts (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// How long a heartbeat stays good; other nodes declare this one dead past it.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    lease: Duration,
    /// How long running steps may take to finish on SIGINT/SIGTERM before they are killed.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    grace: Duration,
    /// The most steps running at once (default: CPUs × 4).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    parallelism: Option<u32>,
    /// The most jobs from the board its conductor runs at once (default: CPUs × 2; 0: run no
    /// conductor, take no jobs).
    #[arg(long)]
    max_simultaneous_jobs: Option<u32>,
    /// How much of each stream a command prints is kept for `weft logs` (its first half and
    /// its latest half; `0` keeps nothing).
    #[arg(long, value_parser = crate::shared::parse_size, default_value = "1MiB")]
    log_cap: usize,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Send traces (a plan a trace, each step attempt a span) to this OTLP/HTTP collector,
    /// e.g. http://127.0.0.1:4318.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
    #[command(flatten)]
    pub(crate) global: Global,
}

/// Runs a node until SIGINT or SIGTERM.
pub(crate) async fn serve(args: ServeArgs) -> Result<u8, Fail> {
    if args.lease < Duration::from_secs(1) {
        return Err(Fail::Input(format!(
            "--lease {} is too short: other nodes would declare live nodes dead; use at least 1s",
            duration::format(args.lease)
        )));
    }
    if args.global.db.starts_with("memory:") {
        return Err(Fail::Input(
            "a node needs a store other processes can reach; `memory:` lives and dies with one process".into(),
        ));
    }
    if let Some(endpoint) = &args.otlp_endpoint {
        weft_engine::traces::install(endpoint).map_err(Fail::Input)?;
    }
    if let Some(addr) = args.metrics {
        let bound = crate::shared::metrics::serve(addr).await?;
        eprintln!("metrics at http://{bound}/metrics");
    }
    // Fail fast, with exit code 3, if the store cannot be used at all.
    weft_store::open(&args.global.db).await?;
    let db = args.global.db.clone();
    let opener: weft_engine::node::Opener = Arc::new(move || {
        let db = db.clone();
        Box::pin(async move { weft_store::open(&db).await })
    });
    let name = args.name.unwrap_or_else(hostname);
    if name.is_empty() || name.contains('/') {
        return Err(Fail::Input(format!(
            "node name `{name}` must be non-empty and hold no `/`"
        )));
    }
    let mut config = NodeConfig::new(name);
    config.remote = Some(Arc::new(weft_worker::RemoteSteps::default()));
    config.log_cap = args.log_cap;
    config.lease = args.lease;
    config.grace = args.grace;
    if let Some(p) = args.parallelism {
        config.parallelism = p as usize;
    }
    let registry = Arc::new(Registry::new());
    let capabilities = registry.capabilities();
    let node = Node::start(opener, registry, config)
        .await
        .map_err(|e| match e {
            weft_engine::Error::Store(e) => Fail::from(e),
            other => Fail::Input(other.to_string()),
        })?;
    let mut conductor = weft_board::ConductorConfig::default();
    if let Some(n) = args.max_simultaneous_jobs {
        conductor.max_simultaneous_jobs = n as usize;
    }
    if conductor.max_simultaneous_jobs > 0 {
        let manifold =
            weft_board::conductor::manifold(node.id().to_string(), capabilities, conductor);
        node.manifolds()
            .install("conductor", manifold)
            .await
            .map_err(|e| Fail::Other(e.to_string()))?;
    }
    eprintln!(
        "node {} serving {} (SIGINT or SIGTERM to stop)",
        node.id(),
        weft_store::redact(&args.global.db)
    );
    node.run(async {
        interrupted().await;
    })
    .await
    .map_err(|e| Fail::Other(e.to_string()))?;
    eprintln!("node stopped");
    Ok(0)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "node".into())
}
