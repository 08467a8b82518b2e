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
            says: "unknown field",
        },
        Case {
            what: "unknown table",
            body: "[apis]\n",
            at: "1:2",
            key: "apis",
            says: "unknown field",
        },
        Case {
            what: "wrong type",
            body: "[api]\nmax_attempts = \"five\"\n",
            at: "2:16",
            key: "api.max_attempts",
            says: "invalid type",
        },
        Case {
            what: "bad cron",
            body: "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"61 * * * *\"\n",
            at: "4:12",
            key: "policy[a].schedule",
            says: "invalid cron",
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
            at: "7:8",
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
    assert!(err.contains("adds up to the cap"), "{err}");
}
