//! The simulator's world: servers, snapshots, pending faults and the request log.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::faults::Fault;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimServer {
    pub id: u64,
    pub name: String,
    pub status: String,
    /// A status the server reaches at a time (stopping → stopped, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub becomes: Option<(String, DateTime<Utc>)>,
    /// How many times the server was stopped and started, for tests.
    #[serde(default)]
    pub stops: u32,
    #[serde(default)]
    pub starts: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimSnapshot {
    pub id: u64,
    pub server_id: u64,
    pub name: String,
    pub status: String,
    pub size_mb: Option<u64>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub description: Option<String>,
    /// When an `in_progress` snapshot turns into `finishes_as`; `None`: never.
    #[serde(default)]
    pub finishes_at: Option<DateTime<Utc>>,
    #[serde(default = "completed")]
    pub finishes_as: String,
}

fn completed() -> String {
    "completed".into()
}

/// One request the simulator answered (or dropped).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestRecord {
    pub at: DateTime<Utc>,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub authorized: bool,
}

impl RequestRecord {
    /// Whether the request changes something (create, delete, restore, stop, start).
    pub fn is_change(&self) -> bool {
        self.method != "GET"
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SimState {
    pub servers: BTreeMap<u64, SimServer>,
    pub snapshots: BTreeMap<u64, SimSnapshot>,
    pub next_id: u64,
    pub faults: Vec<Fault>,
    pub requests: Vec<RequestRecord>,
}

impl SimState {
    pub fn add_server(&mut self, id: u64, name: &str) {
        self.servers.insert(
            id,
            SimServer {
                id,
                name: name.to_string(),
                status: "running".into(),
                becomes: None,
                stops: 0,
                starts: 0,
            },
        );
    }

    /// Puts a finished snapshot in place, as if made earlier (by hand or by a policy).
    pub fn add_snapshot(
        &mut self,
        server_id: u64,
        name: &str,
        status: &str,
        created_at: DateTime<Utc>,
    ) -> u64 {
        let id = self.new_id();
        self.snapshots.insert(
            id,
            SimSnapshot {
                id,
                server_id,
                name: name.to_string(),
                status: status.to_string(),
                size_mb: (status == "completed").then_some(2048),
                created_at,
                description: Some("made by hand".into()),
                finishes_at: None,
                finishes_as: completed(),
            },
        );
        id
    }

    pub fn new_id(&mut self) -> u64 {
        self.next_id = self.next_id.max(800) + 1;
        self.next_id
    }

    pub fn snapshots_of(&self, server_id: u64) -> Vec<&SimSnapshot> {
        self.snapshots
            .values()
            .filter(|s| s.server_id == server_id)
            .collect()
    }

    pub fn snapshot_names(&self, server_id: u64) -> Vec<String> {
        self.snapshots_of(server_id)
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }

    pub fn server_status(&self, id: u64) -> Option<&str> {
        self.servers.get(&id).map(|s| s.status.as_str())
    }

    /// Requests that change something, as "METHOD path".
    pub fn changes(&self) -> Vec<String> {
        self.requests
            .iter()
            .filter(|r| r.is_change())
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    /// Applies every change whose time has come.
    pub fn advance(&mut self) {
        let now = Utc::now();
        for s in self.snapshots.values_mut() {
            if s.status == "in_progress" && s.finishes_at.is_some_and(|t| t <= now) {
                s.status = s.finishes_as.clone();
                if s.status == "completed" {
                    s.size_mb = Some(4096);
                }
            }
        }
        for s in self.servers.values_mut() {
            if let Some((status, at)) = &s.becomes
                && *at <= now
            {
                s.status = status.clone();
                s.becomes = None;
            }
        }
    }
}
