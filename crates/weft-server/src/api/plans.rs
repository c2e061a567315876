//! `/api/plans`: list, submit, show, history and output of plans; events to suspended steps;
//! halt, inhibit, cancel, skip and resume — each what the CLI's command of the same name does.

use super::types::{
    Done, EventRequest, HistoryItem, LogItem, LogPage, LogParams, PlanItem, PlanPage, PlanQuery,
    PlanView, RerunRequest, SkipRequest, SubmitRequest, Submitted,
};
use super::{limit, Api, Body, Params};
use crate::problem::{ApiError, ReadProblems, WriteProblems};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use std::time::Duration;
use weft_engine::{control, owner};
use weft_model::plan;
use weft_store::{LogQuery, NewPlan, PlanFilter};

/// How long an event waits for the process executing its plan to take it.
const EVENT_WAIT: Duration = Duration::from_secs(30);

/// Plans, newest first, a page at a time.
#[utoipa::path(get, path = "/api/plans", tag = "plans", params(PlanQuery),
    responses((status = 200, body = PlanPage), ReadProblems))]
pub async fn list(
    State(api): State<Api>,
    Params(q): Params<PlanQuery>,
) -> Result<Json<PlanPage>, ApiError> {
    let state = q
        .state
        .as_deref()
        .map(str::parse::<plan::State>)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let before = q
        .before
        .as_deref()
        .map(|b| {
            b.parse().map_err(|e| {
                ApiError::bad_request(format!("before `{b}` is not a plan's whole id: {e}"))
            })
        })
        .transpose()?;
    let limit = limit(q.limit, 50)?;
    let plans = api
        .store()
        .list_plans(PlanFilter {
            state,
            flow: q.flow,
            search: q.search.filter(|s| !s.is_empty()),
            before,
            limit: Some(limit + 1),
        })
        .await?;
    let more = plans.len() > limit as usize;
    let plans: Vec<PlanItem> = plans
        .into_iter()
        .take(limit as usize)
        .map(PlanItem::from)
        .collect();
    let next = if more {
        plans.last().map(|p| p.id.clone())
    } else {
        None
    };
    Ok(Json(PlanPage { plans, next }))
}

/// Submits a flow: the plan is stored for a node to execute (`weft submit`).
#[utoipa::path(post, path = "/api/plans", tag = "plans", request_body = SubmitRequest,
    responses((status = 201, body = Submitted), (status = 200, body = Submitted, description = "the key was taken: the earlier plan"), WriteProblems))]
pub async fn submit(
    State(api): State<Api>,
    Body(req): Body<SubmitRequest>,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    let flow = api.flow(
        req.flow.as_deref(),
        req.name.as_deref(),
        req.executor.as_deref(),
    )?;
    let inputs = flow
        .bind_inputs(req.inputs)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut new = NewPlan::new(flow, inputs);
    if let Some(at) = &req.start_at {
        let at = weft_model::parse_time(at)
            .map_err(|e| ApiError::bad_request(format!("start_at: {e}")))?;
        if at < weft_model::now_millis() && !req.allow_past {
            return Err(ApiError::bad_request(format!(
                "start_at {} is in the past; send allow_past: true to start it at once",
                weft_model::time::format_rfc3339(at)
            )));
        }
        new.state = plan::State::Scheduled;
        new.start_at = Some(at);
    }
    let (id, state) = (new.id, new.state);
    let held = match req.key {
        None => {
            api.store().create_plan(new).await?;
            id
        }
        Some(key) if key.is_empty() => return Err(ApiError::bad_request("key must not be empty")),
        Some(key) => {
            let window = match &req.key_window {
                None => std::time::Duration::from_secs(86_400),
                Some(w) => weft_model::duration::parse(w)
                    .map_err(|e| ApiError::bad_request(format!("key_window: {e}")))?,
            };
            let window = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
            api.store().create_plan_once(new, key, window).await?
        }
    };
    if held != id {
        let state = api.store().load_plan(held).await?.plan.state;
        return Ok((
            StatusCode::OK,
            Json(Submitted {
                id: held.to_string(),
                state: state.to_string(),
                deduplicated: true,
            }),
        ));
    }
    tracing::info!(plan = %id, "plan submitted over HTTP");
    Ok((
        StatusCode::CREATED,
        Json(Submitted {
            id: id.to_string(),
            state: state.to_string(),
            deduplicated: false,
        }),
    ))
}

/// A plan with its steps: state, attempts, outputs, failures.
#[utoipa::path(get, path = "/api/plans/{id}", tag = "plans",
    params(("id" = String, Path, description = "The plan's id, or a unique prefix of it")),
    responses((status = 200, body = PlanView), ReadProblems))]
pub async fn show(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<PlanView>, ApiError> {
    let id = api.resolve(&id).await?;
    let (snap, owner) = api.store().load_plan_and_owner(id).await?;
    let waiting = waiting(&api, &snap).await?;
    Ok(Json(PlanView {
        waiting,
        ..PlanView::new(snap, owner)
    }))
}

/// What a plan that is not over, or its steps, wait for in line under limits and queues.
pub(crate) async fn waiting(
    api: &Api,
    snap: &weft_store::PlanSnapshot,
) -> Result<Vec<String>, ApiError> {
    use weft_model::plan::State;
    if !matches!(snap.plan.state, State::Planned | State::Running) {
        return Ok(Vec::new());
    }
    let rows = api.store().slots_of(snap.plan.id).await?;
    let steps = &snap.plan.flow.steps;
    Ok(weft_store::slots::waits(&rows, |i| {
        steps.get(i as usize).map(|s| s.name.clone())
    }))
}

/// Every transition of the plan and its steps, oldest first.
#[utoipa::path(get, path = "/api/plans/{id}/history", tag = "plans",
    params(("id" = String, Path, description = "The plan's id, or a unique prefix of it")),
    responses((status = 200, body = [HistoryItem]), ReadProblems))]
pub async fn history(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<Vec<HistoryItem>>, ApiError> {
    let id = api.resolve(&id).await?;
    let entries = api.store().history(id).await?;
    Ok(Json(entries.into_iter().map(HistoryItem::from).collect()))
}

/// What the plan's steps printed (`weft logs`), in the order it was written; follow by
/// passing `next` back as `after`.
#[utoipa::path(get, path = "/api/plans/{id}/logs", tag = "plans",
    params(("id" = String, Path, description = "The plan's id, or a unique prefix of it"), LogParams),
    responses((status = 200, body = LogPage), ReadProblems))]
pub async fn logs(
    State(api): State<Api>,
    Path(id): Path<String>,
    Params(q): Params<LogParams>,
) -> Result<Json<LogPage>, ApiError> {
    let id = api.resolve(&id).await?;
    let snap = api.store().load_plan(id).await?;
    let step = match &q.step {
        Some(name) => Some(control::step_index(&snap, name)? as u32),
        None => None,
    };
    if let Some(s) = &q.stream {
        if s != "stdout" && s != "stderr" {
            return Err(ApiError::bad_request(format!(
                "stream `{s}` is neither `stdout` nor `stderr`"
            )));
        }
    }
    let after = q.after.unwrap_or(0);
    let rows = api
        .store()
        .read_logs(LogQuery {
            plan: id,
            step,
            attempt: q.attempt,
            stream: q.stream,
            after,
            limit: limit(q.limit, 200)?,
        })
        .await?;
    let next = rows.last().map_or(after, |r| r.id);
    let name = |i: u32| {
        snap.steps
            .get(i as usize)
            .map_or_else(|| i.to_string(), |s| s.name.clone())
    };
    let chunks = rows
        .into_iter()
        .map(|r| {
            let c = r.chunk;
            LogItem {
                id: r.id,
                step: name(c.key.step),
                attempt: c.key.attempt,
                task: c.key.task,
                action: c.key.action,
                stream: c.key.stream,
                offset: c.offset,
                at: weft_model::time::format_rfc3339(c.at),
                text: String::from_utf8_lossy(&c.data).into_owned(),
            }
        })
        .collect();
    Ok(Json(LogPage { chunks, next }))
}

/// Delivers an event to a suspended step (`weft event`), through the process executing the
/// plan; answers once the step's new state is durable.
#[utoipa::path(post, path = "/api/plans/{id}/events", tag = "plans", request_body = EventRequest,
    params(("id" = String, Path, description = "The plan's id, or a unique prefix of it")),
    responses((status = 200, body = Done), WriteProblems))]
pub async fn event(
    State(api): State<Api>,
    Path(id): Path<String>,
    Body(req): Body<EventRequest>,
) -> Result<Json<Done>, ApiError> {
    let id = api.resolve(&id).await?;
    let delivered = control::event(
        api.store(),
        id,
        &req.step,
        req.data,
        req.optional,
        EVENT_WAIT,
    )
    .await;
    let message = match delivered {
        Ok(()) => format!("event delivered to step `{}`", req.step),
        Err(control::ControlError::Refused(reason)) if req.optional => {
            format!("event dropped: {reason}")
        }
        Err(e) => return Err(e.into()),
    };
    Ok(done(id, message))
}

fn done(id: weft_model::PlanId, message: String) -> Json<Done> {
    Json(Done {
        plan: id.to_string(),
        message,
    })
}

/// Stops the plan now (`weft plans halt`): running steps are cancelled, and it is inhibited.
#[utoipa::path(post, path = "/api/plans/{id}/halt", tag = "plans",
    params(("id" = String, Path, description = "The plan's id, or a unique prefix of it")),
    responses((status = 200, body = Done), WriteProblems))]
pub async fn halt(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Done>, ApiError> {
    let id = api.resolve(&id).await?;
    control::halt(api.store(), id, api.by()).await?;
    Ok(done(id, "halted".into()))
}

/// Keeps the plan from being executed again (`weft plans inhibit`).
#[utoipa::path(post, path = "/api/plans/{id}/inhibit", tag = "plans",
    params(("id" = String, Path, description = "The plan's id, or a unique prefix of it")),
    responses((status = 200, body = Done), WriteProblems))]
pub async fn inhibit(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<Done>, ApiError> {
    let id = api.resolve(&id).await?;
    api.store().inhibit(id).await?;
    Ok(done(id, "inhibited: it will not be executed again".into()))
}

/// Skips a failed step of a paused plan and every step depending on it (`weft plans skip`);
/// resume the plan next.
#[utoipa::path(post, path = "/api/plans/{id}/skip", tag = "plans", request_body = SkipRequest,
    params(("id" = String, Path, description = "The plan's id, or a unique prefix of it")),
    responses((status = 200, body = Done), WriteProblems))]
pub async fn skip(
    State(api): State<Api>,
    Path(id): Path<String>,
    Body(req): Body<SkipRequest>,
) -> Result<Json<Done>, ApiError> {
    let id = api.resolve(&id).await?;
    let skipped = control::skip(api.store(), id, &req.step, api.by()).await?;
    Ok(done(
        id,
        format!(
            "skipped `{}` and {} step(s) depending on it; resume the plan to continue",
            req.step,
            skipped.saturating_sub(1)
        ),
    ))
}

/// Cancels a plan (`weft plans cancel`): one that has not started stops at once; a paused one
/// is executed by this node to revert what completed (202: under way).
#[utoipa::path(post, path = "/api/plans/{id}/cancel", tag = "plans",
    params(("id" = String, Path, description = "The plan's id, or a unique prefix of it")),
    responses((status = 200, body = Done), (status = 202, body = Done), WriteProblems))]
pub async fn cancel(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Done>), ApiError> {
    let id = api.resolve(&id).await?;
    control::take_over(api.store(), id).await?;
    match api.store().load_plan(id).await?.plan.state {
        plan::State::Paused => {
            let engine = node_engine(&api, "cancel a paused plan")?;
            tokio::spawn(async move {
                if let Err(e) = engine.cancel(id).await {
                    tracing::warn!(plan = %id, "cancelling over HTTP failed: {e}");
                }
            });
            Ok((
                StatusCode::ACCEPTED,
                done(id, "cancelling: what completed is being reverted".into()),
            ))
        }
        plan::State::Planned | plan::State::Scheduled | plan::State::Pending => {
            control::cancel_unstarted(api.store(), id, api.by()).await?;
            Ok((StatusCode::OK, done(id, "cancelled before it started".into())))
        }
        other => Err(ApiError::conflict(format!(
            "cannot cancel plan {id}: it's {other}; cancel works on a paused plan or one that has not started (halt stops a running one)"
        ))),
    }
}

/// Resumes a paused or interrupted plan on this node (`weft plans resume`); completed steps
/// are not run again (202: under way).
#[utoipa::path(post, path = "/api/plans/{id}/resume", tag = "plans",
    params(("id" = String, Path, description = "The plan's id, or a unique prefix of it")),
    responses((status = 202, body = Done), WriteProblems))]
pub async fn resume(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Done>), ApiError> {
    let id = api.resolve(&id).await?;
    control::take_over(api.store(), id).await?;
    let state = api.store().load_plan(id).await?.plan.state;
    if matches!(state, plan::State::Stopped | plan::State::Scheduled) {
        return Err(ApiError::conflict(format!(
            "cannot resume plan {id}: it's {state}"
        )));
    }
    let engine = node_engine(&api, "resume a plan")?;
    tokio::spawn(async move {
        if let Err(e) = engine.execute(id, weft_engine::Rescue::Pause).await {
            tracing::warn!(plan = %id, "resuming over HTTP failed: {e}");
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        done(id, format!("resumed by {}", owner_name(&api))),
    ))
}

/// A new plan of this plan's flow that runs again from a step (`weft plans rerun --detach`):
/// the outputs of the steps not downstream of it are copied; a node executes the rest.
#[utoipa::path(post, path = "/api/plans/{id}/rerun", tag = "plans", request_body = RerunRequest,
    params(("id" = String, Path, description = "The original plan's id, or a unique prefix of it")),
    responses((status = 201, body = Submitted), WriteProblems))]
pub async fn rerun(
    State(api): State<Api>,
    Path(id): Path<String>,
    Body(req): Body<RerunRequest>,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    let original = api.resolve(&id).await?;
    let owner = owner_name(&api);
    let id = control::rerun(api.store(), original, &req.from, &owner).await?;
    api.store().release_lock(id, Some(owner)).await?;
    Ok((
        StatusCode::CREATED,
        Json(Submitted {
            id: id.to_string(),
            state: plan::State::Planned.to_string(),
            deduplicated: false,
        }),
    ))
}

fn node_engine(api: &Api, what: &str) -> Result<weft_engine::Engine, ApiError> {
    api.engine().cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this server executes no plans, so it cannot {what}; use the CLI"),
        )
    })
}

fn owner_name(api: &Api) -> String {
    if api.by().is_empty() {
        owner::me()
    } else {
        api.by().to_string()
    }
}
