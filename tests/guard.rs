//! The promise "a server snaprotd stopped is started again, and only after its snapshot
//! completed" under pressure: a full state directory, a reload that would move the state
//! directory, SIGTERM with several servers stopped (a hanging start, a long 429 pause),
//! and a job that panics.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use common::{Daemon, EVERY_2S, Env, eventually, request_log};
use snaprotd::sim::{Fault, FaultAction, RequestRecord, SimState};

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

/// The harness header with `daemon_extra` added to its `[daemon]` table, then `policies`.
fn write_config(env: &Env, daemon_extra: &str, policies: &str) {
    let text = format!("{}\n{policies}", env.header())
        .replace("[daemon]\n", &format!("[daemon]\n{daemon_extra}\n"));
    std::fs::write(&env.config, text).expect("config");
}

/// A `stop_server` policy "cold" on `servers`, firing once at `schedule`.
fn cold_policy(servers: &str, schedule: &str, extra: &str) -> String {
    format!(
        r#"
[[policy]]
name = "cold"
servers = [{servers}]
schedule = "{schedule}"
keep = 3
stop_server = true
catch_up = false
snapshot_name = "{{policy}}-%Y%m%d-%H%M%S"
{extra}
"#
    )
}

fn start_path(server: u64) -> String {
    format!("/servers/{server}/start/")
}

/// The first accepted `POST /servers/N/start/`.
fn first_start(st: &SimState, server: u64) -> Option<RequestRecord> {
    st.requests
        .iter()
        .find(|r| r.method == "POST" && r.path == start_path(server) && r.status < 300)
        .cloned()
}

/// The first `POST /servers/N/start/` of any outcome.
fn first_start_sent(st: &SimState, server: u64) -> Option<RequestRecord> {
    st.requests
        .iter()
        .find(|r| r.method == "POST" && r.path == start_path(server))
        .cloned()
}

/// Checks that server 1's first accepted start came after snapshot `name` completed.
fn assert_started_after_completion(env: &Env, name: &str, log: &str) {
    let st = env.sim.state();
    let snapshot = st
        .snapshots
        .values()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no snapshot {name}:\n{}", request_log(&st)));
    let finishes_at = snapshot.finishes_at.expect("the snapshot completes");
    let start = first_start(&st, 1).expect("server 1 was started");
    assert!(
        start.at >= finishes_at,
        "server 1 was started at {} but its snapshot {name} completed only at {}:\n{}\nlog:\n{log}",
        start.at.format("%H:%M:%S%.3f"),
        finishes_at.format("%H:%M:%S%.3f"),
        request_log(&st)
    );
}

/// A tmpfs mounted on a directory for the test, unmounted when dropped (also when the
/// test fails).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let ok = std::process::Command::new("mount")
            // A tmpfs is 1777 by default: a state directory others may write in.
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("mount runs")
            .success();
        assert!(
            ok,
            "cannot mount a tmpfs on {} (run as root)",
            dir.display()
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    /// Writes a file until the file system is full.
    fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.dir.join("filler")).expect("filler file");
        let chunk = vec![0xa5u8; 64 * 1024];
        loop {
            match file.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        let _ = file.sync_all();
        assert!(
            std::fs::write(self.dir.join("probe"), [0u8; 4096]).is_err(),
            "the tmpfs is not full"
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // A dying daemon may still hold it: detach it now, freed when released.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.dir)
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn full_state_dir_does_not_shorten_the_wait() {
    let env = Env::with_create_time(Duration::from_secs(2)).await;
    env.sim.add_server(1, "db");
    let tmpfs = Tmpfs::mount(&env.dir.path().join("state"), "512k");
    let (schedule, at) = one_fire_in(3);
    write_config(&env, "", &cold_policy("1", &schedule, ""));
    let name = at.format("cold-%Y%m%d-%H%M%S").to_string();
    // The create is answered late, so the disk is full before the run writes again.
    env.sim.inject(Fault::new(
        "POST",
        "/snapshots/",
        FaultAction::Latency { ms: 1000 },
    ));

    let mut d = env.start_daemon(&["run"], &[]).await;
    assert!(
        eventually(10, || env.sim.state().server_status(1) == Some("stopped")).await,
        "the job did not stop the server:\n{}",
        d.log()
    );
    tmpfs.fill();

    let started = eventually(15, || {
        let st = env.sim.state();
        first_start(&st, 1).is_some() && st.server_status(1) == Some("running")
    })
    .await;
    assert!(started, "server 1 was not started again:\n{}", d.log());
    assert_started_after_completion(&env, &name, &d.log());
    d.signal("TERM");
    d.wait_exit(20).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_changing_state_dir_is_refused() {
    let env = Env::with_create_time(Duration::from_secs(3)).await;
    env.sim.add_server(1, "db");
    let (schedule, at) = one_fire_in(3);
    let policy = cold_policy("1", &schedule, "");
    write_config(&env, "", &policy);
    let name = at.format("cold-%Y%m%d-%H%M%S").to_string();
    let old_record = env.dir.path().join("state/stopped/1.json");

    let mut d = env.start_daemon(&["run"], &[]).await;
    d.wait_note("READY=1", 1, 10).await;
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
        "the job is not waiting for its snapshot:\n{}",
        d.log()
    );

    let old_dir = env.dir.path().join("state").display().to_string();
    let new_dir = env.dir.path().join("state-moved").display().to_string();
    let text = format!("{}\n{policy}", env.header()).replace(&old_dir, &new_dir);
    assert!(text.contains(&new_dir));
    std::fs::write(&env.config, text).expect("config");
    let mark = d.log().len();
    d.signal("HUP");
    let refused = eventually(10, || {
        let after = d.log()[mark..].to_lowercase();
        after.contains("refus") && after.contains("state_dir") && after.contains("restart")
    })
    .await;
    assert!(
        refused,
        "no log line says the reload was refused for state_dir and needs a restart:\n{}",
        &d.log()[mark..]
    );

    let started = eventually(15, || {
        let st = env.sim.state();
        first_start(&st, 1).is_some() && st.server_status(1) == Some("running")
    })
    .await;
    assert!(started, "server 1 was not started again:\n{}", d.log());
    assert_started_after_completion(&env, &name, &d.log());
    assert!(
        eventually(5, || !old_record.exists()).await,
        "the record stayed in the old state directory:\n{}",
        d.log()
    );
    assert!(
        d.child.try_wait().expect("try_wait").is_none(),
        "the daemon exited after the refused reload:\n{}",
        d.log()
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
}

/// Three servers of one `stop_server` policy, each stopped by its running job, whose
/// snapshot will not complete for minutes.
async fn three_servers_stopped_by_running_jobs() -> (Env, Daemon) {
    let env = Env::with_create_time(Duration::from_secs(600)).await;
    for id in [1, 2, 3] {
        env.sim.add_server(id, "db");
    }
    let (schedule, _) = one_fire_in(3);
    write_config(
        &env,
        "shutdown_timeout = \"1s\"",
        &cold_policy(
            "1, 2, 3",
            &schedule,
            "wait_timeout = \"1h\"\nstop_timeout = \"5s\"",
        ),
    );
    let d = env.start_daemon(&["run"], &[]).await;
    let all_waiting = eventually(12, || {
        let st = env.sim.state();
        [1, 2, 3].iter().all(|id| {
            st.server_status(*id) == Some("stopped")
                && st
                    .snapshots_of(*id)
                    .iter()
                    .any(|s| s.status == "in_progress")
        })
    })
    .await;
    assert!(
        all_waiting,
        "the three jobs did not reach their wait:\n{}",
        d.log()
    );
    (env, d)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_starts_every_stopped_server_at_once() {
    let (env, mut d) = three_servers_stopped_by_running_jobs().await;
    const HANGS: u32 = 100;
    env.sim.inject(
        Fault::new("POST", &start_path(2), FaultAction::Latency { ms: 30_000 }).times(HANGS),
    );
    let term = Instant::now();
    d.signal("TERM");

    // Server 2's start never gets its answer: when it was sent shows in its fault
    // being taken.
    let mut start_2_sent: Option<DateTime<Utc>> = None;
    let mut exited_after: Option<Duration> = None;
    while term.elapsed() < Duration::from_secs(12) {
        if start_2_sent.is_none() {
            let st = env.sim.state();
            let left = st
                .faults
                .iter()
                .find(|f| f.path.as_deref() == Some(start_path(2).as_str()))
                .map_or(0, |f| f.times);
            if left < HANGS {
                start_2_sent = Some(Utc::now());
            }
        }
        if d.child.try_wait().expect("try_wait").is_some() {
            exited_after = Some(term.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let (sent, log) = {
        let st = env.sim.state();
        let sent = [
            first_start_sent(&st, 1).map(|r| r.at),
            start_2_sent,
            first_start_sent(&st, 3).map(|r| r.at),
        ];
        (sent, request_log(&st))
    };
    let shown = |t: &Option<DateTime<Utc>>| t.map(|t| t.format("%H:%M:%S%.3f").to_string());
    let times: Vec<DateTime<Utc>> = sent.iter().flatten().copied().collect();
    assert_eq!(
        times.len(),
        3,
        "not every stopped server got a start request: {:?}\n{log}\nlog:\n{}",
        sent.iter().map(shown).collect::<Vec<_>>(),
        d.log()
    );
    let spread = *times.iter().max().unwrap() - *times.iter().min().unwrap();
    assert!(
        spread <= chrono::Duration::milliseconds(1500),
        "the start requests were spread over {} ms, not sent at once: {:?}\n{log}\nlog:\n{}",
        spread.num_milliseconds(),
        sent.iter().map(shown).collect::<Vec<_>>(),
        d.log()
    );
    let running = eventually(5, || {
        let st = env.sim.state();
        st.server_status(1) == Some("running") && st.server_status(3) == Some("running")
    })
    .await;
    assert!(running, "servers 1 and 3 are not running:\n{}", d.log());
    // shutdown_timeout (1 s) + stop_timeout (5 s) + a few seconds.
    let took = exited_after.unwrap_or_else(|| {
        panic!(
            "the daemon did not exit within 12 s of SIGTERM:\n{}",
            d.log()
        )
    });
    assert!(
        took <= Duration::from_secs(10),
        "the daemon took {took:?} to exit:\n{}",
        d.log()
    );
    assert!(!d.log().contains("panicked"), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_start_calls_are_not_held_by_a_429_pause() {
    let (env, d) = three_servers_stopped_by_running_jobs().await;
    env.sim
        .inject(Fault::status("GET", "/snapshots/", 429, Some(300)));
    assert!(
        eventually(5, || env.sim.state().faults.is_empty()).await,
        "no listing poll got the 429:\n{}",
        d.log()
    );
    let term = Utc::now();
    d.signal("TERM");
    let all_sent = eventually(6, || {
        let st = env.sim.state();
        [1, 2, 3]
            .iter()
            .all(|id| first_start_sent(&st, *id).is_some())
    })
    .await;
    {
        let st = env.sim.state();
        assert!(
            all_sent,
            "not every stopped server got a start request within 6 s of SIGTERM:\n{}\nlog:\n{}",
            request_log(&st),
            d.log()
        );
        for id in [1, 2, 3] {
            let at = first_start_sent(&st, id).expect("sent").at;
            assert!(
                at - term <= chrono::Duration::seconds(3),
                "server {id}'s start was sent {} ms after SIGTERM:\n{}\nlog:\n{}",
                (at - term).num_milliseconds(),
                request_log(&st),
                d.log()
            );
        }
    }
    let running = eventually(5, || {
        let st = env.sim.state();
        [1, 2, 3]
            .iter()
            .all(|id| st.server_status(*id) == Some("running"))
    })
    .await;
    assert!(running, "not every server is running:\n{}", d.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn panic_in_a_job_is_a_failed_run_and_frees_the_server() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    env.write_config(&EVERY_2S.replace("keep = 2", "keep = 2\nstop_server = true"));
    let mut d = env
        .start_daemon(&["run"], &[("SNAPROTD_FAILPOINTS", "panic-after-stop")])
        .await;
    d.wait_log("internal error", 10).await;
    let snapshot_made = eventually(10, || {
        let st = env.sim.state();
        st.server_status(1) == Some("running")
            && st.servers[&1].starts >= 1
            && st.snapshots.values().any(|s| s.status == "completed")
    })
    .await;
    assert!(
        snapshot_made,
        "after the panic, the server was not started or no later fire made a snapshot:\n{}\nlog:\n{}",
        request_log(&env.sim.state()),
        d.log()
    );
    assert!(
        !d.log().contains("still going"),
        "a fire after the panic was skipped as still going:\n{}",
        d.log()
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
    assert_eq!(env.sim.state().server_status(1), Some("running"));
}

/// `once` with the given arguments, as a child process, its output collected.
fn once(env: &Env, args: &[&str]) -> tokio::process::Command {
    env.command(&[&["once"], args].concat())
}

/// Ctrl-C past `shutdown_timeout`: the server is started while its snapshot is still
/// in progress, so that snapshot is not a stopped-server snapshot. It is never counted
/// as one: the next run deletes it once it has finished, and keeps the older ones.
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_unfinished_when_its_server_ran_again_is_not_kept() {
    let env = Env::with_create_time(Duration::from_secs(3)).await;
    env.sim.add_server(1, "db");
    let older = {
        let mut st = env.sim.state();
        let at = common::days_ago(1);
        st.add_snapshot(
            1,
            &at.format("cold-%Y%m%d-%H%M%S").to_string(),
            "completed",
            at,
        )
    };
    write_config(
        &env,
        "shutdown_timeout = \"1s\"",
        &cold_policy("1", "0 0 * * *", "wait_timeout = \"1m\""),
    );
    let child = once(&env, &["--policy", "cold"])
        .spawn()
        .expect("once starts");
    let pid = child.id().expect("pid");
    let waiting = eventually(10, || {
        let st = env.sim.state();
        st.server_status(1) == Some("stopped")
            && st.snapshots_of(1).iter().any(|s| s.status == "in_progress")
    })
    .await;
    assert!(waiting, "once did not reach its wait");
    let ok = std::process::Command::new("kill")
        .args(["-s", "INT", &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok);
    let out = child.wait_with_output().await.expect("once ends");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(130), "{text}");
    assert!(text.contains("not a stopped-server snapshot"), "{text}");
    let (unfinished, name) = {
        let st = env.sim.state();
        assert_eq!(st.server_status(1), Some("running"), "{text}");
        let s = st
            .snapshots_of(1)
            .into_iter()
            .find(|s| s.status == "in_progress")
            .cloned()
            .expect("the unfinished snapshot is still there");
        (s.id, s.name)
    };
    // Once it has finished, the next run deletes it and keeps the older one.
    assert!(
        eventually(10, || env.sim.state().snapshots[&unfinished].status
            == "completed")
        .await
    );
    assert!(
        eventually(5, || Utc::now().format("cold-%Y%m%d-%H%M%S").to_string()
            != name)
        .await
    );
    let out = once(&env, &["--policy", "cold"])
        .output()
        .await
        .expect("once runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    let st = env.sim.state();
    assert!(
        !st.snapshots.contains_key(&unfinished),
        "the snapshot taken while the server ran again was kept:\n{text}"
    );
    assert!(st.snapshots.contains_key(&older), "{text}");
    assert!(
        text.contains("still in progress when its server had to be started again"),
        "{text}"
    );
    let tainted = env.dir.path().join("state/tainted");
    assert!(
        std::fs::read_dir(&tainted).map_or(true, |mut d| d.next().is_none()),
        "the tainted record stays after its snapshot is gone"
    );
}
