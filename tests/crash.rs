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

/// A small deterministic generator, seeded from the clock unless
/// `SNAPROTD_CRASH_SEED` is set (each run prints its seed for reproduction).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Which process is killed, and which one picks up after it.
#[derive(Debug, Clone, Copy)]
enum Victim {
    Once,
    Daemon,
}

/// SIGKILL at random moments of `once` and of the daemon, each followed by a recovery
/// (the daemon, or `once` again). Every iteration must end with the server running, no
/// stopped-server record, no duplicate name, the manual snapshot intact, and the
/// policy's snapshots never fewer than `keep` nor pruned out of order.
/// `SNAPROTD_CRASH_ITERATIONS` sets the number of iterations (the benchmark runs 30).
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_moments_of_once_and_the_daemon() {
    let iterations: u64 = std::env::var("SNAPROTD_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let seed = std::env::var("SNAPROTD_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64 | 1);
    println!("crash matrix: {iterations} iteration(s), seed {seed}");
    let mut rng = Rng(seed);
    let mut worst_recovery = Duration::ZERO;
    for i in 0..iterations {
        let victim = if i % 2 == 0 {
            Victim::Once
        } else {
            Victim::Daemon
        };
        let recover_with_once = rng.below(2) == 0;
        let kill_after = Duration::from_millis(rng.below(1600));
        let took = kill_and_recover(victim, kill_after, recover_with_once).await;
        worst_recovery = worst_recovery.max(took);
        println!(
            "iteration {i}: killed {victim:?} after {} ms, recovered by {} in {} ms: server running, \
             no duplicate, nothing kept lost",
            kill_after.as_millis(),
            if recover_with_once {
                "once"
            } else {
                "the daemon"
            },
            took.as_millis()
        );
    }
    println!(
        "crash matrix: {iterations} iteration(s) passed; slowest recovery {} ms",
        worst_recovery.as_millis()
    );
}

async fn kill_and_recover(
    victim: Victim,
    kill_after: Duration,
    recover_with_once: bool,
) -> Duration {
    let options = SimOptions {
        create_time: Duration::from_millis(600),
        transition_time: Duration::from_millis(100),
        ..common::fast_options()
    };
    let env = Env::with_options(options).await;
    env.sim.add_server(1, "db");
    let manual = {
        let mut st = env.sim.state();
        for days in [2, 1] {
            st.add_snapshot(
                1,
                &days_ago(days).format("cold-%Y%m%d-%H%M%S").to_string(),
                "completed",
                days_ago(days),
            );
        }
        st.add_snapshot(1, "before-upgrade", "completed", days_ago(30))
    };
    env.write_config(
        r#"
[[policy]]
name = "cold"
servers = [1]
schedule = "*/2 * * * * *"
keep = 2
stop_server = true
catch_up = false
snapshot_name = "{policy}-%Y%m%d-%H%M%S"
"#,
    );
    let victim_log = match victim {
        Victim::Once => {
            let mut child = once_command(&env).spawn().expect("once starts");
            tokio::time::sleep(kill_after).await;
            let _ = child.start_kill();
            let _ = child.wait().await;
            String::new()
        }
        Victim::Daemon => {
            let mut d = env.start_daemon(&["run"], &[]).await;
            tokio::time::sleep(kill_after + Duration::from_millis(500)).await;
            d.signal("KILL");
            d.wait_exit(10).await;
            d.log()
        }
    };

    let started = std::time::Instant::now();
    let settled = || {
        let st = env.sim.state();
        st.server_status(1) == Some("running")
            && st.snapshots.values().all(|s| s.status != "in_progress")
            && !env.dir.path().join("state/stopped/1.json").exists()
    };
    let recovery_log = if recover_with_once {
        let out = once_command(&env).output().await.expect("once runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            eventually(10, settled).await,
            "{victim:?} killed after {kill_after:?}: once did not recover:\n{text}\nvictim:\n{victim_log}"
        );
        text
    } else {
        let mut d = env.start_daemon(&["run"], &[]).await;
        d.wait_note("READY=1", 1, 10).await;
        let ok = eventually(15, settled).await;
        d.signal("TERM");
        assert_eq!(d.wait_exit(20).await, Some(0));
        assert!(
            ok,
            "{victim:?} killed after {kill_after:?}: the daemon did not recover:\n{}\nvictim:\n{victim_log}",
            d.log()
        );
        d.log()
    };
    let took = started.elapsed();

    let st = env.sim.state();
    let context = || {
        format!(
            "{victim:?} killed after {kill_after:?}\nrecovery:\n{recovery_log}\nvictim:\n{victim_log}"
        )
    };
    assert_eq!(st.server_status(1), Some("running"), "{}", context());
    assert!(
        st.snapshots.contains_key(&manual),
        "manual snapshot deleted: {}",
        context()
    );
    let mut names = st.snapshot_names(1);
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(
        before,
        names.len(),
        "a duplicate name: {names:?}\n{}",
        context()
    );
    let owned: Vec<_> = st
        .snapshots_of(1)
        .into_iter()
        .filter(|s| s.name.starts_with("cold-") && s.status == "completed")
        .cloned()
        .collect();
    assert!(
        owned.len() >= 2,
        "fewer than keep: {names:?}\n{}",
        context()
    );
    // Pruning deletes oldest first: every deleted snapshot of the policy is older than
    // every one kept (ids grow with creation; the two made before are the oldest).
    let deleted: Vec<u64> = st
        .requests
        .iter()
        .filter(|r| r.method == "DELETE" && r.status < 300)
        .filter_map(|r| r.path.trim_matches('/').rsplit('/').next()?.parse().ok())
        .collect();
    let oldest_kept = owned.iter().map(|s| s.id).min().unwrap_or(u64::MAX);
    assert!(
        deleted.iter().all(|d| *d < oldest_kept),
        "a newer snapshot was deleted before an older one: deleted {deleted:?}, kept {:?}\n{}",
        owned.iter().map(|s| (&s.name, s.id)).collect::<Vec<_>>(),
        context()
    );
    took
}

fn once_command(env: &Env) -> tokio::process::Command {
    env.command(&["once", "--policy", "cold"])
}
