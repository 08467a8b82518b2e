//! The daemon under a wall clock that moves: libfaketime, preloaded into the real
//! binary, shifts its wall clock (CLOCK_REALTIME) by an offset the test rewrites while
//! the daemon runs, and leaves the monotonic clock alone — as when NTP steps a clock
//! that a bad RTC had set wrong. The simulator runs in this process on the real clock.

mod common;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use common::{Env, eventually};

fn creates(env: &Env) -> usize {
    env.changes()
        .iter()
        .filter(|c| *c == "POST /snapshots/")
        .count()
}

/// The wall clock of the processes started with [`FakeClock::envs`]: the real one
/// shifted by an offset kept in a file, read again at every clock reading.
struct FakeClock {
    file: PathBuf,
}

impl FakeClock {
    fn new(dir: &Path, offset_secs: i64) -> FakeClock {
        let clock = FakeClock {
            file: dir.join("faketime.rc"),
        };
        clock.set(offset_secs);
        clock
    }

    /// Moves the wall clock to the real time plus `offset_secs`. The file is replaced,
    /// never seen half written.
    fn set(&self, offset_secs: i64) {
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("{offset_secs:+}\n")).expect("faketime file");
        std::fs::rename(&tmp, &self.file).expect("faketime file");
    }

    /// Sets the wall clock to `at` (and lets it run on from there).
    fn set_to(&self, at: DateTime<Utc>) {
        self.set((at - Utc::now()).num_seconds());
    }

    fn envs(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), libfaketime().display().to_string()),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                self.file.display().to_string(),
            ),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ]
    }
}

/// The multi-threaded libfaketime of the `libfaketime` package.
fn libfaketime() -> PathBuf {
    let candidates = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("faketime/libfaketimeMT.so.1"))
        .chain([PathBuf::from("/usr/lib/faketime/libfaketimeMT.so.1")]);
    for path in candidates {
        if path.exists() {
            return path;
        }
    }
    panic!("these tests need libfaketime: apt-get install faketime (.ci/run installs it)");
}

async fn start(env: &Env, clock: &FakeClock, extra: &[(&str, &str)]) -> common::Daemon {
    let mut envs = clock.envs();
    envs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.start_daemon(&["run"], &envs).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clock_set_back_an_hour_keeps_the_schedule_firing_on_the_new_clock() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.write_config(common::EVERY_2S);
    let clock = FakeClock::new(env.dir.path(), 0);
    // The watchdog check is what looks at the clock when the kernel cannot tell (a
    // clock faked for one process never moves the kernel's).
    let mut d = start(&env, &clock, &[("WATCHDOG_USEC", "1000000")]).await;
    assert!(eventually(10, || creates(&env) >= 1).await, "{}", d.log());

    clock.set(-3600);
    let before = creates(&env);
    assert!(
        eventually(10, || creates(&env) >= before + 2).await,
        "no fire after the clock went back an hour:\n{}",
        d.log()
    );
    d.wait_log("the wall clock jumped back", 1).await;

    // And forward again: fires go on, the missed ones once.
    clock.set(0);
    let before = creates(&env);
    assert!(
        eventually(10, || creates(&env) >= before + 2).await,
        "no fire after the clock went forward an hour:\n{}",
        d.log()
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fire_missed_in_a_repeated_dst_hour_is_caught_up_and_reported_overdue() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.write_config(
        r#"
[[policy]]
name = "nightly"
servers = [1]
schedule = "30 2 * * *"
timezone = "Europe/Berlin"
keep = 1
"#,
    );
    // Known for days; the last run answered the fire of 2026-10-24 02:30 CEST. It is now
    // 02:10 CET on 2026-10-25, the second pass of the repeated hour: that morning's
    // 02:30 CEST (00:30Z) has passed without a run.
    let state = env.dir.path().join("state");
    std::fs::create_dir_all(state.join("runs")).unwrap();
    std::fs::write(
        state.join("known-jobs.json"),
        r#"{"nightly@1": "2026-10-20T00:00:00Z"}"#,
    )
    .unwrap();
    let last = "2026-10-24T00:30:00Z";
    let run = serde_json::json!({
        "job": "nightly@1", "policy": "nightly", "server": 1,
        "scheduled_for": last, "started_at": last, "finished_at": last,
        "ok": true, "message": "ok", "snapshot_name": null,
    });
    std::fs::write(state.join("runs/nightly@1.json"), run.to_string()).unwrap();
    let clock = FakeClock::new(env.dir.path(), 0);
    let now: DateTime<Utc> = "2026-10-25T01:10:00Z".parse().unwrap();

    clock.set_to(now);
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_snaprotd"))
        .arg("-c")
        .arg(&env.config)
        .arg("status")
        .envs(clock.envs())
        .output()
        .expect("status runs");
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(2), "not overdue:\n{stdout}");

    clock.set_to(now);
    let mut d = start(&env, &clock, &[]).await;
    d.wait_log(
        "catch-up: the fire at 2026-10-25 02:30:00 +02:00 was missed",
        10,
    )
    .await;
    assert!(eventually(10, || creates(&env) == 1).await, "{}", d.log());
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
}
