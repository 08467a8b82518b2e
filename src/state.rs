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
//!
//! Nobody else writes there: `StateDir::check` refuses, at start, a state directory (or
//! a subdirectory) that another user owns or that group/others may write, and a
//! subdirectory that is a link. Inside it no link is followed: records and locks are
//! opened with `O_NOFOLLOW`, temp files are created exclusively under random names, and
//! a link where a record should be is an unreadable record, never the file it points to.
//! `state_dir` itself may be a link (systemd's `DynamicUser=`): its target is checked.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;

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

    /// Makes sure only this process's user can write in the state directory (creating
    /// it when missing): whoever else could would plant links there that snaprotd
    /// writes through, or forge the record of a stopped server. Called at start by the
    /// daemon and by `once`.
    /// Run as root on a state directory another user owns (the service's, under
    /// `DynamicUser=`): the process becomes that user, as the service is, so that its
    /// locks and records stay the service's and nothing the owner plants there is
    /// acted on with root's rights. Returns the uid taken on.
    pub fn become_owner_if_root(&self) -> Result<Option<u32>, StateError> {
        use nix::unistd::{Gid, Uid, geteuid, setgid, setgroups, setuid};
        if !geteuid().is_root() {
            return Ok(None);
        }
        let Ok(meta) = fs::metadata(&self.root) else {
            return Ok(None);
        };
        if !meta.is_dir() || meta.uid() == 0 || meta.mode() & 0o022 != 0 {
            // Root's own directory, or one `check` refuses anyway.
            return Ok(None);
        }
        let (uid, gid) = (meta.uid(), meta.gid());
        setgroups(&[])
            .and_then(|()| setgid(Gid::from_raw(gid)))
            .and_then(|()| setuid(Uid::from_raw(uid)))
            .map_err(|e| {
                err(
                    &self.root,
                    format!("is owned by uid {uid}, and snaprotd cannot become that user: {e}"),
                )
            })?;
        tracing::info!(
            "running as root: working as uid {uid}, the owner of the state directory {}, as the service does",
            self.root.display()
        );
        Ok(Some(uid))
    }

    pub fn check(&self) -> Result<(), StateError> {
        // A link (systemd's DynamicUser=) is fine; what it points to is checked, and
        // named in what the operator is told to fix.
        let target = match fs::symlink_metadata(&self.root) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                make_dir(&self.root)?;
                None
            }
            Ok(m) if m.file_type().is_symlink() => match fs::canonicalize(&self.root) {
                Ok(target) => Some(target),
                Err(e) => {
                    let to = fs::read_link(&self.root).unwrap_or_default();
                    return Err(err(
                        &self.root,
                        format!(
                            "is a link to {}, which cannot be used ({e}): create that directory \
                             (`mkdir -m 700`) or mend the link",
                            to.display()
                        ),
                    ));
                }
            },
            _ => None,
        };
        let meta = fs::metadata(&self.root).map_err(|e| err(&self.root, e))?;
        if let Some(problem) = not_ours(target.as_deref().unwrap_or(&self.root), &meta) {
            let problem = match &target {
                Some(t) => format!("is a link to {}, which {problem}", t.display()),
                None => problem,
            };
            return Err(err(&self.root, problem));
        }
        for name in SUBDIRS {
            let dir = self.root.join(name);
            match fs::symlink_metadata(&dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(err(&dir, e)),
                Ok(meta) => {
                    real_dir(&dir, &meta)?;
                    if let Some(problem) = not_ours(&dir, &meta) {
                        return Err(err(&dir, problem));
                    }
                }
            }
        }
        Ok(())
    }

    /// `state_dir/name`, created when missing, refused when it is not a directory of
    /// its own (a link).
    fn subdir(&self, name: &str) -> Result<PathBuf, StateError> {
        let dir = self.root.join(name);
        let meta = match fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                make_dir(&dir)?;
                fs::symlink_metadata(&dir).map_err(|e| err(&dir, e))?
            }
            other => other.map_err(|e| err(&dir, e))?,
        };
        real_dir(&dir, &meta)?;
        Ok(dir)
    }

    /// `state_dir/name` if it is there; an error when it is not a directory of its own.
    fn present_subdir(&self, name: &str) -> Result<Option<PathBuf>, StateError> {
        let dir = self.root.join(name);
        match fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(&dir, e)),
            Ok(meta) => real_dir(&dir, &meta).map(|()| Some(dir)),
        }
    }

    /// `state_dir/name` to read records from, if it is there and a directory of its own.
    fn existing_subdir(&self, name: &str) -> Option<PathBuf> {
        self.present_subdir(name).unwrap_or_else(|e| {
            tracing::error!("{e}; its records are not read");
            None
        })
    }

    /// Takes the state directory for this process (the daemon), or says which process
    /// has it.
    pub fn lock(&self) -> Result<DirLock, StateError> {
        if fs::metadata(&self.root).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
            make_dir(&self.root)?;
        }
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
        let path = self.subdir("locks")?.join(format!("{server}.lock"));
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
        self.write("stopped", &format!("{}.json", record.server), record)
    }

    /// The server runs again: its record goes (and an earlier release's set-aside copy
    /// is renamed, so it is not acted on twice).
    pub fn clear_stopped(&self, server: u64) -> Result<(), StateError> {
        let Some(dir) = self.present_subdir("stopped")? else {
            return Ok(());
        };
        let legacy = dir.join(format!("{server}{LEGACY_CORRUPT}"));
        if fs::symlink_metadata(&legacy).is_ok() {
            let done = legacy.with_extension(format!("corrupt-{}", Utc::now().timestamp()));
            fs::rename(&legacy, &done).map_err(|e| err(&legacy, e))?;
        }
        let path = dir.join(format!("{server}.json"));
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
        let Some(dir) = self.existing_subdir("stopped") else {
            return Vec::new();
        };
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
    /// for whoever looks into it. A link is not a record: it is corrupt, whatever it
    /// points to.
    pub fn stopped_server(&self, server: u64) -> Option<StoppedEntry> {
        let dir = self.existing_subdir("stopped")?;
        let path = dir.join(format!("{server}.json"));
        let problem = match read_state_file(&path) {
            Ok(bytes) => match serde_json::from_slice::<StoppedRecord>(&bytes) {
                Ok(r) if r.server == server => return Some(StoppedEntry::Record(r)),
                Ok(r) => format!(
                    "it names server {} in the file of server {server}",
                    r.server
                ),
                Err(e) => e.to_string(),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let legacy = dir.join(format!("{server}{LEGACY_CORRUPT}"));
                if fs::symlink_metadata(&legacy).is_err() {
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

    /// Notes that `snapshot` was still in progress when its server ran again.
    pub fn record_tainted(&self, snapshot: &TaintedSnapshot) -> Result<(), StateError> {
        let key = match snapshot.snapshot_id {
            Some(id) => format!("{}-{id}", snapshot.server),
            None => format!("{}-{}", snapshot.server, snapshot.snapshot_name),
        };
        self.write("tainted", &format!("{key}.json"), snapshot)
    }

    /// The tainted snapshots of `server`.
    pub fn tainted(&self, server: u64) -> Vec<TaintedSnapshot> {
        let prefix = format!("{server}-");
        let Some(dir) = self.existing_subdir("tainted") else {
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
            .filter_map(|p| self.read::<TaintedSnapshot>(p))
            .filter(|t| t.server == server)
            .collect()
    }

    /// Forgets a tainted snapshot (it is gone).
    pub fn clear_tainted(&self, snapshot: &TaintedSnapshot) -> Result<(), StateError> {
        let Some(dir) = self.present_subdir("tainted")? else {
            return Ok(());
        };
        for key in [
            snapshot
                .snapshot_id
                .map(|id| format!("{}-{id}", snapshot.server)),
            Some(format!("{}-{}", snapshot.server, snapshot.snapshot_name)),
        ]
        .into_iter()
        .flatten()
        {
            let path = dir.join(format!("{key}.json"));
            match fs::remove_file(&path) {
                Ok(()) => sync_dir(path.parent())?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(err(&path, e)),
            }
        }
        Ok(())
    }

    pub fn record_run(&self, run: &LastRun) -> Result<(), StateError> {
        self.write("runs", &format!("{}.json", run.job), run)
    }

    pub fn last_run(&self, job: &str) -> Option<LastRun> {
        self.read(&self.existing_subdir("runs")?.join(format!("{job}.json")))
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
        self.write("", "known-jobs.json", jobs)
    }

    /// Writes `value` as `state_dir/dir/name` (`dir` "" for the state directory).
    fn write<T: Serialize>(&self, dir: &str, name: &str, value: &T) -> Result<(), StateError> {
        let dir = if dir.is_empty() {
            self.root.clone()
        } else {
            self.subdir(dir)?
        };
        let path = dir.join(name);
        let text = serde_json::to_vec_pretty(value).map_err(|e| err(&path, e))?;
        write_atomic(&path, &text)
    }

    /// A record, or `None` when there is none or it cannot be read; one that is not a
    /// record (bad JSON, a link, not a plain file) is moved aside.
    fn read<T: DeserializeOwned>(&self, path: &Path) -> Option<T> {
        let parsed = match read_state_file(path) {
            Ok(text) => serde_json::from_slice(&text).map_err(|e| e.to_string()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(e.to_string()),
            Err(e) => {
                tracing::error!("cannot read state file {}: {e}", path.display());
                return None;
            }
        };
        match parsed {
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
/// new one, never a mix: temp file, fsync, rename, fsync of the directory. The temp
/// file gets a random name and is created exclusively (`O_EXCL`: a link planted at any
/// name is never written through); the rename replaces a link at `path`, it does not
/// follow it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    // Hidden and ending in `.tmp`: never taken for a record by a listing.
    let prefix = format!(
        ".{}.",
        path.file_name().unwrap_or_default().to_string_lossy()
    );
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(|e| err(dir, e))?;
    tmp.write_all(bytes).map_err(|e| err(tmp.path(), e))?;
    tmp.as_file().sync_all().map_err(|e| err(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| err(path, e.error))?;
    sync_dir(Some(dir))
}

/// The state directory's subdirectories.
const SUBDIRS: [&str; 4] = ["stopped", "runs", "locks", "tainted"];

/// More than any record snaprotd writes (they are a few hundred bytes).
const MAX_STATE_FILE: u64 = 1 << 20;

/// Reads a state file without following a link and without blocking on a FIFO. A link,
/// anything but a plain file, or a file larger than any record is `InvalidData`: not a
/// record snaprotd wrote.
fn read_state_file(path: &Path) -> io::Result<Vec<u8>> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(path)
        .map_err(not_followed)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "it is not a plain file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_STATE_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_STATE_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it is larger than {MAX_STATE_FILE} bytes, more than any record snaprotd writes"
            ),
        ));
    }
    Ok(bytes)
}

/// The error of an `O_NOFOLLOW` open that met a link, in the operator's words.
fn not_followed(e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(Errno::ELOOP as i32) {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "it is a symbolic link, and snaprotd follows no links inside its state directory",
        )
    } else {
        e
    }
}

/// Creates `dir` (and its parents) never writable by group or others, whatever the
/// umask, so that `check` accepts it on the next start.
fn make_dir(dir: &Path) -> Result<(), StateError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| err(dir, e))
}

/// Refuses what `symlink_metadata` says is a link or not a directory.
fn real_dir(dir: &Path, meta: &fs::Metadata) -> Result<(), StateError> {
    if meta.file_type().is_symlink() {
        let to = fs::read_link(dir).map_or(String::new(), |t| format!(" to {}", t.display()));
        return Err(err(
            dir,
            format!(
                "is a symbolic link{to}; snaprotd follows no links inside its state directory: \
                 replace it with a directory holding the same files"
            ),
        ));
    }
    if !meta.is_dir() {
        return Err(err(dir, "is not a directory"));
    }
    Ok(())
}

/// Why a directory someone other than this process's user may write in is refused, and
/// what to do; `None` when only this user can.
fn not_ours(dir: &Path, meta: &fs::Metadata) -> Option<String> {
    let me = nix::unistd::geteuid().as_raw();
    let (owner, mode) = (meta.uid(), meta.mode() & 0o7777);
    let shown = dir.display();
    if !meta.is_dir() {
        return Some("is not a directory".into());
    }
    if owner != me {
        return Some(format!(
            "is owned by uid {owner} (mode {mode:04o}), not by uid {me} that snaprotd runs as; \
             whoever owns it could plant links there or forge the record of a stopped server: \
             run `chown {me} {shown}` (and `chmod 700 {shown}`), or set [daemon] state_dir to a \
             directory of this user"
        ));
    }
    if mode & 0o022 != 0 {
        return Some(format!(
            "is writable by {} (owner uid {owner}, mode {mode:04o}); whoever else can write there \
             could plant links or forge the record of a stopped server: run `chmod 700 {shown}` \
             (or `chmod go-w {shown}`)",
            match (mode & 0o020 != 0, mode & 0o002 != 0) {
                (true, true) => "group and others",
                (true, false) => "its group",
                _ => "others",
            }
        ));
    }
    None
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

/// Opens `path` (never through a link) and takes an exclusive lock on it (`flock`,
/// released when the file is closed, also by a crash), writing this process's pid into
/// it. `None` when another open file holds it.
fn try_lock(path: &Path) -> Result<Option<fs::File>, StateError> {
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(|e| err(path, not_followed(e)))?;
    let is_file = file.metadata().map_err(|e| err(path, e))?.is_file();
    if !is_file {
        return Err(err(path, "is not a plain file; remove it"));
    }
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
    read_state_file(path)
        .ok()
        .and_then(|t| String::from_utf8_lossy(&t).trim().parse::<u32>().ok())
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
    const VICTIM: &[u8] = b"not snaprotd's\n";

    fn run(job: &str) -> LastRun {
        LastRun {
            job: job.into(),
            policy: "p".into(),
            server: 1,
            scheduled_for: Utc::now(),
            started_at: Utc::now(),
            finished_at: Utc::now(),
            ok: true,
            message: "ok".into(),
            snapshot_name: None,
        }
    }

    /// A state directory (0700, as `check` wants it) and a file outside it.
    fn state_and_victim() -> (tempfile::TempDir, StateDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        fs::DirBuilder::new().mode(0o700).create(&root).unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, VICTIM).unwrap();
        (dir, StateDir::new(&root), victim)
    }

    #[test]
    fn records_are_never_written_through_a_link() {
        let (_dir, state, victim) = state_and_victim();
        let runs = state.root().join("runs");
        fs::create_dir(&runs).unwrap();
        // At the temp name an earlier release used, and at the record itself.
        std::os::unix::fs::symlink(&victim, runs.join("p@1.json.tmp")).unwrap();
        std::os::unix::fs::symlink(&victim, runs.join("p@1.json")).unwrap();
        state.record_run(&run("p@1")).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), VICTIM);
        let record = runs.join("p@1.json");
        assert!(fs::symlink_metadata(&record).unwrap().is_file());
        assert_eq!(state.last_run("p@1").unwrap().job, "p@1");
        // No temp file left behind.
        let names: Vec<String> = fs::read_dir(&runs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with('.')),
            "temp files left: {names:?}"
        );
    }

    #[test]
    fn a_link_fifo_or_huge_file_is_not_read_as_a_record() {
        let (_dir, state, victim) = state_and_victim();
        let stopped = state.root().join("stopped");
        fs::create_dir(&stopped).unwrap();
        let good = state.root().join("../good.json");
        fs::write(&good, serde_json::to_vec(&record(1)).unwrap()).unwrap();
        std::os::unix::fs::symlink(&good, stopped.join("1.json")).unwrap();
        nix::unistd::mkfifo(
            &stopped.join("2.json"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        fs::write(stopped.join("3.json"), vec![b' '; 2 << 20]).unwrap();
        let problems: Vec<(u64, String)> = state
            .stopped_servers()
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
        state.clear_stopped(1).unwrap();
        assert!(fs::symlink_metadata(stopped.join("1.json")).is_err());
        assert!(good.exists());

        // A last run that is a link: not read, moved aside, its target untouched.
        let runs = state.root().join("runs");
        fs::create_dir(&runs).unwrap();
        std::os::unix::fs::symlink(&victim, runs.join("p@1.json")).unwrap();
        assert_eq!(state.last_run("p@1"), None);
        assert!(fs::symlink_metadata(runs.join("p@1.json")).is_err());
        assert_eq!(fs::read(&victim).unwrap(), VICTIM);
    }

    #[test]
    fn a_lock_that_is_a_link_is_refused_not_written_through() {
        let (_dir, state, victim) = state_and_victim();
        fs::create_dir(state.root().join("locks")).unwrap();
        std::os::unix::fs::symlink(&victim, state.root().join("locks/1.lock")).unwrap();
        std::os::unix::fs::symlink(&victim, state.root().join("lock")).unwrap();
        let e = state.try_lock_server(1).err().expect("refused");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = state.lock().err().expect("refused");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(fs::read(&victim).unwrap(), VICTIM);
    }

    #[test]
    fn check_refuses_a_state_dir_others_can_write_in() {
        let (dir, state, _) = state_and_victim();
        state.check().expect("0700 and ours");
        // Missing: created, never writable by others.
        let fresh = StateDir::new(&dir.path().join("new/state"));
        fresh.check().expect("created");
        let mode = fs::metadata(fresh.root()).unwrap().permissions().mode();
        assert_eq!(mode & 0o022, 0, "created with {mode:o}");
        let root = state.root().to_path_buf();
        for mode in [0o770, 0o702, 0o1777] {
            fs::set_permissions(&root, fs::Permissions::from_mode(mode)).unwrap();
            let e = state.check().expect_err("refused").to_string();
            assert!(
                e.contains(&root.display().to_string())
                    && e.contains(&format!("{mode:04o}"))
                    && e.contains("chmod 700"),
                "{e}"
            );
        }
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        state.check().expect("0755 is not writable by others");

        // A subdirectory: writable by others, or a link.
        let runs = root.join("runs");
        fs::DirBuilder::new().mode(0o700).create(&runs).unwrap();
        fs::set_permissions(&runs, fs::Permissions::from_mode(0o777)).unwrap();
        let e = state.check().expect_err("refused").to_string();
        assert!(e.contains("runs") && e.contains("0777"), "{e}");
        fs::remove_dir(&runs).unwrap();
        std::os::unix::fs::symlink(dir.path(), &runs).unwrap();
        let beyond = dir.path().join("p@1.json");
        fs::write(&beyond, serde_json::to_vec(&run("p@1")).unwrap()).unwrap();
        let e = state.check().expect_err("refused").to_string();
        assert!(e.contains("runs") && e.contains("symbolic link"), "{e}");
        assert!(state.record_run(&run("p@1")).is_err(), "written through it");
        assert_eq!(state.last_run("p@1"), None, "read through it");
        fs::remove_file(&runs).unwrap();

        // Owned by another user (only root can make one).
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&root, Some(65534), None).unwrap();
            let e = state.check().expect_err("refused").to_string();
            assert!(e.contains("uid 65534") && e.contains("chown 0"), "{e}");
        }
    }

    #[test]
    fn check_follows_a_linked_state_dir_to_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("private/snaprotd");
        let link = dir.path().join("snaprotd");
        let state = StateDir::new(&link);
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = state.check().expect_err("a dangling link").to_string();
        assert!(e.contains(&real.display().to_string()), "{e}");
        fs::create_dir(real.parent().unwrap()).unwrap();
        fs::DirBuilder::new().mode(0o700).create(&real).unwrap();
        state.check().expect("a link to a good directory");
        state.record_run(&run("p@1")).unwrap();
        assert!(real.join("runs/p@1.json").is_file());
        fs::set_permissions(&real, fs::Permissions::from_mode(0o777)).unwrap();
        let e = state.check().expect_err("refused").to_string();
        assert!(
            e.contains(&link.display().to_string())
                && e.contains(&format!("a link to {}", real.display()))
                && e.contains(&format!("chmod 700 {}", real.display())),
            "{e}"
        );
    }
}
