//! The pure part of a run: what to adopt, what to delete to make room, what to prune.
//! `--dry-run` prints it without making a changing call.

use std::fmt::Write as _;

use serde::Serialize;

use chrono::{DateTime, Utc};

use super::retention::{self, Held};
use super::{Job, Owner, RotationError};
use crate::config::{Keep, Policy};
use crate::provider::{Snapshot, SnapshotStatus};
use crate::state::TaintedSnapshot;

/// Why a snapshot is (or would be) deleted. In JSON its name: `beyond_keep`, `failed`,
/// `tainted` or `make_room`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Kept by no tier of this policy's `keep` (held for the words).
    BeyondKeep(Keep),
    /// A failed snapshot of this policy, wasting a slot.
    Failed,
    /// Still being made when snaprotd had to start its server again: not a
    /// stopped-server snapshot.
    Tainted,
    /// Deleted before creating, to stay under the cap, for a reason retention deletes
    /// it anyway.
    MakeRoom(Box<Reason>),
}

impl Reason {
    pub fn describe(&self) -> String {
        match self {
            Reason::BeyondKeep(keep) => format!("beyond keep: {}", keep.not_kept()),
            Reason::Failed => "failed snapshot of this policy".into(),
            Reason::Tainted => {
                "still in progress when its server had to be started again, so not a stopped-server snapshot".into()
            }
            Reason::MakeRoom(why) => format!(
                "making room under the cap (retention would delete it anyway: {})",
                why.describe()
            ),
        }
    }

    /// Its name in JSON.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::BeyondKeep(_) => "beyond_keep",
            Reason::Failed => "failed",
            Reason::Tainted => "tainted",
            Reason::MakeRoom(_) => "make_room",
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

/// What a run will do, decided from the server's listing.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub name: String,
    /// A snapshot of this name exists already: it is adopted, not created again.
    pub adopt: Option<Snapshot>,
    pub make_room: Vec<(Snapshot, Reason)>,
    /// What pruning would delete after success, if the listing stays as it is.
    pub prune_after: Vec<(Snapshot, Reason)>,
    /// What stays besides the new snapshot, newest first, and the tiers that keep it.
    pub kept: Vec<(Snapshot, Vec<Held>)>,
    /// The tiers that keep the new (or adopted) snapshot.
    pub new_held: Vec<Held>,
}

/// Whether `s` is one of the `tainted` snapshots.
pub fn is_tainted(s: &Snapshot, tainted: &[TaintedSnapshot]) -> bool {
    tainted.iter().any(|t| match t.snapshot_id {
        Some(id) => id == s.id,
        None => t.snapshot_name == s.name,
    })
}

/// Decides what a run does from the server's current `listing`, for a new snapshot
/// that would be made at `now`.
///
/// Making room deletes only what a successful run would prune anyway: failed and tainted
/// snapshots of this policy, and its completed ones that retention keeps no longer once
/// the new snapshot (counted as made at `now`) is there, oldest first. Nothing
/// `in_progress`, nothing of another policy, nothing manual. A tainted snapshot is never
/// adopted.
pub fn plan(
    job: Job<'_>,
    all_policies: &[Policy],
    cap: usize,
    name: &str,
    now: DateTime<Utc>,
    listing: &[Snapshot],
    tainted: &[TaintedSnapshot],
) -> Result<Plan, RotationError> {
    // A snapshot of this name that did not fail is this run's snapshot, made before.
    let adopt = listing
        .iter()
        .find(|s| {
            s.name == name
                && !matches!(s.status, SnapshotStatus::Failed(_))
                && !is_tainted(s, tainted)
        })
        .cloned();
    let new = match &adopt {
        Some(s) => New::Made(s),
        None => New::At(now),
    };
    let Pruning {
        doomed: deletable,
        kept,
        new: new_held,
    } = pruning(job, listing, new, tainted);
    // A failed snapshot of this very name must go before the name can be used again.
    let (mut make_room, rest): (Vec<_>, Vec<_>) =
        deletable.into_iter().partition(|(s, _)| s.name == name);
    let need = if adopt.is_some() {
        0
    } else {
        (listing.len() + 1)
            .saturating_sub(cap)
            .saturating_sub(make_room.len())
    };
    if rest.len() < need {
        return Err(RotationError::CapFull {
            server: job.server,
            policy: job.policy.name.clone(),
            used: listing.len(),
            cap,
            occupants: occupants(job.server, all_policies, listing),
            orphans: orphans(job.server, all_policies, listing),
        });
    }
    make_room.extend(
        rest[..need]
            .iter()
            .map(|(s, why)| (s.clone(), Reason::MakeRoom(Box::new(why.clone())))),
    );
    Ok(Plan {
        name: name.to_string(),
        adopt,
        make_room,
        prune_after: rest[need..].to_vec(),
        kept,
        new_held,
    })
}

/// What occupies the server's places, by who made them (see [`Owner`]):
/// "1 manual, 2 orphaned (of policy old), 2 of policy nightly (keep 3)".
fn occupants(server: u64, policies: &[Policy], listing: &[Snapshot]) -> String {
    let owners: Vec<Owner<'_>> = listing
        .iter()
        .filter(|s| s.server.id == server)
        .map(|s| Owner::of(policies, s))
        .collect();
    let manual = owners.iter().filter(|o| matches!(o, Owner::Manual)).count();
    let mut parts = vec![format!("{manual} manual")];
    let mut orphaned: Vec<&str> = owners.iter().filter_map(Owner::orphan_of).collect();
    if !orphaned.is_empty() {
        let count = orphaned.len();
        orphaned.sort_unstable();
        orphaned.dedup();
        let of = if orphaned.len() == 1 {
            "policy"
        } else {
            "policies"
        };
        parts.push(format!(
            "{count} orphaned (of {of} {})",
            orphaned.join(", ")
        ));
    }
    for p in policies.iter().filter(|p| p.may_cover(server)) {
        let mine: Vec<&Snapshot> = listing
            .iter()
            .zip(&owners)
            .filter(|(_, o)| o.policy().is_some_and(|o| std::ptr::eq(o, p)))
            .map(|(s, _)| s)
            .collect();
        if !mine.is_empty() {
            let busy = mine
                .iter()
                .filter(|s| s.status != SnapshotStatus::Completed)
                .count();
            let mut text = format!("{} of policy {} (keep {})", mine.len(), p.name, p.keep);
            if busy > 0 {
                let _ = write!(text, ", {busy} not completed");
            }
            parts.push(text);
        }
    }
    parts.join(", ")
}

/// The orphans among `listing` (see [`Owner`]), as "NAME (id N)", oldest first.
fn orphans(server: u64, policies: &[Policy], listing: &[Snapshot]) -> Vec<String> {
    listing
        .iter()
        .filter(|s| s.server.id == server && Owner::of(policies, s).is_orphan())
        .map(|s| format!("{} (id {})", s.name, s.id))
        .collect()
}

/// The run's own snapshot, as retention counts it: always the newest, never deleted.
#[derive(Debug, Clone, Copy)]
pub enum New<'a> {
    /// Still to be created: it counts as made at this time.
    At(DateTime<Utc>),
    /// Made (or adopted): this one.
    Made(&'a Snapshot),
}

/// What retention makes of a server's listing for one job.
#[derive(Debug, Clone)]
pub struct Pruning {
    /// What goes, oldest first.
    pub doomed: Vec<(Snapshot, Reason)>,
    /// This policy's completed snapshots that stay besides the new one, newest first,
    /// with the tiers that keep each.
    pub kept: Vec<(Snapshot, Vec<Held>)>,
    /// The tiers that keep the new snapshot.
    pub new: Vec<Held>,
}

/// What pruning deletes from `listing`, oldest first: this policy's failed and tainted
/// snapshots and its completed ones that its `keep` does not hold (`retention.rs`),
/// counting the run's own snapshot (`new`) as the newest. Nothing in progress, nothing
/// of another server.
pub fn prune_list(
    job: Job<'_>,
    listing: &[Snapshot],
    new: New<'_>,
    tainted: &[TaintedSnapshot],
) -> Vec<(Snapshot, Reason)> {
    pruning(job, listing, new, tainted).doomed
}

/// [`prune_list`], with what stays and why.
pub fn pruning(
    job: Job<'_>,
    listing: &[Snapshot],
    new: New<'_>,
    tainted: &[TaintedSnapshot],
) -> Pruning {
    let (new_id, new_at) = match new {
        New::At(at) => (None, at),
        New::Made(s) => (Some(s.id), s.created_at),
    };
    // The listing is the server's, checked; an entry of another server is still
    // never taken for one of this job's.
    let owned = listing.iter().filter(|s| {
        s.server.id == job.server && Some(s.id) != new_id && job.policy.owns(job.server, &s.name)
    });
    let mut completed: Vec<&Snapshot> = Vec::new();
    let mut doomed = Vec::new();
    for s in owned {
        match s.status {
            SnapshotStatus::Completed | SnapshotStatus::Failed(_) if is_tainted(s, tainted) => {
                doomed.push((s.clone(), Reason::Tainted))
            }
            SnapshotStatus::Completed => completed.push(s),
            SnapshotStatus::Failed(_) => doomed.push((s.clone(), Reason::Failed)),
            _ => {}
        }
    }
    // Newest first, the new one before all: it always stays, so it is never counted
    // after one that retention would keep instead.
    completed.sort_by_key(|s| std::cmp::Reverse((s.created_at, s.id)));
    let times: Vec<DateTime<Utc>> = std::iter::once(new_at)
        .chain(completed.iter().map(|s| s.created_at))
        .collect();
    let mut verdicts = retention::apply(&job.policy.keep, job.policy.timezone, &times).into_iter();
    let new_held = verdicts.next().unwrap_or_default();
    let mut kept = Vec::new();
    for (s, held) in completed.into_iter().zip(verdicts) {
        if held.is_empty() {
            doomed.push((s.clone(), Reason::BeyondKeep(job.policy.keep)));
        } else {
            kept.push((s.clone(), held));
        }
    }
    doomed.sort_by_key(|(s, _)| (s.created_at, s.id));
    Pruning {
        doomed,
        kept,
        new: new_held,
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
