//! Output on a real terminal (a pty made by `script(1)`) and off one: the progress
//! line of a long wait, colour and `NO_COLOR`, `-q` and `-v`.

mod common;

use std::time::Duration;

use common::*;

const POLICY: &str = r#"
[[policy]]
name = "nightly"
servers = [1]
schedule = "30 2 * * *"
keep = 2
"#;

/// Runs `snaprotd -c CONFIG args…` on a pty; returns the exit code and all it wrote
/// there (standard output and error together, as a terminal shows them).
async fn on_terminal(env: &Env, args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let mut line = format!(
        "{} -c {}",
        env!("CARGO_BIN_EXE_snaprotd"),
        env.config.display()
    );
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let mut c = tokio::process::Command::new("script");
    c.args(["-qefc", &line, "/dev/null"])
        .env_remove("SNAPROTD_API_TOKEN")
        .env_remove("NO_COLOR")
        .env_remove("SNAPROTD_LOG")
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), c.output())
        .await
        .expect("snaprotd ends")
        .expect("script runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A colour escape (SGR: ESC [ … m), not the line erase the progress line uses.
fn has_colour(text: &str) -> bool {
    text.split("\x1b[").skip(1).any(|rest| {
        rest.chars()
            .take_while(|c| !c.is_ascii_alphabetic())
            .all(|c| c.is_ascii_digit() || c == ';')
            && rest
                .chars()
                .find(|c| c.is_ascii_alphabetic())
                .is_some_and(|c| c == 'm')
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_wait_shows_a_progress_line_on_a_terminal_only() {
    let env = Env::with_create_time(Duration::from_millis(1500)).await;
    env.sim.add_server(1, "db");
    env.write_config(POLICY);
    let (code, shown) = on_terminal(&env, &["once"], &[]).await;
    assert_eq!(code, 0, "{shown}");
    // Rewritten in place: a carriage return and a line erase, then the job and its wait.
    assert!(
        shown.contains("\r\x1b[Knightly@1: snapshot nightly-"),
        "{shown:?}"
    );
    assert!(shown.contains("in_progress for"), "{shown:?}");
    // Cleared before the summary: the table starts on a clean line.
    let table = shown.find("JOB").expect("the summary");
    assert!(shown[..table].ends_with("\r\x1b[K") || shown[..table].ends_with('\n'));
    assert!(
        has_colour(&shown),
        "log lines are coloured on a terminal: {shown:?}"
    );

    // Off a terminal: plain lines, no progress line, no escapes.
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        !out.all().contains('\x1b') && !out.all().contains('\r'),
        "{:?}",
        out.all()
    );
    assert!(!out.stderr.contains("in_progress for"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_color_and_quiet_are_honoured_on_a_terminal() {
    let env = Env::with_create_time(Duration::from_millis(600)).await;
    env.sim.add_server(1, "db");
    env.write_config(POLICY);
    let (code, shown) = on_terminal(&env, &["once"], &[("NO_COLOR", "1")]).await;
    assert_eq!(code, 0, "{shown}");
    assert!(!has_colour(&shown), "{shown:?}");
    assert!(shown.contains("created snapshot nightly-"), "{shown:?}");

    let (code, shown) = on_terminal(&env, &["-q", "once"], &[]).await;
    assert_eq!(code, 0, "{shown}");
    assert!(!shown.contains(" INFO "), "{shown:?}");
    assert!(!shown.contains("in_progress for"), "{shown:?}");
    assert!(shown.contains("1 job(s): 1 ok"), "{shown:?}");
}

/// A retried request is logged at WARN with its cause (not only with -v).
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_is_a_warning_with_its_cause() {
    use snaprotd::sim::Fault;
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    env.write_config(POLICY);
    env.sim
        .inject(Fault::status("GET", "/snapshots/", 503, None).times(1));
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let retry = out
        .stderr
        .lines()
        .find(|l| l.contains("retrying in"))
        .unwrap_or_else(|| panic!("no retry line: {}", out.stderr));
    assert!(retry.contains(" WARN "), "{retry}");
    assert!(retry.contains("503"), "{retry}");
    assert!(retry.contains("(attempt 2 of 3)"), "{retry}");
}

/// A failure's message is printed below the summary table, not in a column that makes
/// every row as wide as the longest error.
#[tokio::test(flavor = "multi_thread")]
async fn errors_are_printed_below_the_table() {
    use snaprotd::sim::Fault;
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    env.sim.add_server(2, "web");
    env.write_config(&POLICY.replace("servers = [1]", "servers = [1, 2]"));
    env.sim
        .inject(Fault::status("POST", "/snapshots/", 400, None).times(1));
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    let lines: Vec<&str> = out.stdout.lines().collect();
    let header = lines.iter().position(|l| l.starts_with("JOB")).unwrap();
    let table = &lines[header..header + 3];
    let failed = table
        .iter()
        .find(|l| l.contains("FAILED"))
        .unwrap_or_else(|| panic!("no failed row: {}", out.stdout));
    let job = failed.split_whitespace().next().unwrap();
    // Every row as wide as the header, give or take a name.
    assert!(
        table.iter().all(|l| l.len() <= table[0].len() + 10),
        "{}",
        out.stdout
    );
    let note = lines
        .iter()
        .position(|l| l.starts_with(&format!("  {job}: ")))
        .unwrap_or_else(|| panic!("no note below the table: {}", out.stdout));
    assert!(note > header + 2, "{}", out.stdout);
    assert!(lines[note].contains("400"), "{}", out.stdout);
}

/// `-v` shows each request to the provider and its answer (without the base URL);
/// without it there is none.
#[tokio::test(flavor = "multi_thread")]
async fn verbose_shows_each_request_and_its_answer() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    env.write_config(POLICY);
    let out = env.snaprotd(&["-v", "once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let create = out
        .stderr
        .lines()
        .find(|l| l.contains("POST snapshots/: HTTP 20"))
        .unwrap_or_else(|| panic!("no request line: {}", out.stderr));
    assert!(create.contains("DEBUG"), "{create}");
    assert!(!out.stderr.contains(env.sim.base_url()), "{}", out.stderr);
    let out = env.snaprotd(&["once"]).await;
    assert!(!out.stderr.contains("POST snapshots/"), "{}", out.stderr);
    // The journal's own fields are not repeated on text lines, whose words say them.
    let created = out
        .stderr
        .lines()
        .find(|l| l.contains("created snapshot") || l.contains("exists already"))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(
        !created.contains("snapshot_id=") && !created.contains("snapshot_name="),
        "{created}"
    );
    assert!(
        created.contains("job{policy=nightly server_id=1 job_id=nightly@1}"),
        "{created}"
    );
}
