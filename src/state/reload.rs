//! What the daemon's last reading of its configuration came to (`last-reload.json`):
//! written at its start and at every reload, read by whoever writes the metrics.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StateError;
use super::files::{encode, read, write};

const FILE: &str = "last-reload.json";

/// The last time the daemon read its configuration (its start, or a reload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastReload {
    pub at: DateTime<Utc>,
    /// The configuration read is in force.
    pub ok: bool,
    /// Why it was not, briefly.
    #[serde(default)]
    pub error: Option<String>,
}

pub(super) fn record(root: &Path, reload: &LastReload) -> Result<(), StateError> {
    let bytes = encode(&root.join(FILE), reload)?;
    write(root, "", FILE, &bytes)
}

pub(super) fn last(root: &Path) -> Option<LastReload> {
    read(&root.join(FILE))
}
