//! The one way to stop a server and the one way to start it again.
//!
//! A [`StoppedServer`] owns the "server I stopped" record from before the stop call
//! until the server runs again. It comes from recording a stop
//! ([`StoppedServer::record`], then [`StoppedServer::ensure_stopped`]) or from taking
//! over a record left by an interrupted run or process ([`StoppedServer::take_over`]),
//! and it knows the snapshot the stop is for. [`StoppedServer::release`], the only way
//! to start the server again, waits for that snapshot first — bounded by one rule:
//! `wait_timeout` from the create (or the take-over), capped by the interrupt's grace
//! period — then starts the server (ahead of every other request in the rate budget),
//! waits for it to run at most `stop_timeout`, and clears the record. A rotation, the
//! daemon's start-up and shutdown and an interrupted `once` all go through it.
//!
//! If the server has to be started while its snapshot is still in progress, that
//! snapshot is recorded as tainted: it was not taken with the server stopped, so it is
//! never adopted or kept, and pruning deletes it once it has finished.

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::Utc;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::{Rotation, RotationError, secs};
use crate::config::Timing;
use crate::provider::{Client, ServerStatus, Snapshot, SnapshotStatus};
use crate::state::{StoppedEntry, StoppedRecord, TaintedSnapshot};

/// The snapshot a stop is for.
#[derive(Debug, Clone)]
enum Protects {
    /// The run's snapshot: by name until the create answers, then by id.
    Named { name: String, id: Option<u64> },
    /// A record that cannot be read: any snapshot of ours in progress on the server.
    AnyOfOurs,
}

/// A server snaprotd stopped and has not yet started again.
#[must_use = "a stopped server is started again only by `release`"]
pub struct StoppedServer {
    server: u64,
    /// The record on disk (`None` when it could not be read).
    record: Option<StoppedRecord>,
    protects: Protects,
    timing: Timing,
    /// Until when the protected snapshot is waited for.
    deadline: Instant,
    /// The run saw the snapshot end (completed or failed): nothing to wait for.
    settled: bool,
    /// `release` was called.
    released: bool,
}

impl Drop for StoppedServer {
    /// Only a task cut short (a panic, a cancel past every time-out) drops a guard it
    /// did not release; the record stays on disk, and whoever settles it starts the
    /// server.
    fn drop(&mut self) {
        if !self.released {
            warn!(
                server_id = self.server,
                "server {} stays stopped for now: its job ended before starting it again; \
                 its record is settled next",
                self.server
            );
        }
    }
}

impl StoppedServer {
    /// Writes the record, before any stop call, so that a crash right after the call
    /// still leads to a start. Nothing is stopped when the record cannot be written.
    pub async fn record(
        rot: &Rotation<'_>,
        record: StoppedRecord,
        timing: Timing,
    ) -> Result<StoppedServer, RotationError> {
        rot.state.record_stopped(&record).await?;
        Ok(StoppedServer {
            server: record.server(),
            protects: Protects::Named {
                name: record.snapshot_name.clone(),
                id: record.snapshot_id,
            },
            record: Some(record),
            timing,
            deadline: Instant::now() + timing.wait_timeout,
            settled: false,
            released: false,
        })
    }

    /// Takes over a record left by a run that did not finish (a crash, a cancelled
    /// task, another process). From here on this guard starts the server.
    pub fn take_over(entry: StoppedEntry, timing: Timing) -> StoppedServer {
        let (server, record, protects) = match entry {
            StoppedEntry::Record(r) => (
                r.server(),
                Some(r.clone()),
                Protects::Named {
                    name: r.snapshot_name,
                    id: r.snapshot_id,
                },
            ),
            StoppedEntry::Corrupt { server, .. } => (server, None, Protects::AnyOfOurs),
        };
        StoppedServer {
            server,
            record,
            protects,
            timing,
            deadline: Instant::now() + timing.wait_timeout,
            settled: false,
            released: false,
        }
    }

    /// Whether this stop was for the snapshot `name` of policy `policy`.
    pub fn is_for(&self, policy: &str, name: &str) -> bool {
        self.record
            .as_ref()
            .is_some_and(|r| &*r.job.policy == policy && r.snapshot_name == name)
    }

    /// Brings the server to `stopped` (a stop call unless it is stopped or stopping),
    /// bounded by `stop_timeout`. `known` is its status when just read.
    pub async fn ensure_stopped(
        &self,
        rot: &Rotation<'_>,
        known: Option<ServerStatus>,
    ) -> Result<(), RotationError> {
        let started = Instant::now();
        let status = match known {
            Some(s) => s,
            None => {
                rot.client
                    .server(self.server)
                    .await
                    .map_err(RotationError::api("reading the server's status"))?
                    .status
            }
        };
        match status {
            ServerStatus::Stopped => return Ok(()),
            ServerStatus::Stopping => {}
            _ => rot
                .client
                .stop_server(self.server)
                .await
                .map_err(RotationError::api("stopping the server"))?,
        }
        wait_for_server(rot.client, self.server, ServerStatus::Stopped, self.timing).await?;
        info!("stopped server in {}", secs(started.elapsed()));
        Ok(())
    }

    /// The create answered with `snapshot`: this stop is for it. The record is updated
    /// when the disk allows; when it does not, the wait for the snapshot is the same.
    pub async fn protect(&mut self, rot: &Rotation<'_>, snapshot: &Snapshot) {
        self.protects = Protects::Named {
            name: snapshot.name.clone(),
            id: Some(snapshot.id),
        };
        self.deadline = Instant::now() + self.timing.wait_timeout;
        if let Some(record) = &mut self.record {
            record.snapshot_id = Some(snapshot.id);
            if let Err(e) = rot.state.record_stopped(record).await {
                warn!(
                    "cannot note the snapshot id in the stopped-server record ({e}); \
                     the record still names snapshot {}, and the server stays stopped until it completes",
                    snapshot.name
                );
            }
        }
    }

    /// The run saw the snapshot end: the release does not look again.
    pub fn settled(&mut self) {
        self.settled = true;
    }

    /// Starts the server again: after its snapshot (bounded), ahead of every other
    /// request, then clears the record. On failure the record stays, so the daemon's
    /// retry, the next run on this server or the next start of snaprotd tries again.
    pub async fn release(mut self, rot: &Rotation<'_>) -> Result<(), RotationError> {
        self.released = true;
        let server = self.server;
        let unfinished = if self.settled {
            Vec::new()
        } else {
            self.wait_for_snapshot(rot, self.deadline).await
        };
        // Noted before the start, so that no crash can let it pass for a good one.
        for snapshot in &unfinished {
            if let Err(e) = rot.state.record_tainted(snapshot).await {
                error!(
                    "cannot record snapshot {} as unfinished when its server ran again ({e}); \
                     delete it by hand once it has finished",
                    snapshot.snapshot_name
                );
            }
        }
        let started = Instant::now();
        let client = rot.client.priority();
        let timing = self.timing;
        let runs = AtomicBool::new(false);
        let start = tokio::time::timeout(
            timing.stop_timeout,
            start_server(&client, server, timing, &runs),
        );
        let result = match start.await {
            Ok(r) => r,
            Err(_) => Err(server_timeout(server, "running", "no answer", timing)),
        };
        let runs = runs.load(Ordering::Relaxed);
        if !runs {
            // The server never got going: the snapshot may still finish cleanly, and the
            // next release looks again.
            for snapshot in &unfinished {
                let _ = rot.state.clear_tainted(snapshot).await;
            }
        } else {
            for snapshot in &unfinished {
                error!(
                    server_id = server,
                    snapshot_name = %snapshot.snapshot_name,
                    "server {server} was started again while snapshot {} was still in progress: \
                     it is not a stopped-server snapshot, and is deleted once it has finished",
                    snapshot.snapshot_name
                );
            }
        }
        match result {
            Ok(()) => {
                info!(
                    server_id = server,
                    "started server again in {}",
                    secs(started.elapsed())
                );
                rot.state.clear_stopped(server).await.map_err(|source| {
                    let e = RotationError::RecordStays { server, source };
                    error!(server_id = server, "{e}");
                    e
                })
            }
            Err(e) => {
                error!(server_id = server, "server {server} is still stopped: {e}");
                Err(e)
            }
        }
    }

    /// Waits until no protected snapshot is in progress, or `deadline`; returns those
    /// still in progress then. Past the deadline one last look goes ahead of every other
    /// request (bounded by [`LAST_LOOK`]); when even that gets no answer, what the
    /// run saw last stands.
    async fn wait_for_snapshot(
        &self,
        rot: &Rotation<'_>,
        deadline: Instant,
    ) -> Vec<TaintedSnapshot> {
        let mut busy = match &self.protects {
            Protects::Named { name, id: Some(id) } => vec![tainted(self.server, name, *id)],
            _ => Vec::new(),
        };
        let mut told = false;
        let mut first = true;
        // The interrupt may come while this waits: its grace ends the wait too.
        while Instant::now() < rot.interrupt.cap(deadline) {
            let interval = self.timing.poll_interval;
            let listing = tokio::select! {
                l = async {
                    if first { rot.listings.server(self.server).await }
                    else { rot.listings.poll(self.server, interval).await }
                } => l,
                _ = tokio::time::sleep_until(deadline) => break,
                _ = rot.interrupt.grace_over() => break,
            };
            first = false;
            match listing {
                Ok(listing) => {
                    busy = self.in_progress(rot, &listing);
                    if busy.is_empty() {
                        return busy;
                    }
                    if !told {
                        info!(
                            server_id = self.server,
                            "waiting for snapshot {} to finish before starting server {} again",
                            busy[0].snapshot_name,
                            self.server
                        );
                        told = true;
                    }
                }
                Err(e) => {
                    warn!("cannot read the snapshots of server {}: {e}", self.server);
                    let pause = (Instant::now() + interval).min(deadline);
                    tokio::select! {
                        _ = tokio::time::sleep_until(pause) => {}
                        _ = rot.interrupt.grace_over() => break,
                    }
                }
            }
        }
        let client = rot.client.priority();
        match tokio::time::timeout(LAST_LOOK, client.list_snapshots(Some(self.server))).await {
            Ok(Ok(listing)) => self.in_progress(rot, &listing),
            _ => busy,
        }
    }

    /// The protected snapshots in progress in `listing`.
    fn in_progress(&self, rot: &Rotation<'_>, listing: &[Snapshot]) -> Vec<TaintedSnapshot> {
        let ours = |s: &Snapshot| match &self.protects {
            Protects::Named { name, id } => match id {
                Some(id) => s.id == *id,
                None => s.name == *name,
            },
            // Only policies that stop the server make snapshots that need it stopped.
            Protects::AnyOfOurs => rot
                .policies
                .iter()
                .any(|p| p.stop_server && p.may_cover(self.server) && p.owns(self.server, &s.name)),
        };
        listing
            .iter()
            .filter(|s| s.server.id == self.server && ours(s))
            .filter(|s| {
                !matches!(
                    s.status,
                    SnapshotStatus::Completed | SnapshotStatus::Failed(_)
                )
            })
            .map(|s| tainted(self.server, &s.name, s.id))
            .collect()
    }
}

/// How long the last look at a snapshot may take once its wait is over.
const LAST_LOOK: std::time::Duration = std::time::Duration::from_secs(2);

fn tainted(server: u64, name: &str, id: u64) -> TaintedSnapshot {
    TaintedSnapshot {
        server,
        snapshot_name: name.to_string(),
        snapshot_id: Some(id),
        since: Utc::now(),
    }
}

/// Brings `server` to `running`: a start call unless it runs or is starting. `runs`
/// becomes true once the server is known to be running or on its way.
async fn start_server(
    client: &Client,
    server: u64,
    timing: Timing,
    runs: &AtomicBool,
) -> Result<(), RotationError> {
    let status = client
        .server(server)
        .await
        .map_err(RotationError::api("reading the server's status"))?
        .status;
    match status {
        ServerStatus::Running | ServerStatus::Starting => {}
        ServerStatus::Stopping => {
            wait_for_server(client, server, ServerStatus::Stopped, timing).await?;
            start_call(client, server).await?;
        }
        _ => start_call(client, server).await?,
    }
    runs.store(true, Ordering::Relaxed);
    wait_for_server(client, server, ServerStatus::Running, timing).await
}

async fn start_call(client: &Client, server: u64) -> Result<(), RotationError> {
    client
        .start_server(server)
        .await
        .map_err(RotationError::api("starting the server again"))
}

fn server_timeout(server: u64, want: &'static str, seen: &str, timing: Timing) -> RotationError {
    RotationError::ServerTimeout {
        server,
        want,
        seen: seen.to_string(),
        timeout: humantime::format_duration(timing.stop_timeout).to_string(),
    }
}

/// Polls the server until it is `want`, at most `stop_timeout`.
async fn wait_for_server(
    client: &Client,
    server: u64,
    want: ServerStatus,
    timing: Timing,
) -> Result<(), RotationError> {
    let started = Instant::now();
    let deadline = started + timing.stop_timeout;
    let interval = timing.poll_interval.min(std::time::Duration::from_secs(5));
    let progress = super::Progress::of(format_args!("server {server}"));
    loop {
        let status = client
            .server(server)
            .await
            .map_err(RotationError::api("reading the server's status"))?
            .status;
        progress.say(format_args!(
            "{} for {}s",
            status.as_str(),
            started.elapsed().as_secs()
        ));
        if status == want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let want = if want == ServerStatus::Running {
                "running"
            } else {
                "stopped"
            };
            return Err(server_timeout(server, want, status.as_str(), timing));
        }
        tokio::time::sleep(interval).await;
    }
}
