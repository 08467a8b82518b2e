//! The crash matrix: SIGKILL at each step of a `stop_server` rotation, then a restart.
//! Every case must end with the server running, no duplicate snapshot, nothing owned
//! lost beyond retention, and nothing foreign deleted.

mod common;

use std::time::Duration;

use chrono::{Timelike, Utc};
use common::{Env, days_ago, eventually};
use snaprotd::sim::{Fault, FaultAction, SimOptions};

#[derive(Debug, Clone, Copy)]
enum Step {
    AfterStop,
    CreateSentUnanswered,
    Waiting,
    Pruning,
    Starting,
}

async fn crash_at(step: Step) {
    let options = SimOptions {
        create_time: Duration::from_millis(if matches!(step, Step::Waiting) {
            4000
        } else {
            800
        }),
        transition_time: Duration::from_millis(100),
        ..common::fast_options()
    };
    let env = Env::with_options(options).await;
    env.sim.add_server(1, "db");
    let (manual, old, older) = {
        let mut st = env.sim.state();
        let manual = st.add_snapshot(1, "before-upgrade", "completed", days_ago(30));
        let older = st.add_snapshot(
            1,
            &days_ago(2).format("cold-%Y%m%d-%H%M%S").to_string(),
            "completed",
            days_ago(2),
        );
        let old = st.add_snapshot(
            1,
            &days_ago(1).format("cold-%Y%m%d-%H%M%S").to_string(),
            "completed",
            days_ago(1),
        );
        (manual, old, older)
    };
    let hold =
        |path: &str, method: &str| Fault::new(method, path, FaultAction::Latency { ms: 4000 });
    match step {
        Step::AfterStop => env.sim.inject(hold("/snapshots/", "POST")),
        Step::CreateSentUnanswered => env.sim.inject(Fault::new(
            "POST",
            "/snapshots/",
            FaultAction::HangAfterApply,
        )),
        Step::Waiting => {}
        Step::Pruning => env.sim.inject(hold("/snapshots/", "DELETE")),
        Step::Starting => env.sim.inject(hold("/servers/1/start/", "POST")),
    }
    // One fire, a few seconds from now; no catch-up, so the restart adds no new fire.
    let at = Utc::now() + chrono::Duration::seconds(3);
    let schedule = format!("{} {} {} * * *", at.second(), at.minute(), at.hour());
    env.write_config(&format!(
        r#"
[[policy]]
name = "cold"
servers = [1]
schedule = "{schedule}"
keep = 2
stop_server = true
catch_up = false
snapshot_name = "{{policy}}-%Y%m%d-%H%M%S"
"#
    ));
    let new_name = at.format("cold-%Y%m%d-%H%M%S").to_string();

    let mut d = env.start_daemon(&["run"], &[]).await;
    let reached = |env: &Env| {
        let st = env.sim.state();
        let server = &st.servers[&1];
        let new = st.snapshots.values().find(|s| s.name == new_name);
        match step {
            Step::AfterStop => server.status == "stopped" && new.is_none(),
            Step::CreateSentUnanswered => new.is_some(),
            Step::Waiting => {
                new.is_some_and(|s| s.status == "in_progress")
                    && st.changes().iter().any(|c| c == "POST /snapshots/")
            }
            Step::Pruning => server.starts == 1 && server.status == "running" && new.is_some(),
            Step::Starting => {
                new.is_some_and(|s| s.status == "completed") && server.status == "stopped"
            }
        }
    };
    assert!(
        eventually(15, || reached(&env)).await,
        "{step:?} not reached:\n{}",
        d.log()
    );
    if matches!(step, Step::Pruning) {
        // Let the held DELETE be on its way.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.signal("KILL");
    assert_eq!(d.wait_exit(10).await, None);

    let mut d = env.start_daemon(&["run"], &[]).await;
    d.wait_note("READY=1", 1, 10).await;
    let settled = || {
        let st = env.sim.state();
        st.server_status(1) == Some("running")
            && st.snapshots.values().all(|s| s.status == "completed")
            && !env.dir.path().join("state/stopped/1.json").exists()
    };
    assert!(
        eventually(20, settled).await,
        "{step:?}: did not settle:\n{}",
        d.log()
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0), "{step:?}");

    let st = env.sim.state();
    assert_eq!(st.server_status(1), Some("running"), "{step:?}");
    let names = st.snapshot_names(1);
    assert_eq!(
        names.iter().filter(|n| **n == new_name).count(),
        1,
        "{step:?}: duplicate or missing: {names:?}"
    );
    assert!(
        st.snapshots.contains_key(&manual),
        "{step:?}: the manual snapshot was deleted"
    );
    assert!(
        st.snapshots.contains_key(&old),
        "{step:?}: a snapshot within keep was deleted: {names:?}"
    );
    // The older one may go (beyond keep), nothing else.
    let owned = names.iter().filter(|n| n.starts_with("cold-")).count();
    assert!(owned >= 2, "{step:?}: owned snapshots lost: {names:?}");
    if !matches!(step, Step::Pruning) {
        assert!(
            !st.snapshots.contains_key(&older),
            "{step:?}: the resumed run pruned beyond keep"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_after_the_stop() {
    crash_at(Step::AfterStop).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_with_the_create_sent_but_unanswered() {
    crash_at(Step::CreateSentUnanswered).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_waiting_for_the_snapshot() {
    crash_at(Step::Waiting).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_pruning() {
    crash_at(Step::Pruning).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_starting_the_server_again() {
    crash_at(Step::Starting).await;
}
