//! Unit tests of the plan and of pruning: what is adopted, made room for and pruned,
//! and a property over generated listings that nothing but this policy's own completed
//! or failed snapshots of this server is ever chosen.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::config::{Keep, NameTemplate, Tier};
use crate::provider::ServerRef;
use crate::rotation::retention;
use crate::schedule::Schedule;

const SERVER: u64 = 7;

fn policy(name: &str, keep: usize) -> Policy {
    with_keep(name, Keep::newest(keep))
}

fn with_keep(name: &str, keep: Keep) -> Policy {
    Policy {
        name: name.into(),
        servers: vec![SERVER],
        patterns: Vec::new(),
        schedule: Schedule::parse("30 2 * * *").unwrap(),
        timezone: chrono_tz::UTC,
        keep,
        stop_server: false,
        snapshot_name: NameTemplate::parse("{policy}-%Y%m%d-%H%M").unwrap(),
        description: None,
        poll_interval: Duration::from_secs(10),
        wait_timeout: Duration::from_secs(600),
        stop_timeout: Duration::from_secs(300),
        catch_up: false,
        hooks: Default::default(),
    }
}

/// 02:30 UTC on January `day`.
fn at(day: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, day, 2, 30, 0).unwrap()
}

fn snapshot(id: u64, server: u64, name: &str, status: SnapshotStatus, day: u32) -> Snapshot {
    Snapshot {
        id,
        server: ServerRef {
            id: server,
            name: None,
        },
        name: name.into(),
        status,
        size_mb: None,
        created_at: Utc.with_ymd_and_hms(2026, 1, day, 2, 30, 0).unwrap(),
        description: None,
    }
}

/// A completed snapshot of policy `p` made on January `day`.
fn made(id: u64, p: &str, day: u32) -> Snapshot {
    snapshot(
        id,
        SERVER,
        &format!("{p}-202601{day:02}-0230"),
        SnapshotStatus::Completed,
        day,
    )
}

fn ids(list: &[(Snapshot, Reason)]) -> Vec<u64> {
    list.iter().map(|(s, _)| s.id).collect()
}

fn job(p: &Policy) -> Job<'_> {
    Job {
        policy: p,
        server: SERVER,
    }
}

#[test]
fn pruning_keeps_the_newest_counting_the_new_one() {
    let p = policy("nightly", 2);
    let listing = [
        made(1, "nightly", 1),
        made(2, "nightly", 2),
        made(3, "nightly", 3),
    ];
    // Before the new one exists, it takes one of the two places.
    let now = Utc.with_ymd_and_hms(2026, 1, 4, 2, 30, 0).unwrap();
    assert_eq!(
        ids(&prune_list(job(&p), &listing, New::At(now), &[])),
        [1, 2]
    );
    // Once it exists (id 3), it and the newest other stay.
    assert_eq!(
        ids(&prune_list(job(&p), &listing, New::Made(&listing[2]), &[])),
        [1]
    );
}

#[test]
fn tiers_keep_the_newest_of_their_periods_counting_the_new_one() {
    // Daily snapshots Jan 1 (Thursday) to Jan 12 (Monday); 2 days and 2 ISO weeks.
    let p = with_keep(
        "nightly",
        Keep::tiers([(Tier::Daily, 2), (Tier::Weekly, 2)]).unwrap(),
    );
    let listing: Vec<Snapshot> = (1..=12).map(|d| made(d.into(), "nightly", d)).collect();
    let decided = pruning(job(&p), &listing, New::Made(&listing[11]), &[]);
    // Kept: Jan 12 (new: daily, weekly W03), Jan 11 (daily, weekly W02);
    // nothing more: both tiers are full.
    assert_eq!(
        decided
            .kept
            .iter()
            .map(|(s, h)| (s.id, retention::kept_by(h)))
            .collect::<Vec<_>>(),
        [(11, "daily 2026-01-11, weekly 2026-W02".to_string())]
    );
    assert_eq!(
        retention::kept_by(&decided.new),
        "daily 2026-01-12, weekly 2026-W03"
    );
    assert_eq!(ids(&decided.doomed), (1..=10).collect::<Vec<u64>>());
    assert_eq!(
        decided.doomed[0].1.describe(),
        "beyond keep: not the newest in any of the 2 most recent days or 2 most recent weeks"
    );
    // Before the new one on Jan 13 is made, making room may take only what it would
    // prune: Jan 12 stays (daily), Jan 11 stays (weekly W02).
    let decided = plan(
        job(&p),
        std::slice::from_ref(&p),
        5,
        "nightly-20260113-0230",
        at(13),
        &listing,
        &[],
    )
    .unwrap();
    assert_eq!(ids(&decided.make_room), (1..=8).collect::<Vec<u64>>());
    assert_eq!(ids(&decided.prune_after), [9, 10]);
    assert_eq!(
        decided.kept.iter().map(|(s, _)| s.id).collect::<Vec<_>>(),
        [12, 11]
    );
}

#[test]
fn failed_and_tainted_snapshots_of_the_policy_go_whatever_keep_says() {
    let p = policy("nightly", 5);
    let failed = snapshot(
        1,
        SERVER,
        "nightly-20260101-0230",
        SnapshotStatus::Failed("x".into()),
        1,
    );
    let tainted = made(2, "nightly", 2);
    let mark = TaintedSnapshot {
        server: SERVER,
        snapshot_name: tainted.name.clone(),
        snapshot_id: Some(2),
        since: Utc::now(),
    };
    let doomed = prune_list(
        job(&p),
        &[failed, tainted, made(3, "nightly", 3)],
        New::At(at(4)),
        &[mark],
    );
    assert_eq!(
        doomed
            .iter()
            .map(|(s, r)| (s.id, r.clone()))
            .collect::<Vec<_>>(),
        [(1, Reason::Failed), (2, Reason::Tainted)]
    );
}

#[test]
fn a_snapshot_of_the_name_is_adopted_unless_it_failed_or_is_tainted() {
    let p = policy("nightly", 3);
    let name = "nightly-20260105-0230";
    let done = snapshot(5, SERVER, name, SnapshotStatus::Completed, 5);
    let decided = plan(
        job(&p),
        std::slice::from_ref(&p),
        5,
        name,
        at(9),
        std::slice::from_ref(&done),
        &[],
    )
    .unwrap();
    assert_eq!(decided.adopt.map(|s| s.id), Some(5));
    let mark = TaintedSnapshot {
        server: SERVER,
        snapshot_name: name.into(),
        snapshot_id: None,
        since: Utc::now(),
    };
    let decided = plan(
        job(&p),
        std::slice::from_ref(&p),
        5,
        name,
        at(5),
        &[done],
        &[mark],
    )
    .unwrap();
    assert!(decided.adopt.is_none());
    // The tainted one must go before its name can be used again.
    assert_eq!(ids(&decided.make_room), [5]);
}

#[test]
fn making_room_takes_the_oldest_of_the_policy_and_never_a_manual_one() {
    let p = policy("nightly", 3);
    let mut listing: Vec<Snapshot> = (1..=3).map(|d| made(d.into(), "nightly", d)).collect();
    listing.push(snapshot(
        9,
        SERVER,
        "before-upgrade",
        SnapshotStatus::Completed,
        1,
    ));
    listing.push(snapshot(
        10,
        SERVER,
        "by-hand",
        SnapshotStatus::Completed,
        1,
    ));
    let decided = plan(
        job(&p),
        std::slice::from_ref(&p),
        5,
        "nightly-20260104-0230",
        at(9),
        &listing,
        &[],
    )
    .unwrap();
    assert_eq!(ids(&decided.make_room), [1]);
    assert_eq!(
        decided.make_room[0].1,
        Reason::MakeRoom(Box::new(Reason::BeyondKeep(p.keep)))
    );
    // Keep 3 with the new one: the two newest stay.
    assert!(decided.prune_after.is_empty());
}

#[test]
fn a_cap_full_of_manual_snapshots_is_an_error_naming_who_holds_it() {
    let p = policy("nightly", 2);
    let mut listing: Vec<Snapshot> = (1..=4)
        .map(|i| {
            snapshot(
                i,
                SERVER,
                &format!("manual-{i}"),
                SnapshotStatus::Completed,
                1,
            )
        })
        .collect();
    listing.push(made(5, "nightly", 2));
    // keep 2 with the new one: the one of the policy is kept, so no room.
    let err = plan(
        job(&p),
        std::slice::from_ref(&p),
        5,
        "nightly-20260103-0230",
        at(9),
        &listing,
        &[],
    )
    .unwrap_err();
    let RotationError::CapFull {
        occupants, used, ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(*used, 5);
    assert_eq!(occupants, "4 manual, 1 of policy nightly (keep 2)");
}

#[test]
fn a_cap_full_with_orphans_names_them_and_the_command_that_deletes_them() {
    let p = policy("nightly", 2);
    let weekly = Policy {
        servers: vec![SERVER + 1],
        ..policy("weekly", 1)
    };
    let orphan = |id, name: &str, of: &str| Snapshot {
        description: Some(format!("snaprotd policy {of}")),
        ..snapshot(id, SERVER, name, SnapshotStatus::Completed, 1)
    };
    let listing = vec![
        orphan(1, "old-20260101-0230", "old"),
        orphan(2, "weekly-20260101-0400", "weekly"),
        orphan(3, "old-20260102-0230", "old"),
        snapshot(4, SERVER, "by-hand", SnapshotStatus::Completed, 1),
        made(5, "nightly", 2),
    ];
    let err = plan(
        job(&p),
        &[p.clone(), weekly],
        5,
        "nightly-20260103-0230",
        at(9),
        &listing,
        &[],
    )
    .unwrap_err();
    let RotationError::CapFull {
        occupants, orphans, ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(
        occupants,
        "1 manual, 3 orphaned (of policies old, weekly), 1 of policy nightly (keep 2)"
    );
    assert_eq!(orphans.len(), 3);
    let text = err.to_string();
    assert!(text.contains("old-20260101-0230 (id 1)"), "{text}");
    assert!(
        text.contains("`snaprotd prune --orphans --server 7`"),
        "{text}"
    );
}

fn status() -> impl Strategy<Value = SnapshotStatus> {
    prop_oneof![
        Just(SnapshotStatus::Completed),
        Just(SnapshotStatus::InProgress),
        Just(SnapshotStatus::Failed("error".into())),
    ]
}

/// A listing mixing this policy's, another policy's, manual and other servers' snapshots.
fn listing() -> impl Strategy<Value = Vec<Snapshot>> {
    prop::collection::vec((0..4u8, status(), 1..28u32, prop::bool::ANY), 0..12).prop_map(|rows| {
        rows.into_iter()
            .enumerate()
            .map(|(i, (kind, status, day, other_server))| {
                let name = match kind {
                    0 | 1 => format!("nightly-202601{day:02}-0230"),
                    2 => format!("weekly-202601{day:02}-0230"),
                    _ => format!("by-hand-{i}"),
                };
                let server = if other_server && kind == 1 {
                    SERVER + 1
                } else {
                    SERVER
                };
                snapshot(i as u64 + 1, server, &name, status, day)
            })
            .collect()
    })
}

proptest! {
    /// Nothing manual, in progress, of another policy or of another server is ever
    /// chosen for deletion, by making room or by pruning; the run's own snapshot stays.
    #[test]
    fn only_the_policys_own_finished_snapshots_are_ever_chosen(
        listing in listing(),
        keep in 1..5usize,
        new_day in 1..28u32,
    ) {
        let p = policy("nightly", keep);
        let other = policy("weekly", 1);
        let policies = [p.clone(), other];
        let name = format!("nightly-202601{new_day:02}-0230");
        let mut chosen = prune_list(job(&p), &listing, New::At(at(new_day)), &[]);
        if let Ok(decided) = plan(job(&p), &policies, 5, &name, at(new_day), &listing, &[]) {
            if let Some(adopted) = &decided.adopt {
                prop_assert!(decided.make_room.iter().chain(&decided.prune_after).all(|(s, _)| s.id != adopted.id));
            }
            chosen.extend(decided.make_room);
            chosen.extend(decided.prune_after);
        }
        for (s, _) in &chosen {
            prop_assert_eq!(s.server.id, SERVER);
            prop_assert!(s.name.starts_with("nightly-"), "{} is not the policy's", s.name);
            prop_assert!(s.status != SnapshotStatus::InProgress, "{} is in progress", s.name);
        }
    }

    /// Pruning leaves exactly `keep - 1` completed snapshots of the policy besides the
    /// new one (or all of them, when there are fewer).
    #[test]
    fn pruning_leaves_keep_minus_one_besides_the_new(listing in listing(), keep in 1..5usize) {
        let p = policy("nightly", keep);
        let doomed = prune_list(job(&p), &listing, New::At(at(28)), &[]);
        let completed = listing
            .iter()
            .filter(|s| s.server.id == SERVER && p.owns(SERVER, &s.name) && s.status == SnapshotStatus::Completed)
            .count();
        let left = completed - doomed.iter().filter(|(_, r)| matches!(r, Reason::BeyondKeep(_))).count();
        prop_assert_eq!(left, completed.min(keep - 1));
    }
}

/// Any keep: `keep = N` or a few tiers.
fn any_keep() -> impl Strategy<Value = Keep> {
    prop::collection::vec((0..6usize, 1..4usize), 1..4)
        .prop_map(|tiers| Keep::tiers(tiers.into_iter().map(|(t, n)| (Tier::ALL[t], n))).unwrap())
}

proptest! {
    /// A listing that misses entries (pages shifting, an index that lags) is not in
    /// doubt for deleting (`provider/listing.rs`): whatever retention keeps of the whole
    /// listing, it keeps of a part of it too, with tiers as with `keep = N`.
    #[test]
    fn a_listing_missing_entries_never_deletes_what_the_whole_one_keeps(
        made_at in prop::collection::vec((0..90i64, 0..24i64, prop::bool::ANY), 0..16),
        keep in any_keep(),
        zone in prop::sample::select(vec![chrono_tz::UTC, chrono_tz::Europe::Berlin]),
    ) {
        let p = Policy { timezone: zone, ..with_keep("nightly", keep) };
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let all: Vec<Snapshot> = made_at
            .iter()
            .enumerate()
            .map(|(i, (day, hour, _))| {
                let t = start + chrono::Duration::days(*day) + chrono::Duration::hours(*hour);
                Snapshot {
                    created_at: t,
                    ..snapshot(i as u64 + 1, SERVER, &format!("nightly-{}", t.format("%Y%m%d-%H%M")), SnapshotStatus::Completed, 1)
                }
            })
            .collect();
        let seen: Vec<Snapshot> = all
            .iter()
            .zip(&made_at)
            .filter(|(_, (_, _, shown))| *shown)
            .map(|(s, _)| s.clone())
            .collect();
        let now = New::At(start + chrono::Duration::days(91));
        let whole: Vec<u64> = ids(&prune_list(job(&p), &all, now, &[]));
        for (s, _) in prune_list(job(&p), &seen, now, &[]) {
            prop_assert!(whole.contains(&s.id), "{} is kept by the whole listing", s.name);
        }
    }
}
