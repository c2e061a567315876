//! Which workers there are and what they run (TaskFlow's `ProxyWorkerFinder` and
//! `TopicWorker`): learnt from their answers to `NOTIFY`, forgotten after [`EXPIRES_AFTER`] of
//! silence, chosen at random among those that run a task.
//!
//! [`EXPIRES_AFTER`]: weft_model::worker::EXPIRES_AFTER

use std::collections::BTreeMap;
use std::time::Duration;
use weft_model::worker::Notify;

/// A worker as the executor knows it: one per topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicWorker {
    /// Where to send it requests.
    pub topic: String,
    /// The tasks it runs.
    pub tasks: Vec<String>,
    /// Which announcement of this topic this is: the same while it announces the same tasks,
    /// a new one when its tasks change (TaskFlow replaces the object then).
    pub identity: u64,
    /// When it was last heard from (milliseconds on the caller's clock).
    pub seen_at: u64,
}

/// The workers heard from.
#[derive(Debug, Default)]
pub struct WorkerFinder {
    workers: BTreeMap<String, TopicWorker>,
    next_identity: u64,
    /// Bumped whenever the set of workers or their tasks changes: waiting requests are
    /// matched again then.
    generation: u64,
}

impl WorkerFinder {
    /// No workers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A worker answered `NOTIFY` at `now`. The same tasks as before keep its identity; other
    /// tasks make it a new worker. Returns whether anything changed (waiting requests should
    /// then be matched again).
    pub fn on_notify(&mut self, notify: Notify, now: u64) -> bool {
        match self.workers.get_mut(&notify.topic) {
            Some(known) if known.tasks == notify.tasks => {
                known.seen_at = now;
                false
            }
            _ => {
                self.next_identity += 1;
                self.generation += 1;
                self.workers.insert(
                    notify.topic.clone(),
                    TopicWorker {
                        topic: notify.topic,
                        tasks: notify.tasks,
                        identity: self.next_identity,
                        seen_at: now,
                    },
                );
                true
            }
        }
    }

    /// Forgets the workers not heard from within `after` of `now`; returns their topics.
    pub fn expire(&mut self, now: u64, after: Duration) -> Vec<String> {
        let cutoff = now.saturating_sub(after.as_millis() as u64);
        let gone: Vec<String> = self
            .workers
            .values()
            .filter(|w| w.seen_at < cutoff)
            .map(|w| w.topic.clone())
            .collect();
        for topic in &gone {
            self.workers.remove(topic);
        }
        if !gone.is_empty() {
            self.generation += 1;
        }
        gone
    }

    /// Forgets the worker at `topic` (it was lost); whether it was known.
    pub fn forget(&mut self, topic: &str) -> bool {
        let known = self.workers.remove(topic).is_some();
        if known {
            self.generation += 1;
        }
        known
    }

    /// A worker that runs `task`, chosen among the capable ones by `random` (any number;
    /// taken modulo their count), or `None` if no known worker runs it.
    pub fn pick(&self, task: &str, random: u64) -> Option<&TopicWorker> {
        let capable: Vec<&TopicWorker> = self
            .workers
            .values()
            .filter(|w| w.tasks.iter().any(|t| t == task))
            .collect();
        if capable.is_empty() {
            return None;
        }
        let i = (random % capable.len() as u64) as usize;
        capable.get(i).copied()
    }

    /// How many workers are known.
    pub fn total_workers(&self) -> usize {
        self.workers.len()
    }

    /// TaskFlow's `wait_for_workers`: how many of `wanted` workers are still missing.
    pub fn missing(&self, wanted: usize) -> usize {
        wanted.saturating_sub(self.workers.len())
    }

    /// Changes whenever a worker appears, goes, or changes its tasks.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every known worker, by topic.
    pub fn workers(&self) -> impl Iterator<Item = &TopicWorker> {
        self.workers.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notify(topic: &str, tasks: &[&str]) -> Notify {
        Notify {
            topic: topic.into(),
            tasks: tasks.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn a_renotify_with_the_same_tasks_keeps_the_worker_and_new_tasks_replace_it() {
        let mut f = WorkerFinder::new();
        assert!(f.on_notify(notify("t1", &["a"]), 0));
        let first = f.pick("a", 0).map(|w| w.identity);
        assert!(!f.on_notify(notify("t1", &["a"]), 10));
        assert_eq!(f.pick("a", 0).map(|w| w.identity), first);
        assert_eq!(f.pick("a", 0).map(|w| w.seen_at), Some(10));
        assert!(f.on_notify(notify("t1", &["a", "b"]), 20));
        assert_ne!(f.pick("a", 0).map(|w| w.identity), first);
        assert_eq!(f.total_workers(), 1);
    }

    #[test]
    fn picks_only_capable_workers_at_random() {
        let mut f = WorkerFinder::new();
        f.on_notify(notify("t1", &["a"]), 0);
        f.on_notify(notify("t2", &["a", "b"]), 0);
        f.on_notify(notify("t3", &["c"]), 0);
        assert_eq!(f.pick("b", 7).map(|w| w.topic.as_str()), Some("t2"));
        let chosen: std::collections::BTreeSet<&str> = (0..10)
            .filter_map(|r| f.pick("a", r).map(|w| w.topic.as_str()))
            .collect();
        assert_eq!(chosen, ["t1", "t2"].into_iter().collect());
        assert!(f.pick("d", 0).is_none());
        assert_eq!(f.missing(5), 2);
    }

    #[test]
    fn silent_workers_are_forgotten() {
        let mut f = WorkerFinder::new();
        f.on_notify(notify("old", &["a"]), 0);
        f.on_notify(notify("new", &["a"]), 50_000);
        let g = f.generation();
        assert_eq!(
            f.expire(61_000, Duration::from_secs(60)),
            vec!["old".to_string()]
        );
        assert!(f.generation() > g);
        assert_eq!(f.pick("a", 0).map(|w| w.topic.as_str()), Some("new"));
        assert!(f.expire(61_000, Duration::from_secs(60)).is_empty());
    }
}
