//! The "freeze under way" records: `hooks/<server>.json`, written before a
//! `pre_snapshot` hook starts and removed once its `post_snapshot` has ended. One left
//! behind means snaprotd ended (a crash, SIGKILL, a power loss) between the two: the
//! next job on the server runs the thaw first. A record that cannot be read is set
//! aside as `<server>.json.corrupt-<time>`.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StateError;
use super::files::{encode, existing_subdir, present_subdir, read_state_file, remove, write};
use crate::job::JobId;

/// A `pre_snapshot` hook started, and its `post_snapshot` has not yet ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HookRecord {
    /// The job whose hooks these are (`job`, `policy` and `server` in the file).
    #[serde(flatten)]
    pub job: JobId,
    pub snapshot_name: String,
    pub started_at: DateTime<Utc>,
}

/// A freeze record as found on disk.
#[derive(Debug, Clone, PartialEq)]
pub enum HookEntry {
    Record(HookRecord),
    /// It could not be read (`problem`), and was moved to `set_aside` (`None`: it
    /// could not be moved either, and was removed if it could be).
    Corrupt {
        server: u64,
        problem: String,
        set_aside: Option<PathBuf>,
    },
}

impl HookEntry {
    pub fn server(&self) -> u64 {
        match self {
            HookEntry::Record(r) => r.job.server,
            HookEntry::Corrupt { server, .. } => *server,
        }
    }
}

pub(super) fn record(root: &Path, record: &HookRecord) -> Result<(), StateError> {
    let name = format!("{}.json", record.job.server);
    let bytes = encode(&root.join("hooks").join(&name), record)?;
    write(root, "hooks", &name, &bytes)
}

/// The post hook has ended: the record goes.
pub(super) fn clear(root: &Path, server: u64) -> Result<(), StateError> {
    let Some(dir) = present_subdir(root, "hooks")? else {
        return Ok(());
    };
    remove(&dir.join(format!("{server}.json")))
}

/// The servers with a record, in order.
pub(super) fn servers(root: &Path) -> Vec<u64> {
    let Some(dir) = existing_subdir(root, "hooks") else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut servers: Vec<u64> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(".json")?.parse().ok())
        .collect();
    servers.sort_unstable();
    servers
}

/// The record of `server` in the state directory, read and nothing more: `None` when
/// there is none, `Err` with why when it cannot be read.
fn look(root: &Path, server: u64) -> Option<Result<HookRecord, String>> {
    let dir = existing_subdir(root, "hooks")?;
    let path = dir.join(format!("{server}.json"));
    Some(Err(match read_state_file(&path) {
        Ok(bytes) => match serde_json::from_slice::<HookRecord>(&bytes) {
            Ok(r) if r.job.server == server => return Some(Ok(r)),
            Ok(r) => format!(
                "it names server {} in the file of server {server}",
                r.job.server
            ),
            Err(e) => e.to_string(),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => e.to_string(),
    }))
}

/// Every record, read and nothing more (`status`): one that cannot be read is
/// reported as it is, not moved.
pub(super) fn peek(root: &Path) -> Vec<HookEntry> {
    servers(root)
        .into_iter()
        .filter_map(|server| {
            Some(match look(root, server)? {
                Ok(r) => HookEntry::Record(r),
                Err(problem) => HookEntry::Corrupt {
                    server,
                    problem,
                    set_aside: None,
                },
            })
        })
        .collect()
}

/// The record of `server`, if there is one. One that cannot be read (bad JSON, another
/// server's, a link, not a plain file) is moved aside, so that it is reported once.
pub(super) fn one(root: &Path, server: u64) -> Option<HookEntry> {
    let problem = match look(root, server)? {
        Ok(r) => return Some(HookEntry::Record(r)),
        Err(problem) => problem,
    };
    let path = root.join("hooks").join(format!("{server}.json"));
    let aside = path.with_extension(format!("json.corrupt-{}", Utc::now().timestamp()));
    let set_aside = match fs::rename(&path, &aside) {
        Ok(()) => Some(aside),
        Err(_) => {
            // Acted on once whatever happens: a record that stays would be reported
            // by every run.
            let _ = remove(&path);
            None
        }
    };
    Some(HookEntry::Corrupt {
        server,
        problem,
        set_aside,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn freeze(server: u64) -> HookRecord {
        HookRecord {
            job: JobId::new("db", server),
            snapshot_name: "db-20261124-1015".into(),
            started_at: "2026-11-24T10:15:00.400Z".parse().unwrap(),
        }
    }

    #[test]
    fn a_record_is_read_until_cleared_and_a_corrupt_one_set_aside_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(one(root, 1), None);
        record(root, &freeze(1)).unwrap();
        record(root, &freeze(2)).unwrap();
        assert_eq!(servers(root), vec![1, 2]);
        assert_eq!(one(root, 1), Some(HookEntry::Record(freeze(1))));
        clear(root, 1).unwrap();
        assert_eq!(one(root, 1), None);
        assert_eq!(servers(root), vec![2]);

        fs::write(root.join("hooks/3.json"), b"{\"job\"").unwrap();
        fs::write(
            root.join("hooks/4.json"),
            serde_json::to_vec(&freeze(5)).unwrap(),
        )
        .unwrap();
        for server in [3, 4] {
            let Some(HookEntry::Corrupt {
                set_aside: Some(aside),
                problem,
                ..
            }) = one(root, server)
            else {
                panic!("server {server}: not corrupt");
            };
            assert!(aside.exists(), "{problem}");
            assert!(
                aside
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&format!("{server}.json.corrupt-")),
                "{aside:?}"
            );
            assert_eq!(one(root, server), None, "reported once");
        }
        assert_eq!(servers(root), vec![2]);
    }

    #[test]
    fn a_link_is_not_read_as_a_record() {
        let (_dir, root, victim) = crate::state::tests::state_and_victim();
        fs::create_dir(root.join("hooks")).unwrap();
        std::os::unix::fs::symlink(&victim, root.join("hooks/1.json")).unwrap();
        let Some(HookEntry::Corrupt { problem, .. }) = one(&root, 1) else {
            panic!("a link read as a record");
        };
        assert!(problem.contains("symbolic link"), "{problem}");
        assert_eq!(fs::read(&victim).unwrap(), crate::state::tests::VICTIM);
    }
}
