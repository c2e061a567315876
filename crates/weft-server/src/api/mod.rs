//! The JSON API under `/api`, mirroring the CLI: plans (`plans`), the job board (`board`), and
//! the nodes and workers sharing the store (`cluster`). Handlers take the shared [`Api`] state;
//! bodies and query strings go through [`Body`] and [`Params`], whose rejections are problem
//! documents like every other error.

pub mod board;
pub mod cluster;
pub mod plans;
pub mod types;

use crate::problem::ApiError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use weft_engine::Engine;
use weft_model::flow::{ExecutorKind, Flow};
use weft_model::PlanId;
use weft_store::SharedStore;

/// What every handler shares: the store, the node's engine (to resume and cancel plans on this
/// node), the flows the server was started with, and who it acts as.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    store: SharedStore,
    engine: Option<Engine>,
    flows: BTreeMap<String, Flow>,
    flows_dir: PathBuf,
    by: String,
}

impl Api {
    /// The API over `store`. `engine` executes plans resumed or cancelled over HTTP (none: those
    /// are refused); `flows` can be submitted by name; flow text submitted in a body resolves
    /// its relative paths against `flows_dir`; `by` is recorded in plans' history.
    pub fn new(
        store: SharedStore,
        engine: Option<Engine>,
        flows: BTreeMap<String, Flow>,
        flows_dir: PathBuf,
        by: String,
    ) -> Api {
        Api {
            inner: Arc::new(Inner {
                store,
                engine,
                flows,
                flows_dir,
                by,
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &SharedStore {
        &self.inner.store
    }

    /// The node's engine, when there is one.
    pub fn engine(&self) -> Option<&Engine> {
        self.inner.engine.as_ref()
    }

    /// Who the API acts as, in plans' history.
    pub fn by(&self) -> &str {
        &self.inner.by
    }

    /// The flows the server was started with, by name.
    pub fn flows(&self) -> &BTreeMap<String, Flow> {
        &self.inner.flows
    }

    /// A plan by its id or a unique prefix of it.
    pub async fn resolve(&self, id: &str) -> Result<PlanId, ApiError> {
        // A whole id needs no lookup: reading the plan says whether it exists.
        if id.len() == 36 {
            if let Ok(whole) = id.parse() {
                return Ok(whole);
            }
        }
        Ok(self.inner.store.resolve_id(id.to_string()).await?)
    }

    /// The flow a request names: TOML text, or the name of a flow the server knows.
    pub fn flow(
        &self,
        text: Option<&str>,
        name: Option<&str>,
        executor: Option<&str>,
    ) -> Result<Flow, ApiError> {
        let mut flow = match (text, name) {
            (Some(text), None) => weft_model::flow::file::parse(
                text,
                std::path::Path::new("the request's flow"),
                &self.inner.flows_dir,
            )
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
            (None, Some(name)) => self.inner.flows.get(name).cloned().ok_or_else(|| {
                let known: Vec<&str> = self.inner.flows.keys().map(String::as_str).collect();
                ApiError::bad_request(if known.is_empty() {
                    format!("no flow is named `{name}`: this server was started with none (weft serve --flows DIR)")
                } else {
                    format!("no flow is named `{name}`; the server has: {}", known.join(", "))
                })
            })?,
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "give the flow's text or its name, not both",
                ))
            }
            (None, None) => {
                return Err(ApiError::bad_request(
                    "give the flow: its TOML text, or the name of a flow the server was started with",
                ))
            }
        };
        if let Some(e) = executor {
            flow.set_executor(parse_executor(e)?);
        }
        Ok(flow)
    }
}

fn parse_executor(text: &str) -> Result<ExecutorKind, ApiError> {
    text.parse().map_err(ApiError::bad_request)
}

/// A JSON body; a malformed one is a 400 problem document, an oversized one 413.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Body(value))
    }
}

/// A query string; a malformed one is a 400 problem document.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Params(value))
    }
}

/// A listing's limit: `default` when absent, refused outside 1..=1000.
pub(crate) fn limit(given: Option<u32>, default: u32) -> Result<u32, ApiError> {
    match given {
        None => Ok(default),
        Some(n @ 1..=1000) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "limit {n} is out of range: 1 to 1000"
        ))),
    }
}
