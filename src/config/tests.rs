//! Loading a whole file: defaults filled in, `[defaults]` shared by policies, every
//! problem of a file reported at once, the environment's part.

use std::path::{Path, PathBuf};

use super::sources::tests::Vars;
use super::*;

const POLICY: &str = "[[policy]]\nname = \"nightly\"\nservers = [1]\nschedule = \"30 2 * * *\"\n";

fn load(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_source_in(
        Path::new("s.toml"),
        text,
        &Vars::of(&[(TOKEN_ENV, "t")]),
        Need::Token,
    )
}

fn errors(text: &str) -> Vec<String> {
    load(text)
        .unwrap_err()
        .0
        .iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn a_file_without_keys_gets_every_default() {
    let c = load(POLICY).unwrap();
    assert_eq!(c.api.base_url.as_str(), defaults::BASE_URL);
    assert_eq!(c.api.request_timeout, defaults::REQUEST_TIMEOUT);
    assert_eq!(c.api.max_attempts, defaults::MAX_ATTEMPTS);
    assert_eq!(c.api.retry_backoff, defaults::RETRY_BACKOFF);
    assert_eq!(c.api.snapshot_cap, defaults::SNAPSHOT_CAP);
    assert_eq!(c.api.max_requests_per_second, None);
    assert_eq!(c.daemon.state_dir, PathBuf::from(defaults::STATE_DIR));
    assert_eq!(c.daemon.max_concurrent_jobs, defaults::MAX_CONCURRENT_JOBS);
    assert_eq!(c.daemon.shutdown_timeout, defaults::SHUTDOWN_TIMEOUT);
    assert_eq!(c.daemon.metrics_file, None);
    let p = &c.policies[0];
    assert_eq!(p.timezone, defaults::TIMEZONE);
    assert_eq!(p.keep, Keep::newest(defaults::KEEP));
    assert_eq!(p.stop_server, defaults::STOP_SERVER);
    assert_eq!(p.snapshot_name.source(), defaults::SNAPSHOT_NAME);
    assert_eq!(p.catch_up, defaults::CATCH_UP);
    assert_eq!(p.timing(), c.defaults);
    assert_eq!(
        c.defaults,
        Timing {
            poll_interval: defaults::POLL_INTERVAL,
            wait_timeout: defaults::WAIT_TIMEOUT,
            stop_timeout: defaults::STOP_TIMEOUT,
        }
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn a_policy_takes_its_own_value_then_the_shared_one_then_the_default() {
    let text = format!(
        "[defaults]\nkeep = 2\ntimezone = \"Europe/Berlin\"\nstop_server = true\n\
         {POLICY}keep = 1\n\
         [[policy]]\nname = \"weekly\"\nservers = [2]\nschedule = \"@weekly\"\n"
    );
    let c = load(&text).unwrap();
    let (nightly, weekly) = (c.policy("nightly").unwrap(), c.policy("weekly").unwrap());
    assert_eq!((nightly.keep.total(), weekly.keep.total()), (1, 2));
    assert_eq!(nightly.timezone, weekly.timezone);
    assert_eq!(weekly.timezone.name(), "Europe/Berlin");
    assert!(nightly.stop_server && weekly.stop_server);
    assert!(c.job_policy("weekly", 2).is_some());
    assert!(c.job_policy("weekly", 1).is_none());
}

#[test]
fn keep_defaults_to_no_more_than_the_cap() {
    let c = load(&format!("[api]\nsnapshot_cap = 2\n{POLICY}")).unwrap();
    assert_eq!(c.policies[0].keep, Keep::newest(2));
}

#[test]
fn every_problem_of_a_file_is_reported_at_once() {
    let text = "[api]\nmax_attempts = 0\n[daemon]\nshutdown_timeout = \"soon\"\n\
                [[policy]]\nname = \"a\"\nservers = [0]\nschedule = \"61 * * * *\"\n";
    let e = errors(text);
    assert_eq!(e.len(), 4, "{e:#?}");
    assert!(e[0].starts_with("s.toml:2:16: key `api.max_attempts`: 0 is out of range"));
    assert!(e[1].starts_with("s.toml:4:20: key `daemon.shutdown_timeout`: \"soon\""));
    assert!(e[2].starts_with("s.toml:7:12: key `policy[a].servers`: 0 is not a server id"));
    assert!(e[3].starts_with(
        "s.toml:8:12: key `policy[a].schedule`: minute field \"61\": 61 is out of range"
    ));
}

#[test]
fn a_shared_value_used_by_several_policies_is_reported_once() {
    let text = format!(
        "[defaults]\npoll_interval = \"soon\"\n{POLICY}\
         [[policy]]\nname = \"weekly\"\nservers = [2]\nschedule = \"@weekly\"\n"
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].starts_with("s.toml:2:17: key `defaults.poll_interval`"));
}

#[test]
fn the_state_directory_comes_from_the_file_then_systemd_then_the_default() {
    let systemd = Vars::of(&[(TOKEN_ENV, "t"), ("STATE_DIRECTORY", "/run/sd:/x")]);
    let with = |text: &str| {
        Config::from_source_in(Path::new("s.toml"), text, &systemd, Need::Token).unwrap()
    };
    assert_eq!(with(POLICY).daemon.state_dir, PathBuf::from("/run/sd"));
    let own = format!("[daemon]\nstate_dir = \"/srv/s\"\n{POLICY}");
    assert_eq!(with(&own).daemon.state_dir, PathBuf::from("/srv/s"));
}

#[test]
fn warnings_name_their_place_and_leave_the_configuration_usable() {
    let c = load("").unwrap();
    let shown = |c: &Config| c.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    assert_eq!(
        shown(&c),
        vec!["s.toml: no [[policy]] is configured; nothing will be snapshotted"]
    );
    let c = load(&format!("{POLICY}keep = 5\n")).unwrap();
    assert_eq!(c.warnings.len(), 1);
    assert!(shown(&c)[0].starts_with(
        "s.toml:5:8: key `policy[nightly].keep`: server 1: keep adds up to the cap of 5"
    ));
}

#[test]
fn without_a_token_the_file_is_refused_naming_where_one_may_come_from() {
    let e = Config::from_source_in(Path::new("s.toml"), POLICY, &Vars::of(&[]), Need::Token)
        .unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert!(
        e.0[0]
            .to_string()
            .starts_with("s.toml:1:1: key `api.token_file`: no API token")
    );
}

#[test]
fn the_example_configuration_loads() {
    let example = include_str!("../../config/snaprotd.toml");
    let c = load(example).unwrap();
    assert_eq!(c.policies.len(), 3);
    assert_eq!(c.policies[2].keep.to_string(), "daily 2 + weekly 2 = 4");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}
