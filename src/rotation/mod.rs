//! One rotation: one policy on one server, the seven steps of PRODUCT.md.
//!
//! [`Rotation::run`] reads top to bottom like the steps. A server snaprotd stopped is
//! held by a [`StoppedServer`] guard (`guard.rs`), the only way to stop and to start
//! a server: `run` takes over any record left on the server before step 1, and
//! releases the guard after the create and wait steps whatever they returned.
//! [`plan`] is the pure part (what to adopt, what to delete to make room, what to
//! prune), with the retention rule in `retention.rs`; `--dry-run` prints it without
//! making a changing call.

mod error;
mod guard;
pub mod hooks;
mod owner;
mod plan;
pub mod retention;

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::{Policy, Timing};
use crate::interrupt::Interrupt;
use crate::job::JobId;
use crate::provider::assumptions;
use crate::provider::{Client, Listing, Listings, ServerStatus, Snapshot, SnapshotStatus};
use crate::state::{StateDir, StoppedEntry, StoppedRecord, TaintedSnapshot};
pub use error::RotationError;
pub use guard::StoppedServer;
pub use owner::{Owner, described_policy};
pub use plan::{New, Plan, Pruning, Reason, is_tainted, plan, prune_list, pruning};

/// One policy on one server: a [`JobId`] with its policy looked up.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    pub policy: &'a Policy,
    pub server: u64,
}

impl Job<'_> {
    pub fn id(&self) -> JobId {
        JobId::new(self.policy.name.as_str(), self.server)
    }

    /// The snapshot name for a fire at `at`, rendered in the policy's zone.
    pub fn snapshot_name(&self, at: DateTime<Utc>) -> String {
        let local = at.with_timezone(&self.policy.timezone);
        self.policy
            .snapshot_name
            .render(&self.policy.name, self.server, &local)
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

/// A snapshot that reached `completed`, with the listing that showed it (if it was
/// read while waiting), which step 7 prunes from.
struct Completed {
    snapshot: Snapshot,
    listing: Option<Listing>,
}

/// How often a long wait says it is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// Progress of one wait (a status line on a terminal: see [`crate::PROGRESS`]), named
/// by what waits; its entry ends when this is dropped.
struct Progress(String);

impl Progress {
    fn of(what: impl std::fmt::Display) -> Progress {
        Progress(what.to_string())
    }

    fn say(&self, text: std::fmt::Arguments<'_>) {
        tracing::info!(target: crate::PROGRESS, key = %self.0, "{}: {text}", self.0);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        tracing::info!(target: crate::PROGRESS, key = %self.0, "");
    }
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
        // The run's error says what failed, as an error; this adds when.
        tracing::debug!(step, "step {step} failed after {}", secs(took));
    }
    (r, took)
}

/// What steps 1 to 5 came to.
struct Made {
    completed: Completed,
    adopted: bool,
    made_room: Vec<(Snapshot, Reason)>,
}

/// Everything a run needs besides the job.
pub struct Rotation<'a> {
    pub client: &'a Client,
    /// Listings shared with the other jobs running now.
    pub listings: &'a Listings,
    pub state: &'a StateDir,
    pub policies: &'a [Policy],
    pub cap: usize,
    /// The `[defaults]` timings, for a stopped server whose policy is gone.
    pub defaults: Timing,
    /// Set when snaprotd is stopping: nothing new starts, waits end after its grace.
    pub interrupt: &'a Interrupt,
}

impl Rotation<'_> {
    /// One run of `job` for the fire at `fire_time` (which names the snapshot).
    pub async fn run(
        &self,
        job: Job<'_>,
        fire_time: DateTime<Utc>,
    ) -> Result<Outcome, RotationError> {
        let name = job.snapshot_name(fire_time);

        // Before anything else: a freeze snaprotd ended in is thawed (`hooks.rs`).
        Box::pin(hooks::thaw_left(self, job.server)).await;

        // Before step 1: a stopped-server record on this server is taken over, so
        // that from here on the guard starts the server whatever happens.
        let mut guard = Box::pin(self.take_over(job, &name)).await?;

        // Steps 1 to 5.
        let made = Box::pin(self.make(job, &name, fire_time, &mut guard)).await;

        // 6. Start the server again if it is held stopped — on every path.
        let stopped_server = guard.is_some();
        let released = match guard {
            Some(guard) => Box::pin(guard.release(self)).await,
            None => Ok(()),
        };
        // The server runs; a record left behind is removed by the next run.
        if let Err(restart) = released
            && !matches!(restart, RotationError::RecordStays { .. })
        {
            let first = match made {
                Ok(m) => format!(
                    "snapshot {} (id {}) completed",
                    m.completed.snapshot.name, m.completed.snapshot.id
                ),
                Err(e) => e.to_string(),
            };
            return Err(RotationError::NotRestarted {
                server: job.server,
                first,
                restart: restart.to_string(),
            });
        }
        let Made {
            completed: Completed { snapshot, listing },
            adopted,
            made_room,
        } = made?;

        // 7. Only now, after a completed snapshot: prune beyond keep.
        let mut deleted = made_room;
        let (pruned, owned) = Box::pin(self.prune(job, &snapshot, listing)).await?;
        deleted.extend(pruned);
        Ok(Outcome {
            snapshot,
            adopted,
            stopped_server,
            deleted,
            owned,
        })
    }

    /// A stop for this very snapshot (a run resumed after a crash or a restart) is
    /// carried on; a stop left by another run is settled first — the server started
    /// again after that run's snapshot — so this run begins from a running server.
    async fn take_over(
        &self,
        job: Job<'_>,
        name: &str,
    ) -> Result<Option<StoppedServer>, RotationError> {
        let Some(entry) = self.state.stopped_server(job.server).await else {
            return Ok(None);
        };
        let guard = self.take_over_entry(entry);
        if guard.is_for(&job.policy.name, name) {
            return Ok(Some(guard));
        }
        match guard.release(self).await {
            Ok(()) | Err(RotationError::RecordStays { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Steps 1 to 5.
    async fn make(
        &self,
        job: Job<'_>,
        name: &str,
        fire_time: DateTime<Utc>,
        guard: &mut Option<StoppedServer>,
    ) -> Result<Made, RotationError> {
        let policy = job.policy;
        if self.interrupt.is_set() {
            return Err(RotationError::Interrupted("before the run began"));
        }

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
        let tainted = self.state.tainted(job.server).await;
        // The new snapshot counts as made now, as it is about to be.
        let plan = plan(
            job,
            self.policies,
            self.cap,
            name,
            Utc::now(),
            &listing,
            &tainted,
        )?;
        if !plan.make_room.is_empty()
            && let Some(doubt) = &listing.doubt
        {
            return Err(RotationError::ListingInDoubt {
                step: "making room",
                doubt: doubt.clone(),
            });
        }
        for (snapshot, reason) in &plan.make_room {
            Box::pin(self.delete(job, snapshot, reason))
                .await
                .map_err(RotationError::api("making room"))?;
        }

        // 3. Stop the server if the policy asks, it runs, and a snapshot is to be made.
        if plan.adopt.is_none() && policy.stop_server {
            Box::pin(self.stop(job, name, fire_time, guard)).await?;
            crate::failpoint::panic_at("panic-after-stop");
        }

        // 4 and 5. Create (or adopt) the snapshot and wait for it.
        let (completed, adopted) = Box::pin(self.create_and_wait(job, &plan, guard)).await?;
        Ok(Made {
            completed,
            adopted,
            made_room: plan.make_room,
        })
    }

    async fn delete(
        &self,
        job: Job<'_>,
        snapshot: &Snapshot,
        reason: &Reason,
    ) -> Result<(), crate::provider::ApiError> {
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
            crate::schedule::shown(snapshot.created_at, job.policy.timezone),
            reason.describe(),
            secs(took)
        );
        Ok(())
    }

    /// Step 3. A server held stopped already (a resumed run) is made sure to be
    /// stopped; otherwise a running server is recorded, then stopped. A server that
    /// is not running is snapshotted as it is and not started afterwards.
    async fn stop(
        &self,
        job: Job<'_>,
        name: &str,
        fire_time: DateTime<Utc>,
        guard: &mut Option<StoppedServer>,
    ) -> Result<(), RotationError> {
        if let Some(held) = guard {
            return held.ensure_stopped(self, None).await;
        }
        if self.interrupt.is_set() {
            return Err(RotationError::Interrupted("before stopping the server"));
        }
        let status = self
            .client
            .server(job.server)
            .await
            .map_err(RotationError::api("reading the server's status"))?
            .status;
        if status != ServerStatus::Running {
            info!(
                "server is {}, not running: snapshotting it as it is, and not starting it afterwards",
                status.as_str()
            );
            return Ok(());
        }
        let record = StoppedRecord {
            job: job.id(),
            snapshot_name: name.to_string(),
            snapshot_id: None,
            scheduled_for: fire_time,
            stopped_at: Utc::now(),
        };
        let held = guard.insert(StoppedServer::record(self, record, job.policy.timing()).await?);
        held.ensure_stopped(self, Some(status)).await
    }

    /// Steps 4 and 5. A new snapshot's create runs between the policy's hooks
    /// (`hooks.rs`): `pre_snapshot` before it (its failure: no create), `post_snapshot`
    /// once it is answered or failed; a failed `post_snapshot` fails the run once the
    /// snapshot has been waited for. An adopted snapshot runs no hook.
    async fn create_and_wait(
        &self,
        job: Job<'_>,
        plan: &Plan,
        guard: &mut Option<StoppedServer>,
    ) -> Result<(Completed, bool), RotationError> {
        let (created, thawed) = match &plan.adopt {
            Some(existing) => {
                info!(
                    snapshot_id = existing.id,
                    snapshot_name = %existing.name,
                    "snapshot {} exists already (id {}, {}, made {}): adopting it rather than \
                     making another of the same name (names are to the template's finest \
                     field; a second run within it takes the same snapshot)",
                    existing.name,
                    existing.id,
                    existing.status.as_str(),
                    crate::schedule::shown(existing.created_at, job.policy.timezone)
                );
                ((existing.clone(), true), Ok(()))
            }
            None => {
                let hooks = hooks::Hooks {
                    job,
                    snapshot_name: &plan.name,
                    interrupt: self.interrupt,
                    state: self.state,
                };
                // Said as soon as the create is answered, before the post hook.
                let create = async {
                    let created = self.create(job, plan).await;
                    if let Ok((c, took)) = &created {
                        info!(
                            snapshot_id = c.snapshot.id,
                            snapshot_name = %c.snapshot.name,
                            "{} snapshot {} (id {}) in {}",
                            if c.adopted { "adopted the already created" } else { "created" },
                            c.snapshot.name,
                            c.snapshot.id,
                            secs(*took)
                        );
                    }
                    created
                };
                let around = hooks::around(&hooks, Box::pin(create)).await;
                let (c, _) = around.created?;
                ((c.snapshot, c.adopted), around.post)
            }
        };
        let (snapshot, adopted) = created;
        if let Some(held) = guard {
            Box::pin(held.protect(self, &snapshot)).await;
        }
        let done = Box::pin(self.wait_completed(job, snapshot)).await;
        if let (Some(held), Ok(_) | Err(RotationError::SnapshotFailed { .. })) = (guard, &done) {
            held.settled();
        }
        let completed = done?;
        thawed?;
        Ok((completed, adopted))
    }

    /// Step 4's call: the create, unless snaprotd is stopping.
    async fn create(
        &self,
        job: Job<'_>,
        plan: &Plan,
    ) -> Result<(crate::provider::Created, Duration), RotationError> {
        if self.interrupt.is_set() {
            return Err(RotationError::Interrupted("before creating the snapshot"));
        }
        let (r, took) = timed(
            "create",
            self.client
                .create_snapshot(job.server, &plan.name, &job.policy.snapshot_description()),
        )
        .await;
        let c = r.map_err(RotationError::api("creating the snapshot"))?;
        Ok((c, took))
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
        let mut missing = 0;
        let progress = Progress::of(job.id());
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
            progress.say(format_args!(
                "snapshot {} {} for {}",
                snapshot.name,
                snapshot.status.as_str(),
                humantime::format_duration(Duration::from_secs(started.elapsed().as_secs()))
            ));
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
            let all = tokio::select! {
                all = self.listings.poll(job.server, interval) => all,
                _ = self.interrupt.grace_over() => {
                    return Err(RotationError::Interrupted("while waiting for the snapshot"));
                }
            }
            .map_err(RotationError::api("waiting for the snapshot"))?;
            // One listing without it proves nothing (an index that lags, a page that
            // shifted): it is gone only when several in a row do not show it.
            match all.iter().find(|s| s.id == snapshot.id) {
                Some(current) => {
                    snapshot = current.clone();
                    missing = 0;
                }
                None => {
                    missing += 1;
                    if missing >= assumptions::MISSING_POLLS_FOR_GONE {
                        return Err(RotationError::Vanished {
                            name: snapshot.name,
                            id: snapshot.id,
                        });
                    }
                    warn!(
                        "snapshot {} (id {}) is missing from the listing; looking again",
                        snapshot.name, snapshot.id
                    );
                    continue;
                }
            }
            // Kept for step 7 only once it shows the snapshot completed: a job waiting
            // for the next round holds no listing.
            listing = matches!(snapshot.status, SnapshotStatus::Completed).then_some(all);
        }
    }

    /// Step 7: deletes this policy's snapshots its `keep` no longer holds (oldest
    /// first), its failed ones and its tainted ones, saying which tiers keep the rest;
    /// never the new one, never one in progress.
    /// `listing` is the one that showed the snapshot completed, when there was one.
    async fn prune(
        &self,
        job: Job<'_>,
        new: &Snapshot,
        listing: Option<Listing>,
    ) -> Result<(Vec<(Snapshot, Reason)>, usize), RotationError> {
        let listing = match listing {
            Some(l) => l,
            None => self
                .listings
                .server(job.server)
                .await
                .map_err(RotationError::api("listing snapshots before pruning"))?,
        };
        let tainted = self.state.tainted(job.server).await;
        let owned = listing
            .iter()
            .filter(|s| job.policy.owns(job.server, &s.name))
            .count();
        if let Some(doubt) = &listing.doubt {
            warn!("not pruning this run: the provider's listing does not add up ({doubt})");
            return Ok((Vec::new(), owned));
        }
        let Pruning { doomed, kept, .. } = pruning(job, &listing, New::Made(new), &tainted);
        for (snapshot, held) in &kept {
            info!(
                snapshot_id = snapshot.id,
                snapshot_name = %snapshot.name,
                "keeping snapshot {} (id {}, created {}): kept by {}",
                snapshot.name,
                snapshot.id,
                crate::schedule::shown(snapshot.created_at, job.policy.timezone),
                retention::kept_by(held)
            );
        }
        let mut deleted = Vec::new();
        for (snapshot, reason) in doomed {
            self.delete(job, &snapshot, &reason)
                .await
                .map_err(RotationError::api("pruning"))?;
            deleted.push((snapshot, reason));
        }
        if deleted.is_empty() {
            info!("nothing more to prune: policy keeps {}", job.policy.keep);
        }
        self.forget_gone_tainted(&tainted, &listing, &deleted).await;
        let owned = owned.saturating_sub(deleted.len());
        Ok((deleted, owned))
    }

    /// A guard for a record left on disk, with the timing of the record's policy (or
    /// `[defaults]` when it is gone or the record cannot be read).
    fn take_over_entry(&self, entry: StoppedEntry) -> StoppedServer {
        let timing = match &entry {
            StoppedEntry::Record(r) => {
                warn!(
                    server_id = r.server(),
                    job_id = %r.job,
                    snapshot_name = %r.snapshot_name,
                    "server {} was stopped by {} at {} for snapshot {} and not started again; taking that over",
                    r.server(),
                    r.job,
                    crate::schedule::shown(r.stopped_at, chrono_tz::UTC),
                    r.snapshot_name
                );
                crate::config::job_policy(self.policies, &r.job.policy, r.server())
                    .map_or(self.defaults, Policy::timing)
            }
            StoppedEntry::Corrupt { .. } => self.defaults,
        };
        StoppedServer::take_over(entry, timing)
    }

    /// Tainted records whose snapshot is deleted or no longer listed are dropped.
    async fn forget_gone_tainted(
        &self,
        tainted: &[TaintedSnapshot],
        listing: &[Snapshot],
        deleted: &[(Snapshot, Reason)],
    ) {
        for t in tainted {
            let one = std::slice::from_ref(t);
            let listed = listing
                .iter()
                .any(|s| is_tainted(s, one) && !deleted.iter().any(|(d, _)| d.id == s.id));
            if !listed && let Err(e) = self.state.clear_tainted(t).await {
                warn!(
                    "cannot clear the tainted record of {}: {e}",
                    t.snapshot_name
                );
            }
        }
    }
}

/// Takes over and releases the stopped-server record of `server`, if there is one: the
/// server is started again after its snapshot (bounded). For a record whose job is not
/// run (its policy is gone, a corrupt record), at start-up, at shutdown, and after a job
/// that ended without releasing (a panic, a cancelled task). A freeze left on the
/// server is thawed first. Returns whether there was a record of either.
pub async fn settle(rot: &Rotation<'_>, server: u64) -> Result<bool, RotationError> {
    let thawed = Box::pin(hooks::thaw_left(rot, server)).await;
    let Some(entry) = rot.state.stopped_server(server).await else {
        return Ok(thawed);
    };
    rot.take_over_entry(entry).release(rot).await?;
    Ok(true)
}
