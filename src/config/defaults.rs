//! Every default of the configuration, written once. The example file
//! `config/snaprotd.toml` shows each key with its default; a test below holds the two
//! together.

use std::time::Duration;

use chrono_tz::Tz;

/// Where the configuration is read from when neither `-c` nor `SNAPROTD_CONFIG` is given.
pub const PATH: &str = "/etc/snaprotd/snaprotd.toml";

// [api]
/// The token file read when no source is configured: the file the unit hands over as
/// the credential `api-token`.
pub const TOKEN_FILE: &str = "/etc/snaprotd/token";
pub const BASE_URL: &str = "https://admin.vps.org/api/v1";
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const MAX_ATTEMPTS: u32 = 5;
pub const RETRY_BACKOFF: Duration = Duration::from_secs(1);
pub const SNAPSHOT_CAP: usize = 5;

// [daemon]
/// When systemd gives no `STATE_DIRECTORY`.
pub const STATE_DIR: &str = "/var/lib/snaprotd";
pub const MAX_CONCURRENT_JOBS: usize = 4;
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10 * 60);

// [notify]
/// How long one delivery (an HTTP request, the command) may take.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);
pub const NOTIFY_MAX_ATTEMPTS: u32 = 5;
pub const NOTIFY_RETRY_BACKOFF: Duration = Duration::from_secs(1);

// [defaults], and so every [[policy]]
pub const TIMEZONE: Tz = Tz::UTC;
/// Snapshots kept per policy and server, when the provider's cap allows as many.
pub const KEEP: usize = 3;
pub const STOP_SERVER: bool = false;
pub const SNAPSHOT_NAME: &str = "{policy}-%Y%m%d-%H%M";
pub const POLL_INTERVAL: Duration = Duration::from_secs(15);
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5 * 60);
pub const CATCH_UP: bool = true;
/// How long a `pre_snapshot` or `post_snapshot` command may run.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// The default `keep` under a provider allowing `cap` snapshots per server.
pub fn keep(cap: usize) -> usize {
    KEEP.min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::{RawConfig, RawKeep};

    const EXAMPLE: &str = include_str!("../../config/snaprotd.toml");

    fn duration(v: &Option<toml::Spanned<String>>) -> Duration {
        let text = v.as_ref().expect("the example states the key").get_ref();
        humantime::parse_duration(text).unwrap()
    }

    fn text(v: &Option<toml::Spanned<String>>) -> &str {
        v.as_ref().expect("the example states the key").get_ref()
    }

    fn int(v: &Option<toml::Spanned<i64>>) -> i64 {
        *v.as_ref().expect("the example states the key").get_ref()
    }

    fn flag(v: &Option<toml::Spanned<bool>>) -> bool {
        *v.as_ref().expect("the example states the key").get_ref()
    }

    #[test]
    fn the_example_configuration_states_the_defaults() {
        let raw: RawConfig = toml::from_str(EXAMPLE).unwrap();
        let api = &raw.api;
        assert_eq!(text(&api.base_url), BASE_URL);
        assert_eq!(duration(&api.request_timeout), REQUEST_TIMEOUT);
        assert_eq!(int(&api.max_attempts), i64::from(MAX_ATTEMPTS));
        assert_eq!(duration(&api.retry_backoff), RETRY_BACKOFF);
        assert_eq!(int(&api.snapshot_cap), SNAPSHOT_CAP as i64);

        let daemon = &raw.daemon;
        assert_eq!(int(&daemon.max_concurrent_jobs), MAX_CONCURRENT_JOBS as i64);
        assert_eq!(duration(&daemon.shutdown_timeout), SHUTDOWN_TIMEOUT);

        let d = &raw.defaults;
        assert_eq!(text(&d.timezone), TIMEZONE.name());
        assert!(
            matches!(d.keep.as_ref().map(|k| k.get_ref()), Some(RawKeep::Newest(n)) if *n == KEEP as i64),
            "{:?}",
            d.keep
        );
        assert_eq!(flag(&d.stop_server), STOP_SERVER);
        assert_eq!(text(&d.snapshot_name), SNAPSHOT_NAME);
        assert_eq!(duration(&d.poll_interval), POLL_INTERVAL);
        assert_eq!(duration(&d.wait_timeout), WAIT_TIMEOUT);
        assert_eq!(duration(&d.stop_timeout), STOP_TIMEOUT);
        assert_eq!(flag(&d.catch_up), CATCH_UP);
        assert_eq!(duration(&d.hook_timeout), HOOK_TIMEOUT);

        let n = &raw.notify;
        assert_eq!(duration(&n.timeout), NOTIFY_TIMEOUT);
        assert_eq!(int(&n.max_attempts), i64::from(NOTIFY_MAX_ATTEMPTS));
        assert_eq!(duration(&n.retry_backoff), NOTIFY_RETRY_BACKOFF);
    }

    #[test]
    fn the_example_shows_the_defaults_it_leaves_commented_out() {
        // Keys without a value of their own: shown commented out, with what applies.
        let state_dir = format!("# state_dir = \"{STATE_DIR}\"");
        let token_env = format!("# token_env = \"{}\"", super::super::TOKEN_ENV);
        for line in [state_dir, token_env] {
            assert!(EXAMPLE.lines().any(|l| l == line), "{line:?} is missing");
        }
        assert!(EXAMPLE.contains(&format!("then {STATE_DIR}.")));
    }

    #[test]
    fn keep_never_exceeds_the_cap() {
        assert_eq!(keep(SNAPSHOT_CAP), KEEP);
        assert_eq!(keep(2), 2);
    }
}
