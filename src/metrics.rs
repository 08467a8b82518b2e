//! The metrics file: Prometheus text format for node_exporter's textfile collector,
//! rewritten atomically after jobs. Per job: last run time, outcome and duration; per
//! server and policy: owned snapshots; for the process: API requests and errors by kind.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;

use crate::provider::ApiStats;
use crate::runner::Report;
use crate::state::{StateError, write_atomic};

struct JobLine {
    policy: String,
    server: u64,
    finished: f64,
    ok: bool,
    seconds: f64,
}

#[derive(Default)]
pub struct Metrics {
    jobs: Mutex<BTreeMap<String, JobLine>>,
    owned: Mutex<BTreeMap<(u64, String), usize>>,
}

impl Metrics {
    pub fn record(&self, report: &Report) {
        let finished = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        let line = JobLine {
            policy: report.policy.clone(),
            server: report.server,
            finished,
            ok: report.ok,
            seconds: report.seconds,
        };
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(report.job.clone(), line);
        if let Some(o) = &report.outcome {
            self.owned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((report.server, report.policy.clone()), o.owned);
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
                    j.policy,
                    j.server,
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

    pub fn write(&self, path: &Path, api: &ApiStats) -> Result<(), StateError> {
        write_atomic(path, self.render(api).as_bytes())
    }
}
