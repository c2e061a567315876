//! The API's OpenAPI 3.1 document, generated from the handlers' and types' annotations and
//! served at `/openapi.json`: good enough to generate a client from.

use crate::api::{board, cluster, plans, types};
use crate::problem::Problem;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "weft", description = "weft's HTTP API: plans, events, operator actions, the job board, workers and nodes. Errors are RFC 9457 problem documents. Mutations need `Authorization: Bearer <token>` when the server has a token."),
    paths(
        plans::list, plans::submit, plans::show, plans::history, plans::logs, plans::event,
        plans::halt, plans::inhibit, plans::skip, plans::cancel, plans::resume, plans::rerun,
        board::list, board::post, board::show, board::trash,
        cluster::nodes, cluster::workers,
    ),
    components(schemas(
        Problem, types::PlanItem, types::PlanPage, types::PlanView, types::StepView,
        types::FailureView, types::HistoryItem, types::SubmitRequest, types::Submitted,
        types::EventRequest, types::SkipRequest, types::RerunRequest, types::Done, types::LogItem, types::LogPage,
        types::JobView, types::PostJobRequest, types::WorkerView, types::NodeView,
    )),
    modifiers(&BearerToken),
    tags(
        (name = "plans", description = "Plans: submit, watch, act on"),
        (name = "jobs", description = "The job board"),
        (name = "cluster", description = "Nodes and workers sharing the store"),
    )
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as JSON.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
