//! How messages travel between executors and workers: the [`Transport`] trait (send to a
//! topic, receive on one's own), and [`InProcess`], channels within one process (tests and
//! embedded workers). A PostgreSQL transport (a message table and `LISTEN/NOTIFY`) implements
//! the same trait.

use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use weft_model::PlanId;

/// A boxed future, so that [`Transport`] can be a trait object.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A message's type (the seed's `NOTIFY`, `REQUEST`, `RESPONSE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// "Who are you and what do you run?" (empty), or a worker's answer (`{topic, tasks}`).
    Notify,
    /// Run or revert a task.
    Request,
    /// A request's progress or end.
    Response,
}

/// A message as it travels: its kind, its properties and its JSON body (checked by the
/// receiver, never trusted).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Its type.
    pub kind: Kind,
    /// The request it belongs to (TaskFlow's `correlation_id`).
    pub correlation_id: Option<String>,
    /// Where to answer (TaskFlow's `reply_to`).
    pub reply_to: Option<String>,
    /// The attempt of the step it is for.
    pub attempt: u32,
    /// The plan the step belongs to.
    pub plan: Option<PlanId>,
    /// The seed's message body.
    pub body: Value,
}

/// Why a message could not be sent or received.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No one listens on the topic (in process), or it cannot be reached.
    #[error("cannot send to topic `{0}`: no one listens there")]
    NoListener(String),
    /// The transport was closed.
    #[error("the transport is closed")]
    Closed,
}

/// Sends messages to topics; each party receives on its own topic.
pub trait Transport: Send + Sync + 'static {
    /// Sends `message` to whoever listens on `topic`.
    fn send(&self, topic: &str, message: Message) -> BoxFuture<Result<(), TransportError>>;

    /// Listens on `topic`: messages sent there from now on.
    fn listen(&self, topic: &str) -> Result<Listener, TransportError>;
}

/// Messages arriving on one topic.
pub struct Listener(mpsc::UnboundedReceiver<Message>);

impl Listener {
    /// A listener fed by `rx` (for transports).
    pub fn new(rx: mpsc::UnboundedReceiver<Message>) -> Self {
        Listener(rx)
    }

    /// The next message; `None` once the transport is gone.
    pub async fn next(&mut self) -> Option<Message> {
        self.0.recv().await
    }
}

/// Topics within one process, as channels.
#[derive(Clone, Default)]
pub struct InProcess {
    topics: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Message>>>>,
}

impl InProcess {
    /// No one listening yet.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Transport for InProcess {
    fn send(&self, topic: &str, message: Message) -> BoxFuture<Result<(), TransportError>> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let sent = match topics.get(topic) {
            Some(tx) if tx.send(message).is_ok() => Ok(()),
            Some(_) => {
                // Its listener is gone.
                topics.remove(topic);
                Err(TransportError::NoListener(topic.to_string()))
            }
            None => Err(TransportError::NoListener(topic.to_string())),
        };
        Box::pin(std::future::ready(sent))
    }

    fn listen(&self, topic: &str) -> Result<Listener, TransportError> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_string(), tx);
        Ok(Listener::new(rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: Value) -> Message {
        Message {
            kind: Kind::Notify,
            correlation_id: None,
            reply_to: Some("executor".into()),
            attempt: 0,
            plan: None,
            body,
        }
    }

    #[tokio::test]
    async fn messages_reach_the_listener_of_their_topic_only() {
        let t = InProcess::new();
        let mut a = t.listen("a").expect("listen");
        let mut b = t.listen("b").expect("listen");
        t.send("a", message(serde_json::json!({"n": 1})))
            .await
            .expect("send");
        assert_eq!(
            a.next().await.map(|m| m.body["n"].clone()),
            Some(serde_json::json!(1))
        );
        assert_eq!(
            t.send("nowhere", message(serde_json::json!({}))).await,
            Err(TransportError::NoListener("nowhere".into()))
        );
        drop(b.0.try_recv());
        drop(b);
        assert!(t.send("b", message(serde_json::json!({}))).await.is_err());
    }
}
