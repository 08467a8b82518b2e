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

const NIGHTLY_3: &str = r#"
[[policy]]
name = "nightly"
servers = [1, 2, 3]
schedule = "0 0 * * *"
keep = 2
"#;

fn last_midnight() -> chrono::DateTime<Utc> {
    Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

/// Every job of `NIGHTLY_3` answered last midnight's fire, and was known for a month.
fn all_ran(env: &Env) {
    for job in ["nightly@1", "nightly@2", "nightly@3"] {
        write_run(env, job, true, last_midnight());
    }
    let month_ago = Utc::now() - Duration::days(30);
    let known: serde_json::Value = ["nightly@1", "nightly@2", "nightly@3"]
        .iter()
        .map(|j| (j.to_string(), serde_json::json!(month_ago)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    std::fs::write(
        env.dir.path().join("state/known-jobs.json"),
        known.to_string(),
    )
    .unwrap();
}

/// Server `server` stopped by `nightly@<server>` and not started again.
fn left_stopped(env: &Env, server: u64) {
    let dir = env.dir.path().join("state/stopped");
    std::fs::create_dir_all(&dir).unwrap();
    let record = serde_json::json!({
        "job": format!("nightly@{server}"), "policy": "nightly", "server": server,
        "snapshot_name": "nightly-20261124-0000", "snapshot_id": 812,
        "scheduled_for": last_midnight(), "stopped_at": last_midnight(),
    });
    std::fs::write(dir.join(format!("{server}.json")), record.to_string()).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_left_stopped_is_critical_but_not_while_its_job_runs() {
    let env = Env::new().await;
    env.write_config(NIGHTLY_3);
    std::fs::create_dir_all(env.dir.path().join("state")).unwrap();
    all_ran(&env);
    let out = env.snaprotd(&["status"]).await;
    assert_eq!(out.code, 0, "{}", out.all());

    left_stopped(&env, 2);
    let out = env.snaprotd(&["status"]).await;
    assert_eq!(out.code, 2, "{}", out.all());
    let below = out
        .stdout
        .split_once("Servers left stopped:")
        .map(|(_, b)| b);
    assert!(
        below.is_some_and(|b| b.contains("server 2") && b.contains("nightly@2")),
        "{}",
        out.stdout
    );
    let out = env.snaprotd(&["status", "--json"]).await;
    assert_eq!(out.code, 2, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["status"], "critical", "{v}");
    assert_eq!(v["servers_stopped"][0]["server"], 2, "{v}");
    assert_eq!(v["servers_stopped"][0]["job"], "nightly@2", "{v}");
    assert_eq!(
        v["servers_stopped"][0]["snapshot_name"], "nightly-20261124-0000",
        "{v}"
    );
    let out = env.snaprotd(&["status", "--check"]).await;
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stdout.starts_with("SNAPROTD CRITICAL - ")
            && out.stdout.contains("server 2 left stopped")
            && out.stdout.contains("stopped=1"),
        "{}",
        out.stdout
    );

    // While a job holds the server (another process's lock), it is that job's to start.
    let locks = env.dir.path().join("state/locks");
    std::fs::create_dir_all(&locks).unwrap();
    let mut holder = tokio::process::Command::new("flock")
        .arg(locks.join("2.lock"))
        .args(["sleep", "30"])
        .kill_on_drop(true)
        .spawn()
        .expect("flock runs");
    let held = eventually(5, || {
        std::fs::File::open(locks.join("2.lock")).is_ok_and(|f| f.try_lock().is_err())
    })
    .await;
    assert!(held);
    let out = env.snaprotd(&["status"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    holder.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn status_provider_finds_jobs_whose_newest_snapshot_is_stale_or_missing() {
    let env = Env::new().await;
    env.write_config(NIGHTLY_3);
    std::fs::create_dir_all(env.dir.path().join("state")).unwrap();
    all_ran(&env);
    let name = |t: chrono::DateTime<Utc>| format!("nightly-{}", t.format("%Y%m%d-%H%M"));
    let (fresh_at, stale_at) = (last_midnight(), last_midnight() - Duration::days(3));
    {
        let mut st = env.sim.state();
        st.add_server(1, "web");
        st.add_server(2, "db");
        st.add_server(3, "mail");
        st.add_snapshot(1, &name(fresh_at), "completed", fresh_at);
        // Server 2: its newest completed snapshot is 3 days old (a newer one failed).
        st.add_snapshot(2, &name(stale_at), "completed", stale_at);
        st.add_snapshot(2, &name(fresh_at), "failed", fresh_at);
        // Server 3: only a manual snapshot.
        st.add_snapshot(3, "before-upgrade", "completed", fresh_at);
    }

    // The state directory says all is well; only the provider knows better.
    let out = env.snaprotd(&["status"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    env.sim.state().requests.clear();
    let out = env.snaprotd(&["status", "--provider"]).await;
    assert_eq!(out.code, 2, "{}", out.all());
    let (table, below) = out
        .stdout
        .split_once("Stale jobs:")
        .unwrap_or_else(|| panic!("no stale jobs listed:\n{}", out.stdout));
    assert!(table.contains("NEWEST"), "{table}");
    assert!(
        below.contains("nightly@2") && below.contains(&name(stale_at)),
        "{below}"
    );
    assert!(below.contains("nightly@3"), "{below}");
    assert!(!below.contains("nightly@1"), "{below}");
    // One account-wide listing.
    let listings: Vec<String> = env
        .sim
        .state()
        .requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(listings, ["GET /snapshots/"], "{listings:?}");

    let out = env.snaprotd(&["status", "--provider", "--json"]).await;
    assert_eq!(out.code, 2, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["status"], "critical", "{v}");
    let jobs = v["jobs"].as_array().unwrap();
    assert_eq!(
        jobs.iter().map(|j| j["stale"].clone()).collect::<Vec<_>>(),
        [false, true, true],
        "{v}"
    );
    assert_eq!(jobs[0]["newest_snapshot"]["name"], name(fresh_at), "{v}");
    assert_eq!(
        jobs[0]["newest_snapshot"]["created_at"],
        fresh_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "{v}"
    );
    assert!(jobs[0]["newest_snapshot"]["id"].is_u64(), "{v}");
    let age = jobs[1]["newest_snapshot"]["age_seconds"].as_i64().unwrap();
    assert!((3 * 86_400..4 * 86_400).contains(&age), "{v}");
    assert!(jobs[2]["newest_snapshot"].is_null(), "{v}");
    assert_eq!(v["servers_stopped"], serde_json::json!([]), "{v}");

    let out = env.snaprotd(&["status", "--provider", "--check"]).await;
    assert_eq!(out.code, 2, "{}", out.all());
    let line = out.stdout.trim_end();
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(
        line.starts_with("SNAPROTD CRITICAL - 2 of 3 jobs stale (nightly@2 newest 3d")
            && line.contains("nightly@3 none")
            && line.ends_with("| jobs=3 failed=0 overdue=0 stale=2 stopped=0 frozen=0"),
        "{line}"
    );

    // Unreachable: unknown, not ok.
    let config = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        config.replace(env.sim.base_url(), "http://127.0.0.1:9/api/v1"),
    )
    .unwrap();
    let out = env.snaprotd(&["status", "--provider", "--check"]).await;
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(
        out.stdout
            .starts_with("SNAPROTD UNKNOWN - cannot list the snapshots"),
        "{}",
        out.stdout
    );
    let out = env.snaprotd(&["status", "--provider", "--json"]).await;
    assert_eq!(out.code, 3, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["status"], "unknown", "{v}");
    // Without --provider, no API call: the state alone.
    let out = env.snaprotd(&["status", "--check"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        out.stdout.trim_end(),
        "SNAPROTD OK - 3 jobs ok | jobs=3 failed=0 overdue=0 stopped=0 frozen=0"
    );
    // No token: --provider is unknown (and says why); without it, no token is needed.
    std::fs::remove_file(env.dir.path().join("token")).unwrap();
    let out = env.snaprotd(&["status", "--provider", "--check"]).await;
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(
        out.stdout
            .starts_with("SNAPROTD UNKNOWN - cannot read the API token: "),
        "{}",
        out.stdout
    );
    let out = env.snaprotd(&["status", "--check"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn status_check_prints_one_line_for_every_state() {
    let env = Env::new().await;
    env.write_config(NIGHTLY_3);
    let out = env.snaprotd(&["status", "--check"]).await;
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(
        out.stdout
            .starts_with("SNAPROTD UNKNOWN - cannot read the state directory"),
        "{}",
        out.stdout
    );
    std::fs::create_dir_all(env.dir.path().join("state")).unwrap();
    all_ran(&env);
    write_run(&env, "nightly@2", false, last_midnight());
    let out = env.snaprotd(&["status", "--check"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(
        out.stdout.trim_end(),
        "SNAPROTD WARNING - 1 of 3 jobs failed (nightly@2) | jobs=3 failed=1 overdue=0 stopped=0 frozen=0"
    );
    write_run(&env, "nightly@3", true, last_midnight() - Duration::days(2));
    let out = env.snaprotd(&["status", "--check"]).await;
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stdout.starts_with(
            "SNAPROTD CRITICAL - 1 of 3 jobs overdue (nightly@3); 1 of 3 jobs failed (nightly@2) |"
        ),
        "{}",
        out.stdout
    );
}

/// A monitoring check whose configuration was broken by an edit, or whose command line
/// is wrong, says UNKNOWN (exit 3), in every output form, not a code it does not know.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_configuration_or_command_line_is_unknown() {
    let env = Env::new().await;
    env.write_config(NIGHTLY_3);
    std::fs::create_dir_all(env.dir.path().join("state")).unwrap();
    let config = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, format!("{config}kep = 3\n")).unwrap();
    let out = env.snaprotd(&["status", "--check"]).await;
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(
        out.stdout
            .starts_with("SNAPROTD UNKNOWN - the configuration is not valid: "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("did you mean `keep`?"),
        "{}",
        out.stdout
    );
    let out = env.snaprotd(&["status", "--json"]).await;
    assert_eq!(out.code, 3, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(v["status"], "unknown", "{v}");
    let out = env.snaprotd(&["status"]).await;
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(out.stdout.starts_with("UNKNOWN: "), "{}", out.stdout);

    std::fs::remove_file(&env.config).unwrap();
    let out = env.snaprotd(&["status", "--check"]).await;
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(
        out.stdout.starts_with("SNAPROTD UNKNOWN - "),
        "{}",
        out.stdout
    );

    // A mistyped option: a usage error, exit 3 for status (2 for other commands).
    let out = env.snaprotd(&["status", "--chek"]).await;
    assert_eq!(out.code, 3, "{}", out.all());
    assert_eq!(env.snaprotd(&["next", "--chek"]).await.code, 2);
}

/// A daemon that worked on the state directory and is down fires nothing: status says
/// so at once (CRITICAL), not only after a fire has passed; an overdue job names the
/// fire it missed.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_that_is_down_is_critical_and_a_missed_fire_is_named() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.write_config(common::EVERY_2S);
    let mut d = env.start_daemon(&["run"], &[]).await;
    d.wait_note("READY=1", 1, 10).await;
    let out = env.snaprotd(&["status", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["daemon"], "running", "{v}");
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));

    let out = env.snaprotd(&["status", "--check"]).await;
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stdout
            .starts_with("SNAPROTD CRITICAL - the daemon is not running"),
        "{}",
        out.stdout
    );
    let out = env.snaprotd(&["status"]).await;
    assert!(
        out.stdout.contains("The daemon is not running"),
        "{}",
        out.stdout
    );

    // A job that missed a fire: the note names that fire.
    env.write_config(NIGHTLY_3);
    for job in ["nightly@1", "nightly@2", "nightly@3"] {
        write_run(&env, job, true, last_midnight() - Duration::days(2));
    }
    let out = env.snaprotd(&["status"]).await;
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stdout.lines().any(|l| {
            l.starts_with("  nightly@1: no run answered the fire of ")
                && l.ends_with(" 00:00:00 +00:00")
        }),
        "{}",
        out.stdout
    );
}
