//! A server snaprotd stopped is always started again: when `once` is interrupted, when
//! the daemon resumes a record and the resumed run fails early, when the crashed run
//! had already started it, when the record is corrupt, and when its policy is gone.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Daemon, Env, TOKEN, days_ago, eventually, request_log};
use snaprotd::sim::{Fault, SimState};

/// A `stop_server` policy on server 1 that does not fire during a test and does not
/// catch up, so only the resumed record makes the daemon act on server 1.
const COLD: &str = r#"
[[policy]]
name = "cold"
servers = [1]
schedule = "0 0 0 1 1 *"
keep = 2
stop_server = true
catch_up = false
snapshot_name = "{policy}-%Y%m%d-%H%M%S"
"#;

fn stopped_dir(env: &Env) -> PathBuf {
    env.dir.path().join("state").join("stopped")
}

fn record_path(env: &Env) -> PathBuf {
    stopped_dir(env).join("1.json")
}

fn write_record_bytes(env: &Env, bytes: &[u8]) {
    std::fs::create_dir_all(stopped_dir(env)).expect("stopped dir");
    std::fs::write(record_path(env), bytes).expect("record");
}

/// A record in today's format for server 1.
fn write_record(
    env: &Env,
    policy: &str,
    name: &str,
    snapshot_id: Option<u64>,
    scheduled_for: DateTime<Utc>,
) {
    let record = serde_json::json!({
        "server": 1,
        "policy": policy,
        "job": format!("{policy}@1"),
        "snapshot_name": name,
        "snapshot_id": snapshot_id,
        "scheduled_for": scheduled_for.to_rfc3339(),
        "stopped_at": (scheduled_for + chrono::Duration::milliseconds(400)).to_rfc3339(),
    });
    write_record_bytes(env, &serde_json::to_vec_pretty(&record).unwrap());
}

/// A fire a minute ago, whole seconds, and the name `cold` gives it.
fn past_fire() -> (DateTime<Utc>, String) {
    let at = Utc::now() - chrono::Duration::minutes(1);
    let at = DateTime::from_timestamp(at.timestamp(), 0).unwrap();
    (at, at.format("cold-%Y%m%d-%H%M%S").to_string())
}

fn set_stopped(env: &Env, server: u64) {
    env.sim.state().servers.get_mut(&server).unwrap().status = "stopped".into();
}

/// An in-progress snapshot on `server` completing `after` from now; returns its id and
/// completion time.
fn add_in_progress(env: &Env, server: u64, name: &str, after: Duration) -> (u64, DateTime<Utc>) {
    let mut st = env.sim.state();
    let id = st.add_snapshot(server, name, "in_progress", Utc::now());
    let finishes = Utc::now() + chrono::Duration::from_std(after).unwrap();
    st.snapshots.get_mut(&id).unwrap().finishes_at = Some(finishes);
    (id, finishes)
}

/// When each successful `POST /servers/N/start/` was answered.
fn starts(st: &SimState, server: u64) -> Vec<DateTime<Utc>> {
    let path = format!("/servers/{server}/start/");
    st.requests
        .iter()
        .filter(|r| r.method == "POST" && r.path == path && (200..300).contains(&r.status))
        .map(|r| r.at)
        .collect()
}

fn is_running(env: &Env, server: u64) -> bool {
    env.sim.state().server_status(server) == Some("running")
}

/// Waits for server 1 to run while the daemon keeps running.
async fn assert_started_while_running(env: &Env, d: &mut Daemon, what: &str) {
    let started = eventually(15, || is_running(env, 1)).await;
    let st = env.sim.state();
    assert!(
        started,
        "{what}: server 1 is still {:?} while the daemon runs\nrequests:\n{}\nlog:\n{}",
        st.server_status(1),
        request_log(&st),
        d.log()
    );
    drop(st);
    assert!(
        matches!(d.child.try_wait(), Ok(None)),
        "{what}: the daemon exited:\n{}",
        d.log()
    );
}

/// The first start of server 1 came only after `finishes_at`.
fn assert_started_after(env: &Env, finishes_at: DateTime<Utc>, what: &str, log: &str) {
    let st = env.sim.state();
    let first = starts(&st, 1).first().copied();
    assert!(
        first.is_some_and(|at| at >= finishes_at),
        "{what}: server 1 was started at {:?}, before its snapshot completed at {}\nrequests:\n{}\nlog:\n{}",
        first.map(|t| t.to_rfc3339()),
        finishes_at.to_rfc3339(),
        request_log(&st),
        log
    );
}

async fn stop_daemon(mut d: Daemon) {
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0), "{}", d.log());
}

// ---------------------------------------------------------------------------------
// 1. `once` interrupted while it waits for its snapshot.

async fn once_interrupted(signal: &str, want_code: i32) {
    let env = Env::with_create_time(Duration::from_secs(3)).await;
    env.sim.add_server(1, "db");
    let policy = r#"
[[policy]]
name = "cold"
servers = [1]
schedule = "0 0 0 1 1 *"
keep = 2
stop_server = true
snapshot_name = "{policy}-%Y%m%d-%H%M%S"
"#;
    std::fs::write(
        &env.config,
        format!("{}\n{policy}", env.header())
            .replace("[daemon]", "[daemon]\nshutdown_timeout = \"10s\""),
    )
    .unwrap();
    let child = once_child(&env, &["--policy", "cold", "--server", "1"]);
    let pid = child.id().expect("pid");

    let waiting = || {
        let st = env.sim.state();
        st.server_status(1) == Some("stopped")
            && st.snapshots_of(1).iter().any(|s| s.status == "in_progress")
    };
    assert!(
        eventually(15, waiting).await,
        "once never stopped the server and created its snapshot\nrequests:\n{}",
        request_log(&env.sim.state())
    );
    let finishes_at = {
        let st = env.sim.state();
        let snap = st
            .snapshots_of(1)
            .into_iter()
            .find(|s| s.status == "in_progress");
        snap.and_then(|s| s.finishes_at)
            .expect("the snapshot completes")
    };
    let ok = std::process::Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -s {signal} failed");

    let out = tokio::time::timeout(Duration::from_secs(25), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("once did not exit within 25s of SIG{signal}"))
        .expect("wait");
    let code = out.status.code();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let all = format!("{}\n{stderr}", String::from_utf8_lossy(&out.stdout));
    assert!(!all.contains("panicked"), "once panicked:\n{all}");
    assert!(!all.contains(TOKEN), "the token appeared in the output");

    let st = env.sim.state();
    assert_eq!(
        st.server_status(1),
        Some("running"),
        "SIG{signal}: server 1 is not running after once exited (exit code {code:?})\nrequests:\n{}\noutput:\n{all}",
        request_log(&st)
    );
    drop(st);
    assert_eq!(code, Some(want_code), "SIG{signal}: exit code\n{all}");
    assert!(
        stderr.contains("interrupted"),
        "SIG{signal}: stderr does not say interrupted:\n{stderr}"
    );
    assert_started_after(&env, finishes_at, &format!("SIG{signal}"), &all);
}

#[tokio::test(flavor = "multi_thread")]
async fn once_sigint_starts_the_server_again() {
    once_interrupted("INT", 130).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn once_sigterm_starts_the_server_again() {
    once_interrupted("TERM", 143).await;
}

// ---------------------------------------------------------------------------------
// 2. A resumed run that fails in step 1 or 2 still starts the server.

#[tokio::test(flavor = "multi_thread")]
async fn resume_failing_listing_starts_the_server() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    set_stopped(&env, 1);
    env.write_config(COLD);
    let (at, name) = past_fire();
    write_record(&env, "cold", &name, None, at);
    env.sim
        .inject(Fault::status("GET", "/snapshots/", 500, None).times(1000));

    let mut d = env.start_daemon(&["run"], &[]).await;
    assert_started_while_running(&env, &mut d, "listing answers 500").await;
    stop_daemon(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_cap_full_starts_the_server() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    {
        let mut st = env.sim.state();
        for i in 0..5 {
            st.add_snapshot(1, &format!("manual-{i}"), "completed", days_ago(10 + i));
        }
    }
    set_stopped(&env, 1);
    env.write_config(COLD);
    let (at, name) = past_fire();
    write_record(&env, "cold", &name, None, at);

    let mut d = env.start_daemon(&["run"], &[]).await;
    assert_started_while_running(&env, &mut d, "cap full").await;
    stop_daemon(d).await;
    assert_eq!(env.sim.state().snapshots_of(1).len(), 5, "nothing deleted");
}

// ---------------------------------------------------------------------------------
// 3. The crashed run had completed its snapshot and started the server (step 6).

#[tokio::test(flavor = "multi_thread")]
async fn resume_after_crash_in_step_6_does_not_stop_again() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    let (at, name) = past_fire();
    let id = env.sim.state().add_snapshot(1, &name, "completed", at);
    env.write_config(COLD);
    write_record(&env, "cold", &name, Some(id), at);

    let d = env.start_daemon(&["run"], &[]).await;
    d.wait_note("READY=1", 1, 10).await;
    assert!(
        eventually(15, || !record_path(&env).exists()).await,
        "the record stays:\n{}",
        d.log()
    );
    let log = d.log();
    stop_daemon(d).await;

    let st = env.sim.state();
    let stops: Vec<_> = st
        .requests
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/servers/1/stop/")
        .collect();
    assert!(
        stops.is_empty() && st.servers[&1].stops == 0,
        "server 1 was stopped again ({} stop(s))\nrequests:\n{}\nlog:\n{log}",
        st.servers[&1].stops,
        request_log(&st)
    );
    assert_eq!(st.server_status(1), Some("running"));
    let names = st.snapshot_names(1);
    assert_eq!(
        names.iter().filter(|n| **n == name).count(),
        1,
        "one snapshot of that name: {names:?}"
    );
    assert!(!record_path(&env).exists());
}

// ---------------------------------------------------------------------------------
// 4. A corrupt record: the server is started, the file kept aside, the record gone.

async fn corrupt_record(bytes: &[u8], in_progress: bool) {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    set_stopped(&env, 1);
    env.write_config(COLD);
    let finishes_at = in_progress.then(|| {
        let (_, name) = past_fire();
        add_in_progress(&env, 1, &name, Duration::from_secs(3)).1
    });
    write_record_bytes(&env, bytes);

    let mut d = env.start_daemon(&["run"], &[]).await;
    assert_started_while_running(&env, &mut d, "corrupt record").await;
    let log = d.log();
    if let Some(finishes_at) = finishes_at {
        assert_started_after(&env, finishes_at, "corrupt record", &log);
    }
    assert!(
        log.lines()
            .any(|l| l.to_lowercase().contains("error") && l.contains("1.json")),
        "no error about the record in the log:\n{log}"
    );
    let kept: Vec<Vec<u8>> = std::fs::read_dir(stopped_dir(&env))
        .expect("stopped dir")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("1.json.corrupt")
        })
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    assert!(
        kept.iter().any(|k| k == bytes),
        "no copy of the corrupt record kept in {}",
        stopped_dir(&env).display()
    );
    assert!(
        eventually(5, || !record_path(&env).exists()).await,
        "stopped/1.json stays:\n{log}"
    );
    stop_daemon(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_record_empty() {
    corrupt_record(b"", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_record_truncated() {
    corrupt_record(br#"{"server": 1, "policy": "cold", "job": "co"#, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_record_garbage_bytes() {
    corrupt_record(b"\x00\xff\xfe\x1b garbage \x80\x81", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_record_json_array() {
    corrupt_record(b"[1,2]", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_record_server_not_a_number() {
    corrupt_record(br#"{"server": "x"}"#, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_record_waits_for_in_progress_snapshot() {
    corrupt_record(br#"{"server": 1, "policy": "cold", "job": "co"#, true).await;
}

// ---------------------------------------------------------------------------------
// 6. The record's policy is no longer configured: its snapshot is still waited for.

#[tokio::test(flavor = "multi_thread")]
async fn record_of_removed_policy_waits_for_its_snapshot() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    env.sim.add_server(2, "web");
    set_stopped(&env, 1);
    env.write_config(&COLD.replace("servers = [1]", "servers = [2]"));
    let at = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
    let name = at.format("gone-%Y%m%d-%H%M%S").to_string();
    let (id, finishes_at) = add_in_progress(&env, 1, &name, Duration::from_secs(2));
    write_record(&env, "gone", &name, Some(id), at);

    let mut d = env.start_daemon(&["run"], &[]).await;
    assert_started_while_running(&env, &mut d, "removed policy").await;
    assert_started_after(&env, finishes_at, "removed policy", &d.log());
    stop_daemon(d).await;
}

// ---------------------------------------------------------------------------------
// Found in review: a failed start is tried again while the daemon runs; Ctrl-C also
// ends a guard's wait that began before it; a record a live `once` settles is not
// resumed by a daemon started meanwhile.

fn once_child(env: &Env, args: &[&str]) -> tokio::process::Child {
    env.command(&[&["once"], args].concat())
        .spawn()
        .expect("once starts")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_start_is_tried_again_while_the_daemon_runs() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    set_stopped(&env, 1);
    env.write_config(COLD);
    let (at, name) = past_fire();
    let id = env.sim.state().add_snapshot(1, &name, "completed", at);
    write_record(&env, "cold", &name, Some(id), at);
    // Every attempt of the first start fails (max_attempts = 3).
    env.sim
        .inject(Fault::status("POST", "/servers/1/start/", 503, None).times(3));

    let mut d = env.start_daemon(&["run"], &[]).await;
    d.wait_log("is still stopped", 10).await;
    d.wait_log("trying to start it again in", 5).await;
    assert_started_while_running(&env, &mut d, "a failed start").await;
    assert!(
        eventually(5, || !record_path(&env).exists()).await,
        "{}",
        d.log()
    );
    stop_daemon(d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_ends_a_wait_for_a_snapshot_that_began_before_it() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    set_stopped(&env, 1);
    // A record of another fire whose snapshot is in progress for long: `once` settles
    // it first, waiting for that snapshot.
    let (at, name) = past_fire();
    let (id, _) = add_in_progress(&env, 1, &name, Duration::from_secs(60));
    write_record(&env, "cold", &name, Some(id), at);
    std::fs::write(
        &env.config,
        format!("{}\n{COLD}\nwait_timeout = \"40s\"\n", env.header())
            .replace("[daemon]", "[daemon]\nshutdown_timeout = \"1s\""),
    )
    .unwrap();
    let child = once_child(&env, &["--policy", "cold"]);
    let pid = child.id().expect("pid");
    assert!(
        eventually(10, || {
            let st = env.sim.state();
            st.requests
                .iter()
                .any(|r| r.method == "GET" && r.path.starts_with("/snapshots/"))
        })
        .await
    );
    let sent = std::time::Instant::now();
    let ok = std::process::Command::new("kill")
        .args(["-s", "INT", &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("once exits")
        .expect("wait");
    let took = sent.elapsed();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        took < Duration::from_secs(8),
        "once took {took:?} after Ctrl-C with shutdown_timeout = 1s:\n{all}"
    );
    assert_eq!(out.status.code(), Some(130), "{all}");
    assert!(is_running(&env, 1), "{all}");
    assert!(all.contains("not a stopped-server snapshot"), "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_does_not_resume_a_run_that_a_live_once_finishes() {
    let env = Env::with_create_time(Duration::from_secs(2)).await;
    env.sim.add_server(1, "db");
    env.write_config(COLD);
    let child = once_child(&env, &["--policy", "cold"]);
    assert!(
        eventually(10, || record_path(&env).exists()).await,
        "once did not stop the server"
    );
    // The daemon starts while `once` holds the server and its record.
    let d = env.start_daemon(&["run"], &[]).await;
    d.wait_log("resuming that run", 10).await;
    let out = child.wait_with_output().await.expect("once ends");
    assert_eq!(out.status.code(), Some(0));
    d.wait_log("was started again meanwhile", 10).await;
    let log = d.log();
    stop_daemon(d).await;
    let st = env.sim.state();
    assert_eq!(
        st.servers[&1].stops,
        1,
        "stopped again:\n{}\n{log}",
        request_log(&st)
    );
    assert_eq!(st.snapshots_of(1).len(), 1, "{}", request_log(&st));
    assert_eq!(st.server_status(1), Some("running"));
}
