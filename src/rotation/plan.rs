//! The pure part of a run: what to adopt, what to delete to make room, what to prune.
//! `--dry-run` prints it without making a changing call.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Job, Owner, RotationError};
use crate::config::Policy;
use crate::provider::{Snapshot, SnapshotStatus};
use crate::state::TaintedSnapshot;

/// Why a snapshot is (or would be) deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Older than the newest `keep` of this policy.
    BeyondKeep,
    /// A failed snapshot of this policy, wasting a slot.
    Failed,
    /// Still being made when snaprotd had to start its server again: not a
    /// stopped-server snapshot.
    Tainted,
    /// Deleted before creating, to stay under the cap; retention would delete it anyway.
    MakeRoom,
}

impl Reason {
    pub fn describe(self) -> &'static str {
        match self {
            Reason::BeyondKeep => "beyond keep",
            Reason::Failed => "failed snapshot of this policy",
            Reason::Tainted => {
                "still in progress when its server had to be started again, so not a stopped-server snapshot"
            }
            Reason::MakeRoom => "making room under the cap (retention would delete it anyway)",
        }
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
}

/// Whether `s` is one of the `tainted` snapshots.
pub fn is_tainted(s: &Snapshot, tainted: &[TaintedSnapshot]) -> bool {
    tainted.iter().any(|t| match t.snapshot_id {
        Some(id) => id == s.id,
        None => t.snapshot_name == s.name,
    })
}

/// Decides what a run does from the server's current `listing`.
///
/// Making room deletes only what a successful run would prune anyway: failed and tainted
/// snapshots of this policy first, then its oldest completed ones beyond `keep - 1` (the
/// new snapshot will take the last kept place). Nothing `in_progress`, nothing of
/// another policy, nothing manual. A tainted snapshot is never adopted.
pub fn plan(
    job: Job<'_>,
    all_policies: &[Policy],
    cap: usize,
    name: &str,
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
    let deletable = prune_list(job, listing, adopt.as_ref().map(|s| s.id), tainted);
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
            .map(|(s, _)| (s.clone(), Reason::MakeRoom)),
    );
    Ok(Plan {
        name: name.to_string(),
        adopt,
        make_room,
        prune_after: rest[need..].to_vec(),
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

/// What pruning deletes from `listing`, oldest first: this policy's failed and tainted
/// snapshots and its completed ones beyond the newest `keep`, counting the run's own
/// snapshot (`new`, which always stays; `None` while it is still to be created) as the
/// newest. Nothing in progress, nothing of another server.
pub fn prune_list(
    job: Job<'_>,
    listing: &[Snapshot],
    new: Option<u64>,
    tainted: &[TaintedSnapshot],
) -> Vec<(Snapshot, Reason)> {
    // The listing is the server's, checked; an entry of another server is still
    // never taken for one of this job's.
    let owned = listing.iter().filter(|s| {
        s.server.id == job.server && Some(s.id) != new && job.policy.owns(job.server, &s.name)
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
    completed.sort_by_key(|s| (s.created_at, s.id));
    let beyond = completed
        .len()
        .saturating_sub(job.policy.keep.saturating_sub(1));
    doomed.extend(
        completed[..beyond]
            .iter()
            .map(|s| ((*s).clone(), Reason::BeyondKeep)),
    );
    doomed.sort_by_key(|(s, _)| (s.created_at, s.id));
    doomed
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
