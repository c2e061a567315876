//! The executor's side of remote execution (TaskFlow's `WorkerTaskExecutor` bookkeeping, with
//! no transport): the requests it has out, each in the seed's state machine; matching waiting
//! ones to workers; responses, with unknown and stale ones ignored; expiry of waiting and
//! pending requests; `stop()`; and, beyond TaskFlow, a request whose worker was lost.

use crate::finder::WorkerFinder;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use weft_model::worker::{
    failure_from_dict, Action, InvalidState, Request, RequestState, Response, ResponseData,
    ResponseState,
};
use weft_model::Failure;

/// A request the executor has out.
#[derive(Debug, Clone)]
pub struct Outstanding {
    /// What it asks.
    pub request: Request,
    /// Where it stands.
    pub state: RequestState,
    /// Which attempt of its step it is: a response for another attempt is stale.
    pub attempt: u32,
    /// When it was made (milliseconds on the caller's clock).
    pub created_at: u64,
    /// How long it may stay `WAITING` or `PENDING`.
    pub timeout: Duration,
    /// The worker it was sent to.
    pub topic: Option<String>,
}

/// A request to send now: it was matched to a worker and is `PENDING`.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    /// Its correlation id.
    pub id: String,
    /// Its attempt.
    pub attempt: u32,
    /// The chosen worker.
    pub topic: String,
    /// The `REQUEST` message.
    pub message: Value,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    /// Its correlation id.
    pub id: String,
    /// `executed` or `reverted` (TaskFlow's event for the action).
    pub event: &'static str,
    /// The task's result, or why it failed.
    pub result: Result<Value, Failure>,
}

/// What a response did.
#[derive(Debug, Clone, PartialEq)]
pub enum Reaction {
    /// The request moved (to `RUNNING`).
    Moved(RequestState),
    /// Progress from the task, for its step.
    Event {
        /// Its type.
        event_type: String,
        /// Its details.
        details: Map<String, Value>,
    },
    /// The request ended.
    Settled(Settled),
}

/// The requests out.
#[derive(Debug, Default)]
pub struct Requests {
    ongoing: BTreeMap<String, Outstanding>,
}

impl Requests {
    /// None out.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new request, `WAITING` for a worker.
    pub fn submit(
        &mut self,
        id: String,
        attempt: u32,
        request: Request,
        now: u64,
        timeout: Duration,
    ) {
        self.ongoing.insert(
            id,
            Outstanding {
                request,
                state: RequestState::Waiting,
                attempt,
                created_at: now,
                timeout,
                topic: None,
            },
        );
    }

    /// A request out, by correlation id.
    pub fn get(&self, id: &str) -> Option<&Outstanding> {
        self.ongoing.get(id)
    }

    /// How many are out.
    pub fn len(&self) -> usize {
        self.ongoing.len()
    }

    /// Whether none is out.
    pub fn is_empty(&self) -> bool {
        self.ongoing.is_empty()
    }

    /// Whether some request still waits for a worker that runs its task.
    pub fn any_waiting(&self) -> bool {
        self.ongoing
            .values()
            .any(|r| r.state == RequestState::Waiting)
    }

    /// Matches `WAITING` requests to workers that run their task (at random among them, by
    /// `random`); each matched one becomes `PENDING` and is returned to publish. Requests no
    /// worker runs stay `WAITING`.
    pub fn dispatch(
        &mut self,
        finder: &WorkerFinder,
        random: &mut impl FnMut() -> u64,
    ) -> Vec<Publish> {
        let mut out = Vec::new();
        for (id, r) in &mut self.ongoing {
            if r.state != RequestState::Waiting {
                continue;
            }
            let Some(worker) = finder.pick(&capability(&r.request), random()) else {
                continue;
            };
            r.state = RequestState::Pending;
            r.topic = Some(worker.topic.clone());
            out.push(Publish {
                id: id.clone(),
                attempt: r.attempt,
                topic: worker.topic.clone(),
                message: r.request.to_json(),
            });
        }
        out
    }

    fn settle(&mut self, id: &str, result: Result<Value, Failure>) -> Option<Settled> {
        let r = self.ongoing.remove(id)?;
        Some(Settled {
            id: id.to_string(),
            event: r.request.action.event(),
            result,
        })
    }

    /// Publishing a request failed: it fails (`PENDING → FAILURE`).
    pub fn publish_failed(&mut self, id: &str, why: &str) -> Option<Settled> {
        let failure = Failure::new(
            "PublishFailed",
            format!("could not send request {id}: {why}"),
        );
        self.settle(id, Err(failure))
    }

    /// A response for request `id`, attempt `attempt`. One for an unknown request, or for
    /// another attempt than the one out (a lost worker answering late), is ignored (`Ok(None)`);
    /// a move the machine does not have is [`InvalidState`] and changes nothing.
    pub fn on_response(
        &mut self,
        id: &str,
        attempt: u32,
        response: Response,
    ) -> Result<Option<Reaction>, InvalidState> {
        let Some(r) = self.ongoing.get_mut(id) else {
            return Ok(None);
        };
        if r.attempt != attempt {
            return Ok(None);
        }
        let to = match response.state {
            ResponseState::Event => {
                return Ok(match response.data {
                    ResponseData::Event {
                        event_type,
                        details,
                    } => Some(Reaction::Event {
                        event_type,
                        details,
                    }),
                    _ => None,
                })
            }
            ResponseState::Request(to) => to,
        };
        if !r.state.transition(to)? {
            return Ok(None);
        }
        r.state = to;
        let result = match (to, response.data) {
            (RequestState::Success, ResponseData::Completion(v)) => Ok(v),
            (RequestState::Success, _) => Ok(Value::Null),
            (RequestState::Failure, ResponseData::Completion(f)) => Err(failure_from_dict(&f)
                .unwrap_or_else(|e| Failure::new("InvalidFormat", e.to_string()))),
            (RequestState::Failure, _) => Err(Failure::new(
                "RemoteFailure",
                "the worker reported a failure without details",
            )),
            (moved, _) => return Ok(Some(Reaction::Moved(moved))),
        };
        Ok(self.settle(id, result).map(Reaction::Settled))
    }

    /// Fails the requests that stayed `WAITING` or `PENDING` past their timeout at `now`
    /// (TaskFlow's `RequestTimeout`); `RUNNING` ones never expire.
    pub fn expire(&mut self, now: u64) -> Vec<Settled> {
        let expired: Vec<(String, Duration)> = self
            .ongoing
            .iter()
            .filter(|(_, r)| {
                r.state.expired(
                    Duration::from_millis(now.saturating_sub(r.created_at)),
                    r.timeout,
                )
            })
            .map(|(id, r)| (id.clone(), r.timeout))
            .collect();
        expired
            .into_iter()
            .filter_map(|(id, timeout)| {
                let failure = Failure::new(
                    "RequestTimeout",
                    format!(
                        "request {id} has expired after waiting for {} seconds",
                        timeout.as_secs()
                    ),
                );
                self.settle(&id, Err(failure))
            })
            .collect()
    }

    /// TaskFlow's `stop()`: every request out fails as expired.
    pub fn stop(&mut self) -> Vec<Settled> {
        let ids: Vec<String> = self.ongoing.keys().cloned().collect();
        ids.into_iter()
            .filter_map(|id| {
                let failure = Failure::new(
                    "RequestTimeout",
                    format!("request {id} has expired: the executor stopped"),
                );
                self.settle(&id, Err(failure))
            })
            .collect()
    }

    /// Beyond TaskFlow (whose engine waits for ever here): the worker at `topic` is gone (its
    /// lease lapsed), so the requests sent to it that have not ended fail with `WorkerLost` —
    /// the step's retry policy sends them again, as a new attempt.
    pub fn worker_lost(&mut self, topic: &str) -> Vec<Settled> {
        let lost: Vec<String> = self
            .ongoing
            .iter()
            .filter(|(_, r)| {
                r.topic.as_deref() == Some(topic)
                    && matches!(r.state, RequestState::Pending | RequestState::Running)
            })
            .map(|(id, _)| id.clone())
            .collect();
        lost.into_iter()
            .filter_map(|id| {
                let failure = Failure::new(
                    "WorkerLost",
                    format!("the worker at topic {topic} running request {id} was lost"),
                );
                self.settle(&id, Err(failure))
            })
            .collect()
    }
}

/// What a worker must run to take `request`: its task as `name@version`, as workers
/// announce it.
pub fn capability(request: &Request) -> String {
    let version = match &request.task_version {
        weft_model::worker::TaskVersion::Text(v) => v.clone(),
        weft_model::worker::TaskVersion::List(parts) => parts
            .iter()
            .map(|p| match p {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join("."),
    };
    weft_model::flow::capability(&request.task_cls, &version)
}

/// A request for `task` (its registered name) of the step `step`.
pub fn request(
    task: &str,
    step: &str,
    version: &str,
    action: Action,
    arguments: Map<String, Value>,
) -> Request {
    Request {
        task_cls: task.into(),
        task_name: step.into(),
        task_version: weft_model::worker::TaskVersion::Text(version.into()),
        action,
        arguments,
        result: None,
        failures: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weft_model::worker::{decode_response, Notify};

    fn finder(tasks: &[&str]) -> WorkerFinder {
        let mut f = WorkerFinder::new();
        f.on_notify(
            Notify {
                topic: "t1".into(),
                tasks: tasks.iter().map(|t| t.to_string()).collect(),
            },
            0,
        );
        f
    }

    fn out(requests: &mut Requests, id: &str, task: &str) {
        let r = request(task, "step", "1", Action::Execute, Map::new());
        requests.submit(id.into(), 1, r, 0, Duration::from_secs(60));
    }

    fn respond(v: Value) -> Response {
        decode_response(&v).expect("a valid response")
    }

    #[test]
    fn a_request_goes_to_a_capable_worker_and_settles_with_its_result() {
        let mut rs = Requests::new();
        out(&mut rs, "r1", "fetch");
        let sent = rs.dispatch(&finder(&["fetch@1"]), &mut || 0);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].topic, "t1");
        assert_eq!(sent[0].message["action"], "execute");
        assert_eq!(rs.get("r1").map(|r| r.state), Some(RequestState::Pending));
        let running = rs.on_response("r1", 1, respond(json!({"state": "RUNNING", "data": {}})));
        assert_eq!(running, Ok(Some(Reaction::Moved(RequestState::Running))));
        let progress = rs.on_response(
            "r1",
            1,
            respond(json!({"state": "EVENT", "data": {"event_type": "update_progress", "details": {"progress": 0.5}}})),
        );
        assert!(matches!(progress, Ok(Some(Reaction::Event { .. }))));
        let done = rs.on_response(
            "r1",
            1,
            respond(json!({"state": "SUCCESS", "data": {"result": 7}})),
        );
        assert_eq!(
            done,
            Ok(Some(Reaction::Settled(Settled {
                id: "r1".into(),
                event: "executed",
                result: Ok(json!(7))
            })))
        );
        assert!(rs.is_empty());
    }

    #[test]
    fn a_failure_travels_back_as_a_failure() {
        let mut rs = Requests::new();
        out(&mut rs, "r1", "fetch");
        rs.dispatch(&finder(&["fetch@1"]), &mut || 0);
        let _ = rs.on_response("r1", 1, respond(json!({"state": "RUNNING", "data": {}})));
        let failure = Failure::new("ValueError", "bad input");
        let reaction = rs.on_response(
            "r1",
            1,
            respond(json!({"state": "FAILURE", "data": {"result": failure.to_taskflow()}})),
        );
        match reaction {
            Ok(Some(Reaction::Settled(s))) => assert_eq!(s.result, Err(failure)),
            other => panic!("not settled: {other:?}"),
        }
    }

    #[test]
    fn unknown_and_stale_responses_are_ignored_and_illegal_moves_refused() {
        let mut rs = Requests::new();
        out(&mut rs, "r1", "fetch");
        // test_on_response_unknown_task
        assert_eq!(
            rs.on_response("nope", 1, respond(json!({"state": "RUNNING", "data": {}}))),
            Ok(None)
        );
        // A request not sent yet cannot run.
        assert!(rs
            .on_response("r1", 1, respond(json!({"state": "RUNNING", "data": {}})))
            .is_err());
        rs.dispatch(&finder(&["fetch@1"]), &mut || 0);
        // A late answer from an earlier attempt.
        assert_eq!(
            rs.on_response(
                "r1",
                0,
                respond(json!({"state": "SUCCESS", "data": {"result": 1}}))
            ),
            Ok(None)
        );
        assert_eq!(rs.get("r1").map(|r| r.state), Some(RequestState::Pending));
        // The same state twice is ignored.
        let _ = rs.on_response("r1", 1, respond(json!({"state": "RUNNING", "data": {}})));
        assert_eq!(
            rs.on_response("r1", 1, respond(json!({"state": "RUNNING", "data": {}}))),
            Ok(None)
        );
    }

    #[test]
    fn waiting_requests_wait_for_a_capable_worker_then_go() {
        let mut rs = Requests::new();
        out(&mut rs, "r1", "render");
        let mut f = finder(&["fetch@1"]);
        assert!(rs.dispatch(&f, &mut || 0).is_empty());
        assert_eq!(rs.get("r1").map(|r| r.state), Some(RequestState::Waiting));
        f.on_notify(
            Notify {
                topic: "t2".into(),
                tasks: vec!["render@1".into()],
            },
            1,
        );
        let sent = rs.dispatch(&f, &mut || 0);
        assert_eq!(sent.first().map(|p| p.topic.as_str()), Some("t2"));
    }

    #[test]
    fn waiting_and_pending_requests_expire_running_ones_do_not() {
        let mut rs = Requests::new();
        out(&mut rs, "waiting", "none-runs-this");
        out(&mut rs, "pending", "fetch");
        out(&mut rs, "running", "fetch");
        rs.dispatch(&finder(&["fetch@1"]), &mut || 0);
        let _ = rs.on_response(
            "running",
            1,
            respond(json!({"state": "RUNNING", "data": {}})),
        );
        // test_on_wait_task_not_expired
        assert!(rs.expire(59_000).is_empty());
        // test_on_wait_task_expired
        let expired: Vec<String> = rs.expire(61_000).into_iter().map(|s| s.id).collect();
        assert_eq!(expired, ["pending", "waiting"]);
        assert_eq!(rs.len(), 1);
        // test_stop: what is left fails as expired.
        let stopped = rs.stop();
        assert_eq!(stopped.len(), 1);
        assert!(matches!(&stopped[0].result, Err(f) if f.kinds[0] == "RequestTimeout"));
        assert!(rs.is_empty());
    }

    #[test]
    fn a_lost_worker_fails_what_it_was_running() {
        let mut rs = Requests::new();
        out(&mut rs, "r1", "fetch");
        out(&mut rs, "r2", "other");
        rs.dispatch(&finder(&["fetch@1"]), &mut || 0);
        let _ = rs.on_response("r1", 1, respond(json!({"state": "RUNNING", "data": {}})));
        let lost = rs.worker_lost("t1");
        assert_eq!(lost.len(), 1);
        assert!(matches!(&lost[0].result, Err(f) if f.kinds[0] == "WorkerLost"));
        // The waiting one was never sent there.
        assert_eq!(rs.get("r2").map(|r| r.state), Some(RequestState::Waiting));
    }

    #[test]
    fn a_publish_that_fails_fails_the_request() {
        let mut rs = Requests::new();
        out(&mut rs, "r1", "fetch");
        rs.dispatch(&finder(&["fetch@1"]), &mut || 0);
        let settled = rs.publish_failed("r1", "connection lost");
        assert!(matches!(settled, Some(Settled { result: Err(_), .. })));
        assert!(rs.is_empty());
    }
}
