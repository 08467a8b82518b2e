//! One rotation end to end: `snaprotd once` against the simulator over loopback.

mod common;

use common::{Env, days_ago};
use snaprotd::sim::{Fault, FaultAction};

const POLICY: &str = r#"
[[policy]]
name = "nightly"
servers = [1]
schedule = "30 2 * * *"
keep = 2
description = "Nightly rotation"
"#;

const STOPPING: &str = r#"
[[policy]]
name = "nightly"
servers = [1]
schedule = "30 2 * * *"
keep = 2
stop_server = true
"#;

fn nightly_name(days: i64) -> String {
    days_ago(days).format("nightly-%Y%m%d-0230").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_a_dated_snapshot_whose_description_names_the_policy() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.write_config(POLICY);
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let state = env.sim.state();
    let snaps = state.snapshots_of(1);
    assert_eq!(snaps.len(), 1);
    let s = snaps[0];
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    assert!(
        s.name.starts_with(&format!("nightly-{today}-")),
        "{}",
        s.name
    );
    assert_eq!(s.name.len(), "nightly-20261123-0230".len());
    assert_eq!(s.status, "completed");
    let d = s.description.clone().unwrap_or_default();
    assert!(
        d.contains("Nightly rotation") && d.contains("nightly"),
        "{d}"
    );
    assert!(
        out.stdout.contains("1 job(s): 1 ok, 0 failed"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cap_full_of_manual_snapshots_fails_clearly_and_deletes_nothing() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    for i in 0..5 {
        env.sim
            .state()
            .add_snapshot(1, &format!("manual-{i}"), "completed", days_ago(10 - i));
    }
    env.write_config(POLICY);
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 1);
    assert!(out.all().contains("5 manual"), "{}", out.all());
    assert!(out.all().contains("at the cap (5 of 5"), "{}", out.all());
    assert_eq!(env.names(1).len(), 5);
    assert!(env.changes().is_empty(), "{:?}", env.changes());
}

#[tokio::test(flavor = "multi_thread")]
async fn makes_room_only_with_a_snapshot_retention_would_delete() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    {
        let mut st = env.sim.state();
        for i in 0..3 {
            st.add_snapshot(1, &format!("manual-{i}"), "completed", days_ago(30 - i));
        }
        st.add_snapshot(1, &nightly_name(2), "completed", days_ago(2));
        st.add_snapshot(1, &nightly_name(1), "completed", days_ago(1));
    }
    env.write_config(POLICY);
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let names = env.names(1);
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(
        !names.contains(&nightly_name(2)),
        "the oldest owned one made room: {names:?}"
    );
    assert!(names.contains(&nightly_name(1)));
    for i in 0..3 {
        assert!(names.contains(&format!("manual-{i}")));
    }
    assert!(out.stderr.contains("making room"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn stops_the_server_and_starts_it_again() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    env.write_config(STOPPING);
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let st = env.sim.state();
    let server = &st.servers[&1];
    assert_eq!(
        (server.status.as_str(), server.stops, server.starts),
        ("running", 1, 1)
    );
    // The stop came before the create, the start after the snapshot completed.
    let changes = st.changes();
    assert_eq!(changes[0], "POST /servers/1/stop/");
    assert_eq!(changes[1], "POST /snapshots/");
    assert_eq!(changes[2], "POST /servers/1/start/");
    assert!(
        env.dir
            .path()
            .join("state/stopped")
            .read_dir()
            .map_or(0, |d| d.count())
            == 0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_was_not_running_is_left_stopped() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    env.sim.state().servers.get_mut(&1).unwrap().status = "stopped".into();
    env.write_config(STOPPING);
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let st = env.sim.state();
    assert_eq!(
        (st.servers[&1].status.as_str(), st.servers[&1].starts),
        ("stopped", 0)
    );
}

/// Runs a stop_server rotation with `fault` injected and checks that it failed, that
/// the server runs again, and that nothing was pruned.
async fn server_is_started_again_when(fault: Fault, wait_timeout: Option<&str>) -> String {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    env.sim
        .state()
        .add_snapshot(1, &nightly_name(3), "completed", days_ago(3));
    env.sim
        .state()
        .add_snapshot(1, &nightly_name(2), "completed", days_ago(2));
    env.sim.inject(fault);
    let mut policy = STOPPING.to_string();
    if let Some(t) = wait_timeout {
        policy.push_str(&format!("wait_timeout = \"{t}\"\n"));
    }
    env.write_config(&policy);
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    let st = env.sim.state();
    assert_eq!(st.servers[&1].status, "running", "{}", out.all());
    assert_eq!((st.servers[&1].stops, st.servers[&1].starts), (1, 1));
    assert!(
        st.changes().iter().all(|c| !c.starts_with("DELETE")),
        "pruned after a failure: {:?}",
        st.changes()
    );
    out.all()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_is_started_again_when_the_create_is_rejected() {
    let out =
        server_is_started_again_when(Fault::status("POST", "/snapshots/", 400, None), None).await;
    assert!(out.contains("rejected (HTTP 400)"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_is_started_again_when_the_snapshot_fails() {
    let out = server_is_started_again_when(
        Fault::new("POST", "/snapshots/", FaultAction::SnapshotFails),
        None,
    )
    .await;
    assert!(out.contains("ended as \"failed\""), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_is_started_again_when_the_wait_times_out() {
    let out = server_is_started_again_when(
        Fault::new("POST", "/snapshots/", FaultAction::SnapshotNeverCompletes),
        Some("600ms"),
    )
    .await;
    assert!(out.contains("after wait_timeout"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_is_started_again_when_5xx_outlast_the_attempts() {
    // The listing before the create succeeds; the waits fail until attempts run out.
    let fault = Fault::status("GET", "/snapshots/", 503, None).times(100);
    let out = server_is_started_again_when_after_create(fault).await;
    assert!(out.contains("HTTP 503 after 3 attempt(s)"), "{out}");
}

async fn server_is_started_again_when_after_create(fault: Fault) -> String {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    env.sim
        .state()
        .add_snapshot(1, &nightly_name(3), "completed", days_ago(3));
    env.write_config(STOPPING);
    // Arm the fault once the create has been seen.
    let sim = env.sim.clone();
    let arm = tokio::spawn(async move {
        loop {
            if sim
                .state()
                .changes()
                .iter()
                .any(|c| c == "POST /snapshots/")
            {
                sim.inject(fault);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    });
    let out = env.snaprotd(&["once"]).await;
    arm.abort();
    assert_eq!(out.code, 1, "{}", out.all());
    let st = env.sim.state();
    assert_eq!(st.servers[&1].status, "running");
    assert_eq!((st.servers[&1].stops, st.servers[&1].starts), (1, 1));
    assert!(st.changes().iter().all(|c| !c.starts_with("DELETE")));
    out.all()
}

#[tokio::test(flavor = "multi_thread")]
async fn prunes_only_after_a_completed_snapshot() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    for d in [4, 3, 2] {
        env.sim
            .state()
            .add_snapshot(1, &nightly_name(d), "completed", days_ago(d));
    }
    env.sim.inject(Fault::new(
        "POST",
        "/snapshots/",
        FaultAction::SnapshotFails,
    ));
    env.write_config(POLICY);
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 1);
    assert_eq!(env.names(1).len(), 4, "nothing pruned after a failure");

    // The next successful run prunes beyond keep, and the failed snapshot too.
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let st = env.sim.state();
    let left: Vec<_> = st
        .snapshots_of(1)
        .iter()
        .map(|s| (s.name.clone(), s.status.clone()))
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|(_, s)| s == "completed"), "{left:?}");
    assert!(left.iter().any(|(n, _)| *n == nightly_name(2)), "{left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn look_alike_names_are_never_touched() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    let look_alikes = [
        format!("{}x", nightly_name(9)),
        "nightly-manual-copy".to_string(),
        nightly_name(9).replace("nightly", "Nightly"),
        "nightly-2026112-02300".to_string(),
    ];
    for (i, n) in look_alikes.iter().enumerate() {
        env.sim
            .state()
            .add_snapshot(1, n, "completed", days_ago(20 - i as i64));
    }
    env.write_config(&POLICY.replace("keep = 2", "keep = 1"));
    for _ in 0..2 {
        let out = env.snaprotd(&["once"]).await;
        assert_eq!(out.code, 0, "{}", out.all());
        // A second run in the same minute adopts instead of creating.
    }
    let names = env.names(1);
    for n in &look_alikes {
        assert!(names.contains(n), "{n} was deleted: {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn follows_next_pages_and_prunes_the_oldest_across_them() {
    let options = snaprotd::sim::SimOptions {
        page_size: 2,
        ..common::fast_options()
    };
    let env = Env::with_options(options).await;
    env.sim.add_server(1, "web");
    // Ids ascend with age reversed, so the oldest snapshot is on the last page.
    for d in [1, 2, 3, 4] {
        env.sim
            .state()
            .add_snapshot(1, &nightly_name(d), "completed", days_ago(d));
    }
    env.write_config(&POLICY.replace("keep = 2", "keep = 3"));
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let names = env.names(1);
    assert!(
        !names.contains(&nightly_name(4)) && !names.contains(&nightly_name(3)),
        "{names:?}"
    );
    assert!(
        names.contains(&nightly_name(1)) && names.contains(&nightly_name(2)),
        "{names:?}"
    );
    let pages = env
        .sim
        .state()
        .requests
        .iter()
        .filter(|r| r.path.contains("page="))
        .count();
    assert!(pages > 0, "next pages were followed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_create_answer_is_adopted_not_duplicated() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.sim.inject(Fault::new(
        "POST",
        "/snapshots/",
        FaultAction::DropAfterApply,
    ));
    env.write_config(POLICY);
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(env.names(1).len(), 1, "exactly one snapshot");
    let creates = env
        .changes()
        .iter()
        .filter(|c| *c == "POST /snapshots/")
        .count();
    assert_eq!(creates, 1, "the create was not sent again");
    assert!(out.all().contains("adopted"), "{}", out.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_that_times_out_is_adopted_not_duplicated() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.sim.inject(Fault::new(
        "POST",
        "/snapshots/",
        FaultAction::HangAfterApply,
    ));
    // The header's request_timeout (2s) cuts the hanging create.
    env.write_config(POLICY);
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(env.names(1).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_of_the_same_name_is_adopted_on_a_second_run() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.write_config(&POLICY.replace("30 2 * * *", "*/5 * * * *"));
    // Names are per minute: two runs in the same minute share one name.
    let minute_start = chrono::Utc::now().timestamp() % 60;
    if minute_start > 55 {
        tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    }
    assert_eq!(env.snaprotd(&["once"]).await.code, 0);
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(env.names(1).len(), 1, "{:?}", env.names(1));
    assert!(
        out.stdout.contains("(adopted: it existed)"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.sim
        .inject(Fault::status("GET", "/snapshots/", 429, Some(1)));
    env.write_config(POLICY);
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let st = env.sim.state();
    let first = &st.requests[0];
    let second = &st.requests[1];
    assert_eq!(first.status, 429);
    let gap = second.at - first.at;
    assert!(
        gap >= chrono::Duration::milliseconds(1000),
        "retried after {gap}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_fails_fast_and_says_authentication() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.write_config(POLICY);
    std::fs::write(env.dir.path().join("token"), "wrong-token").unwrap();
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.all().contains("authentication failed (HTTP 401)"),
        "{}",
        out.all()
    );
    assert_eq!(env.sim.state().requests.len(), 1, "no retry on 401");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_body_is_an_error_not_a_panic() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.sim
        .inject(Fault::new("GET", "/snapshots/", FaultAction::Malformed).times(10));
    env.write_config(POLICY);
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.all().contains("answer could not be read"),
        "{}",
        out.all()
    );
    assert!(env.changes().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_never_appears_in_any_output() {
    // `Env::snaprotd` asserts the token's absence on every run; here the runs cover
    // success, failures, listing, dry-run and the configuration check.
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.write_config(POLICY);
    for args in [
        &["check"][..],
        &["once"],
        &["once", "--dry-run"],
        &["list"],
        &["list", "--json"],
    ] {
        let out = env.snaprotd(args).await;
        assert_eq!(out.code, 0, "{args:?}: {}", out.all());
    }
    env.sim
        .inject(Fault::status("GET", "/snapshots/", 500, None).times(10));
    assert_eq!(env.snaprotd(&["once"]).await.code, 1);
    env.sim
        .inject(Fault::new("GET", "/snapshots/", FaultAction::Malformed));
    assert_eq!(env.snaprotd(&["list"]).await.code, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_makes_no_changing_call_and_prints_the_plan() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    for (i, d) in [9, 8, 7].iter().enumerate() {
        env.sim
            .state()
            .add_snapshot(1, &format!("manual-{i}"), "completed", days_ago(*d));
    }
    env.sim
        .state()
        .add_snapshot(1, &nightly_name(2), "completed", days_ago(2));
    env.sim
        .state()
        .add_snapshot(1, &nightly_name(1), "completed", days_ago(1));
    env.write_config(STOPPING);
    let out = env.snaprotd(&["once", "--dry-run"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(env.changes().is_empty(), "{:?}", env.changes());
    assert!(
        out.stdout.contains("would create nightly-"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("would delete {}", nightly_name(2))),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("making room"), "{}", out.stdout);
    assert!(
        out.stdout.contains("would be stopped first"),
        "{}",
        out.stdout
    );
}
