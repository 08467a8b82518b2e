//! The daemon as systemd runs it: the real binary, a real NOTIFY_SOCKET, real signals.

mod common;

use common::{EVERY_2S, Env, eventually};

fn creates(env: &Env) -> usize {
    env.changes()
        .iter()
        .filter(|c| *c == "POST /snapshots/")
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn tells_systemd_ready_reloading_ready_stopping_and_pings_the_watchdog() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.write_config(EVERY_2S);
    let mut d = env
        .start_daemon(&["run"], &[("WATCHDOG_USEC", "200000")])
        .await;
    d.wait_note("READY=1", 1, 10).await;
    assert!(
        d.notes().iter().any(|n| n.starts_with("STATUS=1 jobs")),
        "{:?}",
        d.notes()
    );
    d.wait_note("WATCHDOG=1", 3, 5).await;

    d.signal("HUP");
    d.wait_note("READY=1", 2, 10).await;
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));

    let order: Vec<String> = d
        .notes()
        .into_iter()
        .filter(|n| ["READY=1", "RELOADING=1", "STOPPING=1"].contains(&n.as_str()))
        .collect();
    assert_eq!(order, ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]);
    // Type=notify-reload's protocol: RELOADING=1 and the CLOCK_MONOTONIC time of the
    // reload in one message.
    let reloading = d
        .messages()
        .into_iter()
        .find(|m| m.lines().any(|l| l == "RELOADING=1"))
        .expect("a RELOADING=1 message");
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC with RELOADING=1: {reloading:?}"))
        .parse()
        .expect("a number");
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    let now = now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1000;
    assert!(
        usec <= now && now - usec < 30_000_000,
        "MONOTONIC_USEC={usec} is not the monotonic time of the reload (now {now})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fires_on_schedule_and_prunes_beyond_keep() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.write_config(EVERY_2S);
    let mut d = env.start_daemon(&[], &[]).await; // a bare `snaprotd` is the daemon
    assert!(eventually(15, || creates(&env) >= 4).await, "{}", d.log());
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
    let st = env.sim.state();
    assert!(st.snapshots_of(1).len() <= 3, "{:?}", st.snapshot_names(1));
    assert!(st.changes().iter().any(|c| c.starts_with("DELETE")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_reload_is_logged_and_the_old_schedule_keeps_firing() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.write_config(EVERY_2S);
    let mut d = env.start_daemon(&["run"], &[]).await;
    d.wait_note("READY=1", 1, 10).await;
    std::fs::write(
        &env.config,
        "[[policy]]\nname = \"broken\"\nschedule = \"every day\"\n",
    )
    .unwrap();
    d.signal("HUP");
    d.wait_note("READY=1", 2, 10).await;
    d.wait_log("reload failed, keeping the old configuration", 5)
        .await;
    assert!(
        d.log().contains("snaprotd.toml:"),
        "the error names the file:\n{}",
        d.log()
    );
    let before = creates(&env);
    assert!(
        eventually(10, || creates(&env) >= before + 2).await,
        "the old schedule stopped:\n{}",
        d.log()
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn keeps_firing_after_a_missed_fire() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.write_config(EVERY_2S);
    let mut d = env.start_daemon(&["run"], &[]).await;
    assert!(eventually(10, || creates(&env) >= 1).await, "{}", d.log());
    // Frozen for several fires, as in a suspend.
    d.signal("STOP");
    let frozen_at = creates(&env);
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert!(creates(&env) <= frozen_at + 1);
    d.signal("CONT");
    assert!(
        eventually(10, || creates(&env) >= frozen_at + 3).await,
        "no fire after the freeze:\n{}",
        d.log()
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fire_while_the_previous_run_still_goes_is_skipped_with_a_warning() {
    let env = Env::with_create_time(std::time::Duration::from_secs(5)).await;
    env.sim.add_server(1, "web");
    env.write_config(&EVERY_2S.replace("*/2", "*/1"));
    let mut d = env.start_daemon(&["run"], &[]).await;
    d.wait_log("skipping the fire at", 10).await;
    assert_eq!(creates(&env), 1, "one run at a time");
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_of_one_server_queue_and_at_most_max_concurrent_jobs_run() {
    let env = Env::with_create_time(std::time::Duration::from_millis(600)).await;
    for id in [1, 2, 3] {
        env.sim.add_server(id, "s");
    }
    let policies = r#"
[[policy]]
name = "a"
servers = [1, 2, 3]
schedule = "*/10 * * * * *"
keep = 1
snapshot_name = "{policy}-%Y%m%d-%H%M%S"

[[policy]]
name = "b"
servers = [1]
schedule = "*/10 * * * * *"
keep = 1
snapshot_name = "{policy}-%Y%m%d-%H%M%S"
"#;
    std::fs::write(
        &env.config,
        format!("{}\n{policies}", env.header())
            .replace("[daemon]", "[daemon]\nmax_concurrent_jobs = 2"),
    )
    .unwrap();
    let mut d = env.start_daemon(&["run"], &[]).await;
    let all_done = || {
        creates(&env) >= 4
            && env
                .sim
                .state()
                .snapshots
                .values()
                .all(|s| s.status == "completed")
    };
    assert!(eventually(20, all_done).await, "{}", d.log());
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
    // Each snapshot was in progress for 600 ms from its created_at: count overlaps.
    let st = env.sim.state();
    let spans: Vec<(i64, u64)> = st
        .snapshots
        .values()
        .map(|s| (s.created_at.timestamp_millis(), s.server_id))
        .collect();
    for (t, server) in &spans {
        let overlapping: Vec<&(i64, u64)> =
            spans.iter().filter(|(u, _)| (u - t).abs() < 550).collect();
        assert!(overlapping.len() <= 2, "more than 2 at once: {spans:?}");
        assert!(
            overlapping.iter().filter(|(_, s)| s == server).count() == 1,
            "two jobs of server {server} overlapped: {spans:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_a_stop_server_job_then_restart_runs_the_server_again_without_a_duplicate() {
    let env = Env::with_create_time(std::time::Duration::from_secs(2)).await;
    env.sim.add_server(1, "db");
    let policy = r#"
[[policy]]
name = "cold"
servers = [1]
schedule = "*/10 * * * * *"
keep = 2
stop_server = true
snapshot_name = "{policy}-%Y%m%d-%H%M%S"
"#;
    env.write_config(policy);
    let mut d = env.start_daemon(&["run"], &[]).await;
    // Killed while the snapshot is in progress and the server stopped.
    assert!(eventually(20, || creates(&env) == 1).await, "{}", d.log());
    d.signal("KILL");
    assert_eq!(d.wait_exit(10).await, None);
    assert_eq!(env.sim.state().server_status(1), Some("stopped"));

    let mut d = env.start_daemon(&["run"], &[]).await;
    d.wait_log("resuming", 10).await;
    assert!(
        eventually(15, || {
            let st = env.sim.state();
            st.server_status(1) == Some("running")
                && st.snapshots.values().all(|s| s.status == "completed")
        })
        .await,
        "{}",
        d.log()
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
    assert_eq!(
        creates(&env),
        1,
        "no duplicate snapshot: {:?}",
        env.names(1)
    );
    assert_eq!(env.names(1).len(), 1);
    assert!(d.log().contains("adopting it"), "{}", d.log());
    assert!(!env.dir.path().join("state/stopped/1.json").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_waits_for_a_running_job_and_the_server_runs_after_exit() {
    let env = Env::with_create_time(std::time::Duration::from_secs(2)).await;
    env.sim.add_server(1, "db");
    env.write_config(&EVERY_2S.replace("keep = 2", "keep = 2\nstop_server = true"));
    let mut d = env.start_daemon(&["run"], &[]).await;
    assert!(eventually(10, || creates(&env) == 1).await, "{}", d.log());
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
    let st = env.sim.state();
    assert_eq!(st.server_status(1), Some("running"));
    assert!(
        st.snapshots.values().all(|s| s.status == "completed"),
        "the running job finished"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn past_shutdown_timeout_jobs_are_interrupted_and_the_server_is_started() {
    let env = Env::with_create_time(std::time::Duration::from_secs(30)).await;
    env.sim.add_server(1, "db");
    let config = EVERY_2S.replace(
        "keep = 2",
        "keep = 2\nstop_server = true\nwait_timeout = \"1m\"",
    );
    std::fs::write(
        &env.config,
        format!("{}\n{config}", env.header())
            .replace("[daemon]", "[daemon]\nshutdown_timeout = \"1s\""),
    )
    .unwrap();
    let mut d = env.start_daemon(&["run"], &[]).await;
    assert!(eventually(10, || creates(&env) == 1).await, "{}", d.log());
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
    assert!(
        d.log()
            .contains("interrupted while waiting for the snapshot"),
        "{}",
        d.log()
    );
    assert!(
        d.log().contains("not a stopped-server snapshot"),
        "{}",
        d.log()
    );
    assert_eq!(env.sim.state().server_status(1), Some("running"));
}

#[tokio::test(flavor = "multi_thread")]
async fn catch_up_runs_a_missed_fire_once_but_a_first_start_runs_nothing_early() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.write_config(
        r#"
[[policy]]
name = "nightly"
servers = [1]
schedule = "0 0 * * *"
keep = 1
"#,
    );
    // First start ever: nothing runs.
    let mut d = env.start_daemon(&["run"], &[]).await;
    d.wait_note("READY=1", 1, 10).await;
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
    assert_eq!(creates(&env), 0);

    // The job was known two days ago and its last run answered a fire before yesterday's.
    let state = env.dir.path().join("state");
    let two_days_ago = chrono::Utc::now() - chrono::Duration::days(2);
    std::fs::write(
        state.join("known-jobs.json"),
        format!("{{\"nightly@1\": \"{}\"}}", two_days_ago.to_rfc3339()),
    )
    .unwrap();
    let mut d = env.start_daemon(&["run"], &[]).await;
    d.wait_log("catch-up: the fire at", 10).await;
    assert!(eventually(10, || creates(&env) == 1).await, "{}", d.log());
    d.wait_log("rotation done", 10).await;
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));

    // Answered now: a third start does not run it again.
    let mut d = env.start_daemon(&["run"], &[]).await;
    d.wait_note("READY=1", 1, 10).await;
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
    assert_eq!(creates(&env), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_raises_max_concurrent_jobs_runs_more_jobs_at_once() {
    let env = Env::with_create_time(std::time::Duration::from_millis(1500)).await;
    for id in [1, 2, 3] {
        env.sim.add_server(id, "s");
    }
    let policy = r#"
[[policy]]
name = "a"
servers = [1, 2, 3]
schedule = "*/3 * * * * *"
keep = 1
snapshot_name = "{policy}-%Y%m%d-%H%M%S"
"#;
    let write = |max: usize| {
        let text = format!("{}\n{policy}", env.header()).replace(
            "[daemon]",
            &format!("[daemon]\nmax_concurrent_jobs = {max}"),
        );
        std::fs::write(&env.config, text).unwrap();
    };
    write(1);
    let mut d = env.start_daemon(&["run"], &[]).await;
    d.wait_note("READY=1", 1, 10).await;
    write(3);
    d.signal("HUP");
    d.wait_note("READY=1", 2, 10).await;
    let reloaded = chrono::Utc::now();
    // One job at a time, a create follows the last by the 1.5 s a snapshot takes; three
    // at a time, a fire's three creates go out together.
    let together = || {
        let st = env.sim.state();
        let creates: Vec<_> = st
            .requests
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/snapshots/" && r.at > reloaded)
            .map(|r| r.at)
            .collect();
        creates
            .windows(3)
            .any(|w| w[2] - w[0] < chrono::Duration::milliseconds(500))
    };
    assert!(
        eventually(15, together).await,
        "no three jobs ran at once after the reload:\n{}\n{}",
        common::request_log(&env.sim.state()),
        d.log()
    );
    assert!(
        d.log().contains("max_concurrent_jobs: 1 → 3"),
        "{}",
        d.log()
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
}
