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
    /// Delete stopped plans (with their history and output) once they ended this long ago
    /// (`30d`); checked every minute. Default: keep everything.
    #[arg(long, value_parser = parse_duration)]
    retention: Option<Duration>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Send traces (a plan a trace, each step attempt a span) to this OTLP/HTTP collector,
    /// e.g. http://127.0.0.1:4318.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Serve the HTTP API and dashboard at this address (127.0.0.1:8080 when none is given).
    /// An address other machines can reach needs --token.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8080")]
    http: Option<std::net::SocketAddr>,
    /// The bearer token every change over HTTP needs (better passed in WEFT_TOKEN: `ps`
    /// shows arguments).
    #[arg(long, env = "WEFT_TOKEN", hide_env_values = true, requires = "http")]
    token: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM; with --tls-key).
    #[arg(long, value_name = "FILE", requires_all = ["http", "tls_key"])]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["http", "tls_cert"])]
    tls_key: Option<std::path::PathBuf>,
    /// A directory of flow files (*.toml): HTTP clients can submit them by name, and the
    /// `[schedule]` of each is installed as a schedule named after its flow.
    #[arg(long, value_name = "DIR")]
    flows: Option<std::path::PathBuf>,
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
    let flows = match &args.flows {
        Some(dir) => Some((load_flows(dir)?, dir.clone())),
        None => None,
    };
    let http = match args.http {
        Some(addr) => {
            let tls = match (&args.tls_cert, &args.tls_key) {
                (Some(cert), Some(key)) => {
                    Some(weft_server::tls::load(cert, key).map_err(Fail::Input)?)
                }
                _ => None,
            };
            Some(http_listener(addr, args.token.clone(), flows.clone(), tls)?)
        }
        None => None,
    };
    // Fail fast, with exit code 3, if the store cannot be used at all.
    let store = weft_store::open(&args.global.db).await?;
    if let Some((flows, dir)) = &flows {
        for name in crate::shared::schedule::install(&store, flows).await? {
            eprintln!("schedule {name} installed from {}", dir.display());
        }
    }
    drop(store);
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
    config.retention = args.retention;
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
    if let Some((listener, mut config)) = http {
        let addr = listener
            .local_addr()
            .map_err(|e| Fail::Other(e.to_string()))?;
        config.by = node.id().to_string();
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        node.manifolds()
            .install("http", weft_server::manifold(listener, config))
            .await
            .map_err(|e| Fail::Other(e.to_string()))?;
        eprintln!("HTTP API at {scheme}://{addr}/api, dashboard at {scheme}://{addr}/");
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

/// Binds the HTTP API's address and loads the flows it offers by name: every problem is found
/// before the node starts.
fn http_listener(
    addr: std::net::SocketAddr,
    token: Option<String>,
    flows: Option<(Flows, std::path::PathBuf)>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<(std::net::TcpListener, weft_server::HttpConfig), Fail> {
    let guard = weft_server::auth::Guard::new(addr, token).map_err(Fail::Input)?;
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| Fail::Input(format!("--http {addr}: cannot listen there: {e}")))?;
    let (flows, flows_dir) = match flows {
        Some(loaded) => loaded,
        None => (
            Default::default(),
            std::env::current_dir().map_err(|e| Fail::Other(e.to_string()))?,
        ),
    };
    let config = weft_server::HttpConfig {
        guard,
        flows,
        flows_dir,
        by: String::new(),
        tls,
    };
    Ok((listener, config))
}

/// Flows by name.
type Flows = std::collections::BTreeMap<String, weft_model::flow::Flow>;

/// Every `*.toml` flow file in `dir`, by flow name.
fn load_flows(dir: &std::path::Path) -> Result<Flows, Fail> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Fail::Input(format!("--flows {}: {e}", dir.display())))?;
    let mut paths: Vec<std::path::PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut flows = std::collections::BTreeMap::new();
    for path in paths {
        let flow = weft_model::flow::file::load(&path).map_err(|e| Fail::Input(e.to_string()))?;
        if flows.contains_key(&flow.name) {
            return Err(Fail::Input(format!(
                "{}: another file in {} already holds a flow named `{}`",
                path.display(),
                dir.display(),
                flow.name
            )));
        }
        flows.insert(flow.name.clone(), flow);
    }
    Ok(flows)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "node".into())
}
