//! The conductor (TaskFlow's `conductors/backends/impl_executor.py`): a manifold of a node that
//! claims jobs from the board and runs each one's flow as a plan on the node's executor.
//!
//! - It claims the most urgent, oldest jobs whose Rust tasks the node runs, as many at once as
//!   it has room for (`max_simultaneous_jobs`), in one write.
//! - A job's plan has the id the job carries, and is created by the claim itself, in the same
//!   write, its lock held by the node: one write fewer per job. Only the conductor holding the
//!   job's claim runs it (node claimers leave it): a job taken over after a crash resumes its
//!   plan instead of starting another, so its steps run at most twice; and a job in the trash
//!   is not run.
//! - When the plan stops — success or error, as TaskFlow consumes a job whose atoms failed —
//!   the store completes the job in the same commit. A plan that pauses for an operator keeps
//!   its job claimed until it ends.
//! - When the failure is weft's own (the node stopping, the store lost), the job is abandoned
//!   for another conductor — and trashed once it has been claimed `max_attempts` times, so
//!   TaskFlow's "endless cycling" cannot happen. A conductor that dies loses its claims when
//!   its node's lease lapses.

use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use weft_deps::{Context, Manifold, TaskWorker, Worker};
use weft_engine::{Engine, Rescue};
use weft_model::job::{Release, State};
use weft_model::plan;
use weft_store::{ClaimedJob, Entity, JobRecord, SharedStore};

/// How often the board is looked at when the last look found nothing and the store sends no
/// wake-up hints.
pub const CLAIM_POLL: Duration = Duration::from_millis(50);
/// How often it is looked at anyway when the store sends hints.
pub const HINTED_POLL: Duration = Duration::from_millis(500);
/// How long to wait before trying again to resume a taken-over job's plan that its last
/// executor still holds.
pub const ADOPTED_POLL: Duration = Duration::from_millis(200);
/// The most jobs claimed in one write.
const CLAIM_BATCH: usize = 512;

/// How a conductor runs.
#[derive(Debug, Clone)]
pub struct ConductorConfig {
    /// The most jobs running at once (default: CPUs × 2).
    pub max_simultaneous_jobs: usize,
    /// What a job's plan does when a step fails for good, unless its flow says (default:
    /// revert, as a TaskFlow engine does; the job is consumed either way).
    pub rescue: Rescue,
}

impl Default for ConductorConfig {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        ConductorConfig {
            max_simultaneous_jobs: cpus * 2,
            rescue: Rescue::Revert,
        }
    }
}

/// The conductor manifold, for a node whose id is `owner` (its claims are the node's, and
/// lapse with its lease) and which runs the Rust tasks `capabilities`. Its inputs are the
/// node's `store` and `executor`.
pub fn manifold(owner: String, capabilities: Vec<String>, config: ConductorConfig) -> Manifold {
    Manifold::new(&["store", "executor"], move |ctx: Context| {
        let (owner, capabilities, config) = (owner.clone(), capabilities.clone(), config.clone());
        async move {
            let store: SharedStore = ctx.get("store")?;
            let engine: Engine = ctx.get("executor")?;
            // Its claims create the jobs' plans locked by the claimer, for this executor.
            if engine.owner() != owner {
                return Err(failed(format!(
                    "the conductor claims as {owner} but its executor runs plans as {}",
                    engine.owner()
                )));
            }
            let conductor = Conductor {
                owner,
                capabilities,
                config,
                store,
                engine,
            };
            conductor.start().await.map_err(failed)?;
            Ok(TaskWorker::spawn(move |stop| conductor.run(stop)) as Arc<dyn Worker>)
        }
    })
}

fn failed(e: impl std::fmt::Display) -> weft_deps::Error {
    weft_deps::Error::msg(e.to_string())
}

#[derive(Clone)]
struct Conductor {
    owner: String,
    capabilities: Vec<String>,
    config: ConductorConfig,
    store: SharedStore,
    engine: Engine,
}

impl Conductor {
    /// Registers with the board, and gives back what an earlier start of this conductor held
    /// and no longer runs (its store or executor failed; their plans were released with them).
    async fn start(&self) -> Result<(), weft_store::Error> {
        self.store
            .register_entity(Entity {
                kind: weft_store::jobs::CONDUCTOR.into(),
                name: self.owner.clone(),
                metadata: serde_json::json!({
                    "max_simultaneous_jobs": self.config.max_simultaneous_jobs,
                    "capabilities": self.capabilities,
                }),
            })
            .await?;
        let held = self
            .store
            .list_jobs(weft_store::JobFilter {
                owner: Some(self.owner.clone()),
                ..weft_store::JobFilter::default()
            })
            .await?;
        for job in held {
            // A plan still held (an earlier start's job running on, after a failed claim)
            // completes its job when it ends; the others' jobs go back on the board.
            if self.store.lock_owner(job.plan).await?.is_none() {
                self.abandon(&job, "its conductor restarted").await;
            }
        }
        Ok(())
    }

    async fn run(self, mut stop: weft_deps::Stop) -> Result<(), weft_deps::Error> {
        let mut wake = weft_store::Wakeups::new(self.store.hints(), |h| h.jobs);
        let mut running: JoinSet<()> = JoinSet::new();
        loop {
            // Hints from here on wake the wait below, even those that come while claiming.
            wake.mark();
            let room = self
                .config
                .max_simultaneous_jobs
                .saturating_sub(running.len())
                .min(CLAIM_BATCH);
            let claimed = if room == 0 {
                Vec::new()
            } else {
                let claimed = self
                    .store
                    .claim_jobs_to_run(self.owner.clone(), room as u32, self.capabilities.clone())
                    .await;
                match claimed {
                    Ok(jobs) => jobs,
                    Err(e) => {
                        // The jobs running go on to their ends; the manifold restarts.
                        running.detach_all();
                        return Err(failed(e));
                    }
                }
            };
            let full = room > 0 && claimed.len() == room;
            for claim in claimed {
                tracing::debug!(job = %claim.job.id, attempt = claim.job.attempts, "job_claimed");
                running.spawn(self.clone().conduct(claim));
            }
            // Reap what ended, without waiting.
            while running.try_join_next().is_some() {}
            if full {
                continue;
            }
            let poll = if wake.exist() {
                HINTED_POLL
            } else {
                CLAIM_POLL
            };
            tokio::select! {
                _ = stop.requested() => {
                    // Running jobs end with their plans (the executor drains them) and abandon
                    // what it could not finish; nothing is cut short here.
                    running.detach_all();
                    return Ok(());
                }
                _ = tokio::time::sleep(poll) => {}
                _ = wake.next() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }
    }

    /// Runs one claimed job's flow as its plan, to its end: the plan its claim created, or
    /// an earlier claim's.
    async fn conduct(self, claim: ClaimedJob) {
        let job = claim.job;
        if !claim.plan_created {
            return self.adopt(job).await;
        }
        let result = self
            .engine
            .execute_created(
                job.plan_to_run(&self.owner),
                self.config.rescue,
                claim.plan_started,
            )
            .await;
        match result {
            Ok(end) if end.state == plan::State::Stopped => {
                tracing::info!(job = %job.id, plan = %end.plan, outcome = %end.outcome, "job_consumed");
            }
            Ok(end) => {
                tracing::info!(job = %job.id, plan = %end.plan, state = %end.state,
                    "the job's plan waits for an operator; the job stays claimed until it ends");
            }
            Err(weft_engine::Error::Stopped) => self.abandon(&job, "its node stopped").await,
            Err(e) => self.abandon(&job, &format!("its plan failed: {e}")).await,
        }
    }

    /// A job whose plan exists already (an earlier claim started it, and its conductor died
    /// or stopped): resume that plan here — completed steps do not run again — while the claim
    /// is still this one. A plan that stopped already just needs consuming.
    async fn adopt(&self, job: JobRecord) {
        loop {
            match self.engine.execute(job.plan, self.config.rescue).await {
                Ok(end) => {
                    tracing::info!(job = %job.id, plan = %end.plan, state = %end.state, "job's plan resumed and ended");
                    return;
                }
                Err(weft_engine::Error::Stopped) => {
                    return self.abandon(&job, "its node stopped").await
                }
                Err(weft_engine::Error::Store(weft_store::Error::Locked { .. })) => {
                    // Its last executor is still letting go of it.
                }
                Err(refused @ weft_engine::Error::Refused(_)) => {
                    match self.store.load_plan(job.plan).await.map(|p| p.plan.state) {
                        Ok(plan::State::Stopped) => return self.consume(&job).await,
                        Ok(_) => {
                            return self
                                .abandon(&job, &format!("its plan cannot run: {refused}"))
                                .await
                        }
                        Err(e) => {
                            return self.abandon(&job, &format!("the store failed: {e}")).await
                        }
                    }
                }
                Err(e) => return self.abandon(&job, &format!("its plan failed: {e}")).await,
            }
            tokio::time::sleep(ADOPTED_POLL).await;
            let still_ours = match self.store.job(job.id).await {
                Ok(now) => {
                    now.state == State::Claimed
                        && now.owner.as_deref() == Some(&self.owner)
                        && now.attempts == job.attempts
                }
                Err(_) => false,
            };
            if !still_ours {
                return;
            }
        }
    }

    /// Consumes a job whose plan stopped before this claim (fenced by the claim).
    async fn consume(&self, job: &JobRecord) {
        let consumed = self
            .store
            .release_job(
                job.id,
                self.owner.clone(),
                Some(job.attempts),
                Release::Consume,
            )
            .await;
        match consumed {
            Ok(_) => tracing::info!(job = %job.id, plan = %job.plan, "job_consumed"),
            Err(e) => tracing::debug!(job = %job.id, "cannot consume: {e}"),
        }
    }

    /// Gives the job back (fenced by this claim), or trashes it if it has had its attempts.
    async fn abandon(&self, job: &JobRecord, why: &str) {
        let released = self
            .store
            .release_job(
                job.id,
                self.owner.clone(),
                Some(job.attempts),
                Release::Abandon,
            )
            .await;
        match released {
            Ok(now) if now.state == State::Trashed => {
                tracing::warn!(job = %job.id, attempts = now.attempts, "job_trashed: {why}")
            }
            Ok(_) => tracing::warn!(job = %job.id, "job_abandoned: {why}"),
            // The claim was lost already (another conductor has it), or the store is gone
            // (the claim lapses with this node's lease).
            Err(e) => tracing::debug!(job = %job.id, "cannot abandon: {e}"),
        }
    }
}
