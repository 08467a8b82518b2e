//! What survives a restart: the last run of every job, the "servers I stopped"
//! records and the snapshots taken while a server ran again. One small JSON file per
//! record under `state_dir`, each written atomically (temp file, fsync, rename, fsync of
//! the directory), so a crash leaves either the old or the new record, and concurrent
//! jobs never rewrite each other's files.
//!
//! The files are an interface across upgrades: fields are added (with a default), never
//! renamed or dropped, so a record written by an older release is still acted on.
//!
//! One writer: the daemon holds `lock` for its lifetime, and every job holds
//! `locks/<server>.lock` for its whole run, in the daemon and in `once` alike.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// A server that snaprotd stopped and has not yet started again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoppedRecord {
    pub server: u64,
    pub policy: String,
    pub job: String,
    pub snapshot_name: String,
    pub snapshot_id: Option<u64>,
    /// The fire the job answered: resuming it renders the same name and adopts the
    /// snapshot instead of making another.
    pub scheduled_for: DateTime<Utc>,
    pub stopped_at: DateTime<Utc>,
}

/// A stopped-server record as found on disk. A record that cannot be read still names
/// its server (the file is `stopped/<server>.json`): that server is started again.
#[derive(Debug, Clone, PartialEq)]
pub enum StoppedEntry {
    Record(StoppedRecord),
    Corrupt {
        server: u64,
        /// Why it could not be read.
        problem: String,
    },
}

impl StoppedEntry {
    pub fn server(&self) -> u64 {
        match self {
            StoppedEntry::Record(r) => r.server,
            StoppedEntry::Corrupt { server, .. } => *server,
        }
    }
}

/// A snapshot that was still being made when snaprotd had to start its server again:
/// it is not a stopped-server snapshot, so it is never adopted or kept, and pruning
/// deletes it once it is no longer in progress.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaintedSnapshot {
    pub server: u64,
    pub snapshot_name: String,
    pub snapshot_id: Option<u64>,
    pub since: DateTime<Utc>,
}

/// How the last run of a job ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LastRun {
    pub job: String,
    pub policy: String,
    pub server: u64,
    /// The fire this run answered (or its start, for `once`).
    pub scheduled_for: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub ok: bool,
    pub message: String,
    pub snapshot_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("state directory {path}: {message}")]
pub struct StateError {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: &Path) -> StateDir {
        StateDir {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the state directory for this process (the daemon), or says which process
    /// has it.
    pub fn lock(&self) -> Result<DirLock, StateError> {
        fs::create_dir_all(&self.root).map_err(|e| err(&self.root, e))?;
        let path = self.root.join("lock");
        match try_lock(&path)? {
            Some(file) => Ok(DirLock { _file: file }),
            None => Err(err(
                &self.root,
                format!(
                    "in use by another snaprotd{}; one daemon per state directory",
                    holder(&path)
                ),
            )),
        }
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
            if let Some(lock) = self.try_lock_server(server)? {
                return Ok(lock);
            }
            if let Some(f) = on_busy.take() {
                f(&holder(&self.server_lock_path(server)));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Takes server `server` if nobody has it.
    pub fn try_lock_server(&self, server: u64) -> Result<Option<ServerLock>, StateError> {
        let path = self.server_lock_path(server);
        let dir = self.root.join("locks");
        fs::create_dir_all(&dir).map_err(|e| err(&dir, e))?;
        Ok(try_lock(&path)?.map(|file| ServerLock { _file: file }))
    }

    /// Who holds server `server`'s lock, as " (pid N)", or "" when nobody says.
    pub fn server_holder(&self, server: u64) -> String {
        holder(&self.server_lock_path(server))
    }

    fn server_lock_path(&self, server: u64) -> PathBuf {
        self.root.join("locks").join(format!("{server}.lock"))
    }

    pub fn record_stopped(&self, record: &StoppedRecord) -> Result<(), StateError> {
        self.write(&self.stopped_path(record.server), record)
    }

    /// The server runs again: its record goes (and an earlier release's set-aside copy
    /// is renamed, so it is not acted on twice).
    pub fn clear_stopped(&self, server: u64) -> Result<(), StateError> {
        let legacy = self.legacy_corrupt_path(server);
        if legacy.exists() {
            let done = legacy.with_extension(format!("corrupt-{}", Utc::now().timestamp()));
            fs::rename(&legacy, &done).map_err(|e| err(&legacy, e))?;
        }
        let path = self.stopped_path(server);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err(&path, e)),
        }
    }

    /// Every stopped-server record, readable or not, by server: `stopped/<server>.json`,
    /// and `stopped/<server>.json.corrupt` alone (an unreadable record that an earlier
    /// release set aside and forgot: its server is started again too).
    pub fn stopped_servers(&self) -> Vec<StoppedEntry> {
        let dir = self.root.join("stopped");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut servers: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let stem = name
                    .strip_suffix(".json")
                    .or_else(|| name.strip_suffix(LEGACY_CORRUPT))?;
                match stem.parse::<u64>() {
                    Ok(server) => Some(server),
                    Err(_) => {
                        tracing::error!(
                            "state file {} does not name a server; ignored",
                            dir.join(&name).display()
                        );
                        None
                    }
                }
            })
            .collect();
        servers.sort_unstable();
        servers.dedup();
        servers
            .into_iter()
            .filter_map(|s| self.stopped_server(s))
            .collect()
    }

    /// The record for `server`, if there is one. A corrupt one is kept where it is (it
    /// still says the server is stopped) and copied to `<server>.json.corrupt-<time>`
    /// for whoever looks into it.
    pub fn stopped_server(&self, server: u64) -> Option<StoppedEntry> {
        let path = self.stopped_path(server);
        let problem = match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<StoppedRecord>(&bytes) {
                Ok(r) if r.server == server => return Some(StoppedEntry::Record(r)),
                Ok(r) => format!(
                    "it names server {} in the file of server {server}",
                    r.server
                ),
                Err(e) => e.to_string(),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let legacy = self.legacy_corrupt_path(server);
                if !legacy.exists() {
                    return None;
                }
                tracing::error!(
                    server_id = server,
                    "{} is a stopped-server record an earlier release could not read and set aside; \
                     server {server} is started again after any snapshot of ours in progress",
                    legacy.display()
                );
                return Some(StoppedEntry::Corrupt {
                    server,
                    problem: "set aside by an earlier release".into(),
                });
            }
            Err(e) => e.to_string(),
        };
        let copy = self.keep_copy(&path);
        tracing::error!(
            server_id = server,
            "stopped-server record {} cannot be read ({problem}); {}; \
             server {server} is started again after any snapshot of ours in progress",
            path.display(),
            copy.map_or("no copy could be kept".into(), |c| format!(
                "a copy is kept as {}",
                c.display()
            ))
        );
        Some(StoppedEntry::Corrupt { server, problem })
    }

    /// Copies an unreadable record beside it as `<name>.corrupt-<unix time>`, once per
    /// content.
    fn keep_copy(&self, path: &Path) -> Option<PathBuf> {
        let bytes = fs::read(path).ok()?;
        let dir = path.parent()?;
        let prefix = format!("{}.corrupt-", path.file_name()?.to_str()?);
        let same = fs::read_dir(dir).ok()?.filter_map(|e| e.ok()).find(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
                && fs::read(e.path()).is_ok_and(|b| b == bytes)
        });
        if let Some(e) = same {
            return Some(e.path());
        }
        let copy = dir.join(format!("{prefix}{}", Utc::now().timestamp()));
        fs::write(&copy, &bytes).ok().map(|()| copy)
    }

    fn legacy_corrupt_path(&self, server: u64) -> PathBuf {
        self.root
            .join("stopped")
            .join(format!("{server}{LEGACY_CORRUPT}"))
    }

    /// Notes that `snapshot` was still in progress when its server ran again.
    pub fn record_tainted(&self, snapshot: &TaintedSnapshot) -> Result<(), StateError> {
        let key = match snapshot.snapshot_id {
            Some(id) => format!("{}-{id}", snapshot.server),
            None => format!("{}-{}", snapshot.server, snapshot.snapshot_name),
        };
        self.write(
            &self.root.join("tainted").join(format!("{key}.json")),
            snapshot,
        )
    }

    /// The tainted snapshots of `server`.
    pub fn tainted(&self, server: u64) -> Vec<TaintedSnapshot> {
        let prefix = format!("{server}-");
        let dir = self.root.join("tainted");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix))
            })
            .collect();
        paths.sort();
        paths
            .iter()
            .filter_map(|p| self.read::<TaintedSnapshot>(p))
            .filter(|t| t.server == server)
            .collect()
    }

    /// Forgets a tainted snapshot (it is gone).
    pub fn clear_tainted(&self, snapshot: &TaintedSnapshot) -> Result<(), StateError> {
        for key in [
            snapshot
                .snapshot_id
                .map(|id| format!("{}-{id}", snapshot.server)),
            Some(format!("{}-{}", snapshot.server, snapshot.snapshot_name)),
        ]
        .into_iter()
        .flatten()
        {
            let path = self.root.join("tainted").join(format!("{key}.json"));
            match fs::remove_file(&path) {
                Ok(()) => sync_dir(path.parent())?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(err(&path, e)),
            }
        }
        Ok(())
    }

    pub fn record_run(&self, run: &LastRun) -> Result<(), StateError> {
        self.write(&self.run_path(&run.job), run)
    }

    pub fn last_run(&self, job: &str) -> Option<LastRun> {
        self.read(&self.run_path(job))
    }

    /// When each job was first scheduled, so that a catch-up can tell "never ran"
    /// (a new job: nothing runs early) from "missed while down".
    pub fn known_jobs(&self) -> BTreeMap<String, DateTime<Utc>> {
        self.read(&self.root.join("known-jobs.json"))
            .unwrap_or_default()
    }

    pub fn record_known_jobs(
        &self,
        jobs: &BTreeMap<String, DateTime<Utc>>,
    ) -> Result<(), StateError> {
        self.write(&self.root.join("known-jobs.json"), jobs)
    }

    fn stopped_path(&self, server: u64) -> PathBuf {
        self.root.join("stopped").join(format!("{server}.json"))
    }

    fn run_path(&self, job: &str) -> PathBuf {
        self.root.join("runs").join(format!("{job}.json"))
    }

    fn write<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), StateError> {
        let text = serde_json::to_vec_pretty(value).map_err(|e| err(path, e))?;
        write_atomic(path, &text)
    }

    fn read<T: DeserializeOwned>(&self, path: &Path) -> Option<T> {
        let text = match fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::error!("cannot read state file {}: {e}", path.display());
                return None;
            }
        };
        match serde_json::from_slice(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                let aside = path.with_extension("json.corrupt");
                tracing::error!(
                    "state file {} is corrupt ({e}); moved aside to {}",
                    path.display(),
                    aside.display()
                );
                let _ = fs::rename(path, &aside);
                None
            }
        }
    }
}

/// Replaces `path` with `bytes` so that a reader (or a crash) sees the old file or the
/// new one, never a mix: temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut file = fs::File::create(&tmp).map_err(|e| err(&tmp, e))?;
    file.write_all(bytes).map_err(|e| err(&tmp, e))?;
    file.sync_all().map_err(|e| err(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| err(path, e))?;
    sync_dir(Some(dir))
}

/// How an earlier release named a stopped-server record it could not read.
const LEGACY_CORRUPT: &str = ".json.corrupt";

/// What a process waiting for a server is told.
pub fn busy(server: u64, holder: &str) -> String {
    format!("server {server} is busy: another snaprotd process{holder} is working on it")
}

/// The state directory, held by the daemon for its lifetime.
pub struct DirLock {
    _file: fs::File,
}

/// One server, held by one job for its whole run.
pub struct ServerLock {
    _file: fs::File,
}

/// Opens `path` and takes an exclusive lock on it (`flock`, released when the file is
/// closed, also by a crash), writing this process's pid into it. `None` when another
/// open file holds it.
fn try_lock(path: &Path) -> Result<Option<fs::File>, StateError> {
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| err(path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return Ok(None),
        Err(fs::TryLockError::Error(e)) => return Err(err(path, e)),
    }
    // Who holds it, for the message of whoever waits; a full disk only loses that.
    let _ = file
        .set_len(0)
        .and_then(|()| file.write_all(std::process::id().to_string().as_bytes()));
    Ok(Some(file))
}

/// " (pid N)" from a lock file, or "" when it does not say.
fn holder(path: &Path) -> String {
    fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .map_or(String::new(), |pid| format!(" (pid {pid})"))
}

fn err(path: &Path, e: impl std::fmt::Display) -> StateError {
    StateError {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn sync_dir(dir: Option<&Path>) -> Result<(), StateError> {
    if let Some(dir) = dir {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| err(dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(server: u64) -> StoppedRecord {
        StoppedRecord {
            server,
            policy: "p".into(),
            job: format!("p@{server}"),
            snapshot_name: "p-1".into(),
            snapshot_id: None,
            scheduled_for: Utc::now(),
            stopped_at: Utc::now(),
        }
    }

    #[test]
    fn a_corrupt_record_still_names_its_server_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        state.record_stopped(&record(7)).unwrap();
        assert_eq!(
            state.stopped_servers(),
            vec![StoppedEntry::Record(record(7)).clone()]
                .into_iter()
                .map(|e| match e {
                    StoppedEntry::Record(mut r) => {
                        let on_disk = state.stopped_server(7).unwrap();
                        if let StoppedEntry::Record(d) = on_disk {
                            r.scheduled_for = d.scheduled_for;
                            r.stopped_at = d.stopped_at;
                        }
                        StoppedEntry::Record(r)
                    }
                    other => other,
                })
                .collect::<Vec<_>>()
        );
        state.clear_stopped(7).unwrap();
        assert!(state.stopped_servers().is_empty());

        for (server, bytes) in [(9, &b"{not json"[..]), (10, b""), (11, b"[1,2]")] {
            fs::write(dir.path().join(format!("stopped/{server}.json")), bytes).unwrap();
        }
        fs::write(
            dir.path().join("stopped/12.json"),
            serde_json::to_vec(&record(13)).unwrap(),
        )
        .unwrap();
        let servers: Vec<u64> = state
            .stopped_servers()
            .iter()
            .map(|e| {
                assert!(matches!(e, StoppedEntry::Corrupt { .. }), "{e:?}");
                e.server()
            })
            .collect();
        assert_eq!(servers, vec![9, 10, 11, 12]);
        // Still in place (the server is still stopped), and one copy kept.
        assert!(dir.path().join("stopped/9.json").exists());
        state.stopped_servers();
        let copies = fs::read_dir(dir.path().join("stopped"))
            .unwrap()
            .filter(|e| {
                let e = e.as_ref().unwrap();
                e.file_name()
                    .to_str()
                    .unwrap()
                    .starts_with("9.json.corrupt-")
            })
            .count();
        assert_eq!(copies, 1);
        state.clear_stopped(9).unwrap();
        assert!(state.stopped_server(9).is_none());

        // An earlier release moved unreadable records aside and forgot them.
        fs::write(dir.path().join("stopped/20.json.corrupt"), b"{").unwrap();
        assert!(matches!(
            state.stopped_server(20),
            Some(StoppedEntry::Corrupt { server: 20, .. })
        ));
        state.clear_stopped(20).unwrap();
        assert!(state.stopped_server(20).is_none(), "acted on once only");
    }

    #[test]
    fn a_record_of_the_first_release_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("stopped")).unwrap();
        fs::write(
            dir.path().join("stopped/1.json"),
            r#"{"server": 1, "policy": "cold", "job": "cold@1", "snapshot_name": "cold-20261124-101500",
                "snapshot_id": null, "scheduled_for": "2026-11-24T10:15:00Z",
                "stopped_at": "2026-11-24T10:15:00.400Z"}"#,
        )
        .unwrap();
        let state = StateDir::new(dir.path());
        let Some(StoppedEntry::Record(r)) = state.stopped_server(1) else {
            panic!("not read");
        };
        assert_eq!(r.snapshot_name, "cold-20261124-101500");
        assert_eq!(r.snapshot_id, None);
    }

    #[test]
    fn one_daemon_per_state_directory_and_one_job_per_server() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let held = state.lock().unwrap();
        let second = state.lock().err().expect("a second lock is refused");
        assert!(
            second
                .to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{second}"
        );
        drop(held);
        state.lock().expect("free again");

        let job = state.try_lock_server(3).unwrap().expect("free");
        assert!(state.try_lock_server(3).unwrap().is_none());
        assert!(state.try_lock_server(4).unwrap().is_some());
        drop(job);
        assert!(state.try_lock_server(3).unwrap().is_some());
    }
}
