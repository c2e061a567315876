//! `/api/nodes` and `/api/workers`: the processes sharing the store, as `weft status` and
//! `weft workers` show them — each node with its manifold report.

use super::types::{NodeView, WorkerView};
use super::Api;
use crate::problem::{ApiError, ReadProblems};
use axum::extract::State;
use axum::Json;

/// The nodes sharing the store, each with its manifolds as it last reported them.
#[utoipa::path(get, path = "/api/nodes", tag = "cluster",
    responses((status = 200, body = [NodeView]), ReadProblems))]
pub async fn nodes(State(api): State<Api>) -> Result<Json<Vec<NodeView>>, ApiError> {
    let nodes = api.store().nodes().await?;
    Ok(Json(nodes.into_iter().map(NodeView::from).collect()))
}

/// The remote workers that registered (`weft worker`).
#[utoipa::path(get, path = "/api/workers", tag = "cluster",
    responses((status = 200, body = [WorkerView]), ReadProblems))]
pub async fn workers(State(api): State<Api>) -> Result<Json<Vec<WorkerView>>, ApiError> {
    let workers = api.store().workers().await?;
    Ok(Json(workers.into_iter().map(WorkerView::from).collect()))
}
