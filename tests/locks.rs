//! One writer per state directory: a second daemon is refused, and `once` does not work
//! on a server while the daemon does (it waits, or with `--skip-busy` skips it).

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use common::{Daemon, EVERY_2S, Env, Output, eventually, request_log};

/// A schedule that fires once, `secs` seconds from now (UTC, the default zone), and
/// that fire's time.
fn one_fire_in(secs: i64) -> (String, DateTime<Utc>) {
    let at = Utc::now() + chrono::Duration::seconds(secs);
    let at = at.with_nanosecond(0).unwrap_or(at);
    (
        format!("{} {} {} * * *", at.second(), at.minute(), at.hour()),
        at,
    )
}

/// Whether `text` holds `number` as a whole number (not inside a longer one).
fn names_number(text: &str, number: u32) -> bool {
    let n = number.to_string();
    text.match_indices(&n).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + n.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

/// Runs `snaprotd -c CONFIG args…` as the harness does, killed if it outlives `secs`.
async fn snaprotd(env: &Env, args: &[&str], secs: u64) -> Output {
    env.snaprotd_within(args, secs).await
}

#[tokio::test(flavor = "multi_thread")]
async fn second_daemon_on_one_state_dir_exits() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.write_config(EVERY_2S);
    let mut first = env.start_daemon(&["run"], &[]).await;
    first.wait_note("READY=1", 1, 10).await;

    let mut second = env.start_daemon(&["run"], &[]).await;
    let code = second.wait_exit(10).await;
    let log = second.log();
    assert!(
        code.is_some_and(|c| c != 0),
        "the second daemon exited with {code:?}:\n{log}"
    );
    assert!(
        names_number(&log, first.pid),
        "the second daemon does not name the first one's pid {}:\n{log}",
        first.pid
    );
    let lower = log.to_lowercase();
    assert!(
        lower.contains("state") && lower.contains("in use"),
        "the second daemon does not say the state directory is in use:\n{log}"
    );
    assert!(
        first.child.try_wait().expect("try_wait").is_none(),
        "the first daemon exited:\n{}",
        first.log()
    );
    first.signal("TERM");
    assert_eq!(first.wait_exit(20).await, Some(0));
}

/// The daemon in a `stop_server` run of cold@1, waiting for its snapshot (which takes
/// `create_time`), a second after the fire; returns the index of the first request
/// after that point.
async fn daemon_waiting_for_its_snapshot(create_time: Duration) -> (Env, Daemon, usize) {
    let env = Env::with_create_time(create_time).await;
    env.sim.add_server(1, "db");
    let (schedule, at) = one_fire_in(3);
    env.write_config(&format!(
        r#"
[[policy]]
name = "cold"
servers = [1]
schedule = "{schedule}"
keep = 3
stop_server = true
catch_up = false
wait_timeout = "1m"
snapshot_name = "{{policy}}-%Y%m%d-%H%M%S"
"#
    ));
    let name = at.format("cold-%Y%m%d-%H%M%S").to_string();
    let d = env.start_daemon(&["run"], &[]).await;
    let waiting = eventually(10, || {
        let st = env.sim.state();
        st.server_status(1) == Some("stopped")
            && st
                .snapshots
                .values()
                .any(|s| s.name == name && s.status == "in_progress")
    })
    .await;
    assert!(
        waiting,
        "the daemon's run is not waiting for its snapshot:\n{}",
        d.log()
    );
    // `once` names its snapshot after a later second than the daemon's fire.
    let later = at + chrono::Duration::seconds(1);
    assert!(eventually(5, || Utc::now() >= later).await);
    let mark = env.sim.state().requests.len();
    (env, d, mark)
}

#[tokio::test(flavor = "multi_thread")]
async fn once_waits_for_a_server_the_daemon_works_on() {
    let (env, mut d, mark) = daemon_waiting_for_its_snapshot(Duration::from_secs(3)).await;
    let out = snaprotd(&env, &["once", "--policy", "cold", "--server", "1"], 25).await;

    {
        let st = env.sim.state();
        let log = request_log(&st);
        assert_eq!(out.code, 0, "once failed:\n{}\n{log}", out.all());
        // The daemon's run had stopped the server and created its snapshot before `mark`:
        // the first change after it must be the daemon's start.
        let changes: Vec<(usize, String)> = st
            .requests
            .iter()
            .enumerate()
            .skip(mark)
            .filter(|(_, r)| r.is_change())
            .map(|(i, r)| (i, format!("{} {} {}", r.method, r.path, r.status)))
            .collect();
        let daemon_start = changes
            .iter()
            .position(|(_, c)| c.starts_with("POST /servers/1/start/ 2"));
        assert_eq!(
            daemon_start,
            Some(0),
            "once changed something before the daemon's run started the server again: {changes:?}\n{log}\nonce:\n{}",
            out.all()
        );
        assert!(
            changes[1..]
                .iter()
                .any(|(_, c)| c.starts_with("POST /snapshots/")),
            "once made no snapshot after the daemon's run: {changes:?}\n{}",
            out.all()
        );
        let mut names = st.snapshot_names(1);
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "two snapshots of one name: {names:?}");
    }
    assert!(
        eventually(10, || env.sim.state().server_status(1) == Some("running")).await,
        "server 1 does not end running:\n{}",
        d.log()
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn once_skip_busy_skips_a_busy_server() {
    let (env, _d, mark) = daemon_waiting_for_its_snapshot(Duration::from_secs(6)).await;
    let began = Instant::now();
    let out = snaprotd(
        &env,
        &["once", "--policy", "cold", "--server", "1", "--skip-busy"],
        10,
    )
    .await;
    let took = began.elapsed();

    let st = env.sim.state();
    let log = request_log(&st);
    assert_eq!(
        out.code,
        0,
        "once --skip-busy failed:\n{}\n{log}",
        out.all()
    );
    assert!(
        took <= Duration::from_secs(4),
        "once --skip-busy took {took:?}:\n{}",
        out.all()
    );
    let said = out.all().to_lowercase();
    assert!(
        said.contains("skip") && said.contains("busy"),
        "once does not say the job was skipped because the server is busy:\n{}",
        out.all()
    );
    assert!(
        st.snapshots.values().any(|s| s.status == "in_progress"),
        "the daemon's snapshot completed while once ran: its changes cannot be told apart\n{log}"
    );
    let changes: Vec<String> = st.requests[mark..]
        .iter()
        .filter(|r| r.is_change())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        changes.is_empty(),
        "once --skip-busy sent changing requests: {changes:?}\n{log}"
    );
}
