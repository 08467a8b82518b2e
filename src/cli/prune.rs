//! `snaprotd prune --orphans`: deletes the snapshots snaprotd made for a policy that no
//! longer owns them (removed, renamed, no longer on that server: `rotation::Owner`).
//! No run deletes those, and they take places under the cap.
//!
//! Like the rotation, it deletes nothing on a listing that does not add up, nothing in
//! progress, and nothing manual or of a configured policy. It asks first (as
//! `restore` does), and deletes each server's orphans holding that server's lock, on
//! a listing read under the lock: what a job changed meanwhile is seen.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::output::{self, outln};
use super::restore::{Confirmed, confirm, hold_server, open_state};
use super::views::OrphanJson;
use super::{CliError, CliResult, Exit, load_config};
use crate::config::Config;
use crate::provider::{Client, Snapshot, SnapshotStatus};
use crate::rotation::Owner;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Delete orphans: snapshots snaprotd made for a policy that no longer owns them
    /// (removed, renamed, or no longer listing that server); `list` shows them as
    /// orphan:<policy>
    #[arg(long)]
    orphans: bool,
    /// Only this server's
    #[arg(long, value_name = "ID", add = clap_complete::engine::ArgValueCompleter::new(super::complete::servers))]
    server: Option<u64>,
    /// Show what would be deleted; delete nothing
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation
    #[arg(long)]
    yes: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub(super) json: bool,
}

/// An orphan and what became of it.
struct Orphan {
    snapshot: Snapshot,
    of: String,
    result: Result<Done, String>,
}

/// What became of an orphan that did not fail.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Done {
    WouldDelete,
    Deleted,
    /// Not listed any more, or deleted by someone else meanwhile: nothing to do.
    Gone,
    /// Still in progress: left alone.
    Left,
    /// No longer an orphan, or in progress, on the listing read under the lock.
    Changed,
}

impl Done {
    fn word(self) -> &'static str {
        match self {
            Done::WouldDelete => "would_delete",
            Done::Deleted => "deleted",
            Done::Gone => "gone",
            Done::Left => "left",
            Done::Changed => "changed",
        }
    }
}

pub async fn run(path: &Path, args: Args) -> CliResult {
    if !args.orphans {
        return Err(CliError::PruneWhat);
    }
    let config = load_config(path)?;
    let client = Client::new(&config.api)?;
    let listing = client.list_snapshots(args.server).await?;
    if let Some(doubt) = listing.doubt {
        return Err(CliError::ListingInDoubt(doubt));
    }
    let mut found: Vec<Orphan> = listing
        .snapshots
        .into_iter()
        .filter_map(|s| {
            let of = Owner::of(&config.policies, &s).orphan_of()?.to_string();
            let result = Ok(if deletable(&s) {
                Done::WouldDelete
            } else {
                Done::Left
            });
            Some(Orphan {
                snapshot: s,
                of,
                result,
            })
        })
        .collect();
    found.sort_by_key(|o| (o.snapshot.server.id, o.snapshot.created_at, o.snapshot.id));
    let doomed = found
        .iter()
        .filter(|o| o.result == Ok(Done::WouldDelete))
        .count();
    if !args.json {
        show(&found, args.server);
    }
    if doomed == 0 || args.dry_run {
        if !args.json && doomed > 0 {
            outln!("\nwould delete {doomed} snapshot(s); run without --dry-run to delete them");
        }
        return report(&found, args.dry_run, args.json);
    }
    match confirm(
        args.yes,
        &format!(
            "Delete these {doomed} snapshot(s)? snaprotd made them for policies that no longer own them."
        ),
    ) {
        Confirmed::Yes => {}
        Confirmed::No => {
            output::errln!("Nothing deleted.");
            return Ok(Exit::Failure);
        }
        Confirmed::NotATerminal => return Err(CliError::PruneNotConfirmed(doomed)),
    }
    delete(&config, &client, &mut found, args.json).await?;
    report(&found, false, args.json)
}

/// Finished snapshots only: one in progress may still become something else's.
fn deletable(s: &Snapshot) -> bool {
    matches!(
        s.status,
        SnapshotStatus::Completed | SnapshotStatus::Failed(_)
    )
}

/// The orphans found, as a table (their times in UTC: they belong to no policy).
fn show(found: &[Orphan], server: Option<u64>) {
    if found.is_empty() {
        match server {
            Some(id) => outln!("no orphaned snapshots on server {id}"),
            None => outln!("no orphaned snapshots"),
        }
        return;
    }
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|o| {
            let s = &o.snapshot;
            vec![
                s.server.id.to_string(),
                s.id.to_string(),
                s.name.clone(),
                s.status.as_str().to_string(),
                output::when(s.created_at, chrono_tz::UTC),
                output::age(s.created_at),
                format!("orphan:{}", o.of),
            ]
        })
        .collect();
    output::table(
        &["SERVER", "ID", "NAME", "STATUS", "CREATED", "AGE", "OWNER"],
        &rows,
    );
    let left: Vec<(String, String)> = found
        .iter()
        .filter(|o| o.result == Ok(Done::Left))
        .map(|o| {
            (
                o.snapshot.name.clone(),
                "in progress: left alone (prune again once it has finished)".to_string(),
            )
        })
        .collect();
    output::notes("Left alone", &left);
}

/// Deletes the orphans marked `WouldDelete`, server by server, each under its lock
/// and on a listing of that server read under it.
async fn delete(
    config: &Config,
    client: &Client,
    found: &mut [Orphan],
    json: bool,
) -> Result<(), CliError> {
    let state = open_state(config).await?;
    let mut by_server: BTreeMap<u64, Vec<&mut Orphan>> = BTreeMap::new();
    for o in found
        .iter_mut()
        .filter(|o| o.result == Ok(Done::WouldDelete))
    {
        by_server.entry(o.snapshot.server.id).or_default().push(o);
    }
    for (server, orphans) in by_server {
        let _lock = hold_server(config, &state, server).await?;
        let now = match client.list_snapshots(Some(server)).await {
            Ok(l) => match l.doubt {
                None => l.snapshots,
                Some(doubt) => {
                    fail_all(
                        orphans,
                        &format!("the provider's listing does not add up ({doubt})"),
                    );
                    continue;
                }
            },
            Err(e) => {
                fail_all(orphans, &format!("cannot list server {server}: {e}"));
                continue;
            }
        };
        for o in orphans {
            let Some(current) = now.iter().find(|s| s.id == o.snapshot.id) else {
                o.result = Ok(Done::Gone);
                continue;
            };
            if !deletable(current) || !Owner::of(&config.policies, current).is_orphan() {
                o.result = Ok(Done::Changed);
                continue;
            }
            o.result = match client.delete_snapshot(o.snapshot.id).await {
                Ok(()) => Ok(Done::Deleted),
                Err(e) if e.is_not_found() => Ok(Done::Gone),
                Err(e) => Err(e.to_string()),
            };
            if !json && o.result == Ok(Done::Deleted) {
                outln!(
                    "deleted snapshot {} (id {}) of server {server}, made for policy {}",
                    o.snapshot.name,
                    o.snapshot.id,
                    o.of
                );
            }
        }
    }
    Ok(())
}

fn fail_all(orphans: Vec<&mut Orphan>, why: &str) {
    for o in orphans {
        o.result = Err(format!("not deleted: {why}"));
    }
}

/// Prints what became of every orphan; exit 1 when one could not be deleted.
fn report(found: &[Orphan], dry_run: bool, json: bool) -> CliResult {
    let failed: Vec<(String, String)> = found
        .iter()
        .filter_map(|o| {
            let e = o.result.as_ref().err()?;
            Some((
                format!("{} (id {})", o.snapshot.name, o.snapshot.id),
                e.clone(),
            ))
        })
        .collect();
    if json {
        let orphans: Vec<OrphanJson> = found
            .iter()
            .map(|o| OrphanJson {
                snapshot: (&o.snapshot).into(),
                orphan_of: o.of.clone(),
                result: o.result.as_ref().map_or("failed", |d| d.word()),
                error: o.result.as_ref().err().cloned(),
            })
            .collect();
        output::json(&json!({ "dry_run": dry_run, "orphans": orphans }));
    } else if !dry_run {
        let deleted = found
            .iter()
            .filter(|o| o.result == Ok(Done::Deleted))
            .count();
        let acted = found
            .iter()
            .any(|o| !matches!(o.result, Ok(Done::WouldDelete | Done::Left)));
        if acted {
            outln!("\ndeleted {deleted} orphaned snapshot(s)");
        }
        let why = |d: &Done| match d {
            Done::Gone => Some("gone already"),
            Done::Changed => Some(
                "changed since it was listed (no longer an orphan, or in progress): left alone",
            ),
            _ => None,
        };
        let changed: Vec<(String, String)> = found
            .iter()
            .filter_map(|o| {
                let why = why(o.result.as_ref().ok()?)?;
                Some((
                    format!("{} (id {})", o.snapshot.name, o.snapshot.id),
                    why.to_string(),
                ))
            })
            .collect();
        output::notes("Not deleted, nothing to do", &changed);
        output::notes("Not deleted", &failed);
    }
    Ok(if failed.is_empty() {
        Exit::Success
    } else {
        Exit::Failure
    })
}
