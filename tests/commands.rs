//! The other commands as an operator uses them: the simulator as its own process,
//! `list`, `restore`, `next` and the demo.

mod common;

use std::process::Stdio;

use common::{Env, TOKEN, days_ago};
use tokio::io::{AsyncBufReadExt, BufReader};

const POLICY: &str = r#"
[[policy]]
name = "nightly"
servers = [5]
schedule = "30 2 * * *"
keep = 2
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_simulator_prints_its_address_first_and_serves_the_api() {
    let mut sim = tokio::process::Command::new(env!("CARGO_BIN_EXE_snaprotd"))
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--servers",
            "5,6",
            "--create-time",
            "200ms",
            "--token",
            TOKEN,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("sim starts");
    let stdout = sim.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base_url = lines
        .next_line()
        .await
        .expect("reads")
        .expect("a first line");
    assert!(
        base_url.starts_with("http://127.0.0.1:") && base_url.ends_with("/api/v1"),
        "{base_url}"
    );

    let env = Env::new().await;
    let config = format!("{}\n{POLICY}", env.header()).replace(env.sim.base_url(), &base_url);
    std::fs::write(&env.config, config).unwrap();
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());

    // The control API shows what happened.
    let control = base_url.replace("/api/v1", "/_sim/state");
    let state: serde_json::Value = reqwest::get(&control).await.unwrap().json().await.unwrap();
    let snapshots = state["snapshots"].as_array().unwrap();
    assert_eq!(snapshots.len(), 1);
    assert_eq!(snapshots[0]["server_id"], 5);
    assert_eq!(snapshots[0]["status"], "completed");
    // Unauthenticated API calls are refused.
    let r = reqwest::get(format!("{base_url}/snapshots/"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn list_shows_which_policy_owns_each_snapshot() {
    let env = Env::new().await;
    env.sim.add_server(5, "web");
    env.sim
        .state()
        .add_snapshot(5, "before-upgrade", "completed", days_ago(3));
    env.write_config(POLICY);
    assert_eq!(env.snaprotd(&["once"]).await.code, 0);
    let out = env.snaprotd(&["list", "--server", "5"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("SERVER") && lines[0].contains("OWNER"),
        "{}",
        out.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("before-upgrade") && l.ends_with("manual")),
        "{}",
        out.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("nightly-") && l.ends_with("nightly")),
        "{}",
        out.stdout
    );
    let json = env.snaprotd(&["list", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["version"], 1, "{v}");
    assert_eq!(v["snapshots"].as_array().unwrap().len(), 2, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_needs_confirmation_and_restores_with_yes() {
    let env = Env::new().await;
    env.sim.add_server(5, "web");
    let id = env
        .sim
        .state()
        .add_snapshot(5, "known-good", "completed", days_ago(1));
    env.write_config(POLICY);
    let id = id.to_string();

    // Not on a terminal and no --yes: refused, nothing sent.
    let out = env.snaprotd(&["restore", &id]).await;
    assert_eq!(out.code, 1);
    assert!(out.all().contains("--yes"), "{}", out.all());
    assert!(env.changes().is_empty());

    let out = env.snaprotd(&["restore", &id, "--yes"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        env.changes(),
        vec![format!("POST /snapshots/{id}/restore/")]
    );
    assert_eq!(env.sim.state().server_status(5), Some("restoring"));

    let out = env.snaprotd(&["restore", "99999", "--yes"]).await;
    assert_eq!(out.code, 1);
    assert!(out.all().contains("does not exist"), "{}", out.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn next_lists_fires_across_policies_in_time_order() {
    let env = Env::new().await;
    env.write_config(
        r#"
[[policy]]
name = "hourly"
servers = [1]
schedule = "15 * * * *"
keep = 1

[[policy]]
name = "daily"
servers = [2]
schedule = "0 0 * * *"
keep = 1
"#,
    );
    let out = env.snaprotd(&["next", "--count", "30", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["version"], 1, "{v}");
    let fires = v["fires"].as_array().unwrap();
    assert_eq!(fires.len(), 30);
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = fires
        .iter()
        .map(|f| {
            let at = f["at"].as_str().unwrap();
            assert!(at.ends_with('Z') && !at.contains('.'), "{at}");
            chrono::DateTime::parse_from_rfc3339(at).unwrap()
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(fires.iter().any(|f| f["policy"] == "daily"));
    assert!(fires.iter().filter(|f| f["policy"] == "hourly").count() >= 24);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_shows_the_whole_lifecycle_and_exits_0() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_snaprotd"))
        .args(["demo", "--duration", "17s", "--keep"])
        .env_remove("SNAPROTD_CONFIG")
        .output()
        .await
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{all}");
    for step in [
        "created snapshot",
        "completed (",
        "stopped server",
        "started server again",
        "making room",
        "beyond keep",
        "manual snapshots left alone: 3 of 3",
        "servers not running:         none",
        "failing jobs:                none",
    ] {
        assert!(all.contains(step), "the demo did not show {step:?}:\n{all}");
    }
    // It stops at a moment no job runs: no run is cut short at the end.
    assert!(!all.contains("interrupted"), "{all}");
    // No Rust debug format for people.
    assert!(!all.contains("[]") && !all.contains("{:?}"), "{all}");
    // --keep: its files stay, and it says where.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let kept = stdout
        .lines()
        .find_map(|l| l.strip_prefix("files kept in "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let kept = std::path::Path::new(kept);
    assert!(kept.join("snaprotd.toml").is_file(), "{}", kept.display());
    std::fs::remove_dir_all(kept).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn list_shows_when_each_snapshot_was_made_in_its_policys_zone() {
    let env = Env::new().await;
    env.sim.add_server(5, "web");
    env.sim
        .state()
        .add_snapshot(5, "before-upgrade", "completed", days_ago(3));
    // A zone without daylight saving time: its offset is always +05:30.
    env.write_config(&POLICY.replace("keep = 2", "keep = 2\ntimezone = \"Asia/Kolkata\""));
    assert_eq!(env.snaprotd(&["once"]).await.code, 0);
    let out = env.snaprotd(&["list"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let header = out.stdout.lines().next().unwrap_or_default();
    assert!(
        header.contains("CREATED") && header.contains("AGE"),
        "{}",
        out.stdout
    );
    let row = |name: &str| {
        out.stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no {name}:\n{}", out.stdout))
            .to_string()
    };
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let nightly = row("nightly-");
    assert!(nightly.contains(" +05:30"), "{nightly}");
    let manual = row("before-upgrade");
    let made = days_ago(3).format("%Y-%m-%d").to_string();
    assert!(
        manual.contains(&format!("{made} ")) && manual.contains(" +00:00"),
        "{manual}"
    );
    assert!(!manual.contains(&today), "{manual}");
}

#[tokio::test(flavor = "multi_thread")]
async fn list_of_a_server_without_snapshots_says_whether_it_exists() {
    let env = Env::new().await;
    env.sim.add_server(5, "web");
    env.write_config(POLICY);
    let out = env.snaprotd(&["list", "--server", "5"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.all().contains("server 5 has no snapshots"),
        "{}",
        out.all()
    );
    let out = env.snaprotd(&["list", "--server", "999"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.all().contains("server 999 does not exist"),
        "{}",
        out.all()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_by_name_waits_until_the_server_runs_again() {
    let env = Env::new().await;
    env.sim.add_server(5, "web");
    let id = env
        .sim
        .state()
        .add_snapshot(5, "known-good", "completed", days_ago(1));
    env.write_config(POLICY);
    let out = env
        .snaprotd(&["restore", "known-good", "--yes", "--wait"])
        .await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        env.changes(),
        vec![format!("POST /snapshots/{id}/restore/")]
    );
    // It returned only once the server ran again, and said so.
    assert_eq!(env.sim.state().server_status(5), Some("running"));
    assert!(out.all().contains("runs again"), "{}", out.all());
    // Not a terminal: plain lines, never rewritten in place.
    assert!(!out.stderr.contains('\r'), "{:?}", out.stderr);

    let out = env
        .snaprotd(&["restore", &id.to_string(), "--yes", "--json"])
        .await;
    assert_eq!(out.code, 0, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["version"], 1, "{v}");
    assert_eq!(v["snapshot"]["id"], id, "{v}");
    assert_eq!(v["server"], 5, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_wait_gives_up_after_its_timeout() {
    let env = Env::with_options(snaprotd::sim::SimOptions {
        restore_time: std::time::Duration::from_secs(60),
        ..common::fast_options()
    })
    .await;
    env.sim.add_server(5, "web");
    env.sim
        .state()
        .add_snapshot(5, "known-good", "completed", days_ago(1));
    env.write_config(POLICY);
    let out = env
        .snaprotd(&[
            "restore",
            "known-good",
            "--yes",
            "--wait",
            "--timeout",
            "1s",
        ])
        .await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.all().contains("still restoring"), "{}", out.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_names_what_it_cannot_tell_apart_and_points_to_list() {
    let env = Env::new().await;
    env.sim.add_server(5, "web");
    env.sim.add_server(6, "db");
    let a = env
        .sim
        .state()
        .add_snapshot(5, "pre-migration", "completed", days_ago(2));
    let b = env
        .sim
        .state()
        .add_snapshot(6, "pre-migration", "completed", days_ago(1));
    env.write_config(POLICY);
    let out = env.snaprotd(&["restore", "pre-migration", "--yes"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.all().contains(&a.to_string()) && out.all().contains(&b.to_string()),
        "{}",
        out.all()
    );
    assert!(out.all().contains("add --server ID"), "{}", out.all());
    assert!(env.changes().is_empty(), "{:?}", env.changes());
    // --server picks the one of that server.
    let out = env
        .snaprotd(&["restore", "pre-migration", "--server", "6", "--yes"])
        .await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(env.changes(), vec![format!("POST /snapshots/{b}/restore/")]);

    for bad in ["99999", "no-such-snapshot"] {
        let out = env.snaprotd(&["restore", bad, "--yes"]).await;
        assert_eq!(out.code, 1, "{}", out.all());
        assert!(out.all().contains("snaprotd list"), "{}", out.all());
    }
}

/// A real terminal: a pty as standard input and standard error, its output collected.
struct Terminal {
    master: std::fs::File,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Terminal {
    /// Runs `cmd` with the pty's other end as standard input and standard error.
    fn spawn(mut cmd: tokio::process::Command) -> (Terminal, tokio::process::Child) {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let slave = std::fs::File::from(pty.slave);
        cmd.stdin(slave.try_clone().expect("dup"))
            .stderr(slave.try_clone().expect("dup"));
        let child = cmd.spawn().expect("snaprotd runs");
        drop(cmd);
        drop(slave);
        let master = std::fs::File::from(pty.master);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        {
            let mut reader = master.try_clone().expect("dup");
            let seen = seen.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut buf = [0u8; 4096];
                // Ends with EIO once the last holder of the other end has exited.
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
        (Terminal { master, seen }, child)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    fn type_line(&mut self, line: &str) {
        use std::io::Write;
        self.master
            .write_all(format!("{line}\n").as_bytes())
            .expect("typed");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_on_a_terminal_asks_and_shows_its_wait_in_place() {
    let env = Env::new().await;
    env.sim.add_server(5, "web");
    let id = env
        .sim
        .state()
        .add_snapshot(5, "known-good", "completed", days_ago(1));
    env.write_config(POLICY);
    let (mut term, child) = Terminal::spawn(env.command(&["restore", "known-good", "--wait"]));
    let asked = common::eventually(10, || term.text().contains("Type yes")).await;
    assert!(asked, "no question on the terminal: {:?}", term.text());
    assert!(env.changes().is_empty(), "{:?}", env.changes());
    term.type_line("yes");
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("restore ends")
        .expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", term.text());
    assert_eq!(
        env.changes(),
        vec![format!("POST /snapshots/{id}/restore/")]
    );
    let shown = common::eventually(5, || term.text().contains("runs again")).await;
    assert!(shown, "{:?}", term.text());
    // The progress line was rewritten in place (the status line log lines share).
    assert!(
        term.text().contains("\r\x1b[Krestoring server 5: "),
        "{:?}",
        term.text()
    );
}
