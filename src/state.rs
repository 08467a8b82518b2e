//! What survives a restart: the last run of every job and the "servers I stopped"
//! records. One small JSON file per record under `state_dir`, each written atomically
//! (temp file, fsync, rename, fsync of the directory), so a crash leaves either the old
//! or the new record, and concurrent jobs never rewrite each other's files.

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

    pub fn record_stopped(&self, record: &StoppedRecord) -> Result<(), StateError> {
        self.write(&self.stopped_path(record.server), record)
    }

    pub fn clear_stopped(&self, server: u64) -> Result<(), StateError> {
        let path = self.stopped_path(server);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err(&path, e)),
        }
    }

    /// Every stopped-server record; unreadable ones are reported and set aside.
    pub fn stopped_servers(&self) -> Vec<StoppedRecord> {
        self.read_all(&self.root.join("stopped"))
    }

    pub fn record_run(&self, run: &LastRun) -> Result<(), StateError> {
        self.write(&self.run_path(&run.job), run)
    }

    pub fn last_run(&self, job: &str) -> Option<LastRun> {
        self.read(&self.run_path(job))
    }

    pub fn stopped_server(&self, server: u64) -> Option<StoppedRecord> {
        self.read(&self.stopped_path(server))
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

    fn read_all<T: DeserializeOwned>(&self, dir: &Path) -> Vec<T> {
        let Ok(entries) = fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        paths.iter().filter_map(|p| self.read(p)).collect()
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

    #[test]
    fn records_survive_and_corrupt_files_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let rec = StoppedRecord {
            server: 7,
            policy: "p".into(),
            job: "p@7".into(),
            snapshot_name: "p-1".into(),
            snapshot_id: None,
            scheduled_for: Utc::now(),
            stopped_at: Utc::now(),
        };
        state.record_stopped(&rec).unwrap();
        assert_eq!(state.stopped_servers(), vec![rec]);
        state.clear_stopped(7).unwrap();
        assert!(state.stopped_servers().is_empty());

        fs::create_dir_all(dir.path().join("stopped")).unwrap();
        fs::write(dir.path().join("stopped/9.json"), b"{not json").unwrap();
        assert!(state.stopped_servers().is_empty());
        assert!(dir.path().join("stopped/9.json.corrupt").exists());
    }
}
