//! The worker's side (TaskFlow's worker `Server`), free of any transport: what it announces
//! in answer to `NOTIFY`, and how it answers one `REQUEST` — dropped when it cannot be answered
//! (no correlation id or no one to reply to), `FAILURE` naming the problem when the message is
//! malformed or asks for a task it does not run, otherwise `RUNNING`, then `SUCCESS` with the
//! result or `FAILURE` with the task's failure (in the seed's failure dict).

use serde_json::Value;
use std::sync::Arc;
use weft_engine::{Context, Registry, RevertContext};
use weft_model::worker::{
    decode_request, failure_from_dict, Action, Notify, RequestState, Response, ResponseData,
    ResponseState,
};
use weft_model::{Failure, PlanId};

/// What travels with a message besides its body (TaskFlow's AMQP properties, and weft's
/// fencing): who to answer, which request and attempt it is, and for which plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The request's id (TaskFlow's `correlation_id`, the task's uuid).
    pub correlation_id: Option<String>,
    /// Where to send responses (TaskFlow's `reply_to`).
    pub reply_to: Option<String>,
    /// The attempt of the step this request is for.
    pub attempt: u32,
    /// The plan the step belongs to.
    pub plan: PlanId,
}

/// Why a request was not answered at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    /// It had no correlation id, or no one to reply to: TaskFlow logs a warning and drops it.
    Unanswerable(&'static str),
    /// Sending `RUNNING` failed: nothing more is done (the executor's timeout applies).
    ReplyFailed,
}

/// A worker: a topic and the tasks it runs.
#[derive(Clone)]
pub struct Server {
    topic: String,
    registry: Arc<Registry>,
}

impl Server {
    /// A worker at `topic` running the tasks of `registry`.
    pub fn new(topic: impl Into<String>, registry: Arc<Registry>) -> Self {
        Server {
            topic: topic.into(),
            registry,
        }
    }

    /// Its answer to `NOTIFY`: its topic and the tasks it runs (`name@version`, as weft names
    /// capabilities).
    pub fn notify(&self) -> Notify {
        Notify {
            topic: self.topic.clone(),
            tasks: self.registry.capabilities(),
        }
    }

    /// Its topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Answers one `REQUEST`: every response goes to `reply` in order (`reply` resolves to
    /// false when it could not be sent). Returns why nothing (more) was answered, if so.
    pub async fn handle<F, Fut>(
        &self,
        envelope: &Envelope,
        message: &Value,
        mut reply: F,
    ) -> Result<(), Dropped>
    where
        F: FnMut(Response) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        if envelope.reply_to.is_none() {
            return Err(Dropped::Unanswerable(
                "the request names no one to reply to",
            ));
        }
        if envelope.correlation_id.is_none() {
            return Err(Dropped::Unanswerable("the request has no correlation id"));
        }
        let fail = |failure: Failure| Response {
            state: ResponseState::Request(RequestState::Failure),
            data: ResponseData::Completion(failure.to_taskflow()),
        };
        let request = match decode_request(message) {
            Ok(r) => r,
            Err(e) => {
                reply(fail(Failure::new("InvalidFormat", e.to_string()))).await;
                return Ok(());
            }
        };
        let wanted = crate::requests::capability(&request);
        let version = wanted.rsplit_once('@').map_or("", |(_, v)| v).to_string();
        let Some(task) = self.registry.get(&request.task_cls, &version) else {
            reply(fail(Failure::new(
                "NotFound",
                format!(
                    "this worker (topic {}) does not run task `{wanted}`",
                    self.topic
                ),
            )));
            return Ok(());
        };
        let running = Response {
            state: ResponseState::Request(RequestState::Running),
            data: ResponseData::Empty,
        };
        // The task's progress events go back as `EVENT` responses, after `RUNNING`.
        let (events, mut got) = tokio::sync::mpsc::unbounded_channel();
        let context = Context::new(
            envelope.plan,
            request.task_name.clone(),
            envelope.attempt,
            request.arguments.clone(),
        )
        .with_events(events);
        let event = |e: weft_model::group::TaskEvent| Response {
            state: ResponseState::Event,
            data: ResponseData::Event {
                event_type: e.event_type,
                details: e.details,
            },
        };
        let run = async {
            match request.action {
                Action::Execute => task.execute(context).await,
                Action::Revert => {
                    let (result, failure) = match &request.result {
                        Some(Ok(v)) => (Some(v.clone()), None),
                        Some(Err(f)) => (None, failure_from_dict(f).ok()),
                        None => (None, None),
                    };
                    let failure = failure
                        .or_else(|| {
                            request.failures.as_ref().and_then(|all| {
                                all.values().next().and_then(|f| failure_from_dict(f).ok())
                            })
                        })
                        .unwrap_or_else(|| Failure::new("reverted", "the flow is reverting"));
                    task.revert(RevertContext {
                        context,
                        result,
                        failure,
                    })
                    .await
                    .map(|()| Value::Null)
                }
            }
        };
        let last = |outcome: Result<Value, Failure>| match outcome {
            Ok(result) => Response {
                state: ResponseState::Request(RequestState::Success),
                data: ResponseData::Completion(result),
            },
            Err(failure) => fail(failure),
        };
        // As TaskFlow's worker publishes RUNNING and goes on, the task runs while the
        // acknowledgement travels (a transport queues each reply at once, in order). A task
        // done at its first poll has its result queued right behind the acknowledgement, to
        // travel with it. If the acknowledgement could not be sent, the result is not sent
        // either (the executor's request expires).
        let mut run = std::pin::pin!(run);
        let at_once = tokio::select! {
            biased;
            outcome = &mut run => Some(outcome),
            () = std::future::ready(()) => None,
        };
        let ack = reply(running);
        let mut sent = Vec::new();
        /// The result: queued behind the acknowledgement, or to send once it is known.
        enum Last<F> {
            Queued(F),
            Due(Result<Value, Failure>),
        }
        let result = match at_once {
            Some(outcome) => {
                while let Ok(e) = got.try_recv() {
                    sent.push(reply(event(e)));
                }
                Last::Queued(reply(last(outcome)))
            }
            None => loop {
                tokio::select! {
                    outcome = &mut run => break Last::Due(outcome),
                    Some(e) = got.recv() => sent.push(reply(event(e))),
                }
            },
        };
        while let Ok(e) = got.try_recv() {
            sent.push(reply(event(e)));
        }
        if !ack.await {
            return Err(Dropped::ReplyFailed);
        }
        for s in sent {
            s.await;
        }
        match result {
            Last::Queued(sending) => sending.await,
            Last::Due(outcome) => reply(last(outcome)).await,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weft_engine::task_fn;

    fn server() -> Server {
        let mut r = Registry::new();
        r.register(
            "double",
            "1",
            task_fn(|ctx| async move {
                let n = ctx.inputs.get("n").and_then(Value::as_i64).unwrap_or(0);
                Ok(json!({ "doubled": n * 2 }))
            }),
        );
        r.register(
            "later",
            "1",
            task_fn(|_| async {
                tokio::task::yield_now().await;
                Ok(json!({}))
            }),
        );
        r.register(
            "fail",
            "1",
            task_fn(|_| async { Err(Failure::new("ValueError", "bad")) }),
        );
        Server::new("t1", Arc::new(r))
    }

    fn envelope() -> Envelope {
        Envelope {
            correlation_id: Some("r1".into()),
            reply_to: Some("executor".into()),
            attempt: 1,
            plan: PlanId::new(),
        }
    }

    async fn answers(s: &Server, e: &Envelope, m: Value) -> (Result<(), Dropped>, Vec<Value>) {
        let mut got = Vec::new();
        let r = s
            .handle(e, &m, |resp| {
                got.push(resp.to_json());
                std::future::ready(true)
            })
            .await;
        (r, got)
    }

    #[tokio::test]
    async fn a_request_is_answered_running_then_its_result() {
        let s = server();
        assert_eq!(s.notify().tasks, ["double@1", "fail@1", "later@1"]);
        let m = json!({"task_cls": "double", "task_name": "d", "task_version": "1",
                       "action": "execute", "arguments": {"n": 21}});
        let (r, got) = answers(&s, &envelope(), m).await;
        assert_eq!(r, Ok(()));
        assert_eq!(got[0], json!({"state": "RUNNING", "data": {}}));
        assert_eq!(
            got[1],
            json!({"state": "SUCCESS", "data": {"result": {"doubled": 42}}})
        );
        let m = json!({"task_cls": "fail", "task_name": "f", "task_version": ["1"], "action": "execute"});
        let (_, got) = answers(&s, &envelope(), m).await;
        assert_eq!(got[1]["state"], "FAILURE");
        assert_eq!(got[1]["data"]["result"]["exc_type_names"][0], "ValueError");
    }

    #[tokio::test]
    async fn bad_requests_get_a_failure_naming_the_problem_and_unanswerable_ones_are_dropped() {
        let s = server();
        let (_, got) = answers(&s, &envelope(), json!({"task_cls": "double"})).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["state"], "FAILURE");
        let why = got[0]["data"]["result"]["exception_str"]
            .as_str()
            .unwrap_or_default();
        assert!(why.contains("task_name"), "{why}");
        let unknown =
            json!({"task_cls": "nope", "task_name": "n", "task_version": "1", "action": "execute"});
        let (_, got) = answers(&s, &envelope(), unknown.clone()).await;
        assert_eq!(got[0]["data"]["result"]["exc_type_names"][0], "NotFound");
        let no_reply = Envelope {
            reply_to: None,
            ..envelope()
        };
        let (r, got) = answers(&s, &no_reply, unknown.clone()).await;
        assert!(matches!(r, Err(Dropped::Unanswerable(_))) && got.is_empty());
        let no_id = Envelope {
            correlation_id: None,
            ..envelope()
        };
        assert!(matches!(
            answers(&s, &no_id, unknown).await.0,
            Err(Dropped::Unanswerable(_))
        ));
    }

    #[tokio::test]
    async fn nothing_more_is_done_when_running_cannot_be_sent() {
        let s = server();
        // A task that is not done at once: its result would follow the acknowledgement.
        let m = json!({"task_cls": "later", "task_name": "d", "task_version": "1", "action": "execute"});
        let mut sent = 0;
        let r = s
            .handle(&envelope(), &m, |_| {
                sent += 1;
                std::future::ready(false)
            })
            .await;
        assert_eq!(r, Err(Dropped::ReplyFailed));
        assert_eq!(sent, 1);
    }
}
