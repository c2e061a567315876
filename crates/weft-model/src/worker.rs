//! TaskFlow's worker protocol (`taskflow.engines.worker_based.protocol`), free of any
//! transport: the request state machine and its expiry, the `NOTIFY`, `REQUEST` and `RESPONSE`
//! messages with the seed's fields, and a decoder that checks each message against the seed's
//! schema and names the field that is wrong. Transports (in-process, PostgreSQL) and the
//! executor and worker that use them are built on this.
//!
//! ```
//! use weft_model::worker::{decode_response, RequestState};
//! assert_eq!(RequestState::Waiting.transition(RequestState::Pending), Ok(true));
//! // Moving to the same state is ignored; an illegal move is an error.
//! assert_eq!(RequestState::Pending.transition(RequestState::Pending), Ok(false));
//! assert!(RequestState::Running.transition(RequestState::Pending).is_err());
//! let r = decode_response(&serde_json::json!({"state": "RUNNING", "data": {}})).unwrap();
//! assert_eq!(r.state, weft_model::worker::ResponseState::Request(RequestState::Running));
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;

/// How long a request may wait for a worker (`WAITING`) or for its answer (`PENDING`) before
/// it fails as expired (TaskFlow's `REQUEST_TIMEOUT`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the executor asks workers what they run (TaskFlow's `NOTIFY_PERIOD`).
pub const NOTIFY_PERIOD: Duration = Duration::from_secs(5);
/// How long a worker not heard from is remembered (TaskFlow's `EXPIRES_AFTER`).
pub const EXPIRES_AFTER: Duration = Duration::from_secs(60);

/// A request's state (TaskFlow's request machine). It starts `WAITING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestState {
    /// Not yet sent: no capable worker is known.
    Waiting,
    /// Sent to a chosen worker, not acknowledged yet.
    Pending,
    /// The worker acknowledged and runs it.
    Running,
    /// Done (terminal).
    Success,
    /// Failed, expired or lost (terminal).
    Failure,
}

/// A transition the request machine does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("request transition from {from} to {to} is not allowed")]
pub struct InvalidState {
    /// The state it was in.
    pub from: RequestState,
    /// The state asked for.
    pub to: RequestState,
}

impl RequestState {
    /// Every state.
    pub const ALL: [RequestState; 5] = [
        RequestState::Waiting,
        RequestState::Pending,
        RequestState::Running,
        RequestState::Success,
        RequestState::Failure,
    ];

    /// Its name on the wire: `WAITING`, …
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Waiting => "WAITING",
            RequestState::Pending => "PENDING",
            RequestState::Running => "RUNNING",
            RequestState::Success => "SUCCESS",
            RequestState::Failure => "FAILURE",
        }
    }

    /// TaskFlow's `transition`: `Ok(true)` for a move the machine has (`WAITING → PENDING |
    /// FAILURE`, `PENDING → RUNNING | FAILURE`, `RUNNING → SUCCESS | FAILURE`), `Ok(false)`
    /// for a move to the same state (ignored), [`InvalidState`] for any other.
    pub fn transition(self, to: RequestState) -> Result<bool, InvalidState> {
        use RequestState::*;
        if self == to {
            return Ok(false);
        }
        match (self, to) {
            (Waiting, Pending | Failure)
            | (Pending, Running | Failure)
            | (Running, Success | Failure) => Ok(true),
            _ => Err(InvalidState { from: self, to }),
        }
    }

    /// Whether nothing follows it.
    pub fn is_terminal(self) -> bool {
        matches!(self, RequestState::Success | RequestState::Failure)
    }

    /// Whether a request in this state has expired after `waited` with `timeout`: only
    /// `WAITING` and `PENDING` requests expire; entering `RUNNING` stops the clock.
    pub fn expired(self, waited: Duration, timeout: Duration) -> bool {
        matches!(self, RequestState::Waiting | RequestState::Pending) && waited > timeout
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request asks of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Run it.
    Execute,
    /// Undo it.
    Revert,
}

impl Action {
    /// The event its result is reported as (TaskFlow's `ACTION_TO_EVENT`).
    pub fn event(self) -> &'static str {
        match self {
            Action::Execute => "executed",
            Action::Revert => "reverted",
        }
    }
}

/// A message that does not have the seed's format; says which field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} message not of the expected format: {field}: {problem}")]
pub struct InvalidFormat {
    /// `Request`, `Response` or `Notify`.
    pub message: &'static str,
    /// The field (`data.result.exc_type_names`), or `(message)` for the whole.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

/// A task's version as a request names it: a string, or a list (TaskFlow allows both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TaskVersion {
    /// `"1"`, `"1.2"`.
    Text(String),
    /// `[1, 2]`.
    List(Vec<Value>),
}

/// A `REQUEST`: run or revert a task with these arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The task's class (for weft: the task's name as registered).
    pub task_cls: String,
    /// The step's name.
    pub task_name: String,
    /// The task's version.
    pub task_version: TaskVersion,
    /// Execute or revert.
    pub action: Action,
    /// The task's arguments.
    pub arguments: Map<String, Value>,
    /// For a revert: how the execution ended — `Ok(value)` or `Err(failure dict)`.
    pub result: Option<Result<Value, Value>>,
    /// For a revert: the failures that caused it, by step name (failure dicts).
    pub failures: Option<Map<String, Value>>,
}

impl Request {
    /// The seed's `to_dict`: `result` as `["success", v]` or `["failure", failure]`.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("task_cls".into(), Value::String(self.task_cls.clone()));
        out.insert("task_name".into(), Value::String(self.task_name.clone()));
        out.insert(
            "task_version".into(),
            serde_json::to_value(&self.task_version).unwrap_or(Value::Null),
        );
        out.insert(
            "action".into(),
            Value::String(
                match self.action {
                    Action::Execute => "execute",
                    Action::Revert => "revert",
                }
                .into(),
            ),
        );
        out.insert("arguments".into(), Value::Object(self.arguments.clone()));
        match &self.result {
            Some(Ok(v)) => {
                out.insert("result".into(), serde_json::json!(["success", v]));
            }
            Some(Err(f)) => {
                out.insert("result".into(), serde_json::json!(["failure", f]));
            }
            None => {}
        }
        if let Some(f) = self.failures.as_ref().filter(|f| !f.is_empty()) {
            out.insert("failures".into(), Value::Object(f.clone()));
        }
        Value::Object(out)
    }
}

/// A response's state: a request state, or `EVENT` (progress while it runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseState {
    /// A move of the request.
    Request(RequestState),
    /// A task event; the request does not move.
    Event,
}

/// What a response carries.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseData {
    /// Nothing (`{}`): a state change only.
    Empty,
    /// `{result}`: the task's result, or (with `FAILURE`) a failure dict.
    Completion(Value),
    /// `{event_type, details}`: progress.
    Event {
        /// The event's type (`update_progress`, …).
        event_type: String,
        /// Its details.
        details: Map<String, Value>,
    },
}

/// A `RESPONSE` to a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Its state.
    pub state: ResponseState,
    /// Its data.
    pub data: ResponseData,
}

impl Response {
    /// The seed's `to_dict`.
    pub fn to_json(&self) -> Value {
        let state = match self.state {
            ResponseState::Request(s) => s.as_str(),
            ResponseState::Event => "EVENT",
        };
        let data = match &self.data {
            ResponseData::Empty => serde_json::json!({}),
            ResponseData::Completion(v) => serde_json::json!({ "result": v }),
            ResponseData::Event {
                event_type,
                details,
            } => serde_json::json!({ "event_type": event_type, "details": details }),
        };
        serde_json::json!({ "state": state, "data": data })
    }
}

/// A worker's answer to `NOTIFY`: its topic and the tasks it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    /// Where to send it requests.
    pub topic: String,
    /// The tasks it runs.
    pub tasks: Vec<String>,
}

fn bad(
    message: &'static str,
    field: impl Into<String>,
    problem: impl Into<String>,
) -> InvalidFormat {
    InvalidFormat {
        message,
        field: field.into(),
        problem: problem.into(),
    }
}

fn object<'a>(
    message: &'static str,
    field: &str,
    v: &'a Value,
) -> Result<&'a Map<String, Value>, InvalidFormat> {
    v.as_object().ok_or_else(|| {
        bad(
            message,
            field,
            format!("expected an object, found {}", kind(v)),
        )
    })
}

fn string(message: &'static str, field: &str, v: Option<&Value>) -> Result<String, InvalidFormat> {
    match v {
        None => Err(bad(message, field, "is required")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(bad(
            message,
            field,
            format!("expected a string, found {}", kind(other)),
        )),
    }
}

fn only(
    message: &'static str,
    prefix: &str,
    map: &Map<String, Value>,
    allowed: &[&str],
) -> Result<(), InvalidFormat> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad(
            message,
            format!("{prefix}{k}"),
            "is not an allowed field",
        )),
        None => Ok(()),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Checks a TaskFlow failure dict (`types/failure.py`): `exception_str` and `traceback_str`
/// strings, `exc_type_names` a non-empty list of strings, optional `exc_args`, `version`, and
/// `causes` (failure dicts, recursively).
pub fn check_failure(message: &'static str, field: &str, v: &Value) -> Result<(), InvalidFormat> {
    let map = object(message, field, v)?;
    string(
        message,
        &format!("{field}.exception_str"),
        map.get("exception_str"),
    )?;
    match map.get("traceback_str") {
        None => {
            return Err(bad(
                message,
                format!("{field}.traceback_str"),
                "is required",
            ))
        }
        Some(Value::String(_) | Value::Null) => {}
        Some(other) => {
            return Err(bad(
                message,
                format!("{field}.traceback_str"),
                format!("expected a string, found {}", kind(other)),
            ))
        }
    }
    let names_field = format!("{field}.exc_type_names");
    match map.get("exc_type_names") {
        Some(Value::Array(names)) if !names.is_empty() => {
            if names.iter().any(|n| !n.is_string()) {
                return Err(bad(message, names_field, "expected a list of strings"));
            }
        }
        Some(Value::Array(_)) => return Err(bad(message, names_field, "must not be empty")),
        Some(other) => {
            return Err(bad(
                message,
                names_field,
                format!("expected a list, found {}", kind(other)),
            ))
        }
        None => return Err(bad(message, names_field, "is required")),
    }
    if let Some(causes) = map.get("causes") {
        let list = causes.as_array().ok_or_else(|| {
            bad(
                message,
                format!("{field}.causes"),
                format!("expected a list, found {}", kind(causes)),
            )
        })?;
        for (i, c) in list.iter().enumerate() {
            check_failure(message, &format!("{field}.causes[{i}]"), c)?;
        }
    }
    Ok(())
}

/// A failure dict back as a weft [`crate::Failure`] (the inverse of
/// [`crate::Failure::to_taskflow`]): kinds from `exc_type_names`, the message from
/// `exception_str`, the traceback kept as the stderr tail, the first cause as the cause.
pub fn failure_from_dict(v: &Value) -> Result<crate::Failure, InvalidFormat> {
    check_failure("Failure", "(failure)", v)?;
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let kinds = v["exc_type_names"]
        .as_array()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let traceback = text("traceback_str");
    let cause = match v
        .get("causes")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
    {
        Some(c) => Some(Box::new(failure_from_dict(c)?)),
        None => None,
    };
    Ok(crate::Failure {
        kinds,
        message: text("exception_str"),
        exit_code: None,
        signal: None,
        stderr_tail: (!traceback.is_empty()).then_some(traceback),
        cause,
    })
}

/// Decodes a `REQUEST`, checking it against the seed's schema.
pub fn decode_request(v: &Value) -> Result<Request, InvalidFormat> {
    const M: &str = "Request";
    let map = object(M, "(message)", v)?;
    let task_cls = string(M, "task_cls", map.get("task_cls"))?;
    let task_name = string(M, "task_name", map.get("task_name"))?;
    let task_version = match map.get("task_version") {
        Some(Value::String(s)) => TaskVersion::Text(s.clone()),
        Some(Value::Array(a)) => TaskVersion::List(a.clone()),
        Some(other) => {
            return Err(bad(
                M,
                "task_version",
                format!("expected a string or a list, found {}", kind(other)),
            ))
        }
        None => return Err(bad(M, "task_version", "is required")),
    };
    let action = match string(M, "action", map.get("action"))?.as_str() {
        "execute" => Action::Execute,
        "revert" => Action::Revert,
        other => {
            return Err(bad(
                M,
                "action",
                format!("`{other}` is not one of execute, revert"),
            ))
        }
    };
    let arguments = match map.get("arguments") {
        None => Map::new(),
        Some(a) => object(M, "arguments", a)?.clone(),
    };
    let result = match map.get("result") {
        None => None,
        Some(Value::Array(pair)) if pair.len() == 2 => match pair[0].as_str() {
            Some("success") => Some(Ok(pair[1].clone())),
            Some("failure") => {
                check_failure(M, "result[1]", &pair[1])?;
                Some(Err(pair[1].clone()))
            }
            _ => return Err(bad(M, "result[0]", "expected \"success\" or \"failure\"")),
        },
        Some(_) => {
            return Err(bad(
                M,
                "result",
                "expected [\"success\", value] or [\"failure\", failure]",
            ))
        }
    };
    let failures = match map.get("failures") {
        None => None,
        Some(f) => {
            let f = object(M, "failures", f)?;
            for (name, failure) in f {
                check_failure(M, &format!("failures.{name}"), failure)?;
            }
            Some(f.clone())
        }
    };
    Ok(Request {
        task_cls,
        task_name,
        task_version,
        action,
        arguments,
        result,
        failures,
    })
}

/// Decodes a `RESPONSE`: `state` one of the request states or `EVENT`; `data` empty, a
/// completion `{result}` (a failure dict with `FAILURE`), or an event `{event_type, details}`.
pub fn decode_response(v: &Value) -> Result<Response, InvalidFormat> {
    const M: &str = "Response";
    let map = object(M, "(message)", v)?;
    only(M, "", map, &["state", "data"])?;
    let state_text = string(M, "state", map.get("state"))?;
    let state = if state_text == "EVENT" {
        ResponseState::Event
    } else {
        ResponseState::Request(
            RequestState::ALL
                .into_iter()
                .find(|s| s.as_str() == state_text)
                .ok_or_else(|| {
                    bad(
                        M,
                        "state",
                        format!(
                            "`{state_text}` is not one of WAITING, PENDING, RUNNING, SUCCESS, FAILURE, EVENT"
                        ),
                    )
                })?,
        )
    };
    let data = object(
        M,
        "data",
        map.get("data")
            .ok_or_else(|| bad(M, "data", "is required"))?,
    )?;
    let data = if data.is_empty() {
        ResponseData::Empty
    } else if data.contains_key("event_type") || data.contains_key("details") {
        only(M, "data.", data, &["event_type", "details"])?;
        let event_type = string(M, "data.event_type", data.get("event_type"))?;
        let details = object(
            M,
            "data.details",
            data.get("details")
                .ok_or_else(|| bad(M, "data.details", "is required"))?,
        )?
        .clone();
        ResponseData::Event {
            event_type,
            details,
        }
    } else {
        only(M, "data.", data, &["result"])?;
        let result = data
            .get("result")
            .cloned()
            .ok_or_else(|| bad(M, "data.result", "is required"))?;
        if state == ResponseState::Request(RequestState::Failure) {
            check_failure(M, "data.result", &result)?;
        }
        ResponseData::Completion(result)
    };
    Ok(Response { state, data })
}

/// Decodes a `NOTIFY`: the executor's (`response = false`) is `{}`; a worker's answer is
/// `{topic, tasks}` and nothing else.
pub fn decode_notify(v: &Value, response: bool) -> Result<Option<Notify>, InvalidFormat> {
    const M: &str = "Notify";
    let map = object(M, "(message)", v)?;
    if !response {
        only(M, "", map, &[])?;
        return Ok(None);
    }
    only(M, "", map, &["topic", "tasks"])?;
    let topic = string(M, "topic", map.get("topic"))?;
    let tasks = match map.get("tasks") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, t)| {
                t.as_str().map(str::to_string).ok_or_else(|| {
                    bad(
                        M,
                        format!("tasks[{i}]"),
                        format!("expected a string, found {}", kind(t)),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(bad(
                M,
                "tasks",
                format!("expected a list, found {}", kind(other)),
            ))
        }
        None => return Err(bad(M, "tasks", "is required")),
    };
    Ok(Some(Notify { topic, tasks }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use RequestState::*;

    fn failure() -> Value {
        crate::Failure::new("boom", "it broke").to_taskflow()
    }

    #[test]
    fn request_transitions_follow_the_seeds_machine() {
        // test_request_transitions: the happy path, same-state moves ignored, illegal refused.
        assert_eq!(Waiting.transition(Pending), Ok(true));
        assert_eq!(Pending.transition(Pending), Ok(false));
        assert_eq!(Pending.transition(Running), Ok(true));
        assert_eq!(Running.transition(Success), Ok(true));
        for (from, to) in [
            (Waiting, Running),
            (Waiting, Success),
            (Pending, Success),
            (Pending, Waiting),
            (Running, Pending),
            (Running, Waiting),
            (Success, Failure),
            (Failure, Success),
            (Success, Waiting),
        ] {
            assert_eq!(
                from.transition(to),
                Err(InvalidState { from, to }),
                "{from} -> {to}"
            );
        }
        for from in [Waiting, Pending, Running] {
            assert_eq!(from.transition(Failure), Ok(true), "{from} -> FAILURE");
        }
        assert!(Success.is_terminal() && Failure.is_terminal() && !Running.is_terminal());
    }

    #[test]
    fn only_waiting_and_pending_requests_expire() {
        let (long, timeout) = (Duration::from_secs(61), REQUEST_TIMEOUT);
        assert!(Waiting.expired(long, timeout));
        assert!(Pending.expired(long, timeout));
        // test_running_not_expired
        assert!(!Running.expired(long, timeout));
        assert!(!Success.expired(long, timeout) && !Failure.expired(long, timeout));
        assert!(!Waiting.expired(Duration::from_secs(1), timeout));
    }

    #[test]
    fn requests_round_trip_with_result_and_failures() {
        let request = Request {
            task_cls: "fetch".into(),
            task_name: "get-page".into(),
            task_version: TaskVersion::Text("1".into()),
            action: Action::Revert,
            arguments: json!({"url": "x"}).as_object().cloned().unwrap_or_default(),
            result: Some(Err(failure())),
            failures: Some(
                json!({"get-page": failure()})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        };
        let wire = request.to_json();
        assert_eq!(wire["result"][0], "failure");
        assert_eq!(decode_request(&wire), Ok(request.clone()));
        let ok = Request {
            result: Some(Ok(json!(5))),
            failures: None,
            action: Action::Execute,
            task_version: TaskVersion::List(vec![json!(1), json!(2)]),
            ..request
        };
        assert_eq!(ok.to_json()["result"], json!(["success", 5]));
        assert_eq!(decode_request(&ok.to_json()), Ok(ok));
        assert_eq!(Action::Execute.event(), "executed");
        assert_eq!(Action::Revert.event(), "reverted");
    }

    #[test]
    fn malformed_requests_name_their_field() {
        let base =
            json!({"task_cls": "t", "task_name": "n", "task_version": "1", "action": "execute"});
        assert!(decode_request(&base).is_ok());
        for (change, field) in [
            (json!({"task_cls": null}), "task_cls"),
            (json!({"task_version": 3}), "task_version"),
            (json!({"action": "run"}), "action"),
            (json!({"arguments": []}), "arguments"),
            (json!({"result": ["maybe", 1]}), "result[0]"),
            (
                json!({"result": ["failure", {"exception_str": "x"}]}),
                "result[1].traceback_str",
            ),
            (
                json!({"failures": {"a": {"exception_str": "x", "traceback_str": "", "exc_type_names": []}}}),
                "failures.a.exc_type_names",
            ),
        ] {
            let mut v = base.clone();
            for (k, x) in change.as_object().cloned().unwrap_or_default() {
                v[k] = x;
            }
            let e = decode_request(&v).expect_err("malformed");
            assert_eq!(e.field, field, "{e}");
        }
        let e = decode_request(&json!([1])).expect_err("not an object");
        assert!(
            e.to_string()
                .contains("Request message not of the expected format"),
            "{e}"
        );
    }

    #[test]
    fn responses_decode_by_the_seeds_schema() {
        let running = json!({"state": "RUNNING", "data": {}});
        assert_eq!(
            decode_response(&running),
            Ok(Response {
                state: ResponseState::Request(Running),
                data: ResponseData::Empty
            })
        );
        let done = json!({"state": "SUCCESS", "data": {"result": {"n": 1}}});
        assert_eq!(decode_response(&done).map(|r| r.to_json()), Ok(done));
        let event = json!({"state": "EVENT", "data": {"event_type": "update_progress", "details": {"progress": 0.5}}});
        assert_eq!(decode_response(&event).map(|r| r.to_json()), Ok(event));
        let failed = json!({"state": "FAILURE", "data": {"result": failure()}});
        assert!(decode_response(&failed).is_ok());
        for (bad_one, field) in [
            (json!({"state": "DONE", "data": {}}), "state"),
            (json!({"state": "RUNNING"}), "data"),
            (json!({"state": "RUNNING", "data": {}, "extra": 1}), "extra"),
            (
                json!({"state": "FAILURE", "data": {"result": "oops"}}),
                "data.result",
            ),
            (
                json!({"state": "EVENT", "data": {"event_type": "x"}}),
                "data.details",
            ),
            (
                json!({"state": "SUCCESS", "data": {"result": 1, "more": 2}}),
                "data.more",
            ),
        ] {
            let e = decode_response(&bad_one).expect_err("malformed");
            assert_eq!(e.field, field, "{e}");
        }
    }

    #[test]
    fn failures_round_trip_through_the_seeds_dict() {
        let mut f = crate::Failure::new("timeout", "took too long")
            .with_kind("command")
            .with_stderr(b"trace");
        f.cause = Some(Box::new(crate::Failure::new("io", "pipe closed")));
        assert_eq!(failure_from_dict(&f.to_taskflow()), Ok(f));
        // A Python worker's failure, with exc_args and no causes.
        let python = json!({"exception_str": "bad", "traceback_str": "Traceback ...",
            "exc_type_names": ["ValueError", "StandardError", "BaseException"], "exc_args": ["bad"]});
        let f = failure_from_dict(&python).expect("a valid failure dict");
        assert_eq!(f.kinds[0], "ValueError");
        assert!(failure_from_dict(&json!({"exception_str": "x"})).is_err());
    }

    #[test]
    fn notify_has_a_sender_and_a_response_schema() {
        assert_eq!(decode_notify(&json!({}), false), Ok(None));
        assert!(decode_notify(&json!({"topic": "t"}), false).is_err());
        assert_eq!(
            decode_notify(&json!({"topic": "t", "tasks": ["a", "b"]}), true),
            Ok(Some(Notify {
                topic: "t".into(),
                tasks: vec!["a".into(), "b".into()]
            }))
        );
        for (bad_one, field) in [
            (json!({"tasks": []}), "topic"),
            (json!({"topic": "t"}), "tasks"),
            (json!({"topic": "t", "tasks": [1]}), "tasks[0]"),
            (json!({"topic": "t", "tasks": [], "x": 1}), "x"),
        ] {
            let e = decode_notify(&bad_one, true).expect_err("malformed");
            assert_eq!(e.field, field, "{e}");
        }
    }
}
