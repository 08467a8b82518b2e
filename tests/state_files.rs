//! The state directory is trusted only when nobody else can write there, and nothing in
//! it is followed through a link: a link planted at a temp name, a lock or a record
//! never makes snaprotd write (or read) the file it points to; a state directory owned
//! by another user or writable by group/others is refused at start; a state directory
//! that is itself a link (systemd's `DynamicUser=`) works, its target checked.

mod common;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use common::{EVERY_2S, Env, Output, eventually};

/// A `stop_server` policy on server 1 that neither fires during a test nor catches
/// up: only a stopped-server record makes the daemon act on server 1.
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

/// What an attacker would like overwritten: a file outside the state directory.
const VICTIM: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n";

fn state(env: &Env) -> PathBuf {
    env.dir.path().join("state")
}

fn mkdir(path: &Path, mode: u32) {
    std::fs::create_dir_all(path).expect("mkdir");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A file outside the state directory holding `VICTIM`.
fn victim(env: &Env) -> PathBuf {
    let path = env.dir.path().join("victim");
    std::fs::write(&path, VICTIM).expect("victim");
    path
}

fn assert_untouched(victim: &Path, what: &str, out: &str) {
    let now = std::fs::read(victim).expect("victim still there");
    assert!(
        now == VICTIM,
        "{what}: the file the link points to was overwritten with {:?}\n{out}",
        String::from_utf8_lossy(&now)
    );
}

/// Runs `snaprotd -c CONFIG args…`, killed if it outlives `secs`.
async fn snaprotd(env: &Env, args: &[&str], secs: u64) -> Output {
    env.snaprotd_within(args, secs).await
}

async fn once(env: &Env) -> Output {
    snaprotd(env, &["once", "--policy", "fast", "--server", "1"], 20).await
}

fn request_log(env: &Env) -> String {
    env.sim
        .state()
        .requests
        .iter()
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------
// Links planted where snaprotd writes.

#[tokio::test(flavor = "multi_thread")]
async fn a_link_at_a_record_s_temp_name_is_not_followed() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.write_config(EVERY_2S);
    let victim = victim(&env);
    let runs = state(&env).join("runs");
    mkdir(&runs, 0o755);
    // The name today's code writes a record through before renaming it.
    symlink(&victim, runs.join("fast@1.json.tmp")).expect("plant the link");

    let out = once(&env).await;
    assert_eq!(out.code, 0, "once failed:\n{}", out.all());
    assert_untouched(&victim, "temp name", &out.all());
    let record = runs.join("fast@1.json");
    let meta = std::fs::symlink_metadata(&record).expect("the run is recorded");
    assert!(meta.is_file(), "the record is not a plain file: {meta:?}");
    let text = std::fs::read_to_string(&record).expect("record");
    assert!(text.contains("\"job\": \"fast@1\""), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_at_a_lock_is_refused_and_not_written_through() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.write_config(EVERY_2S);
    let victim = victim(&env);
    let locks = state(&env).join("locks");
    mkdir(&locks, 0o755);
    symlink(&victim, locks.join("1.lock")).expect("plant the link");

    let out = once(&env).await;
    assert_untouched(&victim, "server lock", &out.all());
    assert_ne!(
        out.code,
        0,
        "once worked through a linked lock:\n{}",
        out.all()
    );
    assert!(
        out.all().contains("1.lock") && out.all().contains("symbolic link"),
        "once does not say the lock is a link:\n{}",
        out.all()
    );
    assert!(
        !env.changes().iter().any(|c| c.contains("snapshot")),
        "a job ran without its server's lock: {:?}",
        env.changes()
    );

    // The daemon's own lock likewise.
    std::fs::remove_file(locks.join("1.lock")).expect("rm");
    symlink(&victim, state(&env).join("lock")).expect("plant the link");
    let out = snaprotd(&env, &["run"], 10).await;
    assert_untouched(&victim, "daemon lock", &out.all());
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr.contains("lock") && out.stderr.contains("symbolic link"),
        "run does not say its lock is a link:\n{}",
        out.all()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_linked_subdirectory_is_refused_at_start() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.write_config(EVERY_2S);
    let outside = env.dir.path().join("outside");
    mkdir(&outside, 0o755);
    mkdir(&state(&env), 0o700);
    symlink(&outside, state(&env).join("runs")).expect("plant the link");

    let out = once(&env).await;
    assert_ne!(out.code, 0, "once used a linked runs/:\n{}", out.all());
    assert!(
        out.stderr.contains("runs") && out.stderr.contains("symbolic link"),
        "once does not say runs/ is a link:\n{}",
        out.all()
    );
    assert!(
        std::fs::read_dir(&outside)
            .expect("outside")
            .next()
            .is_none(),
        "something was written through the link"
    );
    assert!(
        request_log(&env).is_empty(),
        "once talked to the provider before refusing:\n{}",
        request_log(&env)
    );
}

// ---------------------------------------------------------------------------------
// A forged stopped-server record.

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_record_that_is_a_link_is_not_acted_on_as_a_record() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    env.sim.state().servers.get_mut(&1).unwrap().status = "stopped".into();
    env.write_config(COLD);
    // A well-formed record, outside, for a fire a minute ago: read as a record, the
    // daemon would resume cold@1 and make its snapshot.
    let at = Utc::now() - chrono::Duration::minutes(1);
    let at = DateTime::from_timestamp(at.timestamp(), 0).unwrap();
    let name = at.format("cold-%Y%m%d-%H%M%S").to_string();
    let forged = serde_json::to_vec_pretty(&serde_json::json!({
        "server": 1, "policy": "cold", "job": "cold@1", "snapshot_name": name,
        "snapshot_id": null, "scheduled_for": at.to_rfc3339(),
        "stopped_at": at.to_rfc3339(),
    }))
    .unwrap();
    let outside = env.dir.path().join("forged.json");
    std::fs::write(&outside, &forged).expect("forged");
    let stopped = state(&env).join("stopped");
    mkdir(&stopped, 0o755);
    let link = stopped.join("1.json");
    symlink(&outside, &link).expect("plant the link");

    let mut d = env.start_daemon(&["run"], &[]).await;
    let started = eventually(15, || {
        env.sim.state().server_status(1) == Some("running") && link.symlink_metadata().is_err()
    })
    .await;
    let log = d.log();
    assert!(
        started,
        "server 1 not started or the link not cleared:\n{}\n{log}",
        request_log(&env)
    );
    assert!(
        log.lines().any(|l| l.contains("1.json")
            && l.contains("cannot be read")
            && l.contains("symbolic link")),
        "the log does not say the record is a link and unreadable:\n{log}"
    );
    let snapshots = env.sim.state().snapshot_names(1);
    assert!(
        snapshots.is_empty(),
        "the forged record was acted on: snapshots {snapshots:?}\n{}\n{log}",
        request_log(&env)
    );
    assert_eq!(
        std::fs::read(&outside).expect("forged file"),
        forged,
        "the file the link pointed to was changed"
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0), "{}", d.log());
}

// ---------------------------------------------------------------------------------
// Who may write in the state directory.

/// `once` and `run` both refuse `state`, saying `says` (and naming `dir`).
async fn refused_at_start(env: &Env, dir: &Path, says: &[&str]) {
    let dir = dir.display().to_string();
    let out = once(env).await;
    assert_ne!(out.code, 0, "once accepted it:\n{}", out.all());
    for s in says.iter().chain([&dir.as_str()]) {
        assert!(
            out.stderr.contains(s),
            "once does not say {s:?}:\n{}",
            out.all()
        );
    }
    assert!(
        request_log(env).is_empty(),
        "once talked to the provider:\n{}",
        request_log(env)
    );
    let out = snaprotd(env, &["run"], 10).await;
    assert_ne!(out.code, 0, "run accepted it:\n{}", out.all());
    for s in says.iter().chain([&dir.as_str()]) {
        assert!(
            out.stderr.contains(s),
            "run does not say {s:?}:\n{}",
            out.all()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_dir_writable_by_group_or_others_is_refused() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.write_config(EVERY_2S);
    mkdir(&state(&env), 0o775);
    refused_at_start(&env, &state(&env), &["0775", "chmod"]).await;
    mkdir(&state(&env), 0o707);
    refused_at_start(&env, &state(&env), &["0707", "chmod"]).await;
    assert!(env.changes().is_empty());
}

/// Root on a state directory another user owns (the service's, under `DynamicUser=`)
/// works as that user: its locks and records stay the owner's, and nothing the owner
/// planted there is acted on with root's rights.
#[tokio::test(flavor = "multi_thread")]
async fn root_works_as_the_owner_of_the_state_dir() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.write_config(EVERY_2S);
    mkdir(&state(&env), 0o700);
    if let Err(e) = std::os::unix::fs::chown(state(&env), Some(65534), Some(65534)) {
        // Only root can give a directory away.
        eprintln!("skipped: cannot chown to uid 65534 ({e})");
        return;
    }
    // The owner must reach its directory.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o711))
        .expect("chmod");
    let out = once(&env).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stderr.contains("working as uid 65534"), "{}", out.all());
    for file in ["runs/fast@1.json", "locks/1.lock"] {
        let meta = std::fs::metadata(state(&env).join(file)).expect(file);
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            65534,
            "{file} is not the owner's"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_dir_that_is_a_link_works_and_its_target_is_checked() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.write_config(EVERY_2S);
    // As systemd's DynamicUser= lays it out.
    let real = env.dir.path().join("private").join("state");
    mkdir(&real, 0o700);
    symlink(&real, state(&env)).expect("link");

    let out = once(&env).await;
    assert_eq!(
        out.code,
        0,
        "once refused a linked state dir:\n{}",
        out.all()
    );
    assert!(real.join("runs/fast@1.json").is_file());

    let mut d = env.start_daemon(&["run"], &[]).await;
    d.wait_note("READY=1", 1, 10).await;
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0), "{}", d.log());

    // The target is what is checked.
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = once(&env).await;
    assert_ne!(
        out.code,
        0,
        "once accepted a world-writable target:\n{}",
        out.all()
    );
    assert!(
        out.stderr.contains(&real.display().to_string()) && out.stderr.contains("0777"),
        "once does not name the link's target and its mode:\n{}",
        out.all()
    );
}
