//! The "servers I stopped" records: `stopped/<server>.json`, written before the stop
//! call and removed once the server runs again. A record that cannot be read still
//! names its server (the file's name), and that server is started again.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StateError;
use super::files::{
    encode, existing_subdir, present_subdir, read_state_file, remove, write, write_atomic,
};
use crate::job::JobId;

/// A server that snaprotd stopped and has not yet started again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoppedRecord {
    /// The job that stopped it (`job`, `policy` and `server` in the file).
    #[serde(flatten)]
    pub job: JobId,
    pub snapshot_name: String,
    pub snapshot_id: Option<u64>,
    /// The fire the job answered: resuming it renders the same name and adopts the
    /// snapshot instead of making another.
    pub scheduled_for: DateTime<Utc>,
    pub stopped_at: DateTime<Utc>,
}

impl StoppedRecord {
    pub fn server(&self) -> u64 {
        self.job.server
    }
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
            StoppedEntry::Record(r) => r.server(),
            StoppedEntry::Corrupt { server, .. } => *server,
        }
    }
}

/// How an earlier release named a stopped-server record it could not read.
const LEGACY_CORRUPT: &str = ".json.corrupt";

pub(super) fn record(root: &Path, record: &StoppedRecord) -> Result<(), StateError> {
    let name = format!("{}.json", record.server());
    let bytes = encode(&root.join("stopped").join(&name), record)?;
    write(root, "stopped", &name, &bytes)
}

/// The server runs again: its record goes (and an earlier release's set-aside copy is
/// renamed, so it is not acted on twice).
pub(super) fn clear(root: &Path, server: u64) -> Result<(), StateError> {
    let Some(dir) = present_subdir(root, "stopped")? else {
        return Ok(());
    };
    let legacy = dir.join(format!("{server}{LEGACY_CORRUPT}"));
    if fs::symlink_metadata(&legacy).is_ok() {
        let done = legacy.with_extension(format!("corrupt-{}", Utc::now().timestamp()));
        fs::rename(&legacy, &done).map_err(StateError::io(&legacy))?;
    }
    remove(&dir.join(format!("{server}.json")))
}

/// Every stopped-server record, readable or not, by server: `stopped/<server>.json`,
/// and `stopped/<server>.json.corrupt` alone (an unreadable record that an earlier
/// release set aside and forgot: its server is started again too).
pub(super) fn all(root: &Path) -> Vec<StoppedEntry> {
    let (servers, odd) = servers(root);
    for path in odd {
        tracing::error!(
            "state file {} does not name a server; ignored",
            path.display()
        );
    }
    servers.into_iter().filter_map(|s| one(root, s)).collect()
}

/// The servers that `stopped/` holds a record of, in order; and the files there that
/// name no server.
fn servers(root: &Path) -> (Vec<u64>, Vec<PathBuf>) {
    let Some(dir) = existing_subdir(root, "stopped") else {
        return Default::default();
    };
    let Ok(entries) = fs::read_dir(&dir) else {
        return Default::default();
    };
    let mut odd = Vec::new();
    let mut servers: Vec<u64> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name
                .strip_suffix(".json")
                .or_else(|| name.strip_suffix(LEGACY_CORRUPT))?;
            stem.parse::<u64>()
                .inspect_err(|_| odd.push(dir.join(&name)))
                .ok()
        })
        .collect();
    servers.sort_unstable();
    servers.dedup();
    (servers, odd)
}

/// Every stopped-server record as [`all`] finds them, only looked at: nothing is
/// copied or logged (for `status` and the metrics, which read them often).
pub(super) fn peek(root: &Path) -> Vec<StoppedEntry> {
    let Some(dir) = existing_subdir(root, "stopped") else {
        return Vec::new();
    };
    servers(root)
        .0
        .into_iter()
        .filter_map(|server| match look(&dir, server)? {
            Ok(r) => Some(StoppedEntry::Record(r)),
            Err(Unreadable::Legacy) => Some(StoppedEntry::Corrupt {
                server,
                problem: LEGACY_PROBLEM.into(),
            }),
            Err(Unreadable::Record(problem)) => Some(StoppedEntry::Corrupt { server, problem }),
        })
        .collect()
}

/// Why a record is not one.
enum Unreadable {
    /// Only an earlier release's set-aside copy is there.
    Legacy,
    /// The record cannot be read, for this reason.
    Record(String),
}

const LEGACY_PROBLEM: &str = "set aside by an earlier release";

/// The record of `server` in `dir`, read and nothing more; `None` when there is none.
fn look(dir: &Path, server: u64) -> Option<Result<StoppedRecord, Unreadable>> {
    let path = dir.join(format!("{server}.json"));
    let problem = match read_state_file(&path) {
        Ok(bytes) => match serde_json::from_slice::<StoppedRecord>(&bytes) {
            Ok(r) if r.server() == server => return Some(Ok(r)),
            Ok(r) => format!(
                "it names server {} in the file of server {server}",
                r.server()
            ),
            Err(e) => e.to_string(),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let legacy = dir.join(format!("{server}{LEGACY_CORRUPT}"));
            return fs::symlink_metadata(&legacy)
                .is_ok()
                .then_some(Err(Unreadable::Legacy));
        }
        Err(e) => e.to_string(),
    };
    Some(Err(Unreadable::Record(problem)))
}

/// The record for `server`, if there is one: its own file, read alone. A corrupt one
/// is kept where it is (it still says the server is stopped) and copied to
/// `<server>.json.corrupt-<time>` for whoever looks into it. A link is not a record: it
/// is corrupt, whatever it points to.
pub(super) fn one(root: &Path, server: u64) -> Option<StoppedEntry> {
    let dir = existing_subdir(root, "stopped")?;
    let path = dir.join(format!("{server}.json"));
    let problem = match look(&dir, server)? {
        Ok(r) => return Some(StoppedEntry::Record(r)),
        Err(Unreadable::Legacy) => {
            tracing::error!(
                server_id = server,
                "{} is a stopped-server record an earlier release could not read and set aside; \
                 server {server} is started again after any snapshot of ours in progress",
                dir.join(format!("{server}{LEGACY_CORRUPT}")).display()
            );
            return Some(StoppedEntry::Corrupt {
                server,
                problem: LEGACY_PROBLEM.into(),
            });
        }
        Err(Unreadable::Record(problem)) => problem,
    };
    let copy = keep_copy(&path);
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
fn keep_copy(path: &Path) -> Option<PathBuf> {
    let bytes = read_state_file(path).ok()?;
    let dir = path.parent()?;
    let prefix = format!("{}.corrupt-", path.file_name()?.to_str()?);
    let same = fs::read_dir(dir).ok()?.filter_map(|e| e.ok()).find(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix))
            && read_state_file(&e.path()).is_ok_and(|b| b == bytes)
    });
    if let Some(e) = same {
        return Some(e.path());
    }
    let copy = dir.join(format!("{prefix}{}", Utc::now().timestamp()));
    write_atomic(&copy, &bytes).ok().map(|()| copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped(server: u64) -> StoppedRecord {
        StoppedRecord {
            job: JobId::new("p", server),
            snapshot_name: "p-1".into(),
            snapshot_id: None,
            scheduled_for: "2026-11-24T10:15:00Z".parse().unwrap(),
            stopped_at: "2026-11-24T10:15:00.400Z".parse().unwrap(),
        }
    }

    fn copies(dir: &Path, prefix: &str) -> usize {
        fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_str()
                    .unwrap()
                    .starts_with(prefix)
            })
            .count()
    }

    #[test]
    fn a_corrupt_record_still_names_its_server_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        record(root, &stopped(7)).unwrap();
        assert_eq!(all(root), vec![StoppedEntry::Record(stopped(7))]);
        clear(root, 7).unwrap();
        assert!(all(root).is_empty());

        for (server, bytes) in [(9, &b"{not json"[..]), (10, b""), (11, b"[1,2]")] {
            fs::write(root.join(format!("stopped/{server}.json")), bytes).unwrap();
        }
        fs::write(
            root.join("stopped/12.json"),
            serde_json::to_vec(&stopped(13)).unwrap(),
        )
        .unwrap();
        let servers: Vec<u64> = all(root)
            .iter()
            .map(|e| {
                assert!(matches!(e, StoppedEntry::Corrupt { .. }), "{e:?}");
                e.server()
            })
            .collect();
        assert_eq!(servers, vec![9, 10, 11, 12]);
        // Still in place (the server is still stopped), and one copy kept.
        assert!(root.join("stopped/9.json").exists());
        all(root);
        assert_eq!(copies(&root.join("stopped"), "9.json.corrupt-"), 1);
        clear(root, 9).unwrap();
        assert!(one(root, 9).is_none());

        // An earlier release moved unreadable records aside and forgot them.
        fs::write(root.join("stopped/20.json.corrupt"), b"{").unwrap();
        assert!(matches!(
            one(root, 20),
            Some(StoppedEntry::Corrupt { server: 20, .. })
        ));
        clear(root, 20).unwrap();
        assert!(one(root, 20).is_none(), "acted on once only");
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
        let Some(StoppedEntry::Record(r)) = one(dir.path(), 1) else {
            panic!("not read");
        };
        assert_eq!(r.job, JobId::new("cold", 1));
        assert_eq!(r.snapshot_name, "cold-20261124-101500");
        assert_eq!(r.snapshot_id, None);
        // Written back in the same shape.
        record(dir.path(), &r).unwrap();
        let text = fs::read_to_string(dir.path().join("stopped/1.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (&v["job"], &v["policy"], &v["server"]),
            (&"cold@1".into(), &"cold".into(), &1.into())
        );
    }

    #[test]
    fn a_job_reads_its_own_record_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for server in 1..=50 {
            record(root, &stopped(server)).unwrap();
        }
        // Unreadable records of other servers: reading one would keep a copy of it.
        for server in 51..=60 {
            fs::write(root.join(format!("stopped/{server}.json")), b"{").unwrap();
        }
        assert_eq!(one(root, 7), Some(StoppedEntry::Record(stopped(7))));
        assert_eq!(one(root, 61), None);
        assert_eq!(
            copies(&root.join("stopped"), ""),
            60,
            "another record was read"
        );
    }

    #[test]
    fn a_link_fifo_or_huge_file_is_not_read_as_a_record() {
        let (_dir, root, _) = crate::state::tests::state_and_victim();
        let dir = root.join("stopped");
        fs::create_dir(&dir).unwrap();
        let good = root.join("../good.json");
        fs::write(&good, serde_json::to_vec(&stopped(1)).unwrap()).unwrap();
        std::os::unix::fs::symlink(&good, dir.join("1.json")).unwrap();
        nix::unistd::mkfifo(
            &dir.join("2.json"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        fs::write(dir.join("3.json"), vec![b' '; 2 << 20]).unwrap();
        let problems: Vec<(u64, String)> = all(&root)
            .into_iter()
            .map(|e| match e {
                StoppedEntry::Corrupt { server, problem } => (server, problem),
                StoppedEntry::Record(r) => panic!("read as a record: {r:?}"),
            })
            .collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].1.contains("symbolic link"), "{problems:?}");
        assert!(problems[1].1.contains("not a plain file"), "{problems:?}");
        assert!(problems[2].1.contains("larger than"), "{problems:?}");
        // Settled: the link goes, not what it points to.
        clear(&root, 1).unwrap();
        assert!(fs::symlink_metadata(dir.join("1.json")).is_err());
        assert!(good.exists());
    }
}
