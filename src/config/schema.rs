//! The configuration as the rest of snaprotd sees it: checked, typed, with every
//! default filled in. Built from the file by `build.rs`.

use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;
use url::Url;

use super::errors::ConfigError;
use super::keep::Keep;
use super::servers::ServerPattern;
use super::template::NameTemplate;
use crate::job::JobId;
use crate::schedule::Schedule;
use crate::token::ApiToken;

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub api: ApiConfig,
    pub daemon: DaemonConfig,
    pub policies: Vec<Policy>,
    /// The `[defaults]` timings, for a stopped server whose policy is no longer configured.
    pub defaults: Timing,
    /// Where job failures and pings go (`notify/`).
    pub notify: NotifyConfig,
    /// Problems that do not stop the configuration from working.
    pub warnings: Vec<ConfigError>,
    /// Where some keys are written (line, column), by key (`policy[web].servers`,
    /// `defaults.keep`), for what is found wrong with them later: by the server listing,
    /// or by playing the schedule (`Config::problem_at`).
    pub written_at: std::collections::BTreeMap<String, (usize, usize)>,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub base_url: Url,
    /// The token; `None` only for a configuration loaded by `Config::load_offline`.
    pub token: Option<ApiToken>,
    /// Where the token came from, for `check` (never the token itself).
    pub token_source: String,
    pub request_timeout: Duration,
    pub max_attempts: u32,
    pub retry_backoff: Duration,
    pub snapshot_cap: usize,
    /// The ceiling of the process-wide request budget (unset: found from the provider).
    pub max_requests_per_second: Option<f64>,
}

/// The `[notify]` table, and each policy's `ping_url`. Every URL is a secret, like the
/// token: shown by scheme and host only (`notify::Target::shown`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    /// POSTed the notice of a failed run, and of the first success after one.
    pub webhook_url: Option<Url>,
    /// Run with the same notice on its stdin.
    pub command: Option<HookCommand>,
    /// Each delivery's time limit (an HTTP request, the command).
    pub timeout: Duration,
    /// Deliveries tried per notice.
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles each time.
    pub retry_backoff: Duration,
    /// Each policy's `ping_url` (its own, else `[defaults]`'s), by policy name.
    pub pings: std::collections::BTreeMap<String, Url>,
}

impl Default for NotifyConfig {
    /// Nothing to notify.
    fn default() -> NotifyConfig {
        NotifyConfig {
            webhook_url: None,
            command: None,
            timeout: super::defaults::NOTIFY_TIMEOUT,
            max_attempts: super::defaults::NOTIFY_MAX_ATTEMPTS,
            retry_backoff: super::defaults::NOTIFY_RETRY_BACKOFF,
            pings: Default::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub max_concurrent_jobs: usize,
    pub shutdown_timeout: Duration,
    /// Prometheus text file rewritten after every job (node_exporter's textfile collector).
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// The servers written by id.
    pub servers: Vec<u64>,
    /// The servers written by name, glob or `"all"`: the provider's server listing
    /// turns them into ids at each fire (`runner/fleet.rs`).
    pub patterns: Vec<ServerPattern>,
    pub schedule: Schedule,
    pub timezone: Tz,
    pub keep: Keep,
    pub stop_server: bool,
    pub snapshot_name: NameTemplate,
    pub description: Option<String>,
    pub poll_interval: Duration,
    pub wait_timeout: Duration,
    pub stop_timeout: Duration,
    pub catch_up: bool,
    pub hooks: Hooks,
}

/// The commands a policy runs around the create of a new snapshot (`rotation/hooks.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hooks {
    /// Run before the create (after the server is stopped); its failure means no snapshot.
    pub pre_snapshot: Option<HookCommand>,
    /// Run after the create is answered or failed, whenever the hooks began.
    pub post_snapshot: Option<HookCommand>,
    /// How long each may run before its process group is killed.
    pub timeout: Duration,
}

impl Default for Hooks {
    /// No hook.
    fn default() -> Hooks {
        Hooks {
            pre_snapshot: None,
            post_snapshot: None,
            timeout: super::defaults::HOOK_TIMEOUT,
        }
    }
}

impl Hooks {
    pub fn any(&self) -> bool {
        self.pre_snapshot.is_some() || self.post_snapshot.is_some()
    }
}

/// A hook's command line: the program, by absolute path, and its arguments, run
/// without a shell. Read from the file through `checks::hook_command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCommand {
    program: PathBuf,
    args: Vec<String>,
}

impl HookCommand {
    pub fn new(program: PathBuf, args: Vec<String>) -> HookCommand {
        HookCommand { program, args }
    }

    pub fn program(&self) -> &std::path::Path {
        &self.program
    }

    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The whole command line, as a list (for `--json`).
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .collect()
    }
}

impl std::fmt::Display for HookCommand {
    /// The words as written, one quoted when it holds a space or a quote.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, word) in self.argv().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if word.is_empty() || word.contains([' ', '\t', '"', '\'', '\\']) {
                write!(f, "{word:?}")?;
            } else {
                f.write_str(word)?;
            }
        }
        Ok(())
    }
}

/// How long a job polls and waits: a policy's own, or `[defaults]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub poll_interval: Duration,
    /// For a snapshot to complete.
    pub wait_timeout: Duration,
    /// For a server to stop or to run again.
    pub stop_timeout: Duration,
}

/// The policy of job `policy@server` among `policies`, when that job is configured
/// (for a policy with patterns: when it may be, see [`Policy::may_cover`]).
pub fn job_policy<'a>(policies: &'a [Policy], policy: &str, server: u64) -> Option<&'a Policy> {
    policies
        .iter()
        .find(|p| p.name == policy && p.may_cover(server))
}

impl Policy {
    pub fn timing(&self) -> Timing {
        Timing {
            poll_interval: self.poll_interval,
            wait_timeout: self.wait_timeout,
            stop_timeout: self.stop_timeout,
        }
    }

    /// Whether the policy names servers other than by id, so that only the provider's
    /// server listing says which servers it covers.
    pub fn has_patterns(&self) -> bool {
        !self.patterns.is_empty()
    }

    /// Whether the policy may cover `server`: it lists its id, or it has patterns, which
    /// a name may match. Without the server's name this is what can be known, and it
    /// errs on the side of keeping: a snapshot this policy made on a server its glob no
    /// longer matches stays its own, never an orphan to delete.
    pub fn may_cover(&self, server: u64) -> bool {
        self.servers.contains(&server) || self.has_patterns()
    }

    /// Whether the policy covers the server `id` named `name`.
    pub fn covers(&self, id: u64, name: &str) -> bool {
        self.servers.contains(&id) || self.patterns.iter().any(|p| p.matches(name))
    }

    /// `servers` as written, for people: `12345, web-*, db-01`.
    pub fn servers_written(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(u64::to_string)
            .chain(self.patterns.iter().map(ServerPattern::to_string))
            .collect()
    }

    /// Whether `name` on `server` was made by this policy.
    pub fn owns(&self, server: u64, name: &str) -> bool {
        self.snapshot_name.matches(&self.name, server, name)
    }

    /// The jobs of this policy on the servers it lists by id, one per server, sharing
    /// one copy of its name (those of its patterns come from the provider).
    pub fn jobs(&self) -> impl Iterator<Item = JobId> + '_ {
        let name: std::sync::Arc<str> = self.name.as_str().into();
        self.servers
            .iter()
            .map(move |s| JobId::new(name.clone(), *s))
    }

    /// The description given to every snapshot this policy creates.
    pub fn snapshot_description(&self) -> String {
        match &self.description {
            Some(d) => format!("{d} (snaprotd policy {})", self.name),
            None => format!("snaprotd policy {}", self.name),
        }
    }
}

impl Config {
    /// A problem of policy `policy`'s `servers` that only the provider's server listing
    /// shows (a pattern matching nothing, a server it cannot share), placed where the
    /// key is written.
    pub fn servers_problem(&self, policy: &str, message: impl Into<String>) -> ConfigError {
        self.problem_at(&format!("policy[{policy}].servers"), message)
    }

    /// A problem of policy `policy`'s `keep`, placed where it is written (in the policy
    /// or in `[defaults]`).
    pub fn keep_problem(&self, policy: &str, message: impl Into<String>) -> ConfigError {
        let own = format!("policy[{policy}].keep");
        match self.written_at.contains_key(&own) {
            true => self.problem_at(&own, message),
            false => self.problem_at("defaults.keep", message),
        }
    }

    /// A problem of `key`, placed where it is written if it is.
    fn problem_at(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            at: self.written_at.get(key).copied(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// The policy of job `policy@server`, when that job is configured.
    pub fn job_policy(&self, policy: &str, server: u64) -> Option<&Policy> {
        job_policy(&self.policies, policy, server)
    }
}
