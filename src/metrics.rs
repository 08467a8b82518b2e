//! The metrics file: Prometheus text format for node_exporter's textfile collector,
//! rewritten atomically after jobs. Per job: last run time, outcome and duration; per
//! server and policy: owned snapshots; for the process: API requests and errors by kind.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;

use crate::job::JobId;
use crate::provider::ApiStats;
use crate::state::{StateError, write_atomic};

struct JobLine {
    finished: f64,
    ok: bool,
    seconds: f64,
}

#[derive(Default)]
pub struct Metrics {
    jobs: Mutex<BTreeMap<JobId, JobLine>>,
    owned: Mutex<BTreeMap<(u64, String), usize>>,
}

impl Metrics {
    /// A run of `job` ended now, after `seconds`; `owned` is how many snapshots of its
    /// policy its server holds after a successful run.
    pub fn record(&self, job: &JobId, ok: bool, seconds: f64, owned: Option<usize>) {
        let finished = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        let line = JobLine {
            finished,
            ok,
            seconds,
        };
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.clone(), line);
        if let Some(owned) = owned {
            self.owned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((job.server, job.policy.to_string()), owned);
        }
    }

    pub fn render(&self, api: &ApiStats) -> String {
        let mut out = String::new();
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        type Series = (&'static str, &'static str, fn(&JobLine) -> f64);
        let series: [Series; 3] = [
            (
                "snaprotd_job_last_run_timestamp_seconds",
                "When the job's last run ended.",
                |j| j.finished,
            ),
            (
                "snaprotd_job_last_run_success",
                "1 if the job's last run succeeded, else 0.",
                |j| f64::from(u8::from(j.ok)),
            ),
            (
                "snaprotd_job_last_run_duration_seconds",
                "How long the job's last run took.",
                |j| j.seconds,
            ),
        ];
        for (name, help, value) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (job, j) in jobs.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{job=\"{job}\",policy=\"{}\",server=\"{}\"}} {}",
                    job.policy,
                    job.server,
                    value(j)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP snaprotd_owned_snapshots Snapshots of a policy on a server after its last run.\n# TYPE snaprotd_owned_snapshots gauge"
        );
        for ((server, policy), n) in self.owned.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "snaprotd_owned_snapshots{{server=\"{server}\",policy=\"{policy}\"}} {n}"
            );
        }
        let counts = api.snapshot();
        for (what, name, help, label) in [
            (
                "request",
                "snaprotd_api_requests_total",
                "Provider API requests sent, by method.",
                "method",
            ),
            (
                "error",
                "snaprotd_api_errors_total",
                "Provider API errors, by kind.",
                "kind",
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (w, kind, n) in counts.iter().filter(|(w, _, _)| *w == what) {
                let _ = w;
                let _ = writeln!(out, "{name}{{{label}=\"{kind}\"}} {n}");
            }
        }
        out
    }

    /// Rewrites the file at `path`, on a blocking thread.
    pub async fn write(&self, path: &Path, api: &ApiStats) -> Result<(), StateError> {
        let text = self.render(api);
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
