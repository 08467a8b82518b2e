//! Reading and writing state files: atomic replacement (temp file, fsync, rename, fsync
//! of the directory), reads that follow no link and never block on a FIFO, and the
//! subdirectories, refused when they are links. Everything here blocks: it runs on a
//! blocking thread (see `StateDir`), or in a command before any job.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use serde::{Serialize, de::DeserializeOwned};

use super::StateError;

/// The state directory's subdirectories.
pub(super) const SUBDIRS: [&str; 5] = ["stopped", "runs", "locks", "tainted", "hooks"];

/// More than any record snaprotd writes (they are a few hundred bytes).
const MAX_STATE_FILE: u64 = 1 << 20;

/// Replaces `path` with `bytes` so that a reader (or a crash) sees the old file or the
/// new one, never a mix: temp file, fsync, rename, fsync of the directory. The temp
/// file gets a random name and is created exclusively (`O_EXCL`: a link planted at any
/// name is never written through); the rename replaces a link at `path`, it does not
/// follow it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(StateError::io(dir))?;
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
        .map_err(StateError::io(dir))?;
    let tmp_path = tmp.path().to_path_buf();
    tmp.write_all(bytes).map_err(StateError::io(&tmp_path))?;
    tmp.as_file()
        .sync_all()
        .map_err(StateError::io(&tmp_path))?;
    tmp.persist(path).map_err(|e| StateError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    sync_dir(dir)
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), StateError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StateError::io(dir))
}

/// Removes `path` (gone already is fine) and makes the removal durable.
pub(super) fn remove(path: &Path) -> Result<(), StateError> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("."))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StateError::io(path)(e)),
    }
}

/// Reads a state file without following a link and without blocking on a FIFO. A link,
/// anything but a plain file, or a file larger than any record is `InvalidData`: not a
/// record snaprotd wrote.
pub(super) fn read_state_file(path: &Path) -> io::Result<Vec<u8>> {
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
pub(super) fn not_followed(e: io::Error) -> io::Error {
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
pub(super) fn make_dir(dir: &Path) -> Result<(), StateError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(StateError::io(dir))
}

/// Refuses what `symlink_metadata` says is a link or not a directory.
pub(super) fn real_dir(dir: &Path, meta: &fs::Metadata) -> Result<(), StateError> {
    if meta.file_type().is_symlink() {
        let to = fs::read_link(dir).map_or(String::new(), |t| format!(" to {}", t.display()));
        return Err(StateError::refused(
            dir,
            format!(
                "is a symbolic link{to}; snaprotd follows no links inside its state directory: \
                 replace it with a directory holding the same files"
            ),
        ));
    }
    if !meta.is_dir() {
        return Err(StateError::refused(dir, "is not a directory"));
    }
    Ok(())
}

/// `root/name`, created when missing, refused when it is not a directory of its own
/// (a link).
pub(super) fn subdir(root: &Path, name: &str) -> Result<PathBuf, StateError> {
    let dir = root.join(name);
    let meta = match fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            make_dir(&dir)?;
            fs::symlink_metadata(&dir).map_err(StateError::io(&dir))?
        }
        other => other.map_err(StateError::io(&dir))?,
    };
    real_dir(&dir, &meta)?;
    Ok(dir)
}

/// `root/name` if it is there; an error when it is not a directory of its own.
pub(super) fn present_subdir(root: &Path, name: &str) -> Result<Option<PathBuf>, StateError> {
    let dir = root.join(name);
    match fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateError::io(&dir)(e)),
        Ok(meta) => real_dir(&dir, &meta).map(|()| Some(dir)),
    }
}

/// `root/name` to read records from, if it is there and a directory of its own.
pub(super) fn existing_subdir(root: &Path, name: &str) -> Option<PathBuf> {
    present_subdir(root, name).unwrap_or_else(|e| {
        tracing::error!("{e}; its records are not read");
        None
    })
}

/// Writes `bytes` as `root/dir/name` (`dir` "" for the state directory itself).
pub(super) fn write(root: &Path, dir: &str, name: &str, bytes: &[u8]) -> Result<(), StateError> {
    let dir = if dir.is_empty() {
        root.to_path_buf()
    } else {
        subdir(root, dir)?
    };
    write_atomic(&dir.join(name), bytes)
}

/// `value` as the JSON of a record.
pub(super) fn encode<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec_pretty(value).map_err(|source| StateError::Encode {
        path: path.to_path_buf(),
        source,
    })
}

/// A record, or `None` when there is none or it cannot be read; one that is not a
/// record (bad JSON, a link, not a plain file) is moved aside.
pub(super) fn read<T: DeserializeOwned>(path: &Path) -> Option<T> {
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
