//! The daemon: schedules every job, runs what fires, survives restarts, and talks to
//! systemd.
//!
//! One loop owns the state ([`Daemon::run`]); everything else sends it events: the
//! alarm (a fire is due), finished jobs, the watchdog task (asking whether the loop is
//! alive), the kernel's notice that the wall clock was set, and signals (SIGHUP
//! reloads, SIGTERM/SIGINT stop). Between fires nothing of ours wakes up but the
//! watchdog.

mod alarm;
mod clock;
pub mod dispatch;
pub mod timetable;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cli::CliError;
use crate::config::Config;
use crate::rotation;
use crate::runner::{LEFT_STOPPED, Runner, Work};
use crate::state::StoppedEntry;
use crate::systemd;
use alarm::Alarm;
use clock::ClockWatch;
use dispatch::{Dispatcher, Done};
use timetable::{JobKey, Timetable};

/// The longest wait between two tries to start a server whose start failed.
const MAX_START_RETRY: Duration = Duration::from_secs(15 * 60);

/// How late a fire may be before the watchdog check fires it itself.
const ALARM_SLACK: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

struct Daemon {
    path: PathBuf,
    runner: Arc<Runner>,
    timetable: Timetable,
    alarm: Alarm,
    /// The wall clock against the monotonic one, to notice a jump.
    clock: ClockWatch,
    dispatch: Dispatcher,
    /// The last failure of each job that is failing now.
    failures: BTreeMap<String, DateTime<Utc>>,
    /// Wakes the metrics writer after a job.
    metrics_due: Arc<tokio::sync::Notify>,
    /// Servers whose stopped-server record is to be settled (a failed start's retry).
    settle_tx: mpsc::UnboundedSender<u64>,
    /// Failed starts of a server so far, for the retry's backoff.
    start_retries: std::collections::HashMap<u64, u32>,
    /// Servers whose job ended after SIGTERM: their guard tried already.
    released: std::collections::HashSet<u64>,
    /// The runner of the configuration in force, for the metrics writer.
    current: tokio::sync::watch::Sender<Arc<Runner>>,
}

/// Runs the daemon on the configuration at `path` until SIGTERM, SIGINT or `stop`.
pub async fn run(path: &Path, stop: CancellationToken) -> Result<(), CliError> {
    let config = Config::load(path)?;
    for w in &config.warnings {
        warn!("{w}");
    }
    let config = Arc::new(config);
    let runner =
        Arc::new(Runner::new(config.clone()).map_err(|e| CliError::Failed(e.to_string()))?);
    // Created when missing; refused when anyone else could write there.
    runner
        .state
        .become_owner_if_root()
        .and_then(|_| runner.state.check())
        .map_err(|e| CliError::Failed(e.to_string()))?;
    // One daemon per state directory, for the life of the process.
    let _lock = runner
        .state
        .lock()
        .map_err(|e| CliError::Failed(e.to_string()))?;

    let mut hup = signal(SignalKind::hangup())
        .map_err(|e| CliError::Failed(format!("cannot catch SIGHUP: {e}")))?;
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| CliError::Failed(format!("cannot catch SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| CliError::Failed(format!("cannot catch SIGINT: {e}")))?;

    let (fired_tx, mut fired_rx) = mpsc::unbounded_channel();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let (ping_tx, mut ping_rx) = mpsc::channel::<oneshot::Sender<()>>(1);
    let (settle_tx, mut settle_rx) = mpsc::unbounded_channel();
    let (clock_tx, mut clock_rx) = mpsc::unbounded_channel();
    if let Err(e) = clock::watch_clock_sets(clock_tx) {
        warn!(
            "cannot watch for clock changes ({e}); a clock set is noticed at the next watchdog check or fire"
        );
    }
    let alarm = Alarm::new(fired_tx).await;
    let alarm = alarm.map_err(|e| CliError::Failed(e.to_string()))?;
    let runner_for_metrics = runner.clone();
    let mut daemon = Daemon {
        path: path.to_path_buf(),
        dispatch: Dispatcher::new(config.daemon.max_concurrent_jobs, done_tx),
        timetable: Timetable::default(),
        runner,
        alarm,
        clock: ClockWatch::new(Utc::now(), Instant::now()),
        failures: BTreeMap::new(),
        metrics_due: Arc::new(tokio::sync::Notify::new()),
        settle_tx,
        start_retries: Default::default(),
        released: Default::default(),
        current: tokio::sync::watch::Sender::new(runner_for_metrics),
    };
    daemon.start().await;
    let metrics = tokio::spawn(metrics_writer(
        daemon.metrics_due.clone(),
        daemon.current.subscribe(),
    ));
    let watchdog = systemd::watchdog_interval().map(|every| tokio::spawn(watchdog(every, ping_tx)));

    loop {
        tokio::select! {
            Some(at) = fired_rx.recv() => daemon.on_alarm(at).await,
            Some(()) = clock_rx.recv() => {
                daemon.check_clock().await;
            }
            Some(done) = done_rx.recv() => daemon.on_done(done),
            Some(server) = settle_rx.recv() => daemon.settle(server),
            Some(reply) = ping_rx.recv() => {
                daemon.check_alarm().await;
                let _ = reply.send(());
            }
            _ = hup.recv() => daemon.reload().await,
            _ = term.recv() => { info!("SIGTERM: stopping"); break }
            _ = int.recv() => { info!("SIGINT: stopping"); break }
            _ = stop.cancelled() => break,
        }
    }
    if let Some(w) = watchdog {
        w.abort();
    }
    metrics.abort();
    let runner = daemon.runner.clone();
    daemon.shutdown(&mut done_rx).await;
    runner.write_metrics();
    Ok(())
}

/// Rewrites the metrics file after jobs end, at most once a second so a burst of
/// thousands of jobs costs a handful of writes.
async fn metrics_writer(
    due: Arc<tokio::sync::Notify>,
    runner: tokio::sync::watch::Receiver<Arc<Runner>>,
) {
    loop {
        due.notified().await;
        let current = runner.borrow().clone();
        current.write_metrics();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Pings the watchdog every `every`, but only after the main loop has answered — a
/// stuck loop gets the service restarted.
async fn watchdog(every: Duration, ping: mpsc::Sender<oneshot::Sender<()>>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let (tx, rx) = oneshot::channel();
        if ping.send(tx).await.is_err() {
            return;
        }
        if tokio::time::timeout(every, rx)
            .await
            .is_ok_and(|r| r.is_ok())
        {
            systemd::watchdog();
        } else {
            warn!("the main loop did not answer the watchdog check");
        }
    }
}

impl Daemon {
    fn config(&self) -> &Config {
        &self.runner.config
    }

    /// Start-up: resume interrupted jobs, catch up missed fires, arm the schedule.
    async fn start(&mut self) {
        let now = Utc::now();
        let config = self.runner.config.clone();
        let state = &self.runner.state;
        let known = self.remember_jobs(now);

        // Servers snaprotd stopped before it went down: their job is resumed, which
        // adopts the snapshot by name and starts the server after it. A record whose
        // job is not configured (or that cannot be read) is settled: its server is
        // started again after its snapshot.
        let mut resumed = Vec::new();
        for entry in state.stopped_servers() {
            match entry {
                StoppedEntry::Record(r) if config.job_policy(&r.policy, r.server).is_some() => {
                    let job = JobKey {
                        policy: r.policy.clone(),
                        server: r.server,
                    };
                    warn!(
                        server_id = r.server,
                        job_id = %r.job,
                        snapshot_name = %r.snapshot_name,
                        "server {} was stopped by {} for snapshot {} and not started again; resuming that run",
                        r.server,
                        r.job,
                        r.snapshot_name
                    );
                    self.dispatch.submit(
                        self.runner.clone(),
                        job.clone(),
                        r.scheduled_for,
                        Work::Resume,
                    );
                    resumed.push(job);
                }
                // Its policy is gone, or it cannot be read: the server is started
                // again after any snapshot of ours in progress.
                other => self.settle_later(other.server(), Duration::ZERO),
            }
        }

        // Catch-up: a job whose last fire passed while snaprotd was down runs once now.
        for p in &config.policies {
            if !p.catch_up {
                continue;
            }
            let Some(previous) = p.schedule.previous_fire(p.timezone, now) else {
                continue;
            };
            for s in &p.servers {
                let job = JobKey {
                    policy: p.name.clone(),
                    server: *s,
                };
                if resumed
                    .iter()
                    .any(|r| r.server == job.server && r.policy == job.policy)
                {
                    continue;
                }
                let last = state.last_run(&job.id()).map(|r| r.scheduled_for);
                let missed = match last {
                    Some(last) => last < previous,
                    None => known.get(&job.id()).is_some_and(|since| *since < previous),
                };
                if missed {
                    info!(
                        policy = %p.name,
                        server_id = *s,
                        job_id = %job.id(),
                        "catch-up: the fire at {} was missed while snaprotd was down; running it now",
                        previous.with_timezone(&p.timezone).to_rfc3339()
                    );
                    self.dispatch
                        .submit(self.runner.clone(), job, now, Work::Fire);
                }
            }
        }

        self.timetable = Timetable::new(&config, now);
        self.arm().await;
        info!(
            "snaprotd {} started: {} job(s) of {} policies",
            env!("CARGO_PKG_VERSION"),
            self.timetable.len(),
            config.policies.len()
        );
        systemd::ready(&self.status_line());
    }

    /// Records when each job was first seen; returns the record.
    fn remember_jobs(&self, now: DateTime<Utc>) -> BTreeMap<String, DateTime<Utc>> {
        let state = &self.runner.state;
        let mut known = state.known_jobs();
        let before = known.len();
        for p in &self.config().policies {
            for s in &p.servers {
                known.entry(rotation::job_id(&p.name, *s)).or_insert(now);
            }
        }
        if known.len() != before
            && let Err(e) = state.record_known_jobs(&known)
        {
            warn!("cannot record the known jobs: {e}");
        }
        known
    }

    async fn arm(&mut self) {
        let earliest = self.timetable.earliest().map(|(at, _)| at);
        self.alarm.set(earliest).await;
    }

    /// The alarm went off for `at`: what is due runs, unless the wall clock jumped, in
    /// which case the timetable is computed again first.
    async fn on_alarm(&mut self, at: DateTime<Utc>) {
        self.alarm.went_off(at);
        if !self.check_clock().await {
            self.run_due().await;
        }
    }

    /// Hands every job due by now to the dispatcher and sets the alarm for the next.
    async fn run_due(&mut self) {
        let now = Utc::now();
        let config = self.runner.config.clone();
        for (job, fire_time) in self.timetable.take_due(&config, now) {
            self.dispatch
                .submit(self.runner.clone(), job, fire_time, Work::Fire);
        }
        self.arm().await;
        systemd::status(&self.status_line());
    }

    /// Compares the wall clock with the monotonic clock since the last look. After a
    /// jump (a clock set, a suspend) every fire time is computed again from the new
    /// clock — what became due runs once, fires the old clock had passed come back —
    /// and the alarm is set again; returns whether it jumped.
    async fn check_clock(&mut self) -> bool {
        let now = Utc::now();
        let Some(jump) = self.clock.look(now, Instant::now()) else {
            return false;
        };
        let (way, by) = if jump < chrono::TimeDelta::zero() {
            ("back", -jump)
        } else {
            ("forward", jump)
        };
        // Whole seconds past a minute, milliseconds below.
        let by = match by.num_seconds() {
            s if s >= 60 => Duration::from_secs(s.unsigned_abs()),
            _ => Duration::from_millis(by.num_milliseconds().unsigned_abs()),
        };
        warn!(
            "the wall clock jumped {way} by {} (a clock set, or a suspend); computing every fire time again from {}",
            humantime::format_duration(by),
            now.to_rfc3339()
        );
        let config = self.runner.config.clone();
        for (job, fire_time) in self.timetable.rebuild(&config, now) {
            self.dispatch
                .submit(self.runner.clone(), job, fire_time, Work::Fire);
        }
        self.arm().await;
        systemd::status(&self.status_line());
        true
    }

    fn on_done(&mut self, done: Done) {
        self.dispatch.finished(&done.job);
        self.metrics_due.notify_one();
        let server = done.job.server;
        if self.runner.interrupt.is_set() {
            // Its guard has had its go at the server; shutdown does not try again.
            self.released.insert(server);
        } else if self.runner.state.stopped_server(server).is_some() {
            // A start that failed: tried again while the daemon runs, not only on
            // the next fire of the server or the next start of the daemon.
            let base = self
                .config()
                .defaults
                .stop_timeout
                .min(Duration::from_secs(60));
            let attempt = self.start_retries.entry(server).or_insert(0);
            *attempt += 1;
            let wait = (base * 2u32.saturating_pow(*attempt - 1)).min(MAX_START_RETRY);
            warn!(
                server_id = server,
                "server {server} is still stopped; trying to start it again in {}",
                humantime::format_duration(wait)
            );
            self.settle_later(server, wait);
        } else {
            self.start_retries.remove(&server);
        }
        if let Some(report) = done.report {
            if report.ok {
                self.failures.remove(&report.job);
            } else {
                self.failures.insert(report.job, Utc::now());
            }
        }
        systemd::status(&self.status_line());
    }

    /// Settles the stopped-server record of `server` after `wait` (through the
    /// dispatcher, so it waits for the server's current job).
    fn settle_later(&self, server: u64, wait: Duration) {
        let settle = self.settle_tx.clone();
        if wait.is_zero() {
            let _ = settle.send(server);
            return;
        }
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = settle.send(server);
        });
    }

    fn settle(&mut self, server: u64) {
        let job = JobKey {
            policy: LEFT_STOPPED.into(),
            server,
        };
        self.dispatch
            .submit(self.runner.clone(), job, Utc::now(), Work::Settle);
    }

    /// Called by the watchdog check: after a clock jump the timetable is computed
    /// again; a fire whose alarm did not go off (a lost timer) runs now, and the alarm
    /// is set again.
    async fn check_alarm(&mut self) {
        if self.check_clock().await {
            return;
        }
        let Some((earliest, job)) = self.timetable.earliest() else {
            return;
        };
        let now = Utc::now();
        if earliest + ALARM_SLACK < now {
            warn!(
                "the fire of {} at {} did not go off; running it now",
                job.id(),
                earliest.to_rfc3339()
            );
            self.run_due().await;
        } else if self.alarm.set_for() != Some(earliest) {
            self.arm().await;
        }
    }

    /// SIGHUP: read the configuration again; keep the old one if the new one is bad.
    async fn reload(&mut self) {
        systemd::reloading();
        info!("SIGHUP: reloading {}", self.path.display());
        match Config::load(&self.path) {
            Ok(config) if config.daemon.state_dir != self.config().daemon.state_dir => {
                error!(
                    "reload refused, keeping the old configuration: [daemon] state_dir changed from {} to {}; \
                     the state directory holds the servers snaprotd stopped and its locks, so changing it needs a restart \
                     (systemctl restart snaprotd)",
                    self.config().daemon.state_dir.display(),
                    config.daemon.state_dir.display()
                );
            }
            Ok(config) => {
                for w in &config.warnings {
                    warn!("{w}");
                }
                let config = Arc::new(config);
                match Runner::reloaded(config.clone(), &self.runner) {
                    Ok(runner) => {
                        self.runner = Arc::new(runner);
                        self.current.send_replace(self.runner.clone());
                        self.remember_jobs(Utc::now());
                        self.timetable = Timetable::new(&config, Utc::now());
                        self.arm().await;
                        info!("configuration reloaded: {} job(s)", self.timetable.len());
                    }
                    Err(e) => error!("reload failed, keeping the old configuration: {e}"),
                }
            }
            Err(errors) => {
                for e in &errors.0 {
                    error!("reload failed, keeping the old configuration: {e}");
                }
            }
        }
        systemd::ready(&self.status_line());
    }

    /// SIGTERM: no new job; running jobs get `shutdown_timeout` to finish their wait,
    /// then every server they stopped is started again by its guard, all at once and
    /// ahead of other requests. A job still not done after that is cancelled, and the
    /// servers it left stopped are settled here.
    async fn shutdown(mut self, done_rx: &mut mpsc::UnboundedReceiver<Done>) {
        let running = self.dispatch.running();
        systemd::stopping(&format!("stopping: waiting for {running} running job(s)"));
        self.alarm.set(None).await;
        let dropped = self.dispatch.drop_queued();
        if dropped > 0 {
            info!("{dropped} queued job(s) will not start");
        }
        let grace = self.config().daemon.shutdown_timeout;
        self.runner.interrupt.set(grace);
        self.dispatch.tracker.close();
        let tracker = self.dispatch.tracker.clone();
        // The guards' starts come after the grace period, each bounded by stop_timeout
        // (twice when a stop was under way).
        let stop_timeout = self
            .config()
            .policies
            .iter()
            .map(|p| p.stop_timeout)
            .chain([self.config().defaults.stop_timeout])
            .max()
            .unwrap_or_default();
        let limit = grace + 2 * stop_timeout + Duration::from_secs(10);
        // Then every record left is settled, each within stop_timeout and a last look.
        let settling = stop_timeout + Duration::from_secs(15);
        systemd::extend_stop_timeout(limit + settling);
        let finished = tokio::time::timeout(limit, async {
            // Keep taking reports so finished jobs are logged as they end.
            let wait = tracker.wait();
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    Some(done) = done_rx.recv() => self.on_done(done),
                }
            }
        })
        .await;
        if finished.is_err() {
            warn!(
                "jobs still running {} after SIGTERM; cancelling them",
                humantime::format_duration(limit)
            );
            self.dispatch.cancel.cancel();
            tracker.wait().await;
        }
        // Reports sent by tasks that ended as the wait above did.
        while let Ok(done) = done_rx.try_recv() {
            self.on_done(done);
        }
        // What no guard has tried to start since SIGTERM (a cancelled job, a failed
        // start waiting for its retry, a resume that never ran): all at once.
        settle_all(&self.runner, &self.released).await;
        self.alarm.shutdown().await;
        info!("stopped");
    }

    /// The `STATUS=` text: jobs, the next fire, failures.
    fn status_line(&self) -> String {
        let next = match self.timetable.earliest() {
            Some((at, job)) => format!("next {} at {}", job.id(), at.to_rfc3339()),
            None => "nothing scheduled".into(),
        };
        let failing = match self.failures.iter().max_by_key(|(_, t)| **t) {
            Some((job, at)) => format!(
                "{} failing, last {} at {}",
                self.failures.len(),
                job,
                at.to_rfc3339()
            ),
            None => "no failures".into(),
        };
        format!(
            "{} jobs, {} running; {next}; {failing}",
            self.timetable.len(),
            self.dispatch.running()
        )
    }
}

/// Settles every stopped-server record but those of `released` servers, all at once.
/// A server another process holds (a `once`) is left to that process's guard.
async fn settle_all(runner: &Arc<Runner>, released: &std::collections::HashSet<u64>) {
    let mut all = tokio::task::JoinSet::new();
    for entry in runner.state.stopped_servers() {
        let server = entry.server();
        if released.contains(&server) {
            continue;
        }
        let runner = runner.clone();
        all.spawn(async move {
            // A cancelled job's task lets go of the lock as it ends: wait a moment.
            let lock = tokio::time::timeout(Duration::from_secs(2), runner.lock_server(server));
            let Ok(Ok(_lock)) = lock.await else {
                warn!(
                    server_id = server,
                    "{}; that process starts it again",
                    crate::state::busy(server, &runner.state.server_holder(server))
                );
                return;
            };
            if let Err(e) = rotation::settle(&runner.rotation(), server).await {
                error!(server_id = server, "{e}");
            }
        });
    }
    while all.join_next().await.is_some() {}
}
