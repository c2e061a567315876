//! A worker's loop on a transport: it answers `NOTIFY` with its topic and tasks, and runs the
//! requests it receives (each on its own task), sending every response to the requester.
//! Malformed messages are logged and answered where an answer is possible; none stops it.

use crate::server::{Dropped, Envelope, Server};
use crate::transport::{Kind, Message, Transport, TransportError};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use weft_engine::Registry;
use weft_model::worker::decode_notify;

/// Why a worker cannot take a topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid worker topic `{topic}`: {why}")]
pub struct TopicError {
    /// The topic given.
    pub topic: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// A worker's topic is 1 to 200 ASCII letters, digits, `.`, `_` or `-` — the names of AMQP
/// queues and PostgreSQL channels people use — and not an executor's reply topic.
pub fn check_topic(topic: &str) -> Result<(), TopicError> {
    let why = if topic.is_empty() {
        Some("it is empty")
    } else if topic.len() > 200 {
        Some("it is longer than 200 characters")
    } else if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("use only ASCII letters, digits, `.`, `_` and `-`")
    } else {
        None
    };
    match why {
        Some(why) => Err(TopicError {
            topic: topic.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

/// A worker (TaskFlow's `Worker`): the tasks of a [`Registry`] served on a topic.
///
/// ```no_run
/// # async fn run(store: weft_store::SharedStore) -> Result<(), Box<dyn std::error::Error>> {
/// use weft_engine::{task_fn, Registry};
/// let mut tasks = Registry::new();
/// tasks.register("resize", "1", task_fn(|ctx| async move {
///     Ok(serde_json::json!({ "size": ctx.inputs["size"].clone() }))
/// }));
/// let worker = weft_worker::Worker::new("images", tasks)?;
/// // Runs until the process is stopped.
/// worker.run(store, std::future::pending()).await?;
/// # Ok(()) }
/// ```
pub struct Worker {
    server: Server,
    lease: std::time::Duration,
}

impl Worker {
    /// A worker on `topic` running the tasks of `tasks`.
    pub fn new(topic: impl Into<String>, tasks: Registry) -> Result<Self, TopicError> {
        let topic = topic.into();
        check_topic(&topic)?;
        Ok(Worker {
            server: Server::new(topic, Arc::new(tasks)),
            lease: WORKER_LEASE,
        })
    }

    /// How long its heartbeat stays good (default [`WORKER_LEASE`]).
    pub fn lease(mut self, lease: std::time::Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Its topic.
    pub fn topic(&self) -> &str {
        self.server.topic()
    }

    /// What it runs (`name@version`).
    pub fn tasks(&self) -> Vec<String> {
        self.server.notify().tasks
    }

    /// Serves requests that reach it through `store` until `stop` resolves.
    pub async fn run(
        self,
        store: weft_store::SharedStore,
        stop: impl Future<Output = ()>,
    ) -> Result<(), TransportError> {
        let transport = Arc::new(crate::StoreTransport::new(store));
        self.run_on(transport, stop).await
    }

    /// Serves requests that reach it through `transport` until `stop` resolves.
    pub async fn run_on(
        self,
        transport: Arc<dyn Transport>,
        stop: impl Future<Output = ()>,
    ) -> Result<(), TransportError> {
        serve_with_lease(self.server, transport, self.lease, stop).await
    }
}

/// How long a worker's heartbeat stays good (default): past it, executors count what it was
/// running as lost.
pub const WORKER_LEASE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves requests on the server's topic until `stop` resolves or the transport closes,
/// heartbeating through the transport three times per [`WORKER_LEASE`]. On stop it says it is
/// gone.
pub async fn serve(
    server: Server,
    transport: Arc<dyn Transport>,
    stop: impl Future<Output = ()>,
) -> Result<(), TransportError> {
    serve_with_lease(server, transport, WORKER_LEASE, stop).await
}

/// [`serve`] with a lease of its own.
pub async fn serve_with_lease(
    server: Server,
    transport: Arc<dyn Transport>,
    lease: std::time::Duration,
    stop: impl Future<Output = ()>,
) -> Result<(), TransportError> {
    let mut inbox = transport.listen(server.topic())?;
    let running = Arc::new(AtomicU32::new(0));
    transport.heartbeat(&server.notify(), 0, lease).await?;
    let mut beat = tokio::time::interval(lease / 3);
    tokio::pin!(stop);
    loop {
        let message = tokio::select! {
            () = &mut stop => {
                let _ = transport.forget(server.topic()).await;
                return Ok(());
            }
            _ = beat.tick() => {
                let now = running.load(Ordering::Relaxed);
                if let Err(e) = transport.heartbeat(&server.notify(), now, lease).await {
                    tracing::warn!(topic = server.topic(), "cannot heartbeat: {e}");
                }
                continue;
            }
            m = inbox.next() => match m {
                Some(m) => m,
                None => return Err(TransportError::Closed),
            },
        };
        match message.kind {
            Kind::Notify => answer_notify(&server, &*transport, message).await,
            Kind::Request => {
                let (server, transport) = (server.clone(), transport.clone());
                let running = running.clone();
                running.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    run_request(server, transport, message).await;
                    running.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Kind::Response => {
                tracing::warn!(topic = server.topic(), "a worker got a response; ignored");
            }
        }
    }
}

async fn answer_notify(server: &Server, transport: &dyn Transport, message: Message) {
    if let Err(e) = decode_notify(&message.body, false) {
        tracing::warn!("ignored a malformed notify: {e}");
        return;
    }
    let Some(reply_to) = message.reply_to else {
        tracing::warn!("ignored a notify with no one to reply to");
        return;
    };
    let body = match serde_json::to_value(server.notify()) {
        Ok(b) => b,
        Err(e) => return tracing::warn!("cannot encode this worker's notify: {e}"),
    };
    let answer = Message {
        kind: Kind::Notify,
        correlation_id: None,
        reply_to: Some(server.topic().to_string()),
        attempt: 0,
        plan: None,
        body,
    };
    if let Err(e) = transport.send(&reply_to, answer).await {
        tracing::warn!("cannot answer a notify: {e}");
    }
}

async fn run_request(server: Server, transport: Arc<dyn Transport>, message: Message) {
    let envelope = Envelope {
        correlation_id: message.correlation_id.clone(),
        reply_to: message.reply_to.clone(),
        attempt: message.attempt,
        // An executor that is not weft's (TaskFlow's messages carry no plan): the task sees
        // a fresh id, never another plan's.
        plan: message.plan.unwrap_or_default(),
    };
    let reply_to = envelope.reply_to.clone().unwrap_or_default();
    let outcome = server
        .handle(&envelope, &message.body, |response| {
            let answer = Message {
                kind: Kind::Response,
                correlation_id: envelope.correlation_id.clone(),
                reply_to: Some(server.topic().to_string()),
                attempt: envelope.attempt,
                plan: Some(envelope.plan),
                body: response.to_json(),
            };
            // Sent (queued) now, in order; awaited by the server when it must know.
            let sent = transport.send(&reply_to, answer);
            async move { sent.await.is_ok() }
        })
        .await;
    match outcome {
        Ok(()) => {}
        Err(Dropped::Unanswerable(why)) => tracing::warn!("dropped a request: {why}"),
        Err(Dropped::ReplyFailed) => {
            tracing::warn!(request = ?envelope.correlation_id, "could not acknowledge a request")
        }
    }
}
