//! What a run tells the operator through `notify`: pings of the policy's `ping_url`
//! (a fire of the policy, all its jobs, is one run of that check), and a notice to `[notify]`'s targets when it failed, or when
//! it succeeded after a failed run (the job's last run in the state directory).

use chrono::{DateTime, Utc};

use super::{RunReport, Runner};
use crate::job::JobId;
use crate::notify::{Message, Notice, Outcome, Ping, Retry, SnapshotRef};
use crate::rotation::Job;

impl Runner {
    /// Gives the notices still queued a bounded time to go out before the process
    /// ends, and says how many did not (`once`, and the daemon's shutdown).
    pub async fn finish_notifications(&self) {
        let limit = crate::notify::finish_limit(&self.config.notify);
        let pending = self.notifier.pending();
        if pending > 0 {
            tracing::info!(
                "delivering {pending} notification(s), for at most {}",
                humantime::format_duration(limit)
            );
        }
        let unsent = self.notifier.finish(limit).await;
        if unsent.0 > 0 {
            tracing::warn!(
                "{} notification(s) not delivered within {} (the log says why); they are dropped",
                unsent.0,
                humantime::format_duration(limit)
            );
        }
    }

    /// Queues what a fire of `policy` at `fire` says when the servers it names could
    /// not be listed (`error`): `/fail` of its `ping_url`, and a failure notice to
    /// `[notify]`'s targets, for job `policy@0` (no one server).
    pub fn notify_unlisted(&self, policy: &str, fire: DateTime<Utc>, error: &str) {
        let notify = &self.config.notify;
        self.notifier
            .ping_fire(notify, policy, fire, Ping::Fail, error);
        let job = JobId::new(policy, 0);
        let notice = Notice::new(
            &job,
            Outcome::Failed,
            None,
            Some(error.into()),
            0.0,
            Utc::now(),
        );
        for message in Message::all(notify, &notice) {
            self.notifier.send(message, Retry::of(notify));
        }
    }

    /// Queues what the start of a job of the fire at `fire` says: `/start` of its
    /// policy's `ping_url`, when it is the fire's first job to start.
    pub(super) fn notify_start(&self, job: &JobId, fire: DateTime<Utc>) {
        self.notifier
            .ping_fire(&self.config.notify, &job.policy, fire, Ping::Start, "");
    }

    /// Queues what the end of a run says: its ping (a fire of the policy is one run of
    /// the check), and its notice when it failed or is the first success after a
    /// failure.
    pub(super) fn notify_end(&self, report: &RunReport, previous: Option<&RunReport>) {
        if report.skipped.is_some() {
            return;
        }
        let error = (!report.ok).then(|| report.error.clone().unwrap_or(report.message.clone()));
        let snapshot = self.snapshot_of(report);
        let notify = &self.config.notify;
        let (policy, fire) = (&report.job.policy, report.scheduled_for);
        match &error {
            Some(e) => {
                let body = fail_body(report, snapshot.as_ref(), e);
                self.notifier
                    .ping_fire(notify, policy, fire, Ping::Fail, &body);
            }
            None => self
                .notifier
                .ping_fire(notify, policy, fire, Ping::Success, ""),
        }
        let outcome = match (report.ok, previous) {
            (false, _) => Outcome::Failed,
            (true, Some(p)) if !p.ok && p.skipped.is_none() => Outcome::Recovered,
            (true, _) => return,
        };
        let notice = Notice::new(
            &report.job,
            outcome,
            snapshot,
            error,
            report.seconds,
            report.finished_at,
        );
        for message in Message::all(notify, &notice) {
            self.notifier.send(message, Retry::of(notify));
        }
    }

    /// The snapshot the run made or adopted; else the one it was to make (the provider
    /// gave no id).
    fn snapshot_of(&self, report: &RunReport) -> Option<SnapshotRef> {
        if let Some(o) = &report.outcome {
            return Some(SnapshotRef {
                id: Some(o.snapshot.id),
                name: o.snapshot.name.clone(),
            });
        }
        report
            .snapshot_name
            .clone()
            .or_else(|| {
                let policy = self
                    .config
                    .job_policy(&report.job.policy, report.job.server)?;
                let job = Job {
                    policy,
                    server: report.job.server,
                };
                Some(job.snapshot_name(report.scheduled_for))
            })
            .map(|name| SnapshotRef { id: None, name })
    }
}

/// The body of a `/fail` ping: which job of which fire failed, its snapshot, and why.
fn fail_body(report: &RunReport, snapshot: Option<&SnapshotRef>, error: &str) -> String {
    let mut body = format!("{} failed: {error}\n", report.job);
    if let Some(s) = snapshot {
        match s.id {
            Some(id) => body.push_str(&format!("snapshot {} (id {id})\n", s.name)),
            None => body.push_str(&format!("snapshot {}\n", s.name)),
        }
    }
    body.push_str(&format!(
        "fire {}\n",
        report
            .scheduled_for
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    ));
    body
}
