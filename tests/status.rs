//! `snaprotd status` as a monitoring check: exit 0 all ok, 1 a last run failed, 2 overdue
//! (3, unknown, is in `cli_robust.rs`).

mod common;

use chrono::{Duration, Utc};
use common::Env;

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
