//! The commands on an unfriendly machine: a configuration path that is a FIFO or a
//! huge file, a reader of the output that goes away early (`| head -1`), and a state
//! directory that is missing or cannot be read.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{Env, Output, TOKEN};
use tokio::io::{AsyncBufReadExt, BufReader};

const NIGHTLY: &str = r#"
[[policy]]
name = "nightly"
servers = [5]
schedule = "30 2 * * *"
keep = 2
"#;

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs")
        .success();
    assert!(ok, "mkfifo {}", path.display());
}

/// The real binary with `-c config`, its standard output sent to `stdout`; killed if it
/// has not ended within `secs` (a blocked process fails the test instead of hanging it).
async fn snaprotd_with(
    env: &Env,
    config: &Path,
    args: &[&str],
    stdout: Stdio,
    secs: u64,
) -> Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_snaprotd"))
        .arg("-c")
        .arg(config)
        .args(args)
        .env_remove("SNAPROTD_API_TOKEN")
        .env_remove("SNAPROTD_CONFIG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("STATE_DIRECTORY")
        .env("SNAPROTD_LOG", "info")
        .current_dir(env.dir.path())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("snaprotd starts");
    let out = tokio::time::timeout(Duration::from_secs(secs), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("snaprotd {args:?} did not end within {secs}s"))
        .expect("wait");
    let o = Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!o.all().contains(TOKEN), "the token appeared:\n{}", o.all());
    o
}

/// Every command that reads the configuration.
const COMMANDS: &[&[&str]] = &[
    &["check"],
    &["status"],
    &["next"],
    &["coverage"],
    &["list"],
    &["once"],
    &["once", "--dry-run"],
    &["restore", "1", "--yes"],
];

#[tokio::test(flavor = "multi_thread")]
async fn a_config_path_that_is_a_fifo_is_refused_by_every_command_without_blocking() {
    let env = Env::new().await;
    let fifo = env.dir.path().join("fifo.toml");
    mkfifo(&fifo);
    for args in COMMANDS {
        let out = snaprotd_with(&env, &fifo, args, Stdio::piped(), 10).await;
        // status is a monitoring check: a configuration it cannot read is UNKNOWN.
        let code = if args[0] == "status" { 3 } else { 78 };
        assert_eq!(out.code, code, "{args:?}: {}", out.all());
        assert!(
            out.stderr.contains(&format!(
                "{}: cannot read the configuration: it is a FIFO (named pipe), not a regular file",
                fifo.display()
            )),
            "{args:?}: {}",
            out.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_file_that_is_a_fifo_is_refused_at_its_key_without_blocking() {
    let env = Env::new().await;
    env.write_config(NIGHTLY);
    let token = env.dir.path().join("token");
    mkfifo(&token);
    let out = snaprotd_with(&env, &env.config, &["check"], Stdio::piped(), 10).await;
    assert_eq!(out.code, 78, "{}", out.all());
    assert!(
        out.stderr
            .contains("snaprotd.toml:3:14: key `api.token_file`: cannot read the token file")
            && out
                .stderr
                .contains("it is a FIFO (named pipe), not a regular file"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_over_one_mebibyte_is_refused_with_its_size_and_one_under_it_is_read() {
    let env = Env::new().await;
    // Valid TOML padded with comments: a size limit, not a parse error, refuses it.
    let padded = |size: usize| {
        let mut text = format!("{}\n{NIGHTLY}\n", env.header());
        let line = format!("# {}\n", "x".repeat(77));
        while text.len() + line.len() <= size {
            text.push_str(&line);
        }
        text
    };
    std::fs::write(&env.config, padded(1024 * 1024 - 100)).unwrap();
    let out = env.snaprotd(&["check"]).await;
    assert_eq!(out.code, 0, "just under 1 MiB is read: {}", out.all());

    std::fs::write(&env.config, padded(2 * 1024 * 1024)).unwrap();
    let out = env.snaprotd(&["check"]).await;
    assert_eq!(out.code, 78, "{}", out.all());
    assert!(
        out.stderr.contains(&format!(
            "{}: cannot read the configuration: it is 2.0 MiB; a configuration file is at most 1 MiB",
            env.config.display()
        )),
        "{}",
        out.stderr
    );

    // 300 MB (sparse, so the test writes nothing): refused before it is read.
    let huge = std::fs::File::create(&env.config).unwrap();
    huge.set_len(300 * 1024 * 1024).unwrap();
    drop(huge);
    let started = std::time::Instant::now();
    let out = env.snaprotd(&["check"]).await;
    assert_eq!(out.code, 78, "{}", out.all());
    assert!(
        out.stderr
            .contains("it is 300 MiB; a configuration file is at most 1 MiB"),
        "{}",
        out.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_from_a_fifo_is_refused_and_sigterm_still_stops_the_daemon() {
    let env = Env::new().await;
    env.sim.add_server(5, "web");
    env.write_config(NIGHTLY);
    let mut d = env.start_daemon(&["run"], &[]).await;
    d.wait_note("READY=1", 1, 10).await;
    mkfifo(&env.config);
    d.signal("HUP");
    d.wait_log("SIGHUP: reloading", 10).await;
    d.signal("TERM");
    assert_eq!(d.wait_exit(10).await, Some(0), "{}", d.log());
    assert!(
        d.log().contains(&format!(
            "reload failed, keeping the old configuration: {}: cannot read the configuration: \
             it is a FIFO (named pipe), not a regular file",
            env.config.display()
        )),
        "{}",
        d.log()
    );
}

/// A pipe whose reading end is already closed: every write to it fails with EPIPE.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    Stdio::from(writer)
}

fn assert_quiet(args: &[&str], out: &Output, code: i32) {
    assert_eq!(out.code, code, "{args:?}: {}", out.all());
    for bad in ["panicked", "internal error", "Broken pipe", "broken pipe"] {
        assert!(!out.stderr.contains(bad), "{args:?}: {}", out.stderr);
    }
}

/// Ready for every command: a snapshot to list, a state directory with a last run.
async fn env_with_output() -> Env {
    let env = Env::new().await;
    env.sim.add_server(5, "web");
    env.write_config(NIGHTLY);
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    env
}

#[tokio::test(flavor = "multi_thread")]
async fn output_into_a_closed_pipe_ends_quietly_with_the_commands_own_code() {
    let env = env_with_output().await;
    let cases: &[(&[&str], i32)] = &[
        (&["list"], 0),
        (&["list", "--json"], 0),
        (&["next"], 0),
        (&["next", "--json"], 0),
        (&["coverage"], 0),
        (&["coverage", "--json"], 0),
        (&["status"], 0),
        (&["status", "--json"], 0),
        (&["check"], 0),
        (&["check", "--json"], 0),
        (&["once"], 0),
        (&["once", "--json"], 0),
        (&["once", "--dry-run"], 0),
        (&["once", "--dry-run", "--json"], 0),
        (&["once", "--policy", "nope"], 1),
    ];
    for (args, code) in cases {
        let out = snaprotd_with(&env, &env.config, args, closed_pipe(), 20).await;
        assert_quiet(args, &out, *code);
    }
}

/// Like `| head -1`: read the first line, close the pipe, let the command go on.
async fn first_line_then_close(env: &Env, args: &[&str]) -> (String, Output) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_snaprotd"))
        .arg("-c")
        .arg(&env.config)
        .args(args)
        .env_remove("SNAPROTD_API_TOKEN")
        .env_remove("SNAPROTD_CONFIG")
        .env_remove("STATE_DIRECTORY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("snaprotd starts");
    let stdout = child.stdout.take().expect("stdout");
    let first = BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .expect("reads")
        .unwrap_or_default(); // the reader is dropped here
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("ends")
        .expect("wait");
    let out = Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (first, out)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_closes_after_one_line_never_makes_a_command_panic() {
    let env = env_with_output().await;
    for _ in 0..15 {
        for (args, code) in [
            (&["list", "--json"][..], 0),
            (&["next", "--count", "3000"][..], 0),
            (&["next", "--count", "3000", "--json"][..], 0),
            (&["status", "--json"][..], 0),
            (&["once", "--dry-run"][..], 0),
        ] {
            let (first, out) = first_line_then_close(&env, args).await;
            assert!(!first.is_empty(), "{args:?}: no first line");
            assert_quiet(args, &out, code);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn output_that_cannot_be_written_for_another_reason_is_an_error() {
    let env = env_with_output().await;
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = snaprotd_with(&env, &env.config, &["next"], Stdio::from(full), 10).await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr
            .contains("error: cannot write to standard output: No space left on device"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

fn assert_unknown(out: &Output, state_dir: &Path, why: &str) {
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(
        out.stdout.starts_with(&format!(
            "UNKNOWN: cannot read the state directory {}",
            state_dir.display()
        )) && out.stdout.contains(why),
        "{}",
        out.all()
    );
    assert!(!out.stdout.contains("never"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_is_unknown_exit_3_when_the_state_directory_is_missing() {
    let env = Env::new().await;
    env.write_config(NIGHTLY);
    let state = env.dir.path().join("state");
    let out = env.snaprotd(&["status"]).await;
    assert_unknown(&out, &state, "it does not exist");

    let out = env.snaprotd(&["status", "--json"]).await;
    assert_eq!(out.code, 3, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(v["status"], "unknown", "{v}");
    assert_eq!(v["state_dir"], state.display().to_string(), "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("it does not exist"),
        "{v}"
    );

    // A file where the directory should be.
    std::fs::write(&state, "").unwrap();
    let out = env.snaprotd(&["status"]).await;
    assert_unknown(&out, &state, "it is not a directory");

    // Once it exists (the daemon made it), a job that never ran is fine.
    std::fs::remove_file(&state).unwrap();
    std::fs::create_dir(&state).unwrap();
    let out = env.snaprotd(&["status"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("never"), "{}", out.stdout);
}

/// Runs `status` as a user who cannot read what the daemon wrote: as `nobody` when the
/// tests run as root (root reads everything), else after `chmod 000`.
async fn status_without_access(env: &Env, unreadable: &Path, json: bool) -> Output {
    let root_runs_tests = std::fs::metadata(env.dir.path()).unwrap().uid() == 0;
    let mut args = vec!["status"];
    if json {
        args.push("--json");
    }
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_snaprotd"));
    cmd.arg("-c")
        .arg(&env.config)
        .args(&args)
        .env_remove("SNAPROTD_API_TOKEN")
        .env_remove("STATE_DIRECTORY")
        .current_dir("/")
        .kill_on_drop(true);
    let mode = std::fs::metadata(unreadable).unwrap().permissions().mode();
    if root_runs_tests {
        // nobody reads the configuration and the token, not the state.
        for (p, m) in [
            (env.dir.path(), 0o755),
            (env.config.as_path(), 0o644),
            (&env.dir.path().join("token"), 0o644),
        ] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        }
        std::fs::set_permissions(unreadable, std::fs::Permissions::from_mode(mode & 0o700))
            .unwrap();
        cmd.uid(65534).gid(65534);
    } else {
        std::fs::set_permissions(unreadable, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let out = cmd.output().await.expect("snaprotd runs");
    std::fs::set_permissions(unreadable, std::fs::Permissions::from_mode(mode)).unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_is_unknown_exit_3_when_the_state_cannot_be_read() {
    let env = env_with_output().await;
    let state = env.dir.path().join("state");

    let out = status_without_access(&env, &state, false).await;
    assert_unknown(&out, &state, "Permission denied");
    let out = status_without_access(&env, &state, true).await;
    assert_eq!(out.code, 3, "{}", out.all());
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(v["status"], "unknown", "{v}");

    // The directory can be listed but a job's last run cannot be read.
    let record = state.join("runs/nightly@5.json");
    assert!(record.exists());
    let out = status_without_access(&env, &record, false).await;
    assert_unknown(&out, &state, "runs/nightly@5.json");

    // With access, the same state is read and fine.
    let out = env.snaprotd(&["status"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn status_help_names_every_exit_code() {
    let env = Env::new().await;
    let out = env.snaprotd(&["status", "--help"]).await;
    for text in ["0 ok", "1 a last run failed", "2 overdue", "3 unknown"] {
        assert!(out.stdout.contains(text), "{text:?}: {}", out.stdout);
    }
}

/// A command asked for JSON prints its error as JSON on standard output too (and keeps
/// its exit code), so a script never parses standard error.
#[tokio::test(flavor = "multi_thread")]
async fn an_error_of_a_json_command_is_json() {
    let env = Env::new().await;
    env.write_config(NIGHTLY);
    for (args, code, says) in [
        (&["list", "--server", "999", "--json"][..], 1, "server 999"),
        (&["restore", "nosuch", "--json"], 1, "nosuch"),
        (
            &["once", "--server", "999", "--json"],
            1,
            "matches --server 999",
        ),
    ] {
        let out = env.snaprotd(args).await;
        assert_eq!(out.code, code, "{args:?}: {}", out.all());
        let v: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {:?}", out.stdout));
        assert_eq!((&v["version"], &v["ok"]), (&1.into(), &false.into()), "{v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{args:?}: {v}");
    }
}
