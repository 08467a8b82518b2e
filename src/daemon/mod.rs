//! The daemon: schedules every job, runs what fires, survives restarts, and talks to
//! systemd.
//!
//! One loop owns the state ([`run`]); everything else sends it events: the alarm (a
//! fire is due), finished jobs, the watchdog task (asking whether the loop is alive),
//! the kernel's notice that the wall clock was set, and the [`Control`]s it is handed
//! (reload, stop: the command line turns signals into them; the daemon installs no
//! signal handler). Between fires nothing of ours wakes up but the watchdog.
//!
//! Start-up (resume, catch-up) is in `start.rs`, shutdown in `shutdown.rs`, the next
//! fire of every job in `timetable.rs`, the one alarm in `alarm.rs`, noticing a clock
//! jump in `clock.rs`.

mod alarm;
mod clock;
mod fleet;
mod shutdown;
mod start;
pub mod timetable;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::config::{Config, ConfigErrors};
use crate::job::JobId;
use crate::provider::ApiError;
use crate::runner::{Dispatcher, LEFT_STOPPED, RunReport, Runner, Submitted, Work};
use crate::state::{LastReload, StateError};
use crate::systemd;
use alarm::Alarm;
use clock::ClockWatch;
use timetable::Timetable;

/// What the daemon is told from outside while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Read the configuration again; the text says who asked (`SIGHUP`).
    Reload(&'static str),
    /// Stop: no new job, running jobs get `shutdown_timeout`; the text says who asked.
    Stop(&'static str),
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Alarm(#[from] alarm::AlarmError),
}

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
    dispatch: Dispatcher<Runner>,
    /// The last failure of each job that is failing now.
    failures: BTreeMap<JobId, DateTime<Utc>>,
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
    /// The last reload failed: said in every `STATUS=` until one succeeds.
    reload_failure: Option<ReloadFailure>,
    /// Where the jobs a server listing found are sent (`fleet.rs`).
    fleet_tx: mpsc::UnboundedSender<fleet::Found>,
    /// The jobs the last listing found for each policy with patterns.
    patterned_jobs: std::collections::HashMap<Arc<str>, usize>,
    /// Counts the configurations put in force (reloads), so that a server listing
    /// read for an older one is not acted on (`fleet.rs`).
    generation: u64,
}

/// Runs the daemon on the configuration at `path` until `controls` says stop (or ends).
pub async fn run(
    path: &Path,
    mut controls: mpsc::UnboundedReceiver<Control>,
) -> Result<(), DaemonError> {
    let config = Config::load(path)?;
    for w in &config.warnings {
        warn!("{w}");
    }
    let config = Arc::new(config);
    let runner = Arc::new(Runner::new(config.clone())?);
    // Created when missing; refused when anyone else could write there.
    runner.state.become_owner_if_root()?;
    runner.state.check().await?;
    // One daemon per state directory, for the life of the process.
    let _lock = runner.state.lock().await?;

    let (fired_tx, mut fired_rx) = mpsc::unbounded_channel();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let (ping_tx, mut ping_rx) = mpsc::channel::<oneshot::Sender<()>>(1);
    let (settle_tx, mut settle_rx) = mpsc::unbounded_channel();
    let (clock_tx, mut clock_rx) = mpsc::unbounded_channel();
    let (fleet_tx, mut fleet_rx) = mpsc::unbounded_channel();
    if let Err(e) = clock::watch_clock_sets(clock_tx) {
        warn!(
            "cannot watch for clock changes ({e}); a clock set is noticed at the next watchdog check or fire"
        );
    }
    let alarm = Alarm::new(fired_tx).await.map_err(DaemonError::Alarm)?;
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
        reload_failure: None,
        fleet_tx,
        patterned_jobs: Default::default(),
        generation: 0,
    };
    daemon.start().await;
    // The configuration read at start is in force: the last reload succeeded.
    daemon.record_reload(Utc::now(), None).await;
    let stop_metrics = tokio_util::sync::CancellationToken::new();
    let metrics = tokio::spawn(metrics_writer(
        daemon.metrics_due.clone(),
        daemon.current.subscribe(),
        stop_metrics.clone(),
    ));
    let watchdog = systemd::watchdog_interval().map(|every| tokio::spawn(watchdog(every, ping_tx)));

    let admission = daemon.dispatch.admission();
    loop {
        tokio::select! {
            Some(at) = fired_rx.recv() => daemon.on_alarm(at).await,
            () = admission.room() => daemon.dispatch.fill(),
            Some(()) = clock_rx.recv() => {
                daemon.check_clock().await;
            }
            Some(report) = done_rx.recv() => daemon.on_done(report).await,
            Some(found) = fleet_rx.recv() => daemon.on_fleet(found),
            Some(server) = settle_rx.recv() => daemon.settle(server),
            Some(reply) = ping_rx.recv() => {
                daemon.check_alarm().await;
                let _ = reply.send(());
            }
            control = controls.recv() => match control {
                Some(Control::Reload(why)) => daemon.reload(why).await,
                Some(Control::Stop(why)) => { info!("{why}: stopping"); break }
                None => break,
            },
        }
    }
    if let Some(w) = watchdog {
        w.abort();
    }
    // Not aborted: a write cut short could add its counts again in the last write.
    stop_metrics.cancel();
    let _ = metrics.await;
    let runner = daemon.runner.clone();
    daemon.shutdown(&mut done_rx).await;
    runner.write_metrics().await;
    finish_notifications(&runner).await;
    Ok(())
}

/// Gives the notifications still queued a bounded time to go out before the process
/// ends, telling systemd to wait for them.
async fn finish_notifications(runner: &Runner) {
    if runner.notifier.pending() > 0 {
        let limit = crate::notify::finish_limit(&runner.config.notify);
        systemd::extend_stop_timeout(limit + Duration::from_secs(5));
    }
    runner.finish_notifications().await;
}

/// Rewrites the metrics file after jobs end (and after a reload), at most once a
/// second so a burst of thousands of jobs costs a handful of writes; ends, between
/// writes, when `stop` is cancelled.
async fn metrics_writer(
    due: Arc<tokio::sync::Notify>,
    runner: tokio::sync::watch::Receiver<Arc<Runner>>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            () = due.notified() => {}
            () = stop.cancelled() => return,
        }
        let current = runner.borrow().clone();
        current.write_metrics().await;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stop.cancelled() => return,
        }
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

    async fn arm(&mut self) {
        let earliest = self.timetable.earliest(self.config()).map(|(at, ..)| at);
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
            self.fire(job, fire_time);
        }
        self.fire_patterned();
        self.arm().await;
        systemd::status(&self.status_line());
    }

    /// The due policies with patterns: their servers are asked of the provider, in one
    /// listing for all of them.
    fn fire_patterned(&mut self) {
        let due = self.timetable.take_patterned();
        let asks = due
            .into_iter()
            .map(|(p, at)| (p, fleet::Ask::Fire(at)))
            .collect();
        self.ask_fleet(asks);
    }

    /// Hands the fire of `job` at `fire_time` to the dispatcher; one skipped (its job
    /// still running) is counted.
    fn fire(&mut self, job: JobId, fire_time: DateTime<Utc>) {
        let submitted = self
            .dispatch
            .submit(self.runner.clone(), job, fire_time, Work::Fire);
        if submitted == Submitted::Skipped {
            self.runner.metrics.fire_skipped();
        }
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
            crate::schedule::shown(now, chrono_tz::UTC)
        );
        let config = self.runner.config.clone();
        for (job, fire_time) in self.timetable.rebuild(&config, now) {
            self.fire(job, fire_time);
        }
        self.fire_patterned();
        self.arm().await;
        systemd::status(&self.status_line());
        true
    }

    /// A job ended: its slot goes to the next, and a server it left stopped (a failed
    /// start) is tried again later.
    async fn on_done(&mut self, report: RunReport) {
        self.dispatch.finished(&report.job);
        self.metrics_due.notify_one();
        let server = report.job.server;
        if self.runner.interrupt.is_set() {
            // Its guard has had its go at the server; shutdown does not try again.
            self.released.insert(server);
        } else if self.runner.state.stopped_server(server).await.is_some() {
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
        if report.ok {
            self.failures.remove(&report.job);
        } else {
            self.failures.insert(report.job, Utc::now());
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
        let job = JobId::new(LEFT_STOPPED, server);
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
        let config = self.runner.config.clone();
        let Some((earliest, policy, job)) = self.timetable.earliest(&config) else {
            return;
        };
        let now = Utc::now();
        if earliest + ALARM_SLACK < now {
            warn!(
                "the fire of {job} at {} did not go off; running it now",
                crate::schedule::shown(earliest, self.zone_of(&policy))
            );
            self.run_due().await;
        } else if self.alarm.set_for() != Some(earliest) {
            self.arm().await;
        }
    }

    /// Reads the configuration again; keeps the old one if the new one is bad. Tells
    /// systemd `RELOADING=1` (with the monotonic time) first and `READY=1` after, also
    /// when the reload failed. A failed reload is said in every `STATUS=` text until a
    /// reload succeeds.
    async fn reload(&mut self, why: &str) {
        systemd::reloading();
        info!("{why}: reloading {}", self.path.display());
        let at = Utc::now();
        let result = self.apply_reload().await;
        self.record_reload(at, result.as_ref().err()).await;
        self.reload_failure = result.err().map(|reason| ReloadFailure { at, reason });
        systemd::ready(&self.status_line());
    }

    /// Notes in the state directory (for the metrics file) what reading the
    /// configuration at `at` came to, and has the metrics file written again.
    async fn record_reload(&self, at: DateTime<Utc>, error: Option<&String>) {
        let reload = LastReload {
            at,
            ok: error.is_none(),
            error: error.cloned(),
        };
        if let Err(e) = self.runner.state.record_reload(&reload).await {
            warn!("cannot record the reload in the state directory: {e}");
        }
        self.metrics_due.notify_one();
    }

    /// Loads the configuration and puts it in force; `Err` (logged already) says
    /// briefly why the old one was kept.
    async fn apply_reload(&mut self) -> Result<(), String> {
        let config = match Config::load(&self.path) {
            Ok(config) => config,
            Err(errors) => {
                for e in &errors.0 {
                    error!("reload failed, keeping the old configuration: {e}");
                }
                let first = errors
                    .0
                    .first()
                    .map_or("a bad file".into(), |e| e.to_string());
                return Err(match errors.0.len() {
                    0 | 1 => first,
                    n => format!("{first} (and {} more)", n - 1),
                });
            }
        };
        if config.daemon.state_dir != self.config().daemon.state_dir {
            error!(
                "reload refused, keeping the old configuration: [daemon] state_dir changed from {} to {}; \
                 the state directory holds the servers snaprotd stopped and its locks, so changing it needs a restart \
                 (systemctl restart snaprotd)",
                self.config().daemon.state_dir.display(),
                config.daemon.state_dir.display()
            );
            return Err("[daemon] state_dir changed, which needs a restart".into());
        }
        for w in &config.warnings {
            warn!("{w}");
        }
        let config = Arc::new(config);
        let runner = Runner::reloaded(config.clone(), &self.runner).map_err(|e| {
            error!("reload failed, keeping the old configuration: {e}");
            e.to_string()
        })?;
        self.runner = Arc::new(runner);
        self.generation += 1;
        self.current.send_replace(self.runner.clone());
        self.remember_jobs(Utc::now()).await;
        let (was, now) = (self.dispatch.limit(), config.daemon.max_concurrent_jobs);
        if was != now {
            self.dispatch.resize(now);
            info!("max_concurrent_jobs: {was} → {now}");
        }
        self.timetable = Timetable::new(&config, Utc::now());
        self.arm().await;
        self.patterned_jobs.clear();
        self.ask_fleet(
            config
                .policies
                .iter()
                .filter(|p| p.has_patterns())
                .map(|p| (p.name.as_str().into(), fleet::Ask::Remember))
                .collect(),
        );
        info!("configuration reloaded: {}", self.jobs_said());
        Ok(())
    }

    /// The zone `job`'s times are shown in: its policy's, else UTC.
    fn zone_of(&self, policy: &str) -> chrono_tz::Tz {
        self.runner
            .config
            .policy(policy)
            .map_or(chrono_tz::UTC, |p| p.timezone)
    }

    /// The jobs in force: those of servers listed by id, and those the last listing
    /// found for patterns.
    fn jobs(&self) -> usize {
        self.timetable.len() + self.patterned_jobs.values().sum::<usize>()
    }

    /// "3 job(s)", and the policies whose servers the provider's listing says.
    fn jobs_said(&self) -> String {
        let patterned = self
            .config()
            .policies
            .iter()
            .filter(|p| p.has_patterns())
            .count();
        match patterned {
            0 => format!("{} job(s)", self.timetable.len()),
            n => format!(
                "{} job(s) on servers listed by id, and those of {n} policy(ies) naming servers, found at each fire",
                self.timetable.len()
            ),
        }
    }

    /// The `STATUS=` text: a failed reload (until a good one), jobs, the next fire,
    /// failures. Every `STATUS=` the daemon sends is this text.
    fn status_line(&self) -> String {
        let next = match self.timetable.earliest(self.config()) {
            Some((at, policy, job)) => format!(
                "next {job} at {}",
                crate::schedule::shown(at, self.zone_of(&policy))
            ),
            None => "nothing scheduled".into(),
        };
        let failing = match self.failures.iter().max_by_key(|(_, t)| **t) {
            Some((job, at)) => format!(
                "{} failing, last {} at {}",
                self.failures.len(),
                job,
                crate::schedule::shown(*at, self.zone_of(&job.policy))
            ),
            None => "no failures".into(),
        };
        let reload = self.reload_failure.as_ref().map_or(String::new(), |f| {
            format!(
                "reload failed at {}, old configuration in force: {}; ",
                f.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                brief(&f.reason)
            )
        });
        format!(
            "{reload}{} jobs, {} running; {next}; {failing}",
            self.jobs(),
            self.dispatch.running()
        )
    }
}

/// Why the last reload kept the old configuration, and when.
struct ReloadFailure {
    at: DateTime<Utc>,
    reason: String,
}

/// `text` on one line and cut short for a status line (the journal has it whole).
fn brief(text: &str) -> String {
    const MAX: usize = 200;
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::brief;

    #[test]
    fn a_reason_is_one_line_of_at_most_200_characters() {
        assert_eq!(brief("a\n  b"), "a b");
        let long = "é".repeat(300);
        assert_eq!(brief(&long).chars().count(), 201);
        assert!(brief(&long).ends_with('…'));
    }
}
