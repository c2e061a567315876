//! `/api/jobs`: the job board — post, list in claim order, show, trash — as `weft jobs` does.

use super::types::{JobQuery, JobView, PostJobRequest};
use super::{limit, Api, Body, Params};
use crate::problem::{ApiError, ReadProblems, WriteProblems};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use weft_model::job::Release;
use weft_store::{JobFilter, NewJob};

/// Jobs on the board in claim order (priority, then age), or the trash.
#[utoipa::path(get, path = "/api/jobs", tag = "jobs", params(JobQuery),
    responses((status = 200, body = [JobView]), ReadProblems))]
pub async fn list(
    State(api): State<Api>,
    Params(q): Params<JobQuery>,
) -> Result<Json<Vec<JobView>>, ApiError> {
    let mut filter = JobFilter {
        limit: Some(limit(q.limit, 100)?),
        ..JobFilter::default()
    };
    match q.state.as_deref() {
        None | Some("board") => {}
        Some("unclaimed") => filter.only_unclaimed = true,
        Some("trashed") => filter.trashed = true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "state `{other}` is not one of: board, unclaimed, trashed"
            )))
        }
    }
    let jobs = api.store().list_jobs(filter).await?;
    Ok(Json(jobs.into_iter().map(JobView::from).collect()))
}

/// Posts a flow as a job for a conductor (`weft jobs post`).
#[utoipa::path(post, path = "/api/jobs", tag = "jobs", request_body = PostJobRequest,
    responses((status = 201, body = JobView), WriteProblems))]
pub async fn post(
    State(api): State<Api>,
    Body(req): Body<PostJobRequest>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let flow = api.flow(
        req.flow.as_deref(),
        req.flow_name.as_deref(),
        req.executor.as_deref(),
    )?;
    let inputs = flow
        .bind_inputs(req.inputs)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut job = NewJob::new(flow, inputs);
    if let Some(name) = req.name {
        job.name = name;
    }
    if let Some(p) = req.priority {
        job.priority = p.parse().map_err(ApiError::bad_request)?;
    }
    if let Some(n) = req.max_attempts {
        if n == 0 {
            return Err(ApiError::bad_request("max_attempts must be at least 1"));
        }
        job.max_attempts = n;
    }
    let job = api.store().post_job(job).await?;
    Ok((StatusCode::CREATED, Json(JobView::from(job))))
}

/// One job.
#[utoipa::path(get, path = "/api/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job's id, or a unique prefix of it")),
    responses((status = 200, body = JobView), ReadProblems))]
pub async fn show(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = api.store().resolve_job(id).await?;
    Ok(Json(JobView::from(api.store().job(id).await?)))
}

/// Takes a job off the board into the trash (`weft jobs trash --force`): an operator's act,
/// whoever holds it.
#[utoipa::path(post, path = "/api/jobs/{id}/trash", tag = "jobs",
    params(("id" = String, Path, description = "The job's id, or a unique prefix of it")),
    responses((status = 200, body = JobView), WriteProblems))]
pub async fn trash(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = api.store().resolve_job(id).await?;
    let job = api
        .store()
        .release_job(id, "operator".into(), None, Release::Trash { force: true })
        .await?;
    Ok(Json(JobView::from(job)))
}
