//! What a run tells the operator through `notify`: a ping of the policy's `ping_url`
//! at its start and end, and a notice to `[notify]`'s targets when it failed, or when
//! it succeeded after a failed run (the job's last run in the state directory).

use super::{RunReport, Runner};
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

    /// Queues a ping of `policy`'s `ping_url`, if it has one.
    pub(super) fn ping(&self, policy: &str, ping: Ping, body: &str) {
        let notify = &self.config.notify;
        if let Some(message) = Message::ping(notify, policy, ping, body) {
            self.notifier.send(message, Retry::of(notify));
        }
    }

    /// Queues what the end of a run says: its ping, and its notice when it failed or
    /// is the first success after a failure.
    pub(super) fn notify_end(&self, report: &RunReport, previous: Option<&RunReport>) {
        if report.skipped.is_some() {
            return;
        }
        let error = (!report.ok).then(|| report.error.clone().unwrap_or(report.message.clone()));
        match &error {
            Some(e) => self.ping(&report.job.policy, Ping::Fail, e),
            None => self.ping(&report.job.policy, Ping::Success, ""),
        }
        let outcome = match (report.ok, previous) {
            (false, _) => Outcome::Failed,
            (true, Some(p)) if !p.ok && p.skipped.is_none() => Outcome::Recovered,
            (true, _) => return,
        };
        let snapshot = match &report.outcome {
            Some(o) => Some(SnapshotRef {
                id: Some(o.snapshot.id),
                name: o.snapshot.name.clone(),
            }),
            // The name the run was to make (the provider gave no id).
            None => report
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
                .map(|name| SnapshotRef { id: None, name }),
        };
        let notice = Notice::new(
            &report.job,
            outcome,
            snapshot,
            error,
            report.seconds,
            report.finished_at,
        );
        let notify = &self.config.notify;
        for message in Message::all(notify, &notice) {
            self.notifier.send(message, Retry::of(notify));
        }
    }
}
