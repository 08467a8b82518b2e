//! Running jobs: one rotation inside its log span, holding its server's lock, its
//! outcome recorded in the state directory, and many jobs at once with at most one per
//! server. A panic in a job is a failed run, and the server it may have stopped is
//! started again.
//!
//! `once`, the demo and the daemon all run jobs through here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::Instrument;

use crate::config::Config;
use crate::daemon::dispatch::Dispatcher;
use crate::daemon::timetable::JobKey;
use crate::interrupt::Interrupt;
use crate::provider::{Client, Listings};
use crate::rotation::{self, Job, Outcome, Rotation, RotationError};
use crate::state::{LastRun, ServerLock, StateDir};

/// What one job run came to, for summaries and `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub job: String,
    pub policy: String,
    pub server: u64,
    pub ok: bool,
    pub seconds: f64,
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
    /// Why the job did not run (`once --skip-busy`: another process has the server).
    pub skipped: Option<String>,
}

impl Report {
    fn failed(job: &JobKey, error: String) -> Report {
        Report {
            job: job.id(),
            policy: job.policy.clone(),
            server: job.server,
            ok: false,
            seconds: 0.0,
            outcome: None,
            error: Some(error),
            skipped: None,
        }
    }
}

/// The job key of a stopped-server record that cannot be read: no policy has this
/// name, so running it settles the record (starts the server again) and nothing more.
pub const UNREADABLE_RECORD: &str = "(unreadable stopped-server record)";

/// The parts a run needs, shared between jobs.
pub struct Runner {
    pub config: Arc<Config>,
    pub client: Client,
    pub listings: Listings,
    pub state: StateDir,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Set when the process is stopping; shared by every runner of the process.
    pub interrupt: Interrupt,
    /// `once --skip-busy`: a job whose server another process holds is skipped.
    pub skip_busy: bool,
}

impl Runner {
    pub fn new(config: Arc<Config>) -> Result<Runner, crate::provider::ApiError> {
        let client = Client::new(&config.api)?;
        Ok(Runner::with_client(config, client))
    }

    /// A runner for a new configuration that keeps the process's rate budget, API
    /// counters and job metrics.
    pub fn reloaded(
        config: Arc<Config>,
        previous: &Runner,
    ) -> Result<Runner, crate::provider::ApiError> {
        let client = Client::reloaded(&config.api, &previous.client)?;
        let mut runner = Runner::with_client(config, client);
        runner.metrics = previous.metrics.clone();
        runner.interrupt = previous.interrupt.clone();
        Ok(runner)
    }

    fn with_client(config: Arc<Config>, client: Client) -> Runner {
        let state = StateDir::new(&config.daemon.state_dir);
        let listings = Listings::new(client.clone());
        Runner {
            config,
            client,
            listings,
            state,
            metrics: Arc::default(),
            interrupt: Interrupt::default(),
            skip_busy: false,
        }
    }

    /// The parts of a run, borrowed from this runner.
    pub fn rotation(&self) -> Rotation<'_> {
        Rotation {
            client: &self.client,
            listings: &self.listings,
            state: &self.state,
            policies: &self.config.policies,
            cap: self.config.api.snapshot_cap,
            defaults: self.config.defaults,
            interrupt: &self.interrupt,
        }
    }

    /// Runs `job` in a task of its own: a panic there is reported as a failed run, and
    /// a server the job stopped is started again.
    pub async fn run_caught(self: Arc<Self>, job: JobKey, fire_time: DateTime<Utc>) -> Report {
        let task = {
            let me = self.clone();
            let job = job.clone();
            tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
                me.run_job(&job.policy, job.server, fire_time).await
            }))
        };
        match task.await {
            Ok(report) => report,
            Err(e) => {
                let what = if e.is_panic() {
                    panic_text(e.into_panic())
                } else {
                    "the task was cancelled".into()
                };
                let report = Report::failed(
                    &job,
                    format!("internal error (a bug in snaprotd, please report it): {what}"),
                );
                tracing::error!(
                    policy = %job.policy,
                    server_id = job.server,
                    job_id = %job.id(),
                    "job {} failed: {}",
                    job.id(),
                    report.error.as_deref().unwrap_or_default()
                );
                // The job's server lock went with its task; take it again and start
                // the server if the job left it stopped.
                if let Ok(_lock) = self.lock_server(job.server).await
                    && let Err(e) = rotation::settle(&self.rotation(), job.server).await
                {
                    tracing::error!(server_id = job.server, "{e}");
                }
                if self.config.job_policy(&job.policy, job.server).is_some() {
                    self.record(&report, fire_time, Utc::now());
                }
                report
            }
        }
    }

    /// Waits for server `server`'s lock, saying once who holds it.
    async fn lock_server(&self, server: u64) -> Result<ServerLock, crate::state::StateError> {
        self.state
            .lock_server(server, |holder| {
                tracing::info!(
                    server_id = server,
                    "server {server} is busy: another snaprotd process{holder} is working on it; waiting"
                )
            })
            .await
    }

    /// The server's lock for one job: waited for (unless the process is stopping), or
    /// with `skip_busy` taken only when free. `Err` is the report of a job that does
    /// not run.
    async fn take_server(&self, job: &JobKey) -> Result<ServerLock, Report> {
        let lock = if self.skip_busy {
            match self.state.try_lock_server(job.server) {
                Ok(Some(lock)) => Ok(lock),
                Ok(None) => {
                    let holder = self.state.server_holder(job.server);
                    return Err(Report {
                        skipped: Some(format!(
                            "server {} is busy: another snaprotd process{holder} is working on it",
                            job.server
                        )),
                        ok: true,
                        error: None,
                        ..Report::failed(job, String::new())
                    });
                }
                Err(e) => Err(e),
            }
        } else {
            tokio::select! {
                l = self.lock_server(job.server) => l,
                _ = self.interrupt.wait_set() => {
                    return Err(Report::failed(job, RotationError::Interrupted("before the run began").to_string()));
                }
            }
        };
        lock.map_err(|e| Report::failed(job, format!("cannot take server {}: {e}", job.server)))
    }

    /// Runs one job for the fire at `fire_time` holding its server's lock, logs it and
    /// records its last run. A job that is not configured (a stopped-server record left
    /// by a policy since removed, or one that cannot be read) only settles the record.
    pub async fn run_job(&self, policy: &str, server: u64, fire_time: DateTime<Utc>) -> Report {
        let key = JobKey {
            policy: policy.to_string(),
            server,
        };
        let _lock = match self.take_server(&key).await {
            Ok(lock) => lock,
            Err(report) => return report,
        };
        let started_at = Utc::now();
        let started = Instant::now();
        let Some(policy) = self.config.job_policy(policy, server) else {
            return self.settle(&key).await;
        };
        let job = Job { policy, server };
        let job_id = job.id();
        let span =
            tracing::info_span!("job", policy = %policy.name, server_id = server, job_id = %job_id);
        let rotation = self.rotation();
        let result = async {
            tracing::info!("rotation starts: snapshot {}", job.snapshot_name(fire_time));
            let r = rotation.run(job, fire_time).await;
            match &r {
                Ok(o) => tracing::info!(
                    snapshot_id = o.snapshot.id,
                    snapshot_name = %o.snapshot.name,
                    "rotation done in {:.2}s: {} (id {}), {} deleted",
                    started.elapsed().as_secs_f64(),
                    o.snapshot.name,
                    o.snapshot.id,
                    o.deleted.len()
                ),
                Err(e) => tracing::error!(
                    "rotation failed after {:.2}s: {e}",
                    started.elapsed().as_secs_f64()
                ),
            }
            r
        }
        .instrument(span)
        .await;
        // A run the interrupt cut short did not answer its fire: a catch-up after the
        // next start runs it again.
        let answered = !matches!(result, Err(RotationError::Interrupted(_)));
        let report = Report {
            job: job_id,
            policy: policy.name.clone(),
            server,
            ok: result.is_ok(),
            seconds: started.elapsed().as_secs_f64(),
            error: result.as_ref().err().map(|e| e.to_string()),
            outcome: result.ok(),
            skipped: None,
        };
        if answered {
            self.record(&report, fire_time, started_at);
        }
        report
    }

    /// Records a job's last run and its metrics.
    fn record(&self, report: &Report, fire_time: DateTime<Utc>, started_at: DateTime<Utc>) {
        let last = LastRun {
            job: report.job.clone(),
            policy: report.policy.clone(),
            server: report.server,
            scheduled_for: fire_time,
            started_at,
            finished_at: Utc::now(),
            ok: report.ok,
            message: report.error.clone().unwrap_or_else(|| "ok".into()),
            snapshot_name: report.outcome.as_ref().map(|o| o.snapshot.name.clone()),
        };
        if let Err(e) = self.state.record_run(&last) {
            tracing::warn!("cannot record the last run: {e}");
        }
        self.metrics.record(report);
    }

    /// Starts the server of a stopped-server record whose job is not configured.
    async fn settle(&self, key: &JobKey) -> Report {
        let started = Instant::now();
        let result = rotation::settle(&self.rotation(), key.server).await;
        Report {
            ok: result.is_ok(),
            seconds: started.elapsed().as_secs_f64(),
            error: match result {
                Ok(true) => None,
                Ok(false) => Some(format!(
                    "job {} is not configured and left nothing to settle",
                    key.id()
                )),
                Err(e) => Some(e.to_string()),
            },
            ..Report::failed(key, String::new())
        }
    }

    /// Rewrites the metrics file, when one is configured.
    pub fn write_metrics(&self) {
        if let Some(path) = &self.config.daemon.metrics_file
            && let Err(e) = self.metrics.write(path, self.client.stats())
        {
            tracing::warn!("cannot write the metrics file: {e}");
        }
    }

    /// Runs `jobs` (policy, server) for one fire time through the daemon's dispatcher:
    /// jobs of one server one after the other, at most `max_concurrent_jobs` at once.
    /// Reports come in the given order.
    pub async fn run_all(
        self: &Arc<Self>,
        jobs: Vec<(String, u64)>,
        fire_time: DateTime<Utc>,
    ) -> Vec<Report> {
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut dispatch = Dispatcher::new(self.config.daemon.max_concurrent_jobs, done_tx);
        let mut order = HashMap::new();
        for (i, (policy, server)) in jobs.into_iter().enumerate() {
            let job = JobKey { policy, server };
            if order.insert(job.clone(), i).is_none() {
                dispatch.submit(self.clone(), job, fire_time);
            }
        }
        let mut reports: Vec<(usize, Report)> = Vec::with_capacity(order.len());
        for _ in 0..order.len() {
            let Some(done) = done_rx.recv().await else {
                break;
            };
            dispatch.finished(&done.job);
            if let (Some(report), Some(i)) = (done.report, order.get(&done.job)) {
                reports.push((*i, report));
            }
        }
        reports.sort_by_key(|(i, _)| *i);
        reports.into_iter().map(|(_, r)| r).collect()
    }
}

/// The text of a panic's payload.
fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p
            .downcast_ref::<&str>()
            .map_or("(no message)".to_string(), |s| s.to_string()),
    }
}
