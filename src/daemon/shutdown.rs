//! The daemon's shutdown: nothing new starts, running jobs get `shutdown_timeout`, and
//! every server snaprotd stopped is started again before the process exits.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::Daemon;
use crate::rotation;
use crate::runner::{RunReport, Runner};
use crate::state::busy;
use crate::systemd;

impl Daemon {
    /// SIGTERM: no new job; running jobs get `shutdown_timeout` to finish their wait,
    /// then every server they stopped is started again by its guard, all at once and
    /// ahead of other requests. A job still not done after that is cancelled, and the
    /// servers it left stopped are settled here.
    pub(super) async fn shutdown(mut self, done_rx: &mut mpsc::UnboundedReceiver<RunReport>) {
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
        // A post_snapshot hook (a thaw) is not cut short by the grace: it has its own
        // hook_timeout, before the server is started.
        let thaw = self
            .config()
            .policies
            .iter()
            .filter(|p| p.hooks.post_snapshot.is_some())
            .map(|p| p.hooks.timeout)
            .max()
            .unwrap_or_default();
        let limit = grace + thaw + 2 * stop_timeout + Duration::from_secs(10);
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
                    Some(report) = done_rx.recv() => self.on_done(report).await,
                }
            }
        })
        .await;
        let cancelled = finished.is_err();
        if cancelled {
            warn!(
                "jobs still running {} after SIGTERM; cancelling them",
                humantime::format_duration(limit)
            );
            self.dispatch.cancel.cancel();
            tracker.wait().await;
        }
        // Reports sent by tasks that ended as the wait above did. After a cancel, a
        // job's guard may never have had its go: its server is not counted released.
        while let Ok(report) = done_rx.try_recv() {
            if cancelled {
                self.dispatch.finished(&report.job);
            } else {
                self.on_done(report).await;
            }
        }
        // What no guard has tried to start since SIGTERM (a cancelled job, a failed
        // start waiting for its retry, a resume that never ran): all at once.
        settle_all(&self.runner, &self.released).await;
        self.alarm.shutdown().await;
        info!("stopped");
    }
}

/// Settles every stopped-server record but those of `released` servers, all at once.
/// A server another process holds (a `once`) is left to that process's guard.
async fn settle_all(runner: &Arc<Runner>, released: &HashSet<u64>) {
    let mut all = tokio::task::JoinSet::new();
    for entry in runner.state.stopped_servers().await {
        let server = entry.server();
        if released.contains(&server) {
            continue;
        }
        let runner = runner.clone();
        all.spawn(async move {
            // A cancelled job's task lets go of the lock as it ends: wait a moment.
            let lock = tokio::time::timeout(Duration::from_secs(2), runner.lock_server(server));
            let Ok(Ok(_lock)) = lock.await else {
                let holder = runner.state.server_holder(server).await;
                warn!(
                    server_id = server,
                    "{}; that process starts it again",
                    busy(server, &holder)
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
