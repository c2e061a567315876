//! weft's HTTP side, served by `weft serve --http ADDR`: a JSON API that mirrors the CLI
//! (`api`), its OpenAPI document (`openapi`), a web dashboard (`dashboard`), Prometheus metrics at `/metrics`, errors as
//! problem documents (`problem`), and the rules on who may change what (`auth`). A node runs
//! it as its `http` manifold ([`manifold`]), on the node's store and engine.

pub mod api;
pub mod auth;
pub mod dashboard;
pub mod openapi;
pub mod problem;
pub mod tls;

use api::Api;
use auth::Guard;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use weft_deps::{Context, Manifold, TaskWorker, Worker};

/// The largest request body the API reads (a flow of some 100,000 tasks fits).
pub const MAX_BODY: usize = 16 << 20;

/// The routes, behind the guard.
pub fn router(api: Api, guard: Guard) -> Router {
    Router::new()
        .route("/api/plans", get(api::plans::list).post(api::plans::submit))
        .route("/api/plans/{id}", get(api::plans::show))
        .route("/api/plans/{id}/history", get(api::plans::history))
        .route("/api/plans/{id}/logs", get(api::plans::logs))
        .route("/api/plans/{id}/events", post(api::plans::event))
        .route("/api/plans/{id}/halt", post(api::plans::halt))
        .route("/api/plans/{id}/inhibit", post(api::plans::inhibit))
        .route("/api/plans/{id}/skip", post(api::plans::skip))
        .route("/api/plans/{id}/cancel", post(api::plans::cancel))
        .route("/api/plans/{id}/resume", post(api::plans::resume))
        .route("/api/plans/{id}/rerun", post(api::plans::rerun))
        .route("/api/jobs", get(api::board::list).post(api::board::post))
        .route("/api/jobs/{id}", get(api::board::show))
        .route("/api/jobs/{id}/trash", post(api::board::trash))
        .route("/api/nodes", get(api::cluster::nodes))
        .route("/api/workers", get(api::cluster::workers))
        .route("/openapi.json", get(openapi_json))
        .route("/metrics", get(metrics))
        .merge(dashboard::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(api)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(guard, auth::guard))
}

async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::document(),
    )
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        weft_engine::metrics::encode(),
    )
}

async fn not_found(uri: axum::http::Uri) -> problem::ApiError {
    problem::ApiError::not_found(format!("there is nothing at {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> problem::ApiError {
    problem::ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}", uri.path()),
    )
}

/// Serves `router` on `listener` — over TLS with `tls` — until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(config) => {
            axum::serve(tls::TlsListener::new(listener, config)?, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// What a node's `http` manifold serves with.
#[derive(Clone)]
pub struct HttpConfig {
    /// Who may do what.
    pub guard: Guard,
    /// The flows submittable by name.
    pub flows: std::collections::BTreeMap<String, weft_model::flow::Flow>,
    /// Where relative paths in submitted flow text resolve.
    pub flows_dir: std::path::PathBuf,
    /// Who the API acts as (the node's id).
    pub by: String,
    /// HTTPS with this configuration ([`tls::load`]); plain HTTP without.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The `http` manifold: serves the API on `listener` (bound, and checked, before the node
/// starts) with the node's store and engine; restarts with them.
pub fn manifold(listener: std::net::TcpListener, config: HttpConfig) -> Manifold {
    let listener = Arc::new(listener);
    Manifold::new(&["store", "executor"], move |ctx: Context| {
        let (listener, config) = (listener.clone(), config.clone());
        async move {
            let store: weft_store::SharedStore = ctx.get("store")?;
            let engine: weft_engine::Engine = ctx.get("executor")?;
            let listener = listener
                .try_clone()
                .and_then(|l| {
                    l.set_nonblocking(true)?;
                    tokio::net::TcpListener::from_std(l)
                })
                .map_err(|e| weft_deps::Error::msg(format!("cannot serve HTTP: {e}")))?;
            let api = Api::new(
                store,
                Some(engine),
                config.flows,
                config.flows_dir,
                config.by,
            );
            let router = router(api, config.guard);
            let tls = config.tls;
            Ok(TaskWorker::spawn(move |stop| async move {
                serve(listener, tls, router, async move {
                    let mut stop = stop;
                    stop.requested().await
                })
                .await
                .map_err(|e| weft_deps::Error::msg(format!("HTTP server: {e}")))
            }) as Arc<dyn Worker>)
        }
    })
}
