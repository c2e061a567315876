//! The web dashboard at `/`: pages rendered on the server (`pages`, the step graph in `graph`)
//! over the same handlers' data as the API, htmx and a small script of our own for actions and
//! live updates. A page's live parts listen to `/ui/changes` (server-sent events: `change`
//! when what they show changed in the store, checked twice a second) and fetch their fragment
//! again; a step's output follows through the logs API.

pub mod graph;
pub mod pages;

use crate::api::types::{HistoryItem, JobQuery, PlanPage, PlanQuery, PlanView};
use crate::api::{self, Api, Params};
use crate::problem::ApiError;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use maud::Markup;
use std::hash::{Hash, Hasher};
use std::time::Duration;
use weft_model::plan;

/// How often a live page's data is checked for changes.
const CHECK: Duration = Duration::from_millis(500);

/// The dashboard's routes.
pub fn routes() -> Router<Api> {
    Router::new()
        .route("/", get(plans_page))
        .route("/plans/{id}", get(plan_page))
        .route("/plans/{id}/steps/{step}", get(step_page))
        .route("/jobs", get(jobs_page))
        .route("/workers", get(workers_page))
        .route("/nodes", get(nodes_page))
        .route("/ui/plans", get(plans_fragment))
        .route("/ui/plans/{id}", get(plan_fragment))
        .route("/ui/plans/{id}/steps/{step}", get(step_fragment))
        .route("/ui/jobs", get(jobs_fragment))
        .route("/ui/workers", get(workers_fragment))
        .route("/ui/nodes", get(nodes_fragment))
        .route("/ui/changes", get(changes))
        .route(
            "/assets/htmx.min.js",
            get(|| asset("text/javascript", pages::HTMX)),
        )
        .route(
            "/assets/weft.js",
            get(|| asset("text/javascript", pages::SCRIPT)),
        )
        .route("/assets/weft.css", get(|| asset("text/css", pages::STYLE)))
        .route(
            "/assets/favicon.svg",
            get(|| asset("image/svg+xml", pages::ICON)),
        )
        .route("/favicon.ico", get(|| asset("image/svg+xml", pages::ICON)))
}

async fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// A whole page, with the headers every page has: no framing by other sites, and scripts and
/// styles from this server only.
fn page(title: &str, active: &str, body: Markup) -> Response {
    let mut r = Html(pages::layout(title, active, body).into_string()).into_response();
    secure(&mut r);
    r
}

fn fragment(body: Markup) -> Response {
    let mut r = Html(body.into_string()).into_response();
    secure(&mut r);
    r
}

fn secure(r: &mut Response) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// An error on a page: the page says what is wrong.
fn problem_page(e: ApiError) -> Response {
    let mut r = page("Error", "", pages::problem(e.status.as_u16(), &e.detail));
    *r.status_mut() = e.status;
    r
}

fn query_string(q: &PlanQuery) -> String {
    let mut parts = Vec::new();
    if let Some(s) = q.state.as_deref().filter(|s| !s.is_empty()) {
        parts.push(format!("state={}", graph::encode(s)));
    }
    if let Some(s) = q.search.as_deref().filter(|s| !s.is_empty()) {
        parts.push(format!("search={}", graph::encode(s)));
    }
    if let Some(f) = q.flow.as_deref().filter(|s| !s.is_empty()) {
        parts.push(format!("flow={}", graph::encode(f)));
    }
    parts.join("&")
}

async fn plans_page(Params(q): Params<PlanQuery>) -> Response {
    let states: Vec<&str> = plan::State::ALL.iter().map(|s| s.as_str()).collect();
    page(
        "Plans",
        "Plans",
        pages::plans_page(
            &states,
            &query_string(&q),
            q.state.as_deref().unwrap_or(""),
            q.search.as_deref().unwrap_or(""),
        ),
    )
}

async fn plans_fragment(State(api): State<Api>, Params(mut q): Params<PlanQuery>) -> Response {
    // An empty select or search box means no filter.
    q.state = q.state.filter(|s| !s.is_empty());
    let query = query_string(&q);
    match api::plans::list(State(api), Params(q)).await {
        Ok(Json(PlanPage { plans, next })) => {
            fragment(pages::plans_table(&plans, next.as_deref(), &query))
        }
        Err(e) => problem_fragment(e),
    }
}

async fn load(api: &Api, id: &str) -> Result<(PlanView, Vec<HistoryItem>), ApiError> {
    let id = api.resolve(id).await?;
    let snap = api.store().load_plan(id).await?;
    let owner = api.store().lock_owner(id).await?;
    let history = api.store().history(id).await?;
    let waiting = crate::api::plans::waiting(api, &snap).await?;
    Ok((
        PlanView {
            waiting,
            ..PlanView::new(snap, owner)
        },
        history.into_iter().map(HistoryItem::from).collect(),
    ))
}

async fn plan_page(State(api): State<Api>, Path(id): Path<String>) -> Response {
    match load(&api, &id).await {
        Ok((plan, history)) => {
            let body = maud::html! {
                div #plan data-live=(format!("/ui/changes?plan={}", plan.id))
                    hx-get=(format!("/ui/plans/{}", plan.id)) hx-trigger="refresh" {
                    (pages::plan_detail(&plan, &history))
                }
            };
            page(&format!("{} {}", plan.flow, &plan.id), "Plans", body)
        }
        Err(e) => problem_page(e),
    }
}

async fn plan_fragment(State(api): State<Api>, Path(id): Path<String>) -> Response {
    match load(&api, &id).await {
        Ok((plan, history)) => fragment(pages::plan_detail(&plan, &history)),
        Err(e) => problem_fragment(e),
    }
}

fn find_step<'a>(
    plan: &'a PlanView,
    name: &str,
) -> Result<&'a crate::api::types::StepView, ApiError> {
    plan.steps
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ApiError::not_found(format!("plan {} has no step `{name}`", plan.id)))
}

async fn step_page(State(api): State<Api>, Path((id, step)): Path<(String, String)>) -> Response {
    let found = load(&api, &id).await.and_then(|(plan, history)| {
        let s = find_step(&plan, &step)?.clone();
        Ok((plan, s, history))
    });
    match found {
        Ok((plan, s, history)) => page(
            &format!("{} · {}", s.name, plan.flow),
            "Plans",
            pages::step_page(&plan, &s, &history),
        ),
        Err(e) => problem_page(e),
    }
}

async fn step_fragment(
    State(api): State<Api>,
    Path((id, step)): Path<(String, String)>,
) -> Response {
    let found = load(&api, &id).await.and_then(|(plan, history)| {
        let s = find_step(&plan, &step)?.clone();
        Ok((plan, s, history))
    });
    match found {
        Ok((plan, s, history)) => {
            let attempts: Vec<&HistoryItem> =
                history.iter().filter(|h| h.step == Some(s.index)).collect();
            fragment(pages::step_detail(&plan, &s, &attempts))
        }
        Err(e) => problem_fragment(e),
    }
}

async fn jobs_data(api: &Api) -> Result<Markup, ApiError> {
    let Json(board) = api::board::list(State(api.clone()), Params(JobQuery::default())).await?;
    let trashed = JobQuery {
        state: Some("trashed".into()),
        limit: Some(50),
    };
    let Json(trash) = api::board::list(State(api.clone()), Params(trashed)).await?;
    Ok(pages::jobs(&board, &trash))
}

async fn workers_data(api: &Api) -> Result<Markup, ApiError> {
    let Json(workers) = api::cluster::workers(State(api.clone())).await?;
    Ok(pages::workers(&workers))
}

async fn nodes_data(api: &Api) -> Result<Markup, ApiError> {
    let Json(nodes) = api::cluster::nodes(State(api.clone())).await?;
    Ok(pages::nodes(&nodes))
}

/// A whole page whose body refreshes itself from `fragment_url` when `changes` says so.
fn live_page(
    title: &str,
    fragment_url: &str,
    changes: &str,
    body: Result<Markup, ApiError>,
) -> Response {
    match body {
        Ok(body) => page(
            title,
            title,
            maud::html! {
                div data-live=(changes) hx-get=(fragment_url) hx-trigger="refresh" { (body) }
            },
        ),
        Err(e) => problem_page(e),
    }
}

/// A fragment, or the problem in its place.
fn fragment_of(body: Result<Markup, ApiError>) -> Response {
    match body {
        Ok(body) => fragment(body),
        Err(e) => problem_fragment(e),
    }
}

fn problem_fragment(e: ApiError) -> Response {
    (
        e.status,
        fragment(pages::problem(e.status.as_u16(), &e.detail)),
    )
        .into_response()
}

async fn jobs_page(State(api): State<Api>) -> Response {
    live_page(
        "Jobs",
        "/ui/jobs",
        "/ui/changes?of=jobs",
        jobs_data(&api).await,
    )
}

async fn jobs_fragment(State(api): State<Api>) -> Response {
    fragment_of(jobs_data(&api).await)
}

async fn workers_page(State(api): State<Api>) -> Response {
    live_page(
        "Workers",
        "/ui/workers",
        "/ui/changes?of=workers",
        workers_data(&api).await,
    )
}

async fn workers_fragment(State(api): State<Api>) -> Response {
    fragment_of(workers_data(&api).await)
}

async fn nodes_page(State(api): State<Api>) -> Response {
    live_page(
        "Nodes",
        "/ui/nodes",
        "/ui/changes?of=nodes",
        nodes_data(&api).await,
    )
}

async fn nodes_fragment(State(api): State<Api>) -> Response {
    fragment_of(nodes_data(&api).await)
}

/// What a live page watches.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Watch {
    /// A plan's id: its steps and state.
    plan: Option<String>,
    /// `jobs`, `workers` or `nodes`; neither this nor `plan`: the newest plans.
    of: Option<String>,
}

/// A fingerprint of what `watch` shows: it changes when the page should.
async fn fingerprint(api: &Api, watch: &Watch) -> Result<u64, ApiError> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let store = api.store();
    match (&watch.plan, watch.of.as_deref()) {
        (Some(id), _) => {
            let id = api.resolve(id).await?;
            let snap = store.load_plan(id).await?;
            snap.plan.state.as_str().hash(&mut h);
            snap.plan.ended_at.hash(&mut h);
            store.lock_owner(id).await?.hash(&mut h);
            for s in &snap.steps {
                (s.state.as_str(), s.attempt, s.started_at, s.ended_at).hash(&mut h);
            }
        }
        (None, Some("jobs")) => {
            let Json(jobs) =
                api::board::list(State(api.clone()), Params(JobQuery::default())).await?;
            for j in jobs {
                (j.id, j.state, j.owner, j.attempts).hash(&mut h);
            }
        }
        (None, Some("workers")) => {
            for w in store.workers().await? {
                (w.topic, w.process, w.running, w.tasks).hash(&mut h);
            }
        }
        (None, Some("nodes")) => {
            for n in store.nodes().await? {
                (n.id, n.report.map(|r| r.to_string())).hash(&mut h);
            }
        }
        (None, Some(other)) => {
            return Err(ApiError::bad_request(format!(
                "`of` is one of jobs, workers, nodes; not `{other}`"
            )))
        }
        (None, None) => {
            let Json(page) = api::plans::list(
                State(api.clone()),
                Params(PlanQuery {
                    limit: Some(100),
                    ..PlanQuery::default()
                }),
            )
            .await?;
            for p in page.plans {
                (p.id, p.state, p.result, p.executed_by).hash(&mut h);
            }
        }
    }
    Ok(h.finish())
}

/// Server-sent events: `change` each time what `watch` shows changed.
async fn changes(
    State(api): State<Api>,
    Params(watch): Params<Watch>,
) -> Result<impl IntoResponse, ApiError> {
    let first = fingerprint(&api, &watch).await?;
    let stream =
        futures_util::stream::unfold((api, watch, first), |(api, watch, last)| async move {
            loop {
                tokio::time::sleep(CHECK).await;
                match fingerprint(&api, &watch).await {
                    Ok(now) if now != last => {
                        let event = Event::default().event("change").data(now.to_string());
                        return Some((
                            Ok::<Event, std::convert::Infallible>(event),
                            (api, watch, now),
                        ));
                    }
                    Ok(_) => {}
                    // The store is away a moment, or the plan went (pruned): the page learns
                    // when it fetches its fragment.
                    Err(e) if e.status == StatusCode::NOT_FOUND => {
                        let event = Event::default().event("change").data("gone");
                        return Some((Ok(event), (api, watch, 0)));
                    }
                    Err(_) => {}
                }
            }
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
