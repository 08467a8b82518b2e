//! The daemon's start-up: the runs cut short by the last stop are resumed (and the
//! freezes it left are thawed), the fires missed while snaprotd was down are caught up
//! once, and the timetable is armed.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::Daemon;
use super::fleet::Ask;
use super::timetable::Timetable;
use crate::job::JobId;
use crate::runner::{RunReport, Work};
use crate::state::StoppedEntry;
use crate::systemd;

impl Daemon {
    /// Start-up: resume interrupted jobs, catch up missed fires, arm the schedule.
    pub(super) async fn start(&mut self) {
        let now = Utc::now();
        let config = self.runner.config.clone();
        let state = self.runner.state.clone();
        let known = self.remember_jobs(now).await;

        // Servers snaprotd stopped before it went down: their job is resumed, which
        // adopts the snapshot by name and starts the server after it. A record whose
        // job is not configured (or that cannot be read) is settled: its server is
        // started again after its snapshot.
        let mut resumed = Vec::new();
        let mut settled = Vec::new();
        for entry in state.stopped_servers().await {
            match entry {
                StoppedEntry::Record(r)
                    if config.job_policy(&r.job.policy, r.server()).is_some() =>
                {
                    warn!(
                        server_id = r.server(),
                        job_id = %r.job,
                        snapshot_name = %r.snapshot_name,
                        "server {} was stopped by {} for snapshot {} and not started again; resuming that run",
                        r.server(),
                        r.job,
                        r.snapshot_name
                    );
                    self.dispatch.submit(
                        self.runner.clone(),
                        r.job.clone(),
                        r.scheduled_for,
                        Work::Resume,
                    );
                    settled.push(r.server());
                    resumed.push(r.job);
                }
                // Its policy is gone, or it cannot be read: the server is started
                // again after any snapshot of ours in progress.
                other => {
                    settled.push(other.server());
                    self.settle_later(other.server(), Duration::ZERO);
                }
            }
        }

        // Freezes snaprotd ended in: every job thaws its server's before anything else
        // (the resumed runs above too, before they start their server); on the other
        // servers a settle does it now.
        for server in state.servers_with_hooks_left().await {
            if !settled.contains(&server) {
                self.settle_later(server, Duration::ZERO);
            }
        }

        // Catch-up: a job whose last fire passed while snaprotd was down runs once now.
        // The jobs of servers named by name or glob are asked of the provider first
        // (in a task: the daemon is ready meanwhile).
        let mut asks = Vec::new();
        for p in config.policies.iter().filter(|p| p.has_patterns()) {
            let previous = p
                .catch_up
                .then(|| p.schedule.previous_fire(p.timezone, now))
                .flatten();
            let ask = match previous {
                Some(previous) => Ask::CatchUp {
                    previous,
                    resumed: resumed.as_slice().into(),
                },
                None => Ask::Remember,
            };
            asks.push((p.name.as_str().into(), ask));
        }
        self.ask_fleet(asks);
        for p in &config.policies {
            if !p.catch_up {
                continue;
            }
            let Some(previous) = p.schedule.previous_fire(p.timezone, now) else {
                continue;
            };
            for job in p.jobs() {
                if resumed.contains(&job) {
                    continue;
                }
                if missed(&state, &job, previous, known.get(&job).copied(), p.timezone).await {
                    self.dispatch
                        .submit(self.runner.clone(), job, now, Work::Fire);
                }
            }
        }

        self.timetable = Timetable::new(&config, now);
        self.arm().await;
        info!(
            "snaprotd {} started: {} of {} policies",
            env!("CARGO_PKG_VERSION"),
            self.jobs_said(),
            config.policies.len()
        );
        systemd::ready(&self.status_line());
    }

    /// Records when each job was first seen; returns the record.
    pub(super) async fn remember_jobs(&self, now: DateTime<Utc>) -> BTreeMap<JobId, DateTime<Utc>> {
        let state = &self.runner.state;
        let mut known = state.known_jobs().await;
        let before = known.len();
        for p in &self.config().policies {
            for job in p.jobs() {
                known.entry(job).or_insert(now);
            }
        }
        if known.len() != before
            && let Err(e) = state.record_known_jobs(&known).await
        {
            warn!("cannot record the known jobs: {e}");
        }
        known
    }
}

/// Whether `job`'s fire at `previous` was missed while snaprotd was down: its last run
/// answered an earlier fire, or it has none and was known (`known_since`) before that
/// fire. Says so when it was.
pub(super) async fn missed(
    state: &crate::state::StateDir,
    job: &JobId,
    previous: DateTime<Utc>,
    known_since: Option<DateTime<Utc>>,
    zone: chrono_tz::Tz,
) -> bool {
    let missed = match state.last_run::<RunReport>(job).await {
        Some(last) => last.scheduled_for < previous,
        None => known_since.is_some_and(|since| since < previous),
    };
    if missed {
        info!(
            policy = %job.policy,
            server_id = job.server,
            job_id = %job,
            "catch-up: the fire at {} was missed while snaprotd was down; running it now",
            crate::schedule::shown(previous, zone)
        );
    }
    missed
}
