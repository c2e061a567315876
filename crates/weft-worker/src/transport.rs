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
use weft_model::worker::Notify;
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

    /// Sends each message to its topic, in order; as one write where the transport can. The
    /// default sends them one by one.
    fn send_many(&self, messages: Vec<(String, Message)>) -> BoxFuture<Result<(), TransportError>> {
        let sends: Vec<_> = messages
            .into_iter()
            .map(|(topic, m)| self.send(&topic, m))
            .collect();
        Box::pin(async move {
            for s in sends {
                s.await?;
            }
            Ok(())
        })
    }

    /// Listens on `topic`: messages sent there from now on.
    fn listen(&self, topic: &str) -> Result<Listener, TransportError>;

    /// A worker says it is alive, what it runs, how many requests it is running and how long
    /// this heartbeat stays good (its lease starts again). Transports without leases
    /// (in-process: a worker dies with its process) do nothing.
    fn heartbeat(
        &self,
        notify: &Notify,
        running: u32,
        lease: std::time::Duration,
    ) -> BoxFuture<Result<(), TransportError>> {
        let _ = (notify, running, lease);
        Box::pin(std::future::ready(Ok(())))
    }

    /// The workers whose lease has lapsed (their own, or `lease` for one that said none), by
    /// topic: what they were running is lost. None on transports without leases.
    fn lapsed(&self, lease: std::time::Duration) -> BoxFuture<Result<Vec<String>, TransportError>> {
        let _ = lease;
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// The topics of the workers registered with the transport (those that heartbeat), to
    /// ask what they run. None on transports without registrations.
    fn topics(&self) -> BoxFuture<Result<Vec<String>, TransportError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// A worker is gone for good (it stopped, or its lease lapsed and it was counted lost).
    fn forget(&self, topic: &str) -> BoxFuture<Result<(), TransportError>> {
        let _ = topic;
        Box::pin(std::future::ready(Ok(())))
    }
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
        let b = t.listen("b").expect("listen");
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
        // A listener that is gone takes nothing more.
        drop(b);
        assert!(t.send("b", message(serde_json::json!({}))).await.is_err());
    }
}

/// Topics as rows of the store's message table, so that workers on other machines need only
/// the database: a sender inserts; a listener takes what waits for its topic as soon as the
/// store hints that messages were sent (PostgreSQL's `NOTIFY`, SQLite's wake-up sockets), and
/// looks every 50 ms anyway (500 ms with hints). A body that is not JSON arrives as a string,
/// for its receiver to refuse.
#[derive(Clone)]
pub struct StoreTransport {
    store: weft_store::SharedStore,
}

impl StoreTransport {
    /// The transport over `store`.
    pub fn new(store: weft_store::SharedStore) -> Self {
        StoreTransport { store }
    }
}

/// The most messages taken at once.
const TAKE_BATCH: u32 = 256;

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Notify => "NOTIFY",
        Kind::Request => "REQUEST",
        Kind::Response => "RESPONSE",
    }
}

fn from_wire(m: weft_store::WireMessage) -> Option<Message> {
    let kind = match m.kind.as_str() {
        "NOTIFY" => Kind::Notify,
        "REQUEST" => Kind::Request,
        "RESPONSE" => Kind::Response,
        other => {
            tracing::warn!(topic = %m.topic, "dropped a message of unknown kind `{other}`");
            return None;
        }
    };
    let body = serde_json::from_str(&m.body).unwrap_or(Value::String(m.body));
    Some(Message {
        kind,
        correlation_id: m.correlation_id,
        reply_to: m.reply_to,
        attempt: m.attempt,
        plan: m.plan.and_then(|p| p.parse().ok()),
        body,
    })
}

impl Transport for StoreTransport {
    fn send(&self, topic: &str, message: Message) -> BoxFuture<Result<(), TransportError>> {
        self.send_many(vec![(topic.to_string(), message)])
    }

    fn send_many(&self, messages: Vec<(String, Message)>) -> BoxFuture<Result<(), TransportError>> {
        let wires: Vec<weft_store::WireMessage> = messages
            .into_iter()
            .map(|(topic, message)| weft_store::WireMessage {
                topic,
                kind: kind_name(message.kind).to_string(),
                correlation_id: message.correlation_id,
                reply_to: message.reply_to,
                attempt: message.attempt,
                plan: message.plan.map(|p| p.to_string()),
                body: message.body.to_string(),
            })
            .collect();
        // Queued now (the store's writer keeps the order of what is queued), awaited later.
        let sent = self.store.send_messages(wires);
        Box::pin(async move {
            sent.await.map_err(|e| {
                tracing::warn!("cannot send: {e}");
                TransportError::Closed
            })
        })
    }

    fn heartbeat(
        &self,
        notify: &Notify,
        running: u32,
        lease: std::time::Duration,
    ) -> BoxFuture<Result<(), TransportError>> {
        let (store, notify) = (self.store.clone(), notify.clone());
        Box::pin(async move {
            match store.worker_heartbeat(notify.topic.clone(), running).await {
                Ok(()) => Ok(()),
                // Not registered yet, or removed as lost: (re-)register.
                Err(weft_store::Error::NotFound(_)) => store
                    .register_worker(weft_store::WorkerRecord {
                        topic: notify.topic,
                        tasks: notify.tasks,
                        started_at: weft_model::now_millis(),
                        heartbeat_at: 0,
                        process: Some(weft_engine::owner::me()),
                        running,
                        lease_ms: lease.as_millis() as i64,
                    })
                    .await
                    .map_err(|_| TransportError::Closed),
                Err(_) => Err(TransportError::Closed),
            }
        })
    }

    fn lapsed(&self, lease: std::time::Duration) -> BoxFuture<Result<Vec<String>, TransportError>> {
        let store = self.store.clone();
        Box::pin(async move {
            let now = store.clock().await.map_err(|_| TransportError::Closed)?;
            let workers = store.workers().await.map_err(|_| TransportError::Closed)?;
            let default = lease.as_millis() as i64;
            Ok(workers
                .into_iter()
                .filter(|w| {
                    let lease = if w.lease_ms > 0 { w.lease_ms } else { default };
                    w.heartbeat_at < now.saturating_sub(lease)
                })
                .map(|w| w.topic)
                .collect())
        })
    }

    fn topics(&self) -> BoxFuture<Result<Vec<String>, TransportError>> {
        let store = self.store.clone();
        Box::pin(async move {
            let workers = store.workers().await.map_err(|_| TransportError::Closed)?;
            Ok(workers.into_iter().map(|w| w.topic).collect())
        })
    }

    fn forget(&self, topic: &str) -> BoxFuture<Result<(), TransportError>> {
        let (store, topic) = (self.store.clone(), topic.to_string());
        Box::pin(async move {
            store
                .remove_worker(topic)
                .await
                .map_err(|_| TransportError::Closed)
        })
    }

    fn listen(&self, topic: &str) -> Result<Listener, TransportError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (store, topic) = (self.store.clone(), topic.to_string());
        tokio::spawn(async move {
            let mut wake = weft_store::Wakeups::new(store.hints(), |h| h.messages);
            let poll = if wake.exist() {
                std::time::Duration::from_millis(500)
            } else {
                std::time::Duration::from_millis(50)
            };
            loop {
                wake.mark();
                match store.take_messages(topic.clone(), TAKE_BATCH).await {
                    Ok(taken) => {
                        let full = taken.len() == TAKE_BATCH as usize;
                        for m in taken.into_iter().filter_map(from_wire) {
                            if tx.send(m).is_err() {
                                return; // The listener is gone.
                            }
                        }
                        if full {
                            continue;
                        }
                    }
                    Err(e) => tracing::warn!(%topic, "cannot take messages: {e}"),
                }
                if tx.is_closed() {
                    return;
                }
                let _ = tokio::time::timeout(poll, wake.next()).await;
            }
        });
        Ok(Listener::new(rx))
    }
}
