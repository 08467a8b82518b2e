//! One rotation: one policy on one server, the seven steps of PRODUCT.md.
//!
//! [`Rotation::run`] reads top to bottom like the steps. The guarantee that a server
//! snaprotd stopped is started again is written once, in `run`: whatever the create
//! and wait steps return, the start step runs before the result is looked at.
//! [`plan`] is the pure part (what to adopt, what to delete to make room, what to
//! prune); `--dry-run` prints it without making a changing call.

use std::fmt::Write as _;
use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{error, info, warn};

use crate::config::Policy;
use crate::provider::{ApiError, Client, Listings, ServerStatus, Snapshot, SnapshotStatus};
use crate::state::{StateDir, StateError, StoppedRecord};

/// One policy on one server.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    pub policy: &'a Policy,
    pub server: u64,
}

impl Job<'_> {
    /// The job's name in logs, state and `status`: `policy@server`.
    pub fn id(&self) -> String {
        job_id(&self.policy.name, self.server)
    }

    /// The snapshot name for a fire at `at`, rendered in the policy's zone.
    pub fn snapshot_name(&self, at: DateTime<Utc>) -> String {
        let local = at.with_timezone(&self.policy.timezone);
        self.policy
            .snapshot_name
            .render(&self.policy.name, self.server, &local)
    }
}

pub fn job_id(policy: &str, server: u64) -> String {
    format!("{policy}@{server}")
}

/// Why a snapshot is (or would be) deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Older than the newest `keep` of this policy.
    BeyondKeep,
    /// A failed snapshot of this policy, wasting a slot.
    Failed,
    /// Deleted before creating, to stay under the cap; retention would delete it anyway.
    MakeRoom,
}

impl Reason {
    pub fn describe(self) -> &'static str {
        match self {
            Reason::BeyondKeep => "beyond keep",
            Reason::Failed => "failed snapshot of this policy",
            Reason::MakeRoom => "making room under the cap (retention would delete it anyway)",
        }
    }
}

/// What a run will do, decided from the server's listing.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub name: String,
    /// A snapshot of this name exists already: it is adopted, not created again.
    pub adopt: Option<Snapshot>,
    pub make_room: Vec<(Snapshot, Reason)>,
    /// What pruning would delete after success, if the listing stays as it is.
    pub prune_after: Vec<(Snapshot, Reason)>,
}

/// What went wrong in a run.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("{step}: {source}")]
    Api {
        step: &'static str,
        #[source]
        source: ApiError,
    },
    #[error(
        "server {server} is at the cap ({used} of {cap} snapshots: {occupants}) and none of them is one policy {policy} would delete; \
         delete a snapshot by hand, lower keep of another policy on this server, or raise [api] snapshot_cap if the provider allows more"
    )]
    CapFull {
        server: u64,
        policy: String,
        used: usize,
        cap: usize,
        occupants: String,
    },
    #[error("snapshot {name} (id {id}) ended as {status:?}")]
    SnapshotFailed {
        name: String,
        id: u64,
        status: String,
    },
    #[error("snapshot {name} (id {id}) is still {status:?} after wait_timeout ({timeout})")]
    WaitTimeout {
        name: String,
        id: u64,
        status: String,
        timeout: String,
    },
    #[error("snapshot {name} (id {id}) disappeared while waiting for it")]
    Vanished { name: String, id: u64 },
    #[error("server {server} did not become {want} within {timeout} (last seen {seen:?})")]
    ServerTimeout {
        server: u64,
        want: &'static str,
        seen: String,
        timeout: String,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "{first}; and starting server {server} again failed too: {restart} (it stays recorded as stopped and is started again on the next start of snaprotd)"
    )]
    NotRestarted {
        server: u64,
        first: String,
        restart: String,
    },
}

impl RotationError {
    fn api(step: &'static str) -> impl FnOnce(ApiError) -> RotationError {
        move |source| RotationError::Api { step, source }
    }
}

/// How a successful run ended.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub snapshot: Snapshot,
    pub adopted: bool,
    pub stopped_server: bool,
    pub deleted: Vec<(Snapshot, Reason)>,
    /// Snapshots of this policy on the server after the run.
    pub owned: usize,
}

/// Decides what a run does from the server's current `listing`.
///
/// Making room deletes only what a successful run would prune anyway: failed snapshots
/// of this policy first, then its oldest completed ones beyond `keep - 1` (the new
/// snapshot will take the last kept place). Nothing `in_progress`, nothing of another
/// policy, nothing manual.
pub fn plan(
    job: Job<'_>,
    all_policies: &[Policy],
    cap: usize,
    name: &str,
    listing: &[Snapshot],
) -> Result<Plan, RotationError> {
    // A snapshot of this name that did not fail is this run's snapshot, made before.
    let adopt = listing
        .iter()
        .find(|s| s.name == name && !matches!(s.status, SnapshotStatus::Failed(_)))
        .cloned();
    let deletable = prune_list(job, listing, adopt.as_ref().map(|s| s.id));
    // A failed snapshot of this very name must go before the name can be used again.
    let (mut make_room, rest): (Vec<_>, Vec<_>) =
        deletable.into_iter().partition(|(s, _)| s.name == name);
    let need = if adopt.is_some() {
        0
    } else {
        (listing.len() + 1)
            .saturating_sub(cap)
            .saturating_sub(make_room.len())
    };
    if rest.len() < need {
        return Err(RotationError::CapFull {
            server: job.server,
            policy: job.policy.name.clone(),
            used: listing.len(),
            cap,
            occupants: occupants(job.server, all_policies, listing),
        });
    }
    make_room.extend(
        rest[..need]
            .iter()
            .map(|(s, _)| (s.clone(), Reason::MakeRoom)),
    );
    Ok(Plan {
        name: name.to_string(),
        adopt,
        make_room,
        prune_after: rest[need..].to_vec(),
    })
}

/// "3 manual, 2 of policy nightly (1 in progress)".
fn occupants(server: u64, policies: &[Policy], listing: &[Snapshot]) -> String {
    let mut parts = Vec::new();
    let mut counted = 0;
    for p in policies.iter().filter(|p| p.servers.contains(&server)) {
        let mine: Vec<&Snapshot> = listing.iter().filter(|s| p.owns(server, &s.name)).collect();
        if !mine.is_empty() {
            let busy = mine
                .iter()
                .filter(|s| s.status != SnapshotStatus::Completed)
                .count();
            let mut text = format!("{} of policy {} (keep {})", mine.len(), p.name, p.keep);
            if busy > 0 {
                let _ = write!(text, ", {busy} not completed");
            }
            parts.push(text);
            counted += mine.len();
        }
    }
    parts.insert(0, format!("{} manual", listing.len() - counted));
    parts.join(", ")
}

/// A snapshot that reached `completed`, with the listing that showed it (if it was
/// read while waiting), which step 7 prunes from.
struct Completed {
    snapshot: Snapshot,
    listing: Option<Vec<Snapshot>>,
}

/// How often a long wait says it is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// Sleeping between polls; a test makes it short through the configured intervals.
async fn pause(d: Duration) {
    tokio::time::sleep(d).await;
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// Runs a step and logs its duration on success.
async fn timed<T, E>(
    step: &str,
    f: impl Future<Output = Result<T, E>>,
) -> (Result<T, E>, Duration) {
    let started = Instant::now();
    let r = f.await;
    let took = started.elapsed();
    if r.is_err() {
        warn!(step, "step {step} failed after {}", secs(took));
    }
    (r, took)
}

/// Everything a run needs besides the job.
pub struct Rotation<'a> {
    pub client: &'a Client,
    /// Listings shared with the other jobs running now.
    pub listings: &'a Listings,
    pub state: &'a StateDir,
    pub policies: &'a [Policy],
    pub cap: usize,
}

impl Rotation<'_> {
    /// One run of `job` for the fire at `fire_time` (which names the snapshot).
    pub async fn run(
        &self,
        job: Job<'_>,
        fire_time: DateTime<Utc>,
    ) -> Result<Outcome, RotationError> {
        let name = job.snapshot_name(fire_time);
        let policy = job.policy;

        // 1. List the server's snapshots.
        let (listing, took) = timed("list", self.listings.server(job.server)).await;
        let listing = listing.map_err(RotationError::api("listing snapshots"))?;
        info!(
            "listed {} snapshot(s), {} of this policy, in {}",
            listing.len(),
            listing
                .iter()
                .filter(|s| policy.owns(job.server, &s.name))
                .count(),
            secs(took)
        );

        // 2. Make room under the cap, only with what retention deletes anyway.
        let plan = plan(job, self.policies, self.cap, &name, &listing)?;
        for (snapshot, reason) in &plan.make_room {
            self.delete(snapshot, *reason)
                .await
                .map_err(RotationError::api("making room"))?;
        }

        // 3. Stop the server if the policy asks and it runs.
        let (stopped, stop_result) = self.stop_if_asked(job, &name, fire_time).await;

        // 4 and 5. Create (or adopt) the snapshot and wait for it.
        let made = match stop_result {
            Ok(()) => self.create_and_wait(job, &plan).await,
            Err(e) => Err(e),
        };

        // 6. Start the server again if step 3 stopped it — on every path.
        let made = match &stopped {
            None => made,
            Some(record) => match (made, self.start_again(record, policy).await) {
                (made, Ok(())) => made,
                (made, Err(restart)) => {
                    let first = match made {
                        Ok(s) => format!(
                            "snapshot {} (id {}) completed",
                            s.0.snapshot.name, s.0.snapshot.id
                        ),
                        Err(e) => e.to_string(),
                    };
                    return Err(RotationError::NotRestarted {
                        server: job.server,
                        first,
                        restart: restart.to_string(),
                    });
                }
            },
        };
        let (Completed { snapshot, listing }, adopted) = made?;

        // 7. Only now, after a completed snapshot: prune beyond keep.
        let mut deleted = plan.make_room.clone();
        let (pruned, owned) = self.prune(job, &snapshot, listing).await?;
        deleted.extend(pruned);
        Ok(Outcome {
            snapshot,
            adopted,
            stopped_server: stopped.is_some(),
            deleted,
            owned,
        })
    }

    async fn delete(&self, snapshot: &Snapshot, reason: Reason) -> Result<(), ApiError> {
        let (r, took) = timed("delete", self.client.delete_snapshot(snapshot.id)).await;
        match r {
            Ok(()) => {}
            // Gone already (e.g. an earlier attempt whose answer was lost): the goal holds.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        info!(
            snapshot_id = snapshot.id,
            snapshot_name = %snapshot.name,
            "deleted snapshot {} (id {}, created {}): {} in {}",
            snapshot.name,
            snapshot.id,
            snapshot.created_at.to_rfc3339(),
            reason.describe(),
            secs(took)
        );
        Ok(())
    }

    /// Step 3. Returns the record when this run stopped the server (so step 6 must
    /// start it), and whether the stop completed. A record left by an interrupted run
    /// (a crash, a restart) means snaprotd stopped the server: this run takes it over.
    async fn stop_if_asked(
        &self,
        job: Job<'_>,
        name: &str,
        fire_time: DateTime<Utc>,
    ) -> (Option<StoppedRecord>, Result<(), RotationError>) {
        let earlier = self.state.stopped_server(job.server);
        if !job.policy.stop_server && earlier.is_none() {
            return (None, Ok(()));
        }
        let started = Instant::now();
        let server = match self.client.server(job.server).await {
            Ok(s) => s,
            Err(e) => {
                return (
                    earlier,
                    Err(RotationError::api("reading the server's status")(e)),
                );
            }
        };
        if let Some(record) = earlier {
            if server.status != ServerStatus::Running {
                info!(
                    "server is {}: snaprotd stopped it for {} at {}; it is started again after this run",
                    server.status.as_str(),
                    record.job,
                    record.stopped_at.to_rfc3339()
                );
                // Still stopping: let it finish. Stopped, or already starting again
                // (the run died in step 6): step 6 takes it from here.
                let result = if server.status == ServerStatus::Stopping {
                    self.wait_for_server(job.server, ServerStatus::Stopped, job.policy)
                        .await
                } else {
                    Ok(())
                };
                return (Some(record), result);
            }
            // Started by someone else since: the record is stale.
            if let Err(e) = self.state.clear_stopped(job.server) {
                return (None, Err(e.into()));
            }
            if !job.policy.stop_server {
                return (None, Ok(()));
            }
        }
        if server.status != ServerStatus::Running {
            info!(
                "server is {}, not running: snapshotting it as it is, and not starting it afterwards",
                server.status.as_str()
            );
            return (None, Ok(()));
        }
        let record = StoppedRecord {
            server: job.server,
            policy: job.policy.name.clone(),
            job: job.id(),
            snapshot_name: name.to_string(),
            snapshot_id: None,
            scheduled_for: fire_time,
            stopped_at: Utc::now(),
        };
        // Recorded before the stop call, so a crash right after it still leads to a start.
        if let Err(e) = self.state.record_stopped(&record) {
            return (None, Err(e.into()));
        }
        let result = async {
            self.client
                .stop_server(job.server)
                .await
                .map_err(RotationError::api("stopping the server"))?;
            self.wait_for_server(job.server, ServerStatus::Stopped, job.policy)
                .await
        }
        .await;
        if result.is_ok() {
            info!("stopped server in {}", secs(started.elapsed()));
        }
        (Some(record), result)
    }

    /// Step 6.
    async fn start_again(
        &self,
        record: &StoppedRecord,
        policy: &Policy,
    ) -> Result<(), RotationError> {
        start_server_again(
            self.client,
            self.state,
            record,
            policy.poll_interval,
            policy.stop_timeout,
        )
        .await
    }

    async fn wait_for_server(
        &self,
        server: u64,
        want: ServerStatus,
        policy: &Policy,
    ) -> Result<(), RotationError> {
        wait_for_server(
            self.client,
            server,
            want,
            policy.poll_interval,
            policy.stop_timeout,
        )
        .await
    }

    /// Steps 4 and 5.
    async fn create_and_wait(
        &self,
        job: Job<'_>,
        plan: &Plan,
    ) -> Result<(Completed, bool), RotationError> {
        let (created, took) = match &plan.adopt {
            Some(existing) => {
                info!(
                    snapshot_id = existing.id,
                    snapshot_name = %existing.name,
                    "snapshot {} exists already (id {}, {}): adopting it",
                    existing.name,
                    existing.id,
                    existing.status.as_str()
                );
                ((existing.clone(), true), Duration::ZERO)
            }
            None => {
                let (r, took) = timed(
                    "create",
                    self.client.create_snapshot(
                        job.server,
                        &plan.name,
                        &job.policy.snapshot_description(),
                    ),
                )
                .await;
                let c = r.map_err(RotationError::api("creating the snapshot"))?;
                ((c.snapshot, c.adopted), took)
            }
        };
        let (snapshot, adopted) = created;
        if plan.adopt.is_none() {
            info!(
                snapshot_id = snapshot.id,
                snapshot_name = %snapshot.name,
                "{} snapshot {} (id {}) in {}",
                if adopted { "adopted the already created" } else { "created" },
                snapshot.name,
                snapshot.id,
                secs(took)
            );
        }
        if let Some(mut record) = self
            .state
            .stopped_servers()
            .into_iter()
            .find(|r| r.server == job.server)
        {
            record.snapshot_id = Some(snapshot.id);
            self.state.record_stopped(&record)?;
        }
        let done = self.wait_completed(job, snapshot).await?;
        Ok((done, adopted))
    }

    /// Step 5: polls the server's listing until the snapshot is `completed`.
    async fn wait_completed(
        &self,
        job: Job<'_>,
        mut snapshot: Snapshot,
    ) -> Result<Completed, RotationError> {
        let policy = job.policy;
        let started = Instant::now();
        let mut noted_unknown = false;
        let mut noted_progress = Instant::now();
        let mut listing = None;
        loop {
            match &snapshot.status {
                SnapshotStatus::Completed => {
                    info!(
                        snapshot_id = snapshot.id,
                        snapshot_name = %snapshot.name,
                        "snapshot {} completed ({} MB) after waiting {}",
                        snapshot.name,
                        snapshot.size_mb.map_or("?".into(), |s| s.to_string()),
                        secs(started.elapsed())
                    );
                    return Ok(Completed { snapshot, listing });
                }
                SnapshotStatus::Failed(status) => {
                    return Err(RotationError::SnapshotFailed {
                        name: snapshot.name,
                        id: snapshot.id,
                        status: status.clone(),
                    });
                }
                SnapshotStatus::Other(status) if !noted_unknown => {
                    warn!(
                        "snapshot {} has status {status:?}, which the API does not document; waiting as if in progress",
                        snapshot.name
                    );
                    noted_unknown = true;
                }
                _ => {}
            }
            if noted_progress.elapsed() >= PROGRESS_EVERY {
                info!(
                    "still waiting for snapshot {}: {} for {}",
                    snapshot.name,
                    snapshot.status.as_str(),
                    humantime::format_duration(Duration::from_secs(started.elapsed().as_secs()))
                );
                noted_progress = Instant::now();
            }
            if started.elapsed() >= policy.wait_timeout {
                return Err(RotationError::WaitTimeout {
                    name: snapshot.name,
                    id: snapshot.id,
                    status: snapshot.status.as_str().to_string(),
                    timeout: humantime::format_duration(policy.wait_timeout).to_string(),
                });
            }
            // No documented single-snapshot call: its status comes from the server's
            // listing, read in a poll round shared with every other waiting job.
            let interval = policy
                .poll_interval
                .min(policy.wait_timeout.saturating_sub(started.elapsed()));
            let all = self
                .listings
                .poll(job.server, interval)
                .await
                .map_err(RotationError::api("waiting for the snapshot"))?;
            let current = all.iter().find(|s| s.id == snapshot.id).cloned();
            snapshot = current.ok_or(RotationError::Vanished {
                name: snapshot.name.clone(),
                id: snapshot.id,
            })?;
            listing = Some(all);
        }
    }

    /// Step 7: deletes this policy's snapshots beyond `keep` (oldest first) and its
    /// failed ones; never the new one, never one in progress.
    /// `listing` is the one that showed the snapshot completed, when there was one.
    async fn prune(
        &self,
        job: Job<'_>,
        new: &Snapshot,
        listing: Option<Vec<Snapshot>>,
    ) -> Result<(Vec<(Snapshot, Reason)>, usize), RotationError> {
        let listing = match listing {
            Some(l) => l,
            None => self
                .listings
                .server(job.server)
                .await
                .map_err(RotationError::api("listing snapshots before pruning"))?,
        };
        let doomed = prune_list(job, &listing, Some(new.id));
        let mut deleted = Vec::new();
        for (snapshot, reason) in doomed {
            self.delete(&snapshot, reason)
                .await
                .map_err(RotationError::api("pruning"))?;
            deleted.push((snapshot, reason));
        }
        if deleted.is_empty() {
            info!("nothing to prune: policy keeps {}", job.policy.keep);
        }
        let owned = listing
            .iter()
            .filter(|s| job.policy.owns(job.server, &s.name))
            .count()
            .saturating_sub(deleted.len());
        Ok((deleted, owned))
    }
}

/// Step 6, also used on its own when the daemon starts or stops: starts a server that
/// snaprotd stopped, waits until it runs, and clears the record. On failure the record
/// stays, so the next start of the daemon tries again.
pub async fn start_server_again(
    client: &Client,
    state: &StateDir,
    record: &StoppedRecord,
    poll_interval: Duration,
    timeout: Duration,
) -> Result<(), RotationError> {
    let (r, took) = timed("start", async {
        client
            .start_server(record.server)
            .await
            .map_err(RotationError::api("starting the server again"))?;
        wait_for_server(
            client,
            record.server,
            ServerStatus::Running,
            poll_interval,
            timeout,
        )
        .await?;
        state.clear_stopped(record.server)?;
        Ok::<(), RotationError>(())
    })
    .await;
    match &r {
        Ok(()) => info!(
            server_id = record.server,
            "started server again in {}",
            secs(took)
        ),
        Err(e) => error!(
            server_id = record.server,
            "server {} is still stopped: {e}", record.server
        ),
    }
    r
}

async fn wait_for_server(
    client: &Client,
    server: u64,
    want: ServerStatus,
    poll_interval: Duration,
    timeout: Duration,
) -> Result<(), RotationError> {
    let deadline = Instant::now() + timeout;
    let interval = poll_interval.min(Duration::from_secs(5));
    loop {
        let status = client
            .server(server)
            .await
            .map_err(RotationError::api("reading the server's status"))?
            .status;
        if status == want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(RotationError::ServerTimeout {
                server,
                want: if want == ServerStatus::Running {
                    "running"
                } else {
                    "stopped"
                },
                seen: status.as_str().to_string(),
                timeout: humantime::format_duration(timeout).to_string(),
            });
        }
        pause(interval).await;
    }
}

/// What pruning deletes from `listing`, oldest first: this policy's failed snapshots and
/// its completed ones beyond the newest `keep`, counting the run's own snapshot
/// (`new`, which always stays; `None` while it is still to be created) as the newest.
pub fn prune_list(job: Job<'_>, listing: &[Snapshot], new: Option<u64>) -> Vec<(Snapshot, Reason)> {
    let owned = listing
        .iter()
        .filter(|s| Some(s.id) != new && job.policy.owns(job.server, &s.name));
    let mut completed: Vec<&Snapshot> = Vec::new();
    let mut doomed = Vec::new();
    for s in owned {
        match s.status {
            SnapshotStatus::Completed => completed.push(s),
            SnapshotStatus::Failed(_) => doomed.push((s.clone(), Reason::Failed)),
            _ => {}
        }
    }
    completed.sort_by_key(|s| (s.created_at, s.id));
    let beyond = completed
        .len()
        .saturating_sub(job.policy.keep.saturating_sub(1));
    doomed.extend(
        completed[..beyond]
            .iter()
            .map(|s| ((*s).clone(), Reason::BeyondKeep)),
    );
    doomed.sort_by_key(|(s, _)| (s.created_at, s.id));
    doomed
}
