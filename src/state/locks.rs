//! One writer per state directory and one job per server: the daemon holds `lock` for
//! its lifetime, and every job holds `locks/<server>.lock` for its whole run, in the
//! daemon and in `once` alike. A lock is an `flock` on a file (released when the file
//! is closed, also by a crash) holding the holder's pid, for whoever waits.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

use super::StateError;
use super::files::{make_dir, not_followed, read_state_file, subdir};

/// The state directory, held by the daemon for its lifetime.
pub struct DirLock {
    _file: fs::File,
}

/// One server, held by one job for its whole run.
pub struct ServerLock {
    _file: fs::File,
}

/// What a process waiting for a server is told.
pub fn busy(server: u64, holder: &str) -> String {
    format!("server {server} is busy: another snaprotd process{holder} is working on it")
}

/// Takes the state directory for this process (the daemon), or says which process has
/// it.
pub(super) fn lock(root: &Path) -> Result<DirLock, StateError> {
    if fs::metadata(root).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        make_dir(root)?;
    }
    let path = root.join("lock");
    match try_lock(&path)? {
        Some(file) => Ok(DirLock { _file: file }),
        None => Err(StateError::InUse {
            path: root.to_path_buf(),
            holder: holder(&path),
        }),
    }
}

/// Takes server `server` if nobody has it.
pub(super) fn try_lock_server(root: &Path, server: u64) -> Result<Option<ServerLock>, StateError> {
    let path = subdir(root, "locks")?.join(format!("{server}.lock"));
    Ok(try_lock(&path)?.map(|file| ServerLock { _file: file }))
}

/// Who holds server `server`'s lock, as " (pid N)", or "" when nobody says.
pub(super) fn server_holder(root: &Path, server: u64) -> String {
    holder(&server_lock_path(root, server))
}

/// Whether a job (of any process) holds server `server`'s lock now. Only looked at: the
/// lock file is opened read-only and never created, and a shared lock taken for an
/// instant shows whether another holds it.
pub(super) fn server_in_use(root: &Path, server: u64) -> bool {
    held(&server_lock_path(root, server)) == Some(true)
}

/// Whether a daemon holds the state directory now: `None` when no daemon ever took it
/// (there is no lock file), else whether one holds it. Only looked at, as
/// [`server_in_use`].
pub(super) fn daemon_running(root: &Path) -> Option<bool> {
    held(&root.join("lock"))
}

/// Whether another open file holds the lock at `path` (`None`: there is no lock file
/// to hold). The file is opened read-only and never created; a shared lock taken for
/// an instant shows whether another holds it.
fn held(path: &Path) -> Option<bool> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(path)
        .ok()?;
    Some(matches!(
        file.try_lock_shared(),
        Err(fs::TryLockError::WouldBlock)
    ))
}

fn server_lock_path(root: &Path, server: u64) -> PathBuf {
    root.join("locks").join(format!("{server}.lock"))
}

/// Opens (or makes) the lock file at `path`, never through a link.
pub(super) fn open_lock_file(path: &Path) -> Result<fs::File, StateError> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(|e| StateError::io(path)(not_followed(e)))
}

/// Opens `path` (never through a link) and takes an exclusive lock on it, writing this
/// process's pid into it. `None` when another open file holds it.
fn try_lock(path: &Path) -> Result<Option<fs::File>, StateError> {
    let mut file = open_lock_file(path)?;
    let is_file = file.metadata().map_err(StateError::io(path))?.is_file();
    if !is_file {
        return Err(StateError::refused(path, "is not a plain file; remove it"));
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return Ok(None),
        Err(fs::TryLockError::Error(e)) => return Err(StateError::io(path)(e)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_daemon_per_state_directory_and_one_job_per_server() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let held = lock(root).unwrap();
        let second = lock(root).err().expect("a second lock is refused");
        assert!(
            second
                .to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{second}"
        );
        drop(held);
        lock(root).expect("free again");

        assert!(!server_in_use(root, 3));
        let job = try_lock_server(root, 3).unwrap().expect("free");
        assert!(try_lock_server(root, 3).unwrap().is_none());
        assert!(server_in_use(root, 3) && !server_in_use(root, 4));
        assert!(try_lock_server(root, 4).unwrap().is_some());
        drop(job);
        assert!(!server_in_use(root, 3));
        assert!(try_lock_server(root, 3).unwrap().is_some());
    }

    #[test]
    fn a_lock_that_is_a_link_is_refused_not_written_through() {
        let (_dir, root, victim) = crate::state::tests::state_and_victim();
        fs::create_dir(root.join("locks")).unwrap();
        std::os::unix::fs::symlink(&victim, root.join("locks/1.lock")).unwrap();
        std::os::unix::fs::symlink(&victim, root.join("lock")).unwrap();
        let e = try_lock_server(&root, 1).err().expect("refused");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = lock(&root).err().expect("refused");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(fs::read(&victim).unwrap(), crate::state::tests::VICTIM);
    }
}
