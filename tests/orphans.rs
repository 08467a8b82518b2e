//! Snapshots nobody owns any more: made by snaprotd for a policy that was removed,
//! renamed, or no longer lists their server. `list` shows them as `orphan:<policy>`,
//! the cap-full error names them, and `prune --orphans` deletes them — and nothing else.

mod common;

use std::time::Duration;

use common::{Env, days_ago, eventually};
use snaprotd::sim::{Fault, FaultAction};

/// `nightly` runs on server 5; `weekly` now covers server 6 only (it once covered 5);
/// a policy `gone` is no longer configured at all.
const POLICIES: &str = r#"
[[policy]]
name = "nightly"
servers = [5]
schedule = "30 2 * * *"
keep = 2

[[policy]]
name = "weekly"
servers = [6]
schedule = "0 4 * * sun"
keep = 1
"#;

/// The snapshots of the fixture, by what they are.
struct Fixture {
    /// Made by snaprotd for `gone` and for `weekly` on server 5.
    orphans: Vec<u64>,
    manual: u64,
    /// `weekly`'s own snapshot on server 6.
    weekly_own: u64,
}

/// Puts a snapshot in place whose description is `description`.
fn add(env: &Env, server: u64, name: &str, days: i64, description: &str) -> u64 {
    let mut st = env.sim.state();
    let id = st.add_snapshot(server, name, "completed", days_ago(days));
    if let Some(s) = st.snapshots.get_mut(&id) {
        s.description = Some(description.to_string());
    }
    id
}

fn fixture(env: &Env) -> Fixture {
    env.sim.add_server(5, "web");
    env.sim.add_server(6, "db");
    let orphans = vec![
        add(env, 5, "gone-20260101-0230", 20, "snaprotd policy gone"),
        add(env, 5, "gone-20260102-0230", 19, "snaprotd policy gone"),
        add(
            env,
            5,
            "weekly-20260104-0400",
            18,
            "Weekly rotation (snaprotd policy weekly)",
        ),
    ];
    let manual = add(env, 5, "before-upgrade", 17, "made by hand");
    let weekly_own = add(env, 6, "weekly-20260104-0400", 18, "snaprotd policy weekly");
    env.write_config(POLICIES);
    Fixture {
        orphans,
        manual,
        weekly_own,
    }
}

fn deletes(ids: &[u64]) -> Vec<String> {
    let mut d: Vec<String> = ids
        .iter()
        .map(|id| format!("DELETE /snapshots/{id}/"))
        .collect();
    d.sort();
    d
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn list_shows_snapshots_of_a_policy_no_longer_on_their_server_as_orphans() {
    let env = Env::new().await;
    let f = fixture(&env);
    let out = env.snaprotd(&["list"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let row = |server: &str, name: &str| -> String {
        out.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{server} ")) && l.contains(name))
            .unwrap_or_else(|| panic!("no row for {name} on {server}:\n{}", out.stdout))
            .to_string()
    };
    assert!(row("5", "gone-20260101-0230").ends_with("orphan:gone"));
    assert!(row("5", "weekly-20260104-0400").ends_with("orphan:weekly"));
    assert!(row("5", "before-upgrade").ends_with("manual"));
    assert!(row("6", "weekly-20260104-0400").ends_with("  weekly"));

    let json = env.snaprotd(&["list", "--json"]).await;
    assert_eq!(json.code, 0, "{}", json.all());
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let entry = |id: u64| {
        v["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{id} not in {v}"))
            .clone()
    };
    assert_eq!(entry(f.orphans[0])["owner"], "orphan:gone", "{v}");
    assert_eq!(entry(f.orphans[0])["orphan_of"], "gone", "{v}");
    assert_eq!(entry(f.orphans[2])["orphan_of"], "weekly", "{v}");
    assert_eq!(entry(f.manual)["owner"], "manual", "{v}");
    assert!(entry(f.manual)["orphan_of"].is_null(), "{v}");
    assert_eq!(entry(f.weekly_own)["owner"], "weekly", "{v}");
    assert!(entry(f.weekly_own)["orphan_of"].is_null(), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cap_full_of_orphans_names_them_and_the_command_that_deletes_them() {
    let env = Env::new().await;
    let f = fixture(&env);
    // The fifth place: a snapshot of nightly itself, which keep 2 keeps.
    add(
        &env,
        5,
        &days_ago(1).format("nightly-%Y%m%d-0230").to_string(),
        1,
        "snaprotd policy nightly",
    );
    let out = env.snaprotd(&["once", "--policy", "nightly"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    let all = out.all();
    assert!(all.contains("3 orphaned"), "{all}");
    assert!(all.contains("gone-20260101-0230"), "{all}");
    assert!(all.contains("snaprotd prune --orphans --server 5"), "{all}");
    assert!(env.changes().is_empty(), "{:?}", env.changes());

    // The command it names makes room, and the next run goes through.
    let out = env
        .snaprotd(&["prune", "--orphans", "--server", "5", "--yes"])
        .await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(sorted(env.changes()), deletes(&f.orphans));
    let out = env.snaprotd(&["once", "--policy", "nightly"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_orphans_deletes_only_orphans_and_only_when_confirmed() {
    let env = Env::new().await;
    let f = fixture(&env);
    assert_eq!(env.snaprotd(&["once", "--policy", "nightly"]).await.code, 0);
    let before = env.changes();

    // A dry run lists them and changes nothing.
    let out = env.snaprotd(&["prune", "--orphans", "--dry-run"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    for name in [
        "gone-20260101-0230",
        "gone-20260102-0230",
        "weekly-20260104-0400",
    ] {
        assert!(out.stdout.contains(name), "{name}:\n{}", out.stdout);
    }
    assert!(!out.stdout.contains("before-upgrade"), "{}", out.stdout);
    assert!(out.stdout.contains("would delete 3"), "{}", out.stdout);
    assert_eq!(env.changes(), before);

    // Not on a terminal and no --yes: refused, nothing deleted.
    let out = env.snaprotd(&["prune", "--orphans"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.all().contains("--yes"), "{}", out.all());
    assert_eq!(env.changes(), before);

    let out = env
        .snaprotd(&["prune", "--orphans", "--yes", "--json"])
        .await;
    assert_eq!(out.code, 0, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["version"], 1, "{v}");
    let orphans = v["orphans"].as_array().unwrap();
    assert_eq!(orphans.len(), 3, "{v}");
    assert!(orphans.iter().all(|o| o["result"] == "deleted"), "{v}");
    assert!(orphans.iter().any(|o| o["orphan_of"] == "gone"), "{v}");
    let new: Vec<String> = env.changes()[before.len()..].to_vec();
    assert_eq!(sorted(new), deletes(&f.orphans));
    // The manual one, nightly's and weekly's own are all still there.
    let st = env.sim.state();
    assert!(st.snapshots.contains_key(&f.manual));
    assert!(st.snapshots.contains_key(&f.weekly_own));
    assert_eq!(st.snapshots_of(5).len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_says_it_needs_orphans() {
    let env = Env::new().await;
    fixture(&env);
    let out = env.snaprotd(&["prune", "--yes"]).await;
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(out.all().contains("--orphans"), "{}", out.all());
    assert!(env.changes().is_empty(), "{:?}", env.changes());
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_deletes_nothing_on_a_listing_that_does_not_add_up() {
    let env = Env::new().await;
    fixture(&env);
    env.sim
        .inject(Fault::new("GET", "/snapshots/", FaultAction::ConflictingEntry).times(1000));
    let out = env.snaprotd(&["prune", "--orphans", "--yes"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.all().contains("does not add up"), "{}", out.all());
    assert!(env.changes().is_empty(), "{:?}", env.changes());
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_waits_for_a_job_working_on_the_server() {
    let env = Env::with_create_time(Duration::from_secs(2)).await;
    let f = fixture(&env);
    let once = env
        .command(&["once", "--policy", "nightly"])
        .spawn()
        .expect("once runs");
    let creating = eventually(10, || {
        env.sim
            .state()
            .snapshots_of(5)
            .iter()
            .any(|s| s.status == "in_progress")
    })
    .await;
    assert!(creating, "once did not start its snapshot");
    let out = env
        .snaprotd(&["prune", "--orphans", "--server", "5", "--yes"])
        .await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stderr.contains("busy"), "{}", out.all());
    let done = once.wait_with_output().await.expect("once ends");
    assert_eq!(done.status.code(), Some(0));
    // Every deletion came after once's snapshot had completed.
    let st = env.sim.state();
    let made = st
        .snapshots_of(5)
        .iter()
        .find(|s| s.name.starts_with("nightly-"))
        .and_then(|s| s.finishes_at)
        .expect("once's snapshot");
    let deleted: Vec<_> = st
        .requests
        .iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deleted.len(), f.orphans.len());
    assert!(deleted.iter().all(|r| r.at >= made), "{deleted:?}");
}
