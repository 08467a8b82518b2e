//! What can go wrong with the state directory, each kind naming the path it is about.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file operation failed (on a file of the state directory, or the metrics file).
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Something snaprotd refuses to use (a link, not a directory, a directory others
    /// may write in), with what to do about it.
    #[error("state directory {path}: {problem}")]
    Refused { path: PathBuf, problem: String },
    /// Another process has the state directory.
    #[error(
        "state directory {path}: in use by another snaprotd{holder}; one daemon per state directory"
    )]
    InUse { path: PathBuf, holder: String },
    /// Running as root, the process could not take on the directory owner's identity.
    #[error(
        "state directory {path}: is owned by uid {uid}, and snaprotd cannot become that user: {source}"
    )]
    NotOwner {
        path: PathBuf,
        uid: u32,
        #[source]
        source: nix::Error,
    },
    /// A record could not be written as JSON (a bug, not the disk).
    #[error("state directory {path}: cannot encode the record: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl StateError {
    pub(super) fn io(path: &std::path::Path) -> impl FnOnce(io::Error) -> StateError + '_ {
        move |source| StateError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(super) fn refused(path: &std::path::Path, problem: impl Into<String>) -> StateError {
        StateError::Refused {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}
