//! Logging to a real systemd-journald, read back with journalctl.

mod common;

use std::process::Command;

use common::{EVERY_2S, Env, TOKEN, eventually};
use snaprotd::sim::Fault;

/// Whether a journald listens on its socket. A socket file left behind by a journald
/// that has since ended refuses the connection.
fn journald_listens() -> bool {
    std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.connect("/run/systemd/journal/socket"))
        .is_ok()
}

/// Starts systemd-journald when none listens (machines whose PID 1 is not systemd);
/// CI does the same before the tests.
fn ensure_journald() {
    if journald_listens() {
        return;
    }
    let _ = Command::new("setsid")
        .args(["--fork", "/lib/systemd/systemd-journald"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    let up = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        journald_listens()
    });
    assert!(
        up,
        "systemd-journald is not running and could not be started"
    );
}

fn journal(args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new("journalctl")
        .args(["-o", "json", "--no-pager"])
        .args(args)
        .output()
        .expect("journalctl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains(TOKEN), "the token is in the journal");
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn journal_entries_carry_the_job_fields_and_only_failures_are_errors() {
    ensure_journald();
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.sim
        .inject(Fault::status("POST", "/snapshots/", 400, None));
    env.write_config(EVERY_2S);
    let mut d = env.start_daemon(&["run", "--log", "journald"], &[]).await;
    let done = || {
        env.sim
            .state()
            .snapshots
            .values()
            .any(|s| s.status == "completed")
    };
    assert!(eventually(15, done).await, "no snapshot completed");
    let pid = format!("_PID={}", d.pid);
    let has_snapshot_fields = |entries: &[serde_json::Value]| {
        entries
            .iter()
            .any(|e| e.get("SNAPSHOT_ID").is_some() && e.get("SNAPSHOT_NAME").is_some())
    };
    assert!(
        eventually(10, || has_snapshot_fields(&journal(&[&pid]))).await,
        "no entry with SNAPSHOT_ID and SNAPSHOT_NAME"
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
    assert!(
        d.log().is_empty(),
        "with --log journald nothing goes to stderr: {}",
        d.log()
    );

    let entries = journal(&[&pid]);
    let job_entries: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e.get("JOB_ID").is_some())
        .collect();
    assert!(!job_entries.is_empty());
    for e in &job_entries {
        assert_eq!(e["SYSLOG_IDENTIFIER"], "snaprotd");
        assert_eq!(e["POLICY"], "fast");
        assert_eq!(e["SERVER_ID"], "1");
        assert_eq!(e["JOB_ID"], "fast@1");
    }
    let snap = entries
        .iter()
        .find(|e| e.get("SNAPSHOT_ID").is_some())
        .unwrap();
    assert!(snap["SNAPSHOT_NAME"].as_str().unwrap().starts_with("fast-"));
    assert!(
        entries
            .iter()
            .all(|e| e.as_object().unwrap().keys().all(|k| !k.starts_with("F_"))),
        "fields are unprefixed"
    );

    // `journalctl -p err` shows the failure and nothing else.
    let errors = journal(&[&pid, "-p", "err"]);
    assert!(!errors.is_empty(), "the failed run is an error");
    for e in &errors {
        let m = e["MESSAGE"].as_str().unwrap_or_default();
        assert!(
            m.contains("failed") || m.contains("rejected"),
            "not a failure: {m}"
        );
        assert!(e["PRIORITY"].as_str().unwrap().parse::<u8>().unwrap() <= 3);
    }
    let ok_lines = entries
        .iter()
        .filter(|e| {
            e["MESSAGE"]
                .as_str()
                .is_some_and(|m| m.contains("rotation done"))
        })
        .count();
    assert!(ok_lines >= 1);
    assert!(errors.iter().all(|e| {
        !e["MESSAGE"]
            .as_str()
            .unwrap_or_default()
            .contains("rotation done")
    }));
}
