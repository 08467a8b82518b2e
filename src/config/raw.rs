//! The configuration file exactly as written: serde structures with the position of
//! every value, so that validation can point at file, line and column.

use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Option<Spanned<T>>;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub api: RawApi,
    #[serde(default)]
    pub daemon: RawDaemon,
    #[serde(default)]
    pub defaults: RawPolicyKeys,
    #[serde(default)]
    pub policy: Vec<Spanned<RawPolicy>>,
    #[serde(default)]
    pub notify: RawNotify,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    pub webhook_url: S<String>,
    pub command: S<Vec<Spanned<String>>>,
    pub timeout: S<String>,
    pub max_attempts: S<i64>,
    pub retry_backoff: S<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub base_url: S<String>,
    pub token_file: S<String>,
    pub token_env: S<String>,
    pub request_timeout: S<String>,
    pub max_attempts: S<i64>,
    pub retry_backoff: S<String>,
    pub snapshot_cap: S<i64>,
    pub max_requests_per_second: S<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub state_dir: S<String>,
    pub max_concurrent_jobs: S<i64>,
    pub shutdown_timeout: S<String>,
    pub metrics_file: S<String>,
}

/// The keys a `[[policy]]` shares with `[defaults]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPolicyKeys {
    pub timezone: S<String>,
    pub keep: S<i64>,
    pub stop_server: S<bool>,
    pub snapshot_name: S<String>,
    pub poll_interval: S<String>,
    pub wait_timeout: S<String>,
    pub stop_timeout: S<String>,
    pub catch_up: S<bool>,
    pub pre_snapshot: S<Vec<Spanned<String>>>,
    pub post_snapshot: S<Vec<Spanned<String>>>,
    pub hook_timeout: S<String>,
    pub ping_url: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub name: Spanned<String>,
    pub servers: Spanned<Vec<Spanned<i64>>>,
    pub schedule: Spanned<String>,
    pub description: S<String>,
    // The shared keys again: serde's `flatten` does not combine with
    // `deny_unknown_fields`, so they are listed here as in `RawPolicyKeys`.
    pub timezone: S<String>,
    pub keep: S<i64>,
    pub stop_server: S<bool>,
    pub snapshot_name: S<String>,
    pub poll_interval: S<String>,
    pub wait_timeout: S<String>,
    pub stop_timeout: S<String>,
    pub catch_up: S<bool>,
    pub pre_snapshot: S<Vec<Spanned<String>>>,
    pub post_snapshot: S<Vec<Spanned<String>>>,
    pub hook_timeout: S<String>,
    pub ping_url: S<String>,
}
