//! `snaprotd status` as a monitoring check: exit 0 all ok, 1 a last run failed, 2 overdue
//! (3, unknown, is in `cli_robust.rs`).

mod common;

use chrono::{Duration, Utc};
use common::{Env, eventually};

fn write_run(env: &Env, job: &str, ok: bool, scheduled_for: chrono::DateTime<Utc>) {
    let dir = env.dir.path().join("state/runs");
    std::fs::create_dir_all(&dir).unwrap();
    let (policy, server) = job.split_once('@').unwrap();
    let run = serde_json::json!({
        "job": job, "policy": policy, "server": server.parse::<u64>().unwrap(),
        "scheduled_for": scheduled_for, "started_at": scheduled_for, "finished_at": scheduled_for,
        "ok": ok, "message": if ok { "ok" } else { "snapshot nightly-x (id 9) ended as \"failed\"" },
        "snapshot_name": null,
    });
    std::fs::write(dir.join(format!("{job}.json")), run.to_string()).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn status_exit_codes_say_ok_failed_or_overdue() {
    let env = Env::new().await;
    env.write_config(
        r#"
[[policy]]
name = "nightly"
servers = [1, 2]
schedule = "0 0 * * *"
keep = 1
"#,
    );
    let last_midnight = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();

    // Never ran and not known before: a new job is not overdue (the daemon made the
    // state directory at its start).
    std::fs::create_dir_all(env.dir.path().join("state")).unwrap();
    let out = env.snaprotd(&["status"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("never"), "{}", out.stdout);

    write_run(&env, "nightly@1", true, last_midnight);
    write_run(&env, "nightly@2", true, last_midnight);
    let out = env.snaprotd(&["status", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (&v["version"], &v["status"]),
        (&1.into(), &"ok".into()),
        "{v}"
    );
    assert_eq!(v["jobs"].as_array().unwrap().len(), 2, "{v}");
    assert!(v["jobs"][0]["next_fire"].as_str().is_some(), "{v}");
    assert_eq!(v["jobs"][0]["last_run"]["result"], "ok", "{v}");

    write_run(&env, "nightly@2", false, last_midnight);
    let out = env.snaprotd(&["status"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stdout.contains("FAILED"), "{}", out.stdout);

    // Job 1 last answered the fire of two days ago: yesterday's and today's were missed.
    write_run(&env, "nightly@1", true, last_midnight - Duration::days(2));
    let out = env.snaprotd(&["status"]).await;
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stdout.contains("OVERDUE"), "{}", out.stdout);
}

/// The `STATUS=` texts sent so far, in order.
fn statuses(d: &common::Daemon) -> Vec<String> {
    d.notes()
        .into_iter()
        .filter_map(|n| n.strip_prefix("STATUS=").map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_reload_stays_in_the_status_line_until_a_good_one() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.write_config(common::EVERY_2S);
    let good = std::fs::read_to_string(&env.config).unwrap();
    let mut d = env.start_daemon(&["run"], &[]).await;
    d.wait_note("READY=1", 1, 10).await;
    assert!(
        statuses(&d).iter().all(|s| !s.contains("reload")),
        "{:?}",
        statuses(&d)
    );

    std::fs::write(&env.config, format!("{good}\nkeep = 9\n")).unwrap();
    d.signal("HUP");
    d.wait_note("READY=1", 2, 10).await;
    let failed_at = statuses(&d).len();
    let after_reload = statuses(&d).last().cloned().unwrap();
    assert!(
        after_reload.contains("reload failed") && after_reload.contains("snaprotd.toml:"),
        "the status after a bad reload says so, and why: {after_reload:?}"
    );
    // Jobs keep ending (every 2 s) and each ending updates STATUS=: every one of them
    // still says the reload failed.
    assert!(
        eventually(15, || statuses(&d).len() >= failed_at + 3).await,
        "no later status: {:?}",
        statuses(&d)
    );
    let later = statuses(&d);
    for s in &later[failed_at - 1..] {
        assert!(s.contains("reload failed"), "forgotten: {s:?} in {later:?}");
    }

    std::fs::write(&env.config, &good).unwrap();
    d.signal("HUP");
    d.wait_note("READY=1", 3, 10).await;
    let good_at = statuses(&d).len();
    assert!(
        eventually(15, || statuses(&d).len() >= good_at + 2).await,
        "no later status: {:?}",
        statuses(&d)
    );
    let after = statuses(&d);
    for s in &after[good_at - 1..] {
        assert!(!s.contains("reload failed"), "still failed: {s:?}");
    }
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
}
