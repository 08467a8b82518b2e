//! What survives a restart: the last run of every job, the "servers I stopped" records,
//! the freezes under way and the snapshots taken while a server ran again. One small
//! JSON file per record under `state_dir`, each written atomically, so a crash leaves
//! either the old or the new record, and concurrent jobs never rewrite each other's
//! files.
//!
//! The files are an interface across upgrades: fields are added (with a default), never
//! renamed or dropped, so a record written by an older release is still acted on.
//!
//! [`StateDir`] is what the rest of snaprotd holds. Its reads and writes (and their
//! fsyncs) run on tokio's blocking threads, never on the threads that run the jobs;
//! the files themselves are handled by the modules below, one concern each:
//! `files` (atomic writes, reads that follow no link), `check` (nobody else writes
//! here), `locks` (one daemon, one job per server), `stopped`, `hooks` (a freeze under
//! way), `tainted`, `runs`, `counters` (counts every process adds to) and `reload` (the
//! daemon's last reload).

mod check;
mod counters;
mod error;
mod files;
mod hooks;
mod locks;
mod reload;
mod runs;
mod stopped;
mod tainted;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Serialize, de::DeserializeOwned};

use crate::job::JobId;
pub use counters::{Counts, merge as merge_counts};
pub use error::StateError;
pub use files::write_atomic;
pub use hooks::{HookEntry, HookRecord};
pub use locks::{DirLock, ServerLock, busy};
pub use reload::LastReload;
pub use stopped::{StoppedEntry, StoppedRecord};
pub use tainted::TaintedSnapshot;

/// How many state reads and writes run at once (each on a blocking thread).
const IO_THREADS: usize = 4;

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: Arc<PathBuf>,
}

impl StateDir {
    pub fn new(root: &Path) -> StateDir {
        StateDir {
            root: Arc::new(root.to_path_buf()),
        }
    }

    /// Runs `f` on the directory's path on a blocking thread — at most [`IO_THREADS`]
    /// at once, whatever the number of jobs: ten thousand jobs firing together would
    /// otherwise start hundreds of threads for a few milliseconds of file work each.
    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Path) -> T + Send + 'static) -> T {
        static IO: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(IO_THREADS);
        // Never closed, so a permit always comes.
        let _permit = IO.acquire().await;
        let root = self.root.clone();
        match tokio::task::spawn_blocking(move || f(&root)).await {
            Ok(v) => v,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Cancelled: only as the runtime shuts down, when nobody waits for it.
                Err(_) => std::future::pending().await,
            },
        }
    }

    /// Run as root on a state directory another user owns, becomes that user (see
    /// `check::become_owner_if_root`). Called at start, before any job, on the calling
    /// thread: the identity is the whole process's.
    pub fn become_owner_if_root(&self) -> Result<Option<u32>, StateError> {
        check::become_owner_if_root(&self.root)
    }

    /// Creates the directory when missing and refuses one that anyone but this user
    /// could write in. Called at start by the daemon, `once` and `restore`.
    pub async fn check(&self) -> Result<(), StateError> {
        self.blocking(check::check).await
    }

    /// Whether a daemon works on this state directory now: `None` when none ever did.
    pub async fn daemon_running(&self) -> Option<bool> {
        self.blocking(locks::daemon_running).await
    }

    /// Takes the state directory for this process (the daemon), or says which process
    /// has it.
    pub async fn lock(&self) -> Result<DirLock, StateError> {
        self.blocking(locks::lock).await
    }

    /// Takes server `server` for one job, waiting while another process (or job) has it.
    /// `on_busy` is called once, with who holds it, when the first try fails.
    pub async fn lock_server(
        &self,
        server: u64,
        on_busy: impl FnOnce(&str),
    ) -> Result<ServerLock, StateError> {
        let mut on_busy = Some(on_busy);
        loop {
            if let Some(lock) = self.try_lock_server(server).await? {
                return Ok(lock);
            }
            if let Some(f) = on_busy.take() {
                f(&self.server_holder(server).await);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Takes server `server` if nobody has it.
    pub async fn try_lock_server(&self, server: u64) -> Result<Option<ServerLock>, StateError> {
        self.blocking(move |root| locks::try_lock_server(root, server))
            .await
    }

    /// Who holds server `server`'s lock, as " (pid N)", or "" when nobody says.
    pub async fn server_holder(&self, server: u64) -> String {
        self.blocking(move |root| locks::server_holder(root, server))
            .await
    }

    /// Notes that snaprotd stopped (or is about to stop) a server.
    pub async fn record_stopped(&self, record: &StoppedRecord) -> Result<(), StateError> {
        let record = record.clone();
        self.blocking(move |root| stopped::record(root, &record))
            .await
    }

    /// The server runs again: its record goes.
    pub async fn clear_stopped(&self, server: u64) -> Result<(), StateError> {
        self.blocking(move |root| stopped::clear(root, server))
            .await
    }

    /// Every stopped-server record, readable or not, by server.
    pub async fn stopped_servers(&self) -> Vec<StoppedEntry> {
        self.blocking(stopped::all).await
    }

    /// The servers snaprotd stopped and left stopped: a record whose server no job is
    /// working on now (its lock is free). Only read: nothing is copied or logged.
    pub async fn servers_left_stopped(&self) -> Vec<StoppedEntry> {
        self.blocking(|root| {
            stopped::peek(root)
                .into_iter()
                .filter(|e| !locks::server_in_use(root, e.server()))
                .collect()
        })
        .await
    }

    /// The record of `server`, if there is one: its own file, read alone.
    pub async fn stopped_server(&self, server: u64) -> Option<StoppedEntry> {
        self.blocking(move |root| stopped::one(root, server)).await
    }

    /// Notes that a `pre_snapshot` hook is about to start (before it does).
    pub async fn record_hooks(&self, record: &HookRecord) -> Result<(), StateError> {
        let record = record.clone();
        self.blocking(move |root| hooks::record(root, &record))
            .await
    }

    /// The `post_snapshot` hook has ended: the record of the freeze goes.
    pub async fn clear_hooks(&self, server: u64) -> Result<(), StateError> {
        self.blocking(move |root| hooks::clear(root, server)).await
    }

    /// The freeze record of `server`, if there is one (one that cannot be read is
    /// set aside as it is read).
    pub async fn hooks_left(&self, server: u64) -> Option<HookEntry> {
        self.blocking(move |root| hooks::one(root, server)).await
    }

    /// The freezes snaprotd left: a record whose server no job is working on now (its
    /// lock is free). Only read: nothing is moved or logged.
    pub async fn freezes_left(&self) -> Vec<HookEntry> {
        self.blocking(|root| {
            hooks::peek(root)
                .into_iter()
                .filter(|e| !locks::server_in_use(root, e.server()))
                .collect()
        })
        .await
    }

    /// The servers with a freeze record.
    pub async fn servers_with_hooks_left(&self) -> Vec<u64> {
        self.blocking(hooks::servers).await
    }

    /// Notes that `snapshot` was still in progress when its server ran again.
    pub async fn record_tainted(&self, snapshot: &TaintedSnapshot) -> Result<(), StateError> {
        let snapshot = snapshot.clone();
        self.blocking(move |root| tainted::record(root, &snapshot))
            .await
    }

    /// The tainted snapshots of `server`.
    pub async fn tainted(&self, server: u64) -> Vec<TaintedSnapshot> {
        self.blocking(move |root| tainted::of(root, server)).await
    }

    /// Forgets a tainted snapshot (it is gone).
    pub async fn clear_tainted(&self, snapshot: &TaintedSnapshot) -> Result<(), StateError> {
        let snapshot = snapshot.clone();
        self.blocking(move |root| tainted::clear(root, &snapshot))
            .await
    }

    /// Writes `run` as the last run of `job`.
    pub async fn record_run<T: Serialize>(&self, job: &JobId, run: &T) -> Result<(), StateError> {
        let bytes = files::encode(&runs::path(&self.root, job), run)?;
        let job = job.clone();
        self.blocking(move |root| runs::record(root, &job, &bytes))
            .await
    }

    /// The last run of `job`, if one was recorded and can be read.
    pub async fn last_run<T: DeserializeOwned + Send + 'static>(&self, job: &JobId) -> Option<T> {
        let job = job.clone();
        self.blocking(move |root| runs::last(root, &job)).await
    }

    /// The last runs of `jobs` that were recorded and can be read.
    pub async fn last_runs<T: DeserializeOwned + Send + 'static>(
        &self,
        jobs: Vec<JobId>,
    ) -> Vec<(JobId, T)> {
        self.blocking(move |root| runs::last_of(root, &jobs)).await
    }

    /// Adds `deltas` to the counts every process keeps here; returns the counts after.
    pub async fn add_counts(&self, deltas: Counts) -> Result<Counts, StateError> {
        self.blocking(move |root| counters::add(root, &deltas))
            .await
    }

    /// The counts every process keeps here.
    pub async fn counts(&self) -> Counts {
        self.blocking(counters::counts).await
    }

    /// Notes what the daemon's last reading of its configuration came to.
    pub async fn record_reload(&self, reload: &LastReload) -> Result<(), StateError> {
        let reload = reload.clone();
        self.blocking(move |root| reload::record(root, &reload))
            .await
    }

    /// What the daemon's last reading of its configuration came to, if known.
    pub async fn last_reload(&self) -> Option<LastReload> {
        self.blocking(reload::last).await
    }

    /// When each job was first scheduled, so that a catch-up can tell "never ran" (a
    /// new job: nothing runs early) from "missed while down".
    pub async fn known_jobs(&self) -> BTreeMap<JobId, DateTime<Utc>> {
        self.blocking(runs::known_jobs).await
    }

    pub async fn record_known_jobs(
        &self,
        jobs: &BTreeMap<JobId, DateTime<Utc>>,
    ) -> Result<(), StateError> {
        let bytes = runs::known_jobs_bytes(&self.root, jobs)?;
        self.blocking(move |root| runs::record_known_jobs(root, &bytes))
            .await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::fs;
    use std::os::unix::fs::DirBuilderExt;

    use super::*;

    pub const VICTIM: &[u8] = b"not snaprotd's\n";

    /// A state directory (0700, as `check` wants it) and a file outside it.
    pub fn state_and_victim() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        fs::DirBuilder::new().mode(0o700).create(&root).unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, VICTIM).unwrap();
        (dir, root, victim)
    }

    #[tokio::test]
    async fn records_and_locks_go_through_the_async_interface() {
        let (_dir, root, _) = state_and_victim();
        let state = StateDir::new(&root);
        let record = StoppedRecord {
            job: JobId::new("p", 3),
            snapshot_name: "p-1".into(),
            snapshot_id: Some(9),
            scheduled_for: Utc::now(),
            stopped_at: Utc::now(),
        };
        state.record_stopped(&record).await.unwrap();
        assert_eq!(
            state.stopped_server(3).await,
            Some(StoppedEntry::Record(record))
        );
        let job = JobId::new("p", 3);
        state
            .record_run(&job, &serde_json::json!({"ok": true}))
            .await
            .unwrap();
        assert_eq!(
            state.last_run::<serde_json::Value>(&job).await,
            Some(serde_json::json!({"ok": true}))
        );
        let _held = state.lock_server(3, |_| {}).await.unwrap();
        assert!(state.try_lock_server(3).await.unwrap().is_none());
        assert!(
            state
                .server_holder(3)
                .await
                .contains(&std::process::id().to_string())
        );
    }
}
