//! Workers: anything the engine can stop and wait for.

use crate::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// A boxed future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A long-running thing the engine started. It must stop soon after [`Worker::kill`], and
/// [`Worker::wait`] says how it ended (the engine calls it once).
pub trait Worker: Send + Sync + 'static {
    /// Asks the worker to stop.
    fn kill(&self);
    /// Resolves when the worker has stopped, with why.
    fn wait(&self) -> BoxFuture<Result<(), Error>>;
    /// The worker's own report, shown in the engine's.
    fn report(&self) -> Option<serde_json::Value> {
        None
    }

    /// A resource the worker holds, for a manifold's output to expose to dependents
    /// ([`crate::Manifold::exposing_resource`]).
    fn resource(&self) -> Option<crate::Resource> {
        None
    }
}

/// A worker that is a tokio task with a stop signal — the natural shape of a worker.
pub struct TaskWorker {
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<Result<(), Error>>>>,
}

/// The stop signal a [`TaskWorker`]'s task watches.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Resolves once the worker is asked to stop.
    pub async fn requested(&mut self) {
        // An error means the worker is gone: that is a stop too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

impl TaskWorker {
    /// Spawns `f` as the worker's task; it gets the stop signal and returns how it ended.
    pub fn spawn<F, Fut>(f: F) -> Arc<TaskWorker>
    where
        F: FnOnce(Stop) -> Fut,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(f(Stop(rx)));
        Arc::new(TaskWorker {
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    /// A worker that runs until it is stopped, doing nothing else (it holds a resource).
    pub fn idle() -> Arc<TaskWorker> {
        Self::spawn(|mut stop| async move {
            stop.requested().await;
            Ok(())
        })
    }
}

impl Worker for TaskWorker {
    fn kill(&self) {
        let _ = self.stop.send(true);
    }

    fn wait(&self) -> BoxFuture<Result<(), Error>> {
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        Box::pin(async move {
            match task {
                Some(t) => t
                    .await
                    .unwrap_or_else(|e| Err(Error::msg(format!("worker task failed: {e}")))),
                None => Ok(()),
            }
        })
    }
}
