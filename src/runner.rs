//! Running jobs: one rotation inside its log span, its outcome recorded in the state
//! directory, and many jobs at once with at most one per server.
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
use crate::provider::{Client, Listings};
use crate::rotation::{Job, Outcome, Rotation};
use crate::state::{LastRun, StateDir};

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
}

/// The parts a run needs, shared between jobs.
pub struct Runner {
    pub config: Arc<Config>,
    pub client: Client,
    pub listings: Listings,
    pub state: StateDir,
    pub metrics: Arc<crate::metrics::Metrics>,
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
        }
    }

    /// Runs one job for the fire at `fire_time`, logs it and records its last run.
    pub async fn run_job(&self, policy: &str, server: u64, fire_time: DateTime<Utc>) -> Report {
        let started_at = Utc::now();
        let started = Instant::now();
        let Some(policy) = self.config.policy(policy) else {
            return Report {
                job: crate::rotation::job_id(policy, server),
                policy: policy.to_string(),
                server,
                ok: false,
                seconds: 0.0,
                outcome: None,
                error: Some(format!("policy {policy} is not configured")),
            };
        };
        let job = Job { policy, server };
        let job_id = job.id();
        let span =
            tracing::info_span!("job", policy = %policy.name, server_id = server, job_id = %job_id);
        let rotation = Rotation {
            client: &self.client,
            listings: &self.listings,
            state: &self.state,
            policies: &self.config.policies,
            cap: self.config.api.snapshot_cap,
        };
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
        let report = Report {
            job: job_id.clone(),
            policy: policy.name.clone(),
            server,
            ok: result.is_ok(),
            seconds: started.elapsed().as_secs_f64(),
            error: result.as_ref().err().map(|e| e.to_string()),
            outcome: result.ok(),
        };
        let last = LastRun {
            job: job_id,
            policy: policy.name.clone(),
            server,
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
        self.metrics.record(&report);
        report
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
