//! Running jobs: one rotation inside its log span, holding its server's lock, its
//! report ([`RunReport`], `report.rs`) recorded in the state directory and the metrics,
//! and many jobs at once through a [`Dispatcher`] (`dispatch.rs`): at most one per
//! server, at most `max_concurrent_jobs` in all. A panic in a job is a failed run, and
//! the server it may have stopped is started again.
//!
//! `once`, the demo and the daemon all run jobs through here.

mod dispatch;
mod fleet;
mod notices;
mod report;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::Config;
use crate::interrupt::Interrupt;
use crate::job::JobId;
use crate::metrics::{self, JobSeries, Metrics, Picture};
use crate::notify::Notifier;
use crate::provider::{ApiError, Client, Listings};
use crate::rotation::{self, Job, Rotation, RotationError};
use crate::state::{ServerLock, StateDir, StateError, StoppedEntry, busy};
pub use dispatch::{Dispatcher, Run, Submitted};
pub use fleet::{Refused, Resolved, ask as ask_fleet, known_jobs, resolve};
pub use report::RunReport;

/// What a dispatched task does for its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Run the job for a fire.
    Fire,
    /// Carry on the run a stopped-server record says was cut short (the daemon's
    /// start-up) — if the record is still there once the server's lock is held.
    Resume,
    /// Start the server of a stopped-server record again, after its snapshot: a record
    /// whose policy is gone or that cannot be read, or a start that failed.
    Settle,
}

/// The policy part of the key of a [`Work::Settle`] task (no policy has this name).
pub const LEFT_STOPPED: &str = "(left stopped)";

/// The parts a run needs, shared between jobs.
pub struct Runner {
    pub config: Arc<Config>,
    pub client: Client,
    pub listings: Listings,
    pub state: StateDir,
    pub metrics: Arc<Metrics>,
    /// Set when the process is stopping; shared by every runner of the process.
    pub interrupt: Interrupt,
    /// `once --skip-busy`: a job whose server another process holds is skipped.
    pub skip_busy: bool,
    /// Held while the known jobs are read and written again (`fleet.rs`).
    pub fleet_lock: Arc<tokio::sync::Mutex<()>>,
    /// Where a run's failure, recovery and pings are queued; never waited for.
    pub notifier: Notifier,
}

impl Runner {
    pub fn new(config: Arc<Config>) -> Result<Runner, ApiError> {
        let client = Client::new(&config.api)?;
        Ok(Runner::with_client(config, client))
    }

    /// A runner for a new configuration that keeps the process's rate budget, API
    /// counters and job metrics.
    pub fn reloaded(config: Arc<Config>, previous: &Runner) -> Result<Runner, ApiError> {
        let client = Client::reloaded(&config.api, &previous.client)?;
        let mut runner = Runner::with_client(config, client);
        runner.metrics = previous.metrics.clone();
        runner.interrupt = previous.interrupt.clone();
        runner.fleet_lock = previous.fleet_lock.clone();
        runner.notifier = previous.notifier.clone();
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
            fleet_lock: Arc::default(),
            notifier: Notifier::default(),
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

    /// Runs `job`, catching a panic: that is reported as a failed run, and a server the
    /// job stopped is started again. The job runs in the caller's task (one task per
    /// job), and its future is dropped (its server's lock with it) before the panic is
    /// dealt with.
    pub async fn run_caught(
        self: Arc<Self>,
        job: JobId,
        fire_time: DateTime<Utc>,
        work: Work,
    ) -> RunReport {
        let caught = {
            let run = self
                .listings
                .expecting(Box::pin(self.run_job(&job, fire_time, work)));
            std::panic::AssertUnwindSafe(run).catch_unwind().await
        };
        let what = match caught {
            Ok(report) => return report,
            Err(payload) => panic_text(payload),
        };
        let report = RunReport::failed(
            job.clone(),
            fire_time,
            format!("internal error (a bug in snaprotd, please report it): {what}"),
        );
        tracing::error!(
            policy = %job.policy,
            server_id = job.server,
            job_id = %job,
            "job {job} failed: {}",
            report.message
        );
        // The job's server lock went with its task; take it again and start the server
        // if the job left it stopped. Once stopping, the shutdown settles it instead.
        let lock = tokio::select! {
            biased;
            l = Box::pin(self.lock_server(job.server)) => l.ok(),
            _ = self.interrupt.wait_set() => None,
        };
        if lock.is_some()
            && let Err(e) = Box::pin(rotation::settle(&self.rotation(), job.server)).await
        {
            tracing::error!(server_id = job.server, "{e}");
        }
        if self.config.job_policy(&job.policy, job.server).is_some() {
            Box::pin(self.record(&report)).await;
        }
        report
    }

    /// Waits for server `server`'s lock, saying once who holds it.
    pub async fn lock_server(&self, server: u64) -> Result<ServerLock, StateError> {
        self.state
            .lock_server(server, |holder| {
                tracing::info!(server_id = server, "{}; waiting", busy(server, holder))
            })
            .await
    }

    /// The server's lock for one job: waited for (unless the process is stopping), or
    /// with `skip_busy` taken only when free. `Err` is the report of a job that does
    /// not run.
    async fn take_server(
        &self,
        job: &JobId,
        fire_time: DateTime<Utc>,
    ) -> Result<ServerLock, RunReport> {
        let lock = if self.skip_busy {
            match self.state.try_lock_server(job.server).await {
                Ok(Some(lock)) => Ok(lock),
                Ok(None) => {
                    let holder = self.state.server_holder(job.server).await;
                    let why = busy(job.server, &holder);
                    return Err(RunReport::skipped(job.clone(), fire_time, why));
                }
                Err(e) => Err(e),
            }
        } else {
            // A free lock wins over an interrupt that came meanwhile: a resumed run
            // must still take its record over.
            tokio::select! {
                biased;
                l = self.lock_server(job.server) => l,
                _ = self.interrupt.wait_set() => {
                    let e = RotationError::Interrupted("before the run began");
                    return Err(RunReport::failed(job.clone(), fire_time, e.to_string()));
                }
            }
        };
        lock.map_err(|e| {
            let e = format!("cannot take server {}: {e}", job.server);
            RunReport::failed(job.clone(), fire_time, e)
        })
    }

    /// Does `work` for `key` holding its server's lock: runs the job for the fire at
    /// `fire_time`, logs it and records its last run; or settles a stopped-server
    /// record.
    pub async fn run_job(&self, key: &JobId, fire_time: DateTime<Utc>, work: Work) -> RunReport {
        let _lock = match Box::pin(self.take_server(key, fire_time)).await {
            Ok(lock) => lock,
            Err(report) => return report,
        };
        match work {
            Work::Fire => {}
            Work::Settle => return Box::pin(self.settle(key, fire_time)).await,
            // Another process (a `once`) may have settled the record meanwhile.
            Work::Resume => match self.state.stopped_server(key.server).await {
                Some(StoppedEntry::Record(r)) if r.job == *key && r.scheduled_for == fire_time => {}
                Some(_) => return Box::pin(self.settle(key, fire_time)).await,
                None => {
                    let why = format!(
                        "server {} was started again meanwhile (by another snaprotd process); nothing to resume",
                        key.server
                    );
                    tracing::info!(server_id = key.server, "{why}");
                    return RunReport::skipped(key.clone(), fire_time, why);
                }
            },
        }
        let started = Instant::now();
        // The report is made at the end: a job holds no more than it must while it waits.
        let started_at = Utc::now();
        let server = key.server;
        let Some(policy) = self.config.job_policy(&key.policy, server) else {
            return Box::pin(self.settle(key, fire_time)).await;
        };
        let job = Job { policy, server };
        self.notify_start(key, fire_time);
        let span =
            tracing::info_span!("job", policy = %policy.name, server_id = server, job_id = %key);
        let rotation = self.rotation();
        let result = async {
            tracing::info!("rotation starts: snapshot {}", job.snapshot_name(fire_time));
            // The provider's rate may hold the job back until its wait_timeout.
            let deadline = Instant::now() + policy.wait_timeout;
            // Boxed: a job holds the memory of the step it is in, not of the largest.
            let run = Box::pin(rotation.run(job, fire_time));
            let r = crate::provider::with_deadline(deadline, run).await;
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
                // Stopping snaprotd is not a failure of the job.
                Err(e @ RotationError::Interrupted(_)) => tracing::warn!(
                    "rotation stopped after {:.2}s: {e}",
                    started.elapsed().as_secs_f64()
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
        let report = RunReport {
            started_at,
            ..RunReport::new(key.clone(), fire_time)
        };
        let report = match result {
            Ok(outcome) => report.succeeded(outcome),
            Err(e) => report.fail(e.to_string()),
        }
        .ended(started.elapsed().as_secs_f64());
        if answered {
            Box::pin(self.record(&report)).await;
        }
        report
    }

    /// Records a job's last run: what a failure does not know (the last success, the
    /// snapshots owned) is carried over from the run before. Then queues its
    /// notifications: they follow the record, never hold it up.
    async fn record(&self, report: &RunReport) {
        let previous = self.state.last_run::<RunReport>(&report.job).await;
        let kept = RunReport {
            outcome: None,
            ..report.clone().after(previous.as_ref())
        };
        if let Err(e) = self.state.record_run(&report.job, &kept).await {
            tracing::warn!("cannot record the last run: {e}");
        }
        self.notify_end(report, previous.as_ref());
    }

    /// Starts the server of a stopped-server record again (after its snapshot).
    async fn settle(&self, key: &JobId, fire_time: DateTime<Utc>) -> RunReport {
        let started = Instant::now();
        let report = match rotation::settle(&self.rotation(), key.server).await {
            Ok(true) => RunReport::new(key.clone(), fire_time),
            Ok(false) => RunReport::skipped(
                key.clone(),
                fire_time,
                format!("server {} is not left stopped", key.server),
            ),
            Err(e) => RunReport::failed(key.clone(), fire_time, e.to_string()),
        };
        report.ended(started.elapsed().as_secs_f64())
    }

    /// Rewrites the metrics file, when one is configured, with the whole picture from
    /// the state directory (whoever wrote it): the last run of every configured job,
    /// the servers left stopped, the daemon's last reload, and the counters — to which
    /// this process first adds what it counted since its last write.
    pub async fn write_metrics(&self) {
        let Some(path) = &self.config.daemon.metrics_file else {
            return;
        };
        let _one = self.metrics.writing().await;
        let (all, unsaved) = self.metrics.unsaved(self.client.stats());
        let counts = match self.state.add_counts(unsaved.clone()).await {
            Ok(counts) => {
                self.metrics.saved(all);
                counts
            }
            Err(e) => {
                tracing::warn!("cannot add to the counters in the state directory: {e}");
                let mut counts = self.state.counts().await;
                crate::state::merge_counts(&mut counts, &unsaved);
                counts
            }
        };
        let jobs = known_jobs(&self.config, &self.state.known_jobs().await);
        let jobs = self
            .state
            .last_runs::<RunReport>(jobs)
            .await
            .into_iter()
            .map(|(job, run)| JobSeries {
                job,
                finished_at: run.finished_at,
                ok: run.ok,
                seconds: run.seconds,
                last_success: run.last_success(),
                owned: run.owned,
            })
            .collect();
        let picture = Picture {
            jobs,
            counts,
            servers_stopped: self.state.servers_left_stopped().await.len(),
            freezes_left: self.state.freezes_left().await.len(),
            reload: self.state.last_reload().await,
        };
        if let Err(e) = self.metrics.write(path, metrics::render(&picture)).await {
            tracing::warn!("cannot write the metrics file: {e}");
        }
    }

    /// Runs `jobs` for one fire time through a dispatcher, as the daemon does: jobs of
    /// one server one after the other, at most `max_concurrent_jobs` at once. Reports
    /// come in the given order.
    pub async fn run_all(
        self: &Arc<Self>,
        jobs: Vec<JobId>,
        fire_time: DateTime<Utc>,
    ) -> Vec<RunReport> {
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut dispatch = Dispatcher::new(self.config.daemon.max_concurrent_jobs, done_tx);
        let mut order = HashMap::new();
        for (i, job) in jobs.into_iter().enumerate() {
            if order.insert(job.clone(), i).is_none() {
                dispatch.submit(self.clone(), job, fire_time, Work::Fire);
            }
        }
        let mut reports: Vec<(usize, RunReport)> = Vec::with_capacity(order.len());
        let admission = dispatch.admission();
        let mut received = 0;
        while received < order.len() {
            let report = tokio::select! {
                report = done_rx.recv() => report,
                () = admission.room() => {
                    dispatch.fill();
                    continue;
                }
            };
            let Some(report) = report else {
                break;
            };
            received += 1;
            dispatch.finished(&report.job);
            if let Some(i) = order.get(&report.job) {
                reports.push((*i, report));
            }
        }
        reports.sort_by_key(|(i, _)| *i);
        reports.into_iter().map(|(_, r)| r).collect()
    }
}

impl Run for Runner {
    fn run(
        self: Arc<Self>,
        job: JobId,
        fire_time: DateTime<Utc>,
        work: Work,
    ) -> impl Future<Output = RunReport> + Send {
        self.run_caught(job, fire_time, work)
    }

    /// The requests the budget serves in [`ADMIT_AHEAD`], at least [`MIN_AT_WORK`].
    fn admission_window(&self) -> usize {
        let ahead = self.client.pace() * ADMIT_AHEAD.as_secs_f64();
        (ahead as usize).max(MIN_AT_WORK)
    }

    fn waiting(&self, server: u64) {
        self.listings.prefetch(server);
    }

    fn not_waiting(&self, server: u64, started: bool) {
        self.listings.no_prefetch(server, started);
    }
}

/// Jobs start while the jobs at work would keep the rate budget busy for less than
/// this: enough that the budget never idles, few enough that a fleet's jobs wait as
/// small records rather than as started tasks.
const ADMIT_AHEAD: std::time::Duration = std::time::Duration::from_secs(4);

/// The fewest jobs at work the admission allows, whatever the pace.
const MIN_AT_WORK: usize = 64;

/// The text of a panic's payload.
fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p
            .downcast_ref::<&str>()
            .map_or("(no message)".to_string(), |s| s.to_string()),
    }
}
