//! What `--json` prints: the documents' shapes, apart from the types the library keeps
//! (a state record's shape is for upgrades, these are for scripts). Objects, never
//! tuples; times in the one JSON format (`output::json_time`); documented in the man
//! page's JSON OUTPUT section.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::output::{ser_opt_time, ser_time};
use crate::provider::Snapshot;
use crate::rotation::retention::Held;
use crate::rotation::{Outcome, Owner, Reason};
use crate::runner::RunReport;

/// A snapshot as the provider listed it.
#[derive(Serialize)]
pub struct SnapshotJson {
    pub id: u64,
    pub name: String,
    pub server: u64,
    pub status: String,
    pub size_mb: Option<u64>,
    #[serde(serialize_with = "ser_time")]
    pub created_at: DateTime<Utc>,
    pub description: Option<String>,
}

impl From<&Snapshot> for SnapshotJson {
    fn from(s: &Snapshot) -> Self {
        SnapshotJson {
            id: s.id,
            name: s.name.clone(),
            server: s.server.id,
            status: s.status.as_str().to_string(),
            size_mb: s.size_mb,
            created_at: s.created_at,
            description: s.description.clone(),
        }
    }
}

/// A snapshot deleted (or that would be), and why.
#[derive(Serialize)]
pub struct DeletionJson {
    pub snapshot: SnapshotJson,
    /// `beyond_keep`, `failed`, `tainted` or `make_room`.
    pub reason: Reason,
    /// The reason in words ("beyond keep: not the newest in any of the 2 most recent
    /// days or 2 most recent weeks").
    pub why: String,
}

pub fn deletions(list: &[(Snapshot, Reason)]) -> Vec<DeletionJson> {
    list.iter()
        .map(|(s, reason)| DeletionJson {
            snapshot: s.into(),
            reason: reason.clone(),
            why: reason.describe(),
        })
        .collect()
}

/// A snapshot that stays, and the tiers of `keep` that hold it.
#[derive(Serialize)]
pub struct KeptJson {
    pub snapshot: SnapshotJson,
    /// Each `{tier, period}`: `{"tier": "daily", "period": "2026-11-24"}`.
    pub kept_by: Vec<Held>,
}

pub fn kept(list: &[(Snapshot, Vec<Held>)]) -> Vec<KeptJson> {
    list.iter()
        .map(|(s, held)| KeptJson {
            snapshot: s.into(),
            kept_by: held.clone(),
        })
        .collect()
}

/// What a rotation did.
#[derive(Serialize)]
pub struct OutcomeJson {
    pub snapshot: SnapshotJson,
    pub adopted: bool,
    pub stopped_server: bool,
    pub deleted: Vec<DeletionJson>,
    pub owned: usize,
}

impl From<&Outcome> for OutcomeJson {
    fn from(o: &Outcome) -> Self {
        OutcomeJson {
            snapshot: (&o.snapshot).into(),
            adopted: o.adopted,
            stopped_server: o.stopped_server,
            deleted: deletions(&o.deleted),
            owned: o.owned,
        }
    }
}

/// One run of a job (`once`), or a job's last run (`status`).
#[derive(Serialize)]
pub struct RunJson {
    pub job: String,
    pub policy: String,
    pub server: u64,
    /// `ok`, `failed` or `skipped`.
    pub result: &'static str,
    #[serde(serialize_with = "ser_time")]
    pub scheduled_for: DateTime<Utc>,
    #[serde(serialize_with = "ser_time")]
    pub started_at: DateTime<Utc>,
    #[serde(serialize_with = "ser_time")]
    pub finished_at: DateTime<Utc>,
    pub seconds: f64,
    pub snapshot_name: Option<String>,
    /// What went wrong, for a failed run.
    pub error: Option<String>,
    /// Why the job did not run, for a skipped one.
    pub skipped: Option<String>,
    /// What the rotation did (`once` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<OutcomeJson>,
}

impl From<&RunReport> for RunJson {
    fn from(r: &RunReport) -> Self {
        RunJson {
            job: r.job.to_string(),
            policy: r.job.policy.to_string(),
            server: r.job.server,
            result: if r.skipped.is_some() {
                "skipped"
            } else if r.ok {
                "ok"
            } else {
                "failed"
            },
            scheduled_for: r.scheduled_for,
            started_at: r.started_at,
            finished_at: r.finished_at,
            seconds: r.seconds,
            snapshot_name: r.snapshot_name.clone(),
            error: r
                .error
                .clone()
                .or_else(|| (!r.ok).then(|| r.message.clone())),
            skipped: r.skipped.clone(),
            outcome: r.outcome.as_ref().map(Into::into),
        }
    }
}

/// An optional time in the JSON format.
#[derive(Serialize)]
#[serde(transparent)]
pub struct TimeJson(#[serde(serialize_with = "ser_opt_time")] pub Option<DateTime<Utc>>);

/// A snapshot of `list`, with who made it (see `rotation::Owner`).
#[derive(Serialize)]
pub struct ListedJson {
    #[serde(flatten)]
    pub snapshot: SnapshotJson,
    /// The configured policy that owns it, `orphan:<policy>`, or `manual`.
    pub owner: String,
    /// The configured policy that owns it (its rotation prunes it), if one does.
    pub policy: Option<String>,
    /// For an orphan: the policy snaprotd made it for, which no longer owns it.
    pub orphan_of: Option<String>,
}

impl ListedJson {
    pub fn new(s: &Snapshot, owner: &Owner<'_>) -> Self {
        ListedJson {
            snapshot: s.into(),
            owner: owner.to_string(),
            policy: owner.policy().map(|p| p.name.clone()),
            orphan_of: owner.orphan_of().map(str::to_string),
        }
    }
}

/// An orphan of `prune --orphans` and what became of it.
#[derive(Serialize)]
pub struct OrphanJson {
    pub snapshot: SnapshotJson,
    /// The policy snaprotd made it for, which no longer owns it.
    pub orphan_of: String,
    /// `would_delete` (a dry run), `deleted`, `gone` (deleted meanwhile), `left` (in
    /// progress), `changed` (no longer an orphan when it was to be deleted) or `failed`.
    pub result: &'static str,
    /// Why it failed.
    pub error: Option<String>,
}

/// What `restore` did.
#[derive(Serialize)]
pub struct RestoreJson {
    pub snapshot: SnapshotJson,
    pub server: u64,
    /// The provider's message.
    pub message: Option<String>,
    /// With `--wait`: how long until the server ran again.
    pub waited_seconds: Option<f64>,
}

/// A command that failed, for a script that asked for JSON: `ok` false and the error;
/// a configuration's errors each with its place.
#[derive(Serialize)]
pub struct ErrorJson {
    pub ok: bool,
    pub error: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ConfigErrorJson>,
}

/// One problem of the configuration (an error, or a warning of `check`).
#[derive(Serialize)]
pub struct ConfigErrorJson {
    pub file: std::path::PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl From<&crate::config::ConfigError> for ConfigErrorJson {
    fn from(e: &crate::config::ConfigError) -> Self {
        ConfigErrorJson {
            file: e.file.clone(),
            line: e.at.map(|a| a.0),
            column: e.at.map(|a| a.1),
            key: (!e.key.is_empty()).then(|| e.key.clone()),
            message: e.message.clone(),
        }
    }
}

impl From<&super::CliError> for ErrorJson {
    fn from(e: &super::CliError) -> Self {
        let errors = match e {
            super::CliError::Config(errors) => errors.0.iter().map(Into::into).collect(),
            _ => Vec::new(),
        };
        ErrorJson {
            ok: false,
            error: match e {
                super::CliError::Config(_) => "the configuration is not valid".into(),
                other => other.to_string(),
            },
            errors,
        }
    }
}

/// One target of `notify --test`: where (scheme and host of a URL only), and how it went.
#[derive(Serialize)]
pub struct NotifyTestJson {
    pub target: String,
    pub ok: bool,
    pub error: Option<String>,
}
