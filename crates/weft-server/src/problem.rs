//! Errors as RFC 9457 problem documents (`application/problem+json`): a type naming the kind of
//! problem, its title, the HTTP status, and a detail that says what exactly is wrong. Every
//! error the API returns — a store's, an operator action's refusal, a malformed body, a missing
//! token — goes through [`ApiError`].

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use weft_engine::control::ControlError;

/// A problem document (RFC 9457).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// What kind of problem: `urn:weft:problem:` and a slug (`not-found`, `conflict`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// The kind, in words.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What is wrong, for a person.
    pub detail: String,
}

/// The problems a read may answer with, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum ReadProblems {
    /// A malformed query, or an ambiguous id prefix.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// Asked by a name that is not loopback of a server bound to loopback.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No such plan or job.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// The store cannot be reached.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

/// The problems a change may answer with, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum WriteProblems {
    /// A malformed body, or one naming what does not exist (a flow, a step).
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// The server has a token and the request did not bring it.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// From another origin, or to a name that is not loopback of a server bound to loopback.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No such plan or job.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// The plan or job is not in a state that allows it.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
    /// The body is larger than the server reads.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// The body is not `application/json`.
    #[response(status = 415, content_type = "application/problem+json")]
    NotJson(Problem),
    /// The store cannot be reached, or this server executes no plans.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
    /// The process executing the plan did not answer in time.
    #[response(status = 504, content_type = "application/problem+json")]
    NoAnswer(Problem),
}

/// An error a handler returns; becomes a [`Problem`] response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What is wrong.
    pub detail: String,
}

impl ApiError {
    /// An error with this status and detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            detail: detail.into(),
        }
    }

    /// 400: the request is malformed or names something that does not exist in it.
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, detail)
    }

    /// 409: the thing is not in a state that allows it.
    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, detail)
    }

    fn slug(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST => "bad-request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "body-too-large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
            StatusCode::SERVICE_UNAVAILABLE => "store-unavailable",
            StatusCode::GATEWAY_TIMEOUT => "no-answer",
            _ => "internal",
        }
    }

    /// The problem document.
    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("urn:weft:problem:{}", self.slug()),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, detail = %self.detail, "HTTP request failed");
        }
        let mut response = (self.status, axum::Json(self.problem())).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<weft_store::Error> for ApiError {
    fn from(e: weft_store::Error) -> ApiError {
        use weft_store::Error as E;
        let status = match &e {
            e if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            E::NotFound(_) | E::Job(weft_model::job::BoardError::NotFound(_)) => {
                StatusCode::NOT_FOUND
            }
            E::Ambiguous(_) | E::Unsupported(_) => StatusCode::BAD_REQUEST,
            E::Conflict { .. } | E::Locked { .. } | E::Job(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        match e {
            ControlError::Invalid(m) => ApiError::bad_request(m),
            ControlError::Refused(m) => ApiError::conflict(m),
            ControlError::NoAnswer(m) => ApiError::new(StatusCode::GATEWAY_TIMEOUT, m),
            ControlError::Store(e) => e.into(),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> ApiError {
        let status = match r.status() {
            // A body of the wrong shape is as malformed as one that is not JSON.
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            s => s,
        };
        ApiError::new(status, format!("the request's body: {}", r.body_text()))
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> ApiError {
        ApiError::bad_request(format!("the query string: {}", r.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_become_the_statuses_a_client_can_act_on() {
        let e: ApiError = weft_store::Error::NotFound("plan 1".into()).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e: ApiError =
            weft_store::Error::Job(weft_model::job::BoardError::NotFound("no job `0`".into()))
                .into();
        assert_eq!(
            e.status,
            StatusCode::NOT_FOUND,
            "an unknown job is not a conflict"
        );
        let e: ApiError = weft_store::Error::Ambiguous("01".into()).into();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e: ApiError = ControlError::Refused("it's stopped".into()).into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        let p = e.problem();
        assert_eq!(p.kind, "urn:weft:problem:conflict");
        assert_eq!(p.title, "Conflict");
        assert_eq!(p.status, 409);
        assert_eq!(p.detail, "it's stopped");
    }
}
