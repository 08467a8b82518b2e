//! Reading a file the operator names (the configuration, the token): a regular file of
//! a sane size only, opened without blocking. A FIFO at that path would otherwise hang
//! whoever reads it — the daemon's main loop on SIGHUP, deaf to SIGTERM — and a huge
//! file or a device would be read whole into memory.

use std::fs::{FileType, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::OFlag;

/// The largest configuration file read: far above any real one.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// The largest token file read.
pub const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// Why a file was not read. Its text is the reason only; the caller names the file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("it is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("it is {}; {what} is at most {}", in_units(*.size), in_units(*.max))]
    TooLarge {
        size: u64,
        max: u64,
        what: &'static str,
    },
    #[error("it is not UTF-8 text")]
    NotUtf8,
}

/// The text of the regular file at `path` (a symlink to one is followed), with its
/// metadata, if it holds at most `max` bytes. `what` names it in the size error ("a
/// configuration file").
pub fn read_text(
    path: &Path,
    max: u64,
    what: &'static str,
) -> Result<(String, Metadata), FileError> {
    // O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer; it
    // changes nothing for reading a regular file. O_NOCTTY: a terminal device at the
    // path never becomes our controlling terminal.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits())
        .open(path)?;
    let meta = file.metadata()?; // of what was opened, not of the path again
    if !meta.file_type().is_file() {
        return Err(FileError::NotRegular(kind(meta.file_type())));
    }
    let too_large = |size| FileError::TooLarge { size, max, what };
    if meta.len() > max {
        return Err(too_large(meta.len()));
    }
    // The file may grow while it is read: never take more than `max` + 1 bytes.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64));
    }
    let text = String::from_utf8(bytes).map_err(|_| FileError::NotUtf8)?;
    Ok((text, meta))
}

fn kind(t: FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a plain file"
    }
}

/// "2.0 MiB", "64 KiB", "12 bytes".
fn in_units(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    match bytes {
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= MIB => format!("{:.1} MiB", b as f64 / MIB as f64),
        b if b >= KIB && b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_regular_file_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "x".repeat(100)).unwrap();
        assert_eq!(read_text(&path, 100, "a file").unwrap().0.len(), 100);
        let e = read_text(&path, 99, "a file").unwrap_err();
        assert_eq!(e.to_string(), "it is 100 bytes; a file is at most 99 bytes");
    }

    #[test]
    fn refuses_what_is_not_a_regular_file_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_text(dir.path(), 100, "a file").unwrap_err();
        assert_eq!(e.to_string(), "it is a directory, not a regular file");
        let e = read_text(Path::new("/dev/zero"), 100, "a file").unwrap_err();
        assert_eq!(
            e.to_string(),
            "it is a character device, not a regular file"
        );
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()));
        let e = read_text(&fifo, 100, "a file").unwrap_err();
        assert_eq!(
            e.to_string(),
            "it is a FIFO (named pipe), not a regular file"
        );
    }

    #[test]
    fn refuses_a_file_that_is_not_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        let e = read_text(&path, 100, "a file").unwrap_err();
        assert_eq!(e.to_string(), "it is not UTF-8 text");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(in_units(MAX_CONFIG_BYTES), "1 MiB");
        assert_eq!(in_units(MAX_TOKEN_BYTES), "64 KiB");
        assert_eq!(in_units(2 * MAX_CONFIG_BYTES), "2 MiB");
        assert_eq!(in_units(300 * MAX_CONFIG_BYTES), "300 MiB");
        assert_eq!(in_units(2 * MAX_CONFIG_BYTES - 100), "2.0 MiB");
        assert_eq!(in_units(12), "12 bytes");
    }
}
