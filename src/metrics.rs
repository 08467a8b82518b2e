//! The metrics file: Prometheus text format for node_exporter's textfile collector,
//! rewritten atomically.
//!
//! Every writer — the daemon after jobs, `once` at its end — writes the whole picture,
//! which the runner gathers from the state directory ([`Picture`]): the last run of
//! every configured job, the servers left stopped, the daemon's last reload, and the
//! counters. The counters live in the state directory too: each process adds what it
//! counted since its last add ([`Metrics::unsaved`]), so a `once` after the daemon
//! neither drops a job's series nor makes a counter fall.
//!
//! Per-job series carry `job_id`, `policy` and `server`: a `job` label would clash with
//! the one Prometheus gives every target (and be renamed `exported_job`).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::job::JobId;
use crate::provider::ApiStats;
use crate::state::{Counts, LastReload, StateError, write_atomic};

/// The counters' groups, as kept in the state directory.
const API_REQUESTS: &str = "api_requests";
const API_ERRORS: &str = "api_errors";
const FIRES_SKIPPED: &str = "fires_skipped";

/// What the file shows of one job: its last run, as recorded.
#[derive(Debug, Clone)]
pub struct JobSeries {
    pub job: JobId,
    pub finished_at: DateTime<Utc>,
    pub ok: bool,
    pub seconds: f64,
    pub last_success: Option<DateTime<Utc>>,
    /// Snapshots of its policy on its server after its last successful run.
    pub owned: Option<usize>,
}

/// Everything the file shows.
#[derive(Debug, Clone, Default)]
pub struct Picture {
    pub jobs: Vec<JobSeries>,
    pub counts: Counts,
    pub servers_stopped: usize,
    /// Freezes whose thaw has not run (`state::StateDir::freezes_left`).
    pub freezes_left: usize,
    pub reload: Option<LastReload>,
}

/// What this process counts for the file, and what of it is in the state directory.
#[derive(Default)]
pub struct Metrics {
    /// What this process counted itself (fires skipped) since it started.
    counted: Mutex<Counts>,
    /// Of all it counted (its own and its API client's), what it has added to the
    /// state directory's counters.
    saved: Mutex<Counts>,
    /// One write at a time: between taking what is unsaved and saying it is saved.
    writing: tokio::sync::Mutex<()>,
}

impl Metrics {
    /// A fire was skipped: its job's previous run was still going.
    pub fn fire_skipped(&self) {
        let mut counted = self.counted.lock().unwrap_or_else(|p| p.into_inner());
        *counted
            .entry(FIRES_SKIPPED.into())
            .or_default()
            .entry(String::new())
            .or_default() += 1;
    }

    /// Holds the writing of the file (one writer per process at a time).
    pub async fn writing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writing.lock().await
    }

    /// All this process counted (with `api`'s requests and errors), and the part of it
    /// not yet added to the state directory. Once added, pass the first to
    /// [`Metrics::saved`].
    pub fn unsaved(&self, api: &ApiStats) -> (Counts, Counts) {
        let mut all = self
            .counted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (what, kind, n) in api.snapshot() {
            let group = if what == "request" {
                API_REQUESTS
            } else {
                API_ERRORS
            };
            all.entry(group.into()).or_default().insert(kind, n);
        }
        let saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        let mut unsaved = Counts::new();
        for (group, kinds) in &all {
            for (kind, n) in kinds {
                let before = saved.get(group).and_then(|k| k.get(kind)).copied();
                let delta = n.saturating_sub(before.unwrap_or(0));
                if delta > 0 {
                    unsaved
                        .entry(group.clone())
                        .or_default()
                        .insert(kind.clone(), delta);
                }
            }
        }
        (all, unsaved)
    }

    /// `all` (from [`Metrics::unsaved`]) is in the state directory's counters now.
    pub fn saved(&self, all: Counts) {
        *self.saved.lock().unwrap_or_else(|p| p.into_inner()) = all;
    }

    /// Rewrites the file at `path` with `text`, on a blocking thread.
    pub async fn write(&self, path: &Path, text: String) -> Result<(), StateError> {
        let to = path.to_path_buf();
        match tokio::task::spawn_blocking(move || write_atomic(&to, text.as_bytes())).await {
            Ok(r) => r,
            Err(e) => Err(StateError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other(e),
            }),
        }
    }
}

/// A label value as the text format wants it.
fn label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The file's text.
pub fn render(p: &Picture) -> String {
    let mut out = String::new();
    type Series = (&'static str, &'static str, fn(&JobSeries) -> Option<f64>);
    let per_job: [Series; 5] = [
        (
            "snaprotd_job_last_run_timestamp_seconds",
            "When the job's last run ended.",
            |j| Some(seconds(j.finished_at)),
        ),
        (
            "snaprotd_job_last_run_success",
            "1 if the job's last run succeeded, else 0.",
            |j| Some(f64::from(u8::from(j.ok))),
        ),
        (
            "snaprotd_job_last_run_duration_seconds",
            "How long the job's last run took.",
            |j| Some(j.seconds),
        ),
        (
            "snaprotd_job_last_success_timestamp_seconds",
            "When the job's last successful run ended.",
            |j| j.last_success.map(seconds),
        ),
        (
            "snaprotd_owned_snapshots",
            "Snapshots of the job's policy on its server after its last successful run.",
            |j| j.owned.map(|n| n as f64),
        ),
    ];
    for (name, help, value) in per_job {
        header(&mut out, name, "gauge", help);
        for j in &p.jobs {
            if let Some(v) = value(j) {
                let _ = writeln!(
                    out,
                    "{name}{{job_id=\"{}\",policy=\"{}\",server=\"{}\"}} {v}",
                    label(&j.job.to_string()),
                    label(&j.job.policy),
                    j.job.server,
                );
            }
        }
    }
    for (group, name, help, label_name) in [
        (
            API_REQUESTS,
            "snaprotd_api_requests_total",
            "Provider API requests sent, by method, by every snaprotd process on this state directory.",
            "method",
        ),
        (
            API_ERRORS,
            "snaprotd_api_errors_total",
            "Provider API errors, by kind, by every snaprotd process on this state directory.",
            "kind",
        ),
    ] {
        header(&mut out, name, "counter", help);
        for (kind, n) in p.counts.get(group).into_iter().flatten() {
            let _ = writeln!(out, "{name}{{{label_name}=\"{}\"}} {n}", label(kind));
        }
    }
    let skipped: u64 = p
        .counts
        .get(FIRES_SKIPPED)
        .map_or(0, |kinds| kinds.values().sum());
    header(
        &mut out,
        "snaprotd_fires_skipped_total",
        "counter",
        "Fires skipped because the job's previous run was still going.",
    );
    let _ = writeln!(out, "snaprotd_fires_skipped_total {skipped}");
    header(
        &mut out,
        "snaprotd_servers_stopped",
        "gauge",
        "Servers snaprotd stopped and has not started again, not counting those a job is working on.",
    );
    let _ = writeln!(out, "snaprotd_servers_stopped {}", p.servers_stopped);
    header(
        &mut out,
        "snaprotd_freezes_left",
        "gauge",
        "Servers whose pre_snapshot hook ran and whose post_snapshot has not, not counting those a job is working on.",
    );
    let _ = writeln!(out, "snaprotd_freezes_left {}", p.freezes_left);
    if let Some(r) = &p.reload {
        header(
            &mut out,
            "snaprotd_last_reload_success",
            "gauge",
            "1 if the daemon's last reading of its configuration (its start or a reload) succeeded, else 0 (the old configuration is in force).",
        );
        let _ = writeln!(out, "snaprotd_last_reload_success {}", u8::from(r.ok));
        header(
            &mut out,
            "snaprotd_last_reload_timestamp_seconds",
            "gauge",
            "When the daemon last read its configuration (its start or a reload).",
        );
        let _ = writeln!(
            out,
            "snaprotd_last_reload_timestamp_seconds {}",
            seconds(r.at)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_process_counted_is_added_once() {
        let m = Metrics::default();
        m.fire_skipped();
        let api = ApiStats::default();
        let (all, unsaved) = m.unsaved(&api);
        assert_eq!(unsaved, all);
        assert_eq!(unsaved[FIRES_SKIPPED][""], 1);
        // Not saved (the add failed): still unsaved.
        assert_eq!(m.unsaved(&api).1, unsaved);
        m.saved(all);
        assert!(m.unsaved(&api).1.is_empty());
        m.fire_skipped();
        m.fire_skipped();
        assert_eq!(m.unsaved(&api).1[FIRES_SKIPPED][""], 2);
    }

    #[test]
    fn jobs_carry_job_id_and_every_counter_is_there_from_the_start() {
        let at: DateTime<Utc> = "2026-11-24T02:31:00.5Z".parse().unwrap();
        let picture = Picture {
            jobs: vec![
                JobSeries {
                    job: JobId::new("nightly", 1),
                    finished_at: at,
                    ok: false,
                    seconds: 2.5,
                    last_success: None,
                    owned: None,
                },
                JobSeries {
                    job: JobId::new("nightly", 2),
                    finished_at: at,
                    ok: true,
                    seconds: 1.0,
                    last_success: Some(at),
                    owned: Some(3),
                },
            ],
            ..Picture::default()
        };
        let text = render(&picture);
        for line in [
            "snaprotd_job_last_run_success{job_id=\"nightly@1\",policy=\"nightly\",server=\"1\"} 0",
            "snaprotd_job_last_run_timestamp_seconds{job_id=\"nightly@1\",policy=\"nightly\",server=\"1\"} 1795487460.5",
            "snaprotd_job_last_success_timestamp_seconds{job_id=\"nightly@2\",policy=\"nightly\",server=\"2\"} 1795487460.5",
            "snaprotd_owned_snapshots{job_id=\"nightly@2\",policy=\"nightly\",server=\"2\"} 3",
            "snaprotd_fires_skipped_total 0",
            "snaprotd_servers_stopped 0",
            "snaprotd_freezes_left 0",
            "# TYPE snaprotd_api_requests_total counter",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(!text.contains("last_success_timestamp_seconds{job_id=\"nightly@1\""));
        assert!(!text.contains("reload"), "no reload known:\n{text}");
    }
}
