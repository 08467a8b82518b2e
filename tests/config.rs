//! Every validation rule, each with a bad file: `snaprotd check` exits 78 and names
//! the file, line, column and key.

use std::process::Command;

struct Case {
    what: &'static str,
    body: &'static str,
    /// "line:col" of the error, the key, and a phrase of the message.
    at: &'static str,
    key: &'static str,
    says: &'static str,
}

const GOOD_POLICY: &str =
    "[[policy]]\nname = \"nightly\"\nservers = [1]\nschedule = \"30 2 * * *\"\n";

fn cases() -> Vec<Case> {
    vec![
        Case {
            what: "unknown key",
            body: "[api]\nbase_urll = \"https://x\"\n",
            at: "2:1",
            key: "api.base_urll",
            says: "did you mean `base_url`?",
        },
        Case {
            what: "unknown table",
            body: "[apis]\n",
            at: "1:2",
            key: "apis",
            says: "unknown key `apis` at the top of the file; did you mean `api`?",
        },
        Case {
            what: "wrong type",
            body: "[api]\nmax_attempts = \"five\"\n",
            at: "2:16",
            key: "api.max_attempts",
            says: "expected a whole number, like max_attempts = 5; found text",
        },
        Case {
            what: "bad cron",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"61 * * * *\"\n",
            at: "4:12",
            key: "policy[a].schedule",
            says: "minute field \"61\": 61 is out of range: this field takes 0-59",
        },
        Case {
            what: "cron hour out of range",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"30 25 * * *\"\n",
            at: "4:12",
            key: "policy[a].schedule",
            says: "hour field \"25\": 25 is out of range: this field takes 0-23",
        },
        Case {
            what: "a misspelt key",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"@daily\"\nkep = 3\n",
            at: "5:1",
            key: "policy[a].kep",
            says: "unknown key `kep` in a [[policy]]; did you mean `keep`?",
        },
        Case {
            what: "a keep written as text",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"@daily\"\nkeep = \"3\"\n",
            at: "5:8",
            key: "policy[a].keep",
            says: "expected a whole number or a table, like keep = 3 or keep = { daily = 2, weekly = 2 }; found text",
        },
        Case {
            what: "an unknown tier",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"@daily\"\nkeep = { dayly = 2 }\n",
            at: "5:10",
            key: "policy[a].keep.dayly",
            says: "unknown key `dayly` in keep; did you mean `daily`?",
        },
        Case {
            what: "a tier of 0",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"@daily\"\nkeep = { daily = 2, weekly = 0 }\n",
            at: "5:8",
            key: "policy[a].keep",
            says: "weekly = 0 keeps nothing",
        },
        Case {
            what: "tiers beyond the cap",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"@daily\"\nkeep = { daily = 4, weekly = 2 }\n",
            at: "5:8",
            key: "policy[a].keep",
            says: "keeps up to 6 snapshots (daily 4 + weekly 2 = 6) but the provider allows 5 per server",
        },
        Case {
            what: "keep over the cap from [defaults]",
            body: "[defaults]\nkeep = 3\n[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"@daily\"\n[[policy]]\nname = \"b\"\nservers = [1]\nschedule = \"@weekly\"\n",
            at: "2:8",
            key: "defaults.keep",
            says: "would need 6 snapshots",
        },
        Case {
            what: "cron with 7 fields",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"0 0 0 * * * 2030\"\n",
            at: "4:12",
            key: "policy[a].schedule",
            says: "expected 5 fields",
        },
        Case {
            what: "a month name in the weekday field",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"0 0 * * jan\"\n",
            at: "4:12",
            key: "policy[a].schedule",
            says: "day-of-week field \"jan\": jan is a month name",
        },
        Case {
            what: "a weekday name in the month field",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"0 0 * mon *\"\n",
            at: "4:12",
            key: "policy[a].schedule",
            says: "month field \"mon\": mon is a weekday name",
        },
        Case {
            what: "an empty item in a list",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"1,,15 * * * *\"\n",
            at: "4:12",
            key: "policy[a].schedule",
            says: "minute field \"1,,15\": an empty item in the list",
        },
        Case {
            what: "a trailing comma",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"0 0 1, * *\"\n",
            at: "4:12",
            key: "policy[a].schedule",
            says: "day-of-month field \"1,\": an empty item in the list",
        },
        Case {
            what: "bad time zone",
            body: "[defaults]\ntimezone = \"Mars/Olympus\"\n\n[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"@daily\"\n",
            at: "2:12",
            key: "defaults.timezone",
            says: "IANA time zone",
        },
        Case {
            what: "keep zero",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"@daily\"\nkeep = 0\n",
            at: "5:8",
            key: "policy[a].keep",
            says: "must be 1 to 5",
        },
        Case {
            what: "keep above cap",
            body: "[api]\nsnapshot_cap = 4\n[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"@daily\"\nkeep = 5\n",
            at: "7:8",
            key: "policy[a].keep",
            says: "must be 1 to 4",
        },
        Case {
            what: "sum of keep over the cap",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"@daily\"\nkeep = 3\n[[policy]]\nname = \"b\"\nservers = [1]\nschedule = \"@weekly\"\nkeep = 3\n",
            at: "10:8",
            key: "policy[b].keep",
            says: "would need 6 snapshots",
        },
        Case {
            what: "duplicate policy name",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"@daily\"\nkeep = 1\n[[policy]]\nname = \"a\"\nservers = [2]\nschedule = \"@daily\"\nkeep = 1\n",
            at: "7:8",
            key: "policy.name",
            says: "already defined",
        },
        Case {
            what: "bad policy name",
            body: "[[policy]]\nname = \"night ly\"\nservers = [1]\nschedule = \"@daily\"\n",
            at: "2:8",
            key: "policy.name",
            says: "letters, digits",
        },
        Case {
            what: "no servers",
            body: "[[policy]]\nname = \"a\"\nservers = []\nschedule = \"@daily\"\n",
            at: "3:11",
            key: "policy[a].servers",
            says: "lists no server",
        },
        Case {
            what: "server listed twice",
            body: "[[policy]]\nname = \"a\"\nservers = [1, 1]\nschedule = \"@daily\"\n",
            at: "3:15",
            key: "policy[a].servers",
            says: "listed twice",
        },
        Case {
            what: "template with a bad character",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"@daily\"\nsnapshot_name = \"a.%Y%m%d\"\n",
            at: "5:17",
            key: "policy[a].snapshot_name",
            says: "not allowed",
        },
        Case {
            what: "template with an unknown field",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"@daily\"\nsnapshot_name = \"a-%F\"\n",
            at: "5:17",
            key: "policy[a].snapshot_name",
            says: "unsupported field %F",
        },
        Case {
            what: "template too coarse",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"0 */6 * * *\"\nsnapshot_name = \"{policy}-%Y%m%d\"\n",
            at: "5:17",
            key: "policy[a].snapshot_name",
            says: "too coarse",
        },
        Case {
            what: "the default template too coarse for the schedule",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"*/10 * * * * *\"\n",
            at: "2:8",
            key: "policy[a].snapshot_name",
            says: "too coarse",
        },
        Case {
            what: "template without year",
            body: "[defaults]\nsnapshot_name = \"{policy}-%m%d\"\n[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"@daily\"\n",
            at: "2:17",
            key: "defaults.snapshot_name",
            says: "no %Y",
        },
        Case {
            what: "name too long",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"@daily\"\nsnapshot_name = \"{policy}-a-very-long-prefix-that-goes-on-and-on-and-on-and-on-and-on-%Y%m%d\"\n",
            at: "5:17",
            key: "policy[a].snapshot_name",
            says: "at most 64",
        },
        Case {
            what: "policies that match each other's names",
            body: "[defaults]\nsnapshot_name = \"snap-%Y%m%d-%H%M\"\n[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"@daily\"\nkeep = 1\n[[policy]]\nname = \"b\"\nservers = [1]\nschedule = \"@weekly\"\nkeep = 1\n",
            at: "9:8",
            key: "policy[b].snapshot_name",
            says: "can look the same",
        },
        Case {
            what: "plain http to a remote host",
            body: "[api]\nbase_url = \"http://admin.vps.org/api/v1\"\n",
            at: "2:12",
            key: "api.base_url",
            says: "only for loopback",
        },
        Case {
            what: "missing token file",
            body: "[api]\ntoken_file = \"/nonexistent/token\"\n",
            at: "2:14",
            key: "api.token_file",
            says: "cannot read the token file",
        },
        Case {
            what: "token env not set",
            body: "[api]\ntoken_env = \"SNAPROTD_TEST_UNSET_VARIABLE\"\n",
            at: "2:13",
            key: "api.token_env",
            says: "not set",
        },
        Case {
            what: "bad duration",
            body: "[defaults]\npoll_interval = \"soon\"\n[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"@daily\"\n",
            at: "2:17",
            key: "defaults.poll_interval",
            says: "not a duration",
        },
        Case {
            what: "zero duration",
            body: "[daemon]\nshutdown_timeout = \"0s\"\n",
            at: "2:20",
            key: "daemon.shutdown_timeout",
            says: "longer than zero",
        },
        Case {
            what: "max_attempts out of range",
            body: "[api]\nmax_attempts = 0\n",
            at: "2:16",
            key: "api.max_attempts",
            says: "out of range",
        },
        Case {
            what: "max_concurrent_jobs out of range",
            body: "[daemon]\nmax_concurrent_jobs = 0\n",
            at: "2:23",
            key: "daemon.max_concurrent_jobs",
            says: "out of range",
        },
        Case {
            what: "TOML syntax",
            body: "[api\n",
            at: "1:5",
            key: "api",
            says: "",
        },
    ]
}

/// Files that follow every rule, each with what it shows: `snaprotd check` exits 0.
fn accepted() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "a monthly schedule named by year and month",
            "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"0 0 1 * *\"\nsnapshot_name = \"{policy}-%Y%m\"\n",
        ),
        (
            "tiers in [defaults], shared by a policy",
            "[defaults]\nkeep = { last = 1, hourly = 2, yearly = 1 }\n[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"@hourly\"\n",
        ),
    ]
}

fn check(dir: &std::path::Path, body: &str) -> (i32, String, String) {
    let path = dir.join("snaprotd.toml");
    std::fs::write(&path, body).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_snaprotd"))
        .args(["check", "-c"])
        .arg(&path)
        .env("SNAPROTD_API_TOKEN", "validation-token")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_validation_rule_names_file_line_column_and_key_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snaprotd.toml");
    let mut failures = Vec::new();
    for case in cases() {
        let (code, _, stderr) = check(dir.path(), case.body);
        let want = format!("{}:{}: key `{}`", path.display(), case.at, case.key);
        if code != 78 || !stderr.contains(&want) || !stderr.contains(case.says) {
            failures.push(format!(
                "{}: exit {code}, wanted `{want}` and `{}` in:\n{stderr}",
                case.what, case.says
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_file_that_follows_the_rules_passes_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (what, body) in accepted() {
        let (code, _, stderr) = check(dir.path(), body);
        if code != 0 {
            failures.push(format!("{what}: exit {code}:\n{stderr}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_good_file_passes_and_shows_next_fires() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = check(dir.path(), GOOD_POLICY);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("policy nightly"), "{stdout}");
    assert_eq!(stdout.matches(" 02:30:00 +00:00").count(), 3, "{stdout}");
}

#[test]
fn the_example_configuration_passes() {
    let out = Command::new(env!("CARGO_BIN_EXE_snaprotd"))
        .args([
            "check",
            "-c",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/snaprotd.toml"),
        ])
        .env("SNAPROTD_API_TOKEN", "example-token")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_config_path_is_accepted_before_or_after_the_subcommand_and_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snaprotd.toml");
    std::fs::write(&path, GOOD_POLICY).unwrap();
    let run = |args: &[&str], env: Option<&std::path::Path>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_snaprotd"));
        c.args(args)
            .env("SNAPROTD_API_TOKEN", "t")
            .env_remove("SNAPROTD_CONFIG");
        if let Some(p) = env {
            c.env("SNAPROTD_CONFIG", p);
        }
        c.output().unwrap().status.code()
    };
    let p = path.to_str().unwrap();
    assert_eq!(run(&["-c", p, "check"], None), Some(0));
    assert_eq!(run(&["check", "--config", p], None), Some(0));
    assert_eq!(run(&["check"], Some(&path)), Some(0));
    assert_eq!(run(&["check", "-c", "/nonexistent.toml"], None), Some(78));
}

#[test]
fn a_token_file_readable_by_others_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "secret-value").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let body = format!("[api]\ntoken_file = \"{}\"\n{GOOD_POLICY}", token.display());
    let (code, out, err) = check(dir.path(), &body);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("readable by every user"), "{err}");
    assert!(!out.contains("secret-value") && !err.contains("secret-value"));
}

#[test]
fn keep_filling_the_cap_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = check(dir.path(), &format!("{GOOD_POLICY}keep = 5\n"));
    assert_eq!(code, 0, "{err}");
    // Said as check says its errors, not as a log line.
    assert!(
        err.lines()
            .any(|l| l.starts_with("warning: ") && l.contains("adds up to the cap")),
        "{err}"
    );
}

#[test]
fn every_unknown_key_and_wrong_value_is_reported_in_one_run_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let body = "[api]\nbase_ur = \"https://x\"\nmax_attempts = 2.5\n[[policy]]\nname = \"a\"\n\
                servers = [1]\nschedule = \"@daily\"\nkep = 3\nstop_servr = true\nkeep = 9\n";
    let (code, _, stderr) = check(dir.path(), body);
    assert_eq!(code, 78, "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 5, "{stderr}");
    for (line, says) in [
        (
            0,
            ":2:1: key `api.base_ur`: unknown key `base_ur` in [api]; did you mean `base_url`?",
        ),
        (1, ":3:16: key `api.max_attempts`: expected a whole number"),
        (
            2,
            ":8:1: key `policy[a].kep`: unknown key `kep` in a [[policy]]; did you mean `keep`?",
        ),
        (
            3,
            ":9:1: key `policy[a].stop_servr`: unknown key `stop_servr` in a [[policy]]; did you mean `stop_server`?",
        ),
        // A rule, checked on the rest of the file.
        (4, ":10:8: key `policy[a].keep`: 9 is out of range"),
    ] {
        assert!(errors[line].contains(says), "{says}\n{stderr}");
    }
    for rust in [
        "i64",
        "invalid type",
        "Spanned",
        "serde",
        "Number out of bounds",
    ] {
        assert!(!stderr.contains(rust), "{rust}: {stderr}");
    }
}

/// A token file that would fail later (a second line, a byte-order mark, a `Bearer `
/// prefix) is refused by `check`, naming the file and not showing the token.
#[test]
fn a_token_file_that_is_not_the_token_alone_is_refused_at_check() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    for (text, says) in [
        ("tok-secret\nold-secret\n", "holds more than one line"),
        ("\u{feff}tok-secret\n", "starts with a byte-order mark"),
        ("Bearer tok-secret\n", "starts with \"Bearer \""),
    ] {
        std::fs::write(&token, text).unwrap();
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let body = format!("[api]\ntoken_file = \"{}\"\n{GOOD_POLICY}", token.display());
        let (code, out, err) = check(dir.path(), &body);
        assert_eq!(code, 78, "{text:?}: {err}");
        assert!(
            err.contains(&format!(
                "key `api.token_file`: the token file {} {says}",
                token.display()
            )),
            "{err}"
        );
        assert!(!out.contains("secret") && !err.contains("secret"), "{err}");
    }
}

/// `status` and `next` make no API call: they work with no token anywhere, and with a
/// token file this user cannot read.
#[test]
fn status_and_next_need_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let path = dir.path().join("snaprotd.toml");
    std::fs::write(
        &path,
        format!(
            "[api]\ntoken_file = \"/nonexistent/token\"\n[daemon]\nstate_dir = \"{}\"\n{GOOD_POLICY}",
            state.display()
        ),
    )
    .unwrap();
    for (args, code) in [(&["status"][..], 0), (&["next"], 0), (&["check"], 78)] {
        let out = Command::new(env!("CARGO_BIN_EXE_snaprotd"))
            .args(args)
            .arg("-c")
            .arg(&path)
            .env_remove("SNAPROTD_API_TOKEN")
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    }
}

/// As under the unit: the token file is root's, snaprotd runs as another user, and the
/// credential `api-token` is there. `check` says to use the credential.
#[test]
fn an_unreadable_token_file_with_the_credential_at_hand_is_explained() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let root_runs_tests = std::fs::metadata(dir.path())
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap();
    if !root_runs_tests {
        eprintln!("skipped: needs root to run check as another user");
        return;
    }
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let token = secrets.join("token");
    std::fs::write(&token, "tok-secret\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("api-token"), "tok-secret\n").unwrap();
    for p in [dir.path(), &secrets, &creds] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(
        creds.join("api-token"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let path = dir.path().join("snaprotd.toml");
    std::fs::write(
        &path,
        format!("[api]\ntoken_file = \"{}\"\n{GOOD_POLICY}", token.display()),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_snaprotd"))
        .args(["check", "-c"])
        .arg(&path)
        .env_remove("SNAPROTD_API_TOKEN")
        .env("CREDENTIALS_DIRECTORY", &creds)
        .current_dir("/")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    assert!(
        err.contains("the systemd credential api-token is there and would serve: remove token_file from [api]"),
        "{err}"
    );
}

/// `check --json` prints its errors as a JSON document on standard output (and still
/// exits 78), so a script reads them without parsing standard error.
#[test]
fn check_json_prints_its_errors_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snaprotd.toml");
    let check_json = |body: String| {
        std::fs::write(&path, body).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_snaprotd"))
            .args(["check", "--json", "-c"])
            .arg(&path)
            .env("SNAPROTD_API_TOKEN", "t")
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
        (out.status.code(), v)
    };
    let (code, v) = check_json(format!("{GOOD_POLICY}kep = 3\n"));
    assert_eq!(code, Some(78));
    assert_eq!(v["version"], 1, "{v}");
    assert_eq!(v["ok"], false, "{v}");
    let e = &v["errors"][0];
    assert_eq!(
        (&e["line"], &e["column"], &e["key"]),
        (&5.into(), &1.into(), &"policy[nightly].kep".into()),
        "{v}"
    );
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("did you mean `keep`?"), "{v}");
    assert_eq!(e["file"], path.display().to_string(), "{v}");
    // Warnings have the shape of errors.
    let (code, v) = check_json(format!("{GOOD_POLICY}keep = 5\n"));
    assert_eq!(code, Some(0));
    let w = &v["warnings"][0];
    assert_eq!(
        (&w["line"], &w["key"]),
        (&5.into(), &"policy[nightly].keep".into()),
        "{v}"
    );
}
