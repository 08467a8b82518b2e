//! The provider's objects as snaprotd reads them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::assumptions;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct ServerRef {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Snapshot {
    pub id: u64,
    pub server: ServerRef,
    pub name: String,
    pub status: SnapshotStatus,
    #[serde(default)]
    pub size_mb: Option<u64>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SnapshotStatus {
    InProgress,
    Completed,
    /// `failed` or `error`, as the provider wrote it.
    Failed(String),
    /// A value the documentation does not name; treated as still running.
    Other(String),
}

impl SnapshotStatus {
    pub fn as_str(&self) -> &str {
        match self {
            SnapshotStatus::InProgress => "in_progress",
            SnapshotStatus::Completed => "completed",
            SnapshotStatus::Failed(s) | SnapshotStatus::Other(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for SnapshotStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(assumptions::snapshot_status(&String::deserialize(d)?))
    }
}

impl Serialize for SnapshotStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Server {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    pub status: ServerStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerStatus {
    Running,
    Stopping,
    Stopped,
    Starting,
    Restoring,
    Other(String),
}

impl ServerStatus {
    pub fn as_str(&self) -> &str {
        match self {
            ServerStatus::Running => "running",
            ServerStatus::Stopping => "stopping",
            ServerStatus::Stopped => "stopped",
            ServerStatus::Starting => "starting",
            ServerStatus::Restoring => "restoring",
            ServerStatus::Other(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for ServerStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(assumptions::server_status(&String::deserialize(d)?))
    }
}

impl Serialize for ServerStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One page of a listing: `GET /snapshots/`, `GET /servers/`.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    #[serde(default)]
    pub count: Option<u64>,
    pub results: Vec<T>,
    #[serde(default)]
    pub next: Option<String>,
}

/// One page of `GET /snapshots/`.
pub type SnapshotPage = Page<Snapshot>;

/// One page of `GET /servers/` (see `assumptions::SERVERS_LISTING`).
pub type ServerPage = Page<Server>;

/// The answer to `POST /snapshots/ID/restore/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreAnswer {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub server: Option<Server>,
}
