//! What one run of a job came to: returned by the runner, printed by `once`, kept as
//! the job's last run in the state directory (`runs/<job>.json`, read by `status` and
//! the catch-up), counted in the metrics and the daemon's status line.
//!
//! The record is an interface across upgrades, as every state file is: fields are
//! added with a default, never renamed or dropped. The first release wrote `job`,
//! `policy`, `server`, `scheduled_for`, `started_at`, `finished_at`, `ok`, `message` and
//! `snapshot_name`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::job::JobId;
use crate::rotation::Outcome;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    #[serde(flatten)]
    pub job: JobId,
    /// The fire this run answered (or its start, for `once`).
    pub scheduled_for: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The run did what it was for (a run that did not start is not a failure: see
    /// `skipped`).
    pub ok: bool,
    /// "ok", or what went wrong.
    pub message: String,
    /// The snapshot the run made or adopted.
    pub snapshot_name: Option<String>,
    /// How long the run took.
    #[serde(default)]
    pub seconds: f64,
    /// What went wrong (`message` of a failed run).
    #[serde(default)]
    pub error: Option<String>,
    /// Why the job did not run (`once --skip-busy`: another process has the server).
    #[serde(default)]
    pub skipped: Option<String>,
    /// What a successful rotation did (`once --json`); left out of the state directory.
    #[serde(default, skip_deserializing)]
    pub outcome: Option<Outcome>,
    /// When the job last succeeded, this run or an earlier one (carried over failures
    /// by [`RunReport::after`]). Read through [`RunReport::last_success`]: a record of
    /// an earlier release has none.
    #[serde(default)]
    pub last_success: Option<DateTime<Utc>>,
    /// Snapshots of the policy on the server after the last successful run.
    #[serde(default)]
    pub owned: Option<usize>,
}

impl RunReport {
    /// A run of `job` for the fire at `scheduled_for` that starts now, ok so far.
    pub fn new(job: JobId, scheduled_for: DateTime<Utc>) -> RunReport {
        let now = Utc::now();
        RunReport {
            job,
            scheduled_for,
            started_at: now,
            finished_at: now,
            ok: true,
            message: "ok".into(),
            snapshot_name: None,
            seconds: 0.0,
            error: None,
            skipped: None,
            outcome: None,
            last_success: None,
            owned: None,
        }
    }

    /// A run that failed with `error`.
    pub fn failed(job: JobId, scheduled_for: DateTime<Utc>, error: String) -> RunReport {
        RunReport::new(job, scheduled_for).fail(error)
    }

    /// A job that did not run, and why.
    pub fn skipped(job: JobId, scheduled_for: DateTime<Utc>, why: String) -> RunReport {
        RunReport {
            skipped: Some(why),
            ..RunReport::new(job, scheduled_for)
        }
    }

    /// This run, failed with `error`.
    pub fn fail(self, error: String) -> RunReport {
        RunReport {
            ok: false,
            message: error.clone(),
            error: Some(error),
            ..self
        }
    }

    /// This run, ended by a rotation that did `outcome`.
    pub fn succeeded(self, outcome: Outcome) -> RunReport {
        RunReport {
            snapshot_name: Some(outcome.snapshot.name.clone()),
            outcome: Some(outcome),
            ..self
        }
    }

    /// When the job last succeeded, as far as this record knows: a successful run's
    /// own end when an earlier release wrote it.
    pub fn last_success(&self) -> Option<DateTime<Utc>> {
        let own = (self.ok && self.skipped.is_none()).then_some(self.finished_at);
        own.or(self.last_success)
    }

    /// This run as the job's last run, following `previous`: what a failure does not
    /// know (the last success, the snapshots owned) is carried over from it.
    pub fn after(self, previous: Option<&RunReport>) -> RunReport {
        let owned = self.outcome.as_ref().map(|o| o.owned);
        RunReport {
            last_success: self
                .last_success()
                .or_else(|| previous.and_then(RunReport::last_success)),
            owned: owned.or_else(|| previous.and_then(|p| p.owned)),
            ..self
        }
    }

    /// This run, ended now after `seconds`.
    pub fn ended(self, seconds: f64) -> RunReport {
        RunReport {
            finished_at: Utc::now(),
            seconds,
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_last_run_of_the_first_release_still_reads() {
        let text = r#"{"job": "nightly@1", "policy": "nightly", "server": 1,
            "scheduled_for": "2026-11-24T02:30:00Z", "started_at": "2026-11-24T02:30:00.100Z",
            "finished_at": "2026-11-24T02:31:10Z", "ok": false,
            "message": "snapshot nightly-1 (id 4) ended as \"failed\"", "snapshot_name": null}"#;
        let r: RunReport = serde_json::from_str(text).unwrap();
        assert_eq!(r.job, JobId::new("nightly", 1));
        assert!(!r.ok);
        assert!(r.message.contains("ended as"), "{}", r.message);
        assert_eq!(r.scheduled_for.to_rfc3339(), "2026-11-24T02:30:00+00:00");
        assert_eq!((r.seconds, &r.skipped), (0.0, &None));
        assert_eq!((r.last_success(), r.owned), (None, None));
    }

    #[test]
    fn the_last_success_and_owned_snapshots_are_carried_over_failures() {
        let at = "2026-11-24T02:30:00Z".parse().unwrap();
        let job = JobId::new("p", 2);
        // A successful run of an earlier release: its end is the last success.
        let old: RunReport = serde_json::from_str(
            r#"{"job": "p@2", "policy": "p", "server": 2, "scheduled_for": "2026-11-24T02:30:00Z",
                "started_at": "2026-11-24T02:30:00Z", "finished_at": "2026-11-24T02:31:00Z",
                "ok": true, "message": "ok", "snapshot_name": "p-1"}"#,
        )
        .unwrap();
        let ended: DateTime<Utc> = "2026-11-24T02:31:00Z".parse().unwrap();
        assert_eq!(old.last_success(), Some(ended));
        let failed = RunReport::failed(job.clone(), at, "no".into()).after(Some(&old));
        assert_eq!(failed.last_success(), Some(ended));
        let again = RunReport::failed(job.clone(), at, "no".into()).after(Some(&failed));
        assert_eq!(again.last_success(), Some(ended));
        // Kept in the record, and read back.
        let back: RunReport =
            serde_json::from_value(serde_json::to_value(&again).unwrap()).unwrap();
        assert_eq!(back.last_success(), Some(ended));
        // A success is its own last success.
        let ok = RunReport::new(job.clone(), at).after(Some(&again));
        assert_eq!(ok.last_success(), Some(ok.finished_at));
        assert_eq!(
            RunReport::failed(job, at, "no".into())
                .after(None)
                .last_success(),
            None
        );
    }

    #[test]
    fn a_report_keeps_the_fields_of_the_record_and_of_once_json() {
        let at = "2026-11-24T02:30:00Z".parse().unwrap();
        let r = RunReport::failed(JobId::new("p", 2), at, "no".into()).ended(1.5);
        let v = serde_json::to_value(&r).unwrap();
        for key in [
            "job",
            "policy",
            "server",
            "scheduled_for",
            "started_at",
            "finished_at",
            "ok",
            "message",
            "snapshot_name",
            "seconds",
            "error",
            "skipped",
            "outcome",
        ] {
            assert!(v.get(key).is_some(), "{key} missing from {v}");
        }
        assert_eq!(
            (&v["job"], &v["message"], &v["error"]),
            (&"p@2".into(), &"no".into(), &"no".into())
        );
        let back: RunReport = serde_json::from_value(v).unwrap();
        assert_eq!(
            (back.job, back.ok, back.seconds),
            (JobId::new("p", 2), false, 1.5)
        );
    }
}
