//! Snapshots taken while their server ran again: `tainted/<server>-<id>.json` (or
//! `<server>-<name>.json` before the create answered). Such a snapshot is never adopted
//! or kept, and pruning deletes it once it is no longer in progress.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StateError;
use super::files::{encode, existing_subdir, present_subdir, read, remove, write};

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

impl TaintedSnapshot {
    /// The names its record may have: by id, and by name (before the id was known).
    fn keys(&self) -> Vec<String> {
        let by_name = format!("{}-{}", self.server, self.snapshot_name);
        match self.snapshot_id {
            Some(id) => vec![format!("{}-{id}", self.server), by_name],
            None => vec![by_name],
        }
    }
}

/// Notes that `snapshot` was still in progress when its server ran again.
pub(super) fn record(root: &Path, snapshot: &TaintedSnapshot) -> Result<(), StateError> {
    let name = format!("{}.json", snapshot.keys()[0]);
    let bytes = encode(&root.join("tainted").join(&name), snapshot)?;
    write(root, "tainted", &name, &bytes)
}

/// The tainted snapshots of `server`.
pub(super) fn of(root: &Path, server: u64) -> Vec<TaintedSnapshot> {
    let prefix = format!("{server}-");
    let Some(dir) = existing_subdir(root, "tainted") else {
        return Vec::new();
    };
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
        .filter_map(|p| read::<TaintedSnapshot>(p))
        .filter(|t| t.server == server)
        .collect()
}

/// Forgets a tainted snapshot (it is gone).
pub(super) fn clear(root: &Path, snapshot: &TaintedSnapshot) -> Result<(), StateError> {
    let Some(dir) = present_subdir(root, "tainted")? else {
        return Ok(());
    };
    for key in snapshot.keys() {
        remove(&dir.join(format!("{key}.json")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tainted(server: u64, name: &str, id: Option<u64>) -> TaintedSnapshot {
        TaintedSnapshot {
            server,
            snapshot_name: name.into(),
            snapshot_id: id,
            since: "2026-11-24T10:15:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn tainted_snapshots_are_kept_per_server_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (a, b, c) = (
            tainted(1, "p-1", Some(10)),
            tainted(1, "p-2", None),
            tainted(12, "p-1", Some(11)),
        );
        for t in [&a, &b, &c] {
            record(root, t).unwrap();
        }
        assert_eq!(of(root, 1), vec![a.clone(), b.clone()]);
        assert_eq!(of(root, 12), vec![c]);
        // Noted by name, cleared once its id is known.
        clear(root, &tainted(1, "p-2", Some(20))).unwrap();
        clear(root, &a).unwrap();
        assert!(of(root, 1).is_empty());
    }
}
