//! The configuration: schema, defaults, and every validation rule of PRODUCT.md.
//!
//! Loading is two passes: serde reads the file into [`raw`] structures that remember
//! where each value was written, then [`Checker`] turns them into a [`Config`] and
//! collects every problem with file, line, column and key, so an operator fixes a
//! file in one go rather than one error per run.

pub(crate) mod file;
mod raw;
pub mod template;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use toml::Spanned;
use url::{Host, Url};

use crate::schedule::Schedule;
use crate::token::ApiToken;
use raw::{RawConfig, RawPolicy, RawPolicyKeys, S};
pub use template::NameTemplate;

/// Where the configuration is read from when neither `-c` nor `SNAPROTD_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/snaprotd/snaprotd.toml";
const DEFAULT_BASE_URL: &str = "https://admin.vps.org/api/v1";
const DEFAULT_STATE_DIR: &str = "/var/lib/snaprotd";
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(15);
const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The environment variable read for the token when no other source is configured.
pub const TOKEN_ENV: &str = "SNAPROTD_API_TOKEN";
/// The systemd credential name (`LoadCredential=api-token:…`).
pub const TOKEN_CREDENTIAL: &str = "api-token";

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub api: ApiConfig,
    pub daemon: DaemonConfig,
    pub policies: Vec<Policy>,
    /// The `[defaults]` timings, for a stopped server whose policy is no longer configured.
    pub defaults: Timing,
    /// Problems that do not stop the configuration from working.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub base_url: Url,
    pub token: ApiToken,
    /// Where the token came from, for `check` (never the token itself).
    pub token_source: String,
    pub request_timeout: Duration,
    pub max_attempts: u32,
    pub retry_backoff: Duration,
    pub snapshot_cap: usize,
    /// The ceiling of the process-wide request budget (unset: found from the provider).
    pub max_requests_per_second: Option<f64>,
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
    pub servers: Vec<u64>,
    pub schedule: Schedule,
    pub timezone: Tz,
    pub keep: usize,
    pub stop_server: bool,
    pub snapshot_name: NameTemplate,
    pub description: Option<String>,
    pub poll_interval: Duration,
    pub wait_timeout: Duration,
    pub stop_timeout: Duration,
    pub catch_up: bool,
}

/// The policy of job `policy@server` among `policies`, when that job is configured.
pub fn job_policy<'a>(policies: &'a [Policy], policy: &str, server: u64) -> Option<&'a Policy> {
    policies
        .iter()
        .find(|p| p.name == policy && p.servers.contains(&server))
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

impl Policy {
    pub fn timing(&self) -> Timing {
        Timing {
            poll_interval: self.poll_interval,
            wait_timeout: self.wait_timeout,
            stop_timeout: self.stop_timeout,
        }
    }

    /// Whether `name` on `server` was made by this policy.
    pub fn owns(&self, server: u64, name: &str) -> bool {
        self.snapshot_name.matches(&self.name, server, name)
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
    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// The policy of job `policy@server`, when that job is configured.
    pub fn job_policy(&self, policy: &str, server: u64) -> Option<&Policy> {
        job_policy(&self.policies, policy, server)
    }

    /// Reads and validates the file at `path`: a regular file of at most 1 MiB, opened
    /// without blocking (every command and the daemon's reload come through here).
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let (source, _) = file::read_text(path, file::MAX_CONFIG_BYTES, "a configuration file")
            .map_err(|e| {
                ConfigErrors(vec![ConfigError {
                    file: path.to_path_buf(),
                    at: None,
                    key: String::new(),
                    message: format!("cannot read the configuration: {e}"),
                }])
            })?;
        Config::from_source(path, &source)
    }

    /// Validates `source` as if it were the contents of `path`.
    pub fn from_source(path: &Path, source: &str) -> Result<Config, ConfigErrors> {
        let mut checker = Checker {
            file: path.to_path_buf(),
            source,
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(source) {
            Ok(raw) => raw,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let key = checker.key_at(span.start);
                let message = e.message().trim().to_string();
                checker.error(span, &key, message);
                return Err(ConfigErrors(checker.errors));
            }
        };
        let config = checker.check(raw);
        if checker.errors.is_empty() {
            let mut config = config.ok_or_else(|| ConfigErrors(Vec::new()))?;
            config.warnings = checker.warnings;
            Ok(config)
        } else {
            Err(ConfigErrors(checker.errors))
        }
    }
}

/// One problem in the configuration, with where it is.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Line and column, both counted from 1.
    pub at: Option<(usize, usize)>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.at {
            write!(f, ":{line}:{col}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All the problems found in one configuration file.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

struct Checker<'a> {
    file: PathBuf,
    source: &'a str,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

/// A value chosen for a policy: its own, or the one from `[defaults]`.
struct Picked<'a, T> {
    value: &'a T,
    span: Range<usize>,
    key: String,
}

impl<'a> Checker<'a> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.source[..offset.min(self.source.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    fn error(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let at = Some(self.line_col(span.start));
        self.errors.push(ConfigError {
            file: self.file.clone(),
            at,
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn warn(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let (line, col) = self.line_col(span.start);
        self.warnings.push(format!(
            "{}:{line}:{col}: key `{key}`: {}",
            self.file.display(),
            message.into()
        ));
    }

    /// For a serde error: the key written at (or, for a value, before) `offset`,
    /// prefixed by the table it is in.
    fn key_at(&self, offset: usize) -> String {
        let offset = offset.min(self.source.len());
        let mut table = String::new();
        let mut key = String::new();
        let line_end = self.source[offset..]
            .find('\n')
            .map_or(self.source.len(), |i| offset + i);
        // The key is on this line or, inside a multi-line value, on an earlier one.
        let lines = self.source[..line_end].lines().rev();
        let mut on_first_line = true;
        for line in lines {
            let t = line.trim();
            if t.starts_with('[') {
                table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
                break;
            }
            if key.is_empty() {
                if let Some((k, _)) = t.split_once('=') {
                    key = k.trim().trim_matches('"').to_string();
                } else if on_first_line && !t.is_empty() && !t.starts_with('#') {
                    key = t.split_whitespace().next().unwrap_or("").to_string();
                }
            }
            on_first_line = false;
        }
        match (table.is_empty(), key.is_empty()) {
            (true, _) => key,
            (false, true) => table,
            (false, false) => format!("{table}.{key}"),
        }
    }

    fn duration(&mut self, v: &Spanned<String>, key: &str) -> Option<Duration> {
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) if d.is_zero() => {
                self.error(v.span(), key, "must be longer than zero");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    v.span(),
                    key,
                    format!(
                        "{:?} is not a duration ({e}); write e.g. \"30s\", \"10m\", \"1h\"",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn int_in(&mut self, v: &Spanned<i64>, key: &str, range: Range<i64>) -> Option<i64> {
        let n = *v.get_ref();
        if range.contains(&n) {
            Some(n)
        } else {
            self.error(
                v.span(),
                key,
                format!(
                    "{n} is out of range: must be {} to {}",
                    range.start,
                    range.end - 1
                ),
            );
            None
        }
    }

    fn check(&mut self, raw: RawConfig) -> Option<Config> {
        let api = self.check_api(&raw);
        let daemon = self.check_daemon(&raw);
        let cap = api.as_ref().map_or(5, |a| a.snapshot_cap);
        let policies = self.check_policies(&raw, cap);
        self.check_servers(&raw, &policies, cap);
        let defaults = self.check_defaults(&raw);
        Some(Config {
            path: self.file.clone(),
            api: api?,
            daemon: daemon?,
            policies,
            defaults: defaults?,
            warnings: Vec::new(),
        })
    }

    fn check_defaults(&mut self, raw: &RawConfig) -> Option<Timing> {
        let d = &raw.defaults;
        let none = None;
        let mut pick = |default: &S<String>, key: &str, builtin: Duration| {
            self.picked_duration(&none, default, "", key, builtin)
        };
        let poll_interval = pick(&d.poll_interval, "poll_interval", DEFAULT_POLL_INTERVAL);
        let wait_timeout = pick(&d.wait_timeout, "wait_timeout", DEFAULT_WAIT_TIMEOUT);
        let stop_timeout = pick(&d.stop_timeout, "stop_timeout", DEFAULT_STOP_TIMEOUT);
        Some(Timing {
            poll_interval: poll_interval?,
            wait_timeout: wait_timeout?,
            stop_timeout: stop_timeout?,
        })
    }

    fn check_api(&mut self, raw: &RawConfig) -> Option<ApiConfig> {
        let a = &raw.api;
        let base_url = match &a.base_url {
            None => Url::parse(DEFAULT_BASE_URL).ok(),
            Some(v) => self.base_url(v),
        };
        let token = self.token(a.token_file.as_ref(), a.token_env.as_ref());
        let request_timeout = a
            .request_timeout
            .as_ref()
            .map_or(Some(Duration::from_secs(30)), |v| {
                self.duration(v, "api.request_timeout")
            });
        let retry_backoff = a
            .retry_backoff
            .as_ref()
            .map_or(Some(Duration::from_secs(1)), |v| {
                self.duration(v, "api.retry_backoff")
            });
        let max_attempts = a
            .max_attempts
            .as_ref()
            .map_or(Some(5), |v| self.int_in(v, "api.max_attempts", 1..21));
        let snapshot_cap = a
            .snapshot_cap
            .as_ref()
            .map_or(Some(5), |v| self.int_in(v, "api.snapshot_cap", 1..1001));
        let rate = match &a.max_requests_per_second {
            None => Some(None),
            Some(v) => self
                .int_in(v, "api.max_requests_per_second", 1..10_001)
                .map(|r| Some(r as f64)),
        };
        let (token, token_source) = token?;
        Some(ApiConfig {
            base_url: base_url?,
            token,
            token_source,
            request_timeout: request_timeout?,
            max_attempts: max_attempts? as u32,
            retry_backoff: retry_backoff?,
            snapshot_cap: snapshot_cap? as usize,
            max_requests_per_second: rate?,
        })
    }

    fn base_url(&mut self, v: &Spanned<String>) -> Option<Url> {
        const KEY: &str = "api.base_url";
        let text = v.get_ref().trim_end_matches('/');
        let url = match Url::parse(text) {
            Ok(u) => u,
            Err(e) => {
                self.error(
                    v.span(),
                    KEY,
                    format!("{:?} is not a URL: {e}", v.get_ref()),
                );
                return None;
            }
        };
        let loopback = match url.host() {
            Some(Host::Domain(d)) => d == "localhost",
            Some(Host::Ipv4(ip)) => ip.is_loopback(),
            Some(Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => {
                self.error(
                    v.span(),
                    KEY,
                    "http:// is allowed only for loopback (127.0.0.0/8, ::1, localhost); use https://",
                );
                return None;
            }
            other => {
                self.error(
                    v.span(),
                    KEY,
                    format!("scheme {other}:// is not supported; use https://"),
                );
                return None;
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            self.error(
                v.span(),
                KEY,
                "must not carry credentials; the token goes in token_file",
            );
            return None;
        }
        Some(url)
    }

    /// The token, from the first configured source: `token_file`, `token_env`, the
    /// systemd credential, then `SNAPROTD_API_TOKEN`.
    fn token(
        &mut self,
        file: Option<&Spanned<String>>,
        env: Option<&Spanned<String>>,
    ) -> Option<(ApiToken, String)> {
        if let (Some(_), Some(e)) = (file, env) {
            self.error(
                e.span(),
                "api.token_env",
                "set either token_file or token_env, not both",
            );
            return None;
        }
        if let Some(f) = file {
            let path = Path::new(f.get_ref());
            return match file::read_text(path, file::MAX_TOKEN_BYTES, "a token file") {
                Ok((text, meta)) => {
                    self.warn_if_others_can_read(path, &meta, f.span());
                    match ApiToken::new(&text) {
                        Some(t) => Some((t, format!("file {}", path.display()))),
                        None => {
                            self.error(
                                f.span(),
                                "api.token_file",
                                format!("{} is empty", path.display()),
                            );
                            None
                        }
                    }
                }
                Err(e) => {
                    self.error(
                        f.span(),
                        "api.token_file",
                        format!("cannot read the token file {}: {e}", path.display()),
                    );
                    None
                }
            };
        }
        if let Some(e) = env {
            let name = e.get_ref();
            return match std::env::var(name).ok().as_deref().and_then(ApiToken::new) {
                Some(t) => Some((t, format!("environment variable {name}"))),
                None => {
                    self.error(
                        e.span(),
                        "api.token_env",
                        format!("environment variable {name} is not set or empty"),
                    );
                    None
                }
            };
        }
        if let Ok(dir) = std::env::var("CREDENTIALS_DIRECTORY") {
            let path = Path::new(&dir).join(TOKEN_CREDENTIAL);
            if let Some(t) = file::read_text(&path, file::MAX_TOKEN_BYTES, "a token file")
                .ok()
                .and_then(|(text, _)| ApiToken::new(&text))
            {
                return Some((t, format!("systemd credential {TOKEN_CREDENTIAL}")));
            }
        }
        if let Some(t) = std::env::var(TOKEN_ENV)
            .ok()
            .as_deref()
            .and_then(ApiToken::new)
        {
            return Some((t, format!("environment variable {TOKEN_ENV}")));
        }
        self.error(
            0..0,
            "api.token_file",
            format!(
                "no API token: set [api] token_file or token_env, provide the systemd credential \
                 {TOKEN_CREDENTIAL}, or set {TOKEN_ENV}"
            ),
        );
        None
    }

    fn warn_if_others_can_read(
        &mut self,
        path: &Path,
        meta: &std::fs::Metadata,
        span: Range<usize>,
    ) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o004 != 0 {
            self.warn(
                span,
                "api.token_file",
                format!("{} is readable by every user; chmod 600 it", path.display()),
            );
        }
    }

    fn check_daemon(&mut self, raw: &RawConfig) -> Option<DaemonConfig> {
        let d = &raw.daemon;
        let state_dir = match &d.state_dir {
            Some(v) => PathBuf::from(v.get_ref()),
            None => std::env::var("STATE_DIRECTORY")
                .ok()
                .and_then(|s| s.split(':').next().map(PathBuf::from))
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
        };
        let max_concurrent_jobs = d.max_concurrent_jobs.as_ref().map_or(Some(4), |v| {
            self.int_in(v, "daemon.max_concurrent_jobs", 1..100_001)
        });
        let shutdown_timeout = d
            .shutdown_timeout
            .as_ref()
            .map_or(Some(Duration::from_secs(600)), |v| {
                self.duration(v, "daemon.shutdown_timeout")
            });
        Some(DaemonConfig {
            metrics_file: d.metrics_file.as_ref().map(|f| PathBuf::from(f.get_ref())),
            state_dir,
            max_concurrent_jobs: max_concurrent_jobs? as usize,
            shutdown_timeout: shutdown_timeout?,
        })
    }

    fn pick<'b, T>(
        &self,
        own: &'b S<T>,
        default: &'b S<T>,
        policy: &str,
        key: &str,
    ) -> Option<Picked<'b, T>> {
        if let Some(v) = own {
            return Some(Picked {
                value: v.get_ref(),
                span: v.span(),
                key: format!("policy[{policy}].{key}"),
            });
        }
        default.as_ref().map(|v| Picked {
            value: v.get_ref(),
            span: v.span(),
            key: format!("defaults.{key}"),
        })
    }

    fn picked_duration(
        &mut self,
        own: &S<String>,
        default: &S<String>,
        policy: &str,
        key: &str,
        builtin: Duration,
    ) -> Option<Duration> {
        match self.pick(own, default, policy, key) {
            None => Some(builtin),
            Some(p) => {
                let v = Spanned::new(p.span, p.value.clone());
                self.duration(&v, &p.key)
            }
        }
    }

    fn check_policies(&mut self, raw: &RawConfig, cap: usize) -> Vec<Policy> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for p in &raw.policy {
            if let Some(policy) = self.check_policy(p.get_ref(), &raw.defaults, cap, &mut seen) {
                out.push(policy);
            }
        }
        if raw.policy.is_empty() {
            self.warnings.push(format!(
                "{}: no [[policy]] is configured; nothing will be snapshotted",
                self.file.display()
            ));
        }
        out
    }

    fn check_policy(
        &mut self,
        p: &RawPolicy,
        d: &RawPolicyKeys,
        cap: usize,
        seen: &mut HashSet<String>,
    ) -> Option<Policy> {
        let name = p.name.get_ref().clone();
        let mut ok = true;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            self.error(
                p.name.span(),
                "policy.name",
                format!("{name:?}: use letters, digits, - and _ only"),
            );
            ok = false;
        } else if !seen.insert(name.clone()) {
            self.error(
                p.name.span(),
                "policy.name",
                format!("a policy named {name:?} is already defined"),
            );
            ok = false;
        }
        let key = |k: &str| format!("policy[{name}].{k}");

        let mut servers = Vec::new();
        if p.servers.get_ref().is_empty() {
            self.error(p.servers.span(), &key("servers"), "lists no server");
            ok = false;
        }
        for s in p.servers.get_ref() {
            let id = *s.get_ref();
            if id <= 0 {
                self.error(
                    s.span(),
                    &key("servers"),
                    format!("{id} is not a server id"),
                );
                ok = false;
            } else if servers.contains(&(id as u64)) {
                self.error(
                    s.span(),
                    &key("servers"),
                    format!("server {id} is listed twice"),
                );
                ok = false;
            } else {
                servers.push(id as u64);
            }
        }

        let schedule = match Schedule::parse(p.schedule.get_ref()) {
            Ok(s) => Some(s),
            Err(e) => {
                self.error(p.schedule.span(), &key("schedule"), e);
                None
            }
        };

        let timezone = match self.pick(&p.timezone, &d.timezone, &name, "timezone") {
            None => Some(Tz::UTC),
            Some(t) => match t.value.parse::<Tz>() {
                Ok(tz) => Some(tz),
                Err(_) => {
                    let (span, k) = (t.span.clone(), t.key.clone());
                    self.error(
                        span,
                        &k,
                        format!(
                            "{:?} is not an IANA time zone (e.g. \"Europe/Berlin\")",
                            t.value
                        ),
                    );
                    None
                }
            },
        };

        let keep = match self.pick(&p.keep, &d.keep, &name, "keep") {
            None => Some(3.min(cap)),
            Some(k) => {
                let (span, kk, v) = (k.span.clone(), k.key.clone(), *k.value);
                self.int_in(&Spanned::new(span, v), &kk, 1..(cap as i64 + 1))
                    .map(|n| n as usize)
            }
        };

        let template = match self.pick(&p.snapshot_name, &d.snapshot_name, &name, "snapshot_name") {
            None => NameTemplate::parse("{policy}-%Y%m%d-%H%M")
                .map(|t| (t, 0..0, "defaults.snapshot_name".to_string()))
                .ok(),
            Some(t) => {
                let (span, k) = (t.span.clone(), t.key.clone());
                match NameTemplate::parse(t.value) {
                    Ok(tpl) => Some((tpl, span, k)),
                    Err(e) => {
                        self.error(span, &k, e);
                        None
                    }
                }
            }
        };
        if let (Some((tpl, span, k)), Some(schedule)) = (&template, &schedule) {
            self.check_template(tpl, span.clone(), k, &name, &servers, schedule);
        }

        let description = p.description.as_ref().map(|d| d.get_ref().clone());
        if let Some(desc) = &p.description
            && desc.get_ref().chars().count() > 200
        {
            self.error(
                desc.span(),
                &key("description"),
                "is longer than 200 characters",
            );
            ok = false;
        }

        let stop_server = self
            .pick(&p.stop_server, &d.stop_server, &name, "stop_server")
            .is_some_and(|v| *v.value);
        let catch_up = self
            .pick(&p.catch_up, &d.catch_up, &name, "catch_up")
            .is_none_or(|v| *v.value);
        let poll_interval = self.picked_duration(
            &p.poll_interval,
            &d.poll_interval,
            &name,
            "poll_interval",
            DEFAULT_POLL_INTERVAL,
        );
        let wait_timeout = self.picked_duration(
            &p.wait_timeout,
            &d.wait_timeout,
            &name,
            "wait_timeout",
            DEFAULT_WAIT_TIMEOUT,
        );
        let stop_timeout = self.picked_duration(
            &p.stop_timeout,
            &d.stop_timeout,
            &name,
            "stop_timeout",
            DEFAULT_STOP_TIMEOUT,
        );

        if !ok {
            return None;
        }
        Some(Policy {
            name,
            servers,
            schedule: schedule?,
            timezone: timezone?,
            keep: keep?,
            stop_server,
            snapshot_name: template?.0,
            description,
            poll_interval: poll_interval?,
            wait_timeout: wait_timeout?,
            stop_timeout: stop_timeout?,
            catch_up,
        })
    }

    fn check_template(
        &mut self,
        tpl: &NameTemplate,
        span: Range<usize>,
        key: &str,
        policy: &str,
        servers: &[u64],
        schedule: &Schedule,
    ) {
        let needed = schedule.resolution();
        match tpl.resolution() {
            None => self.error(
                span.clone(),
                key,
                format!("{:?} has no %Y: names would repeat every year", tpl.source()),
            ),
            Some(have) if have > needed => self.error(
                span.clone(),
                key,
                format!(
                    "{:?} is too coarse for schedule {:?}: two fires in one {} would get the same name; add {}",
                    tpl.source(),
                    schedule.expr(),
                    resolution_word(have),
                    needed_fields(needed)
                ),
            ),
            Some(_) => {}
        }
        if let Some(longest) = servers.iter().map(|s| tpl.rendered_len(policy, *s)).max()
            && longest > template::MAX_NAME_LEN
        {
            self.error(
                span,
                key,
                format!(
                    "renders names of {longest} characters; at most {} are allowed",
                    template::MAX_NAME_LEN
                ),
            );
        }
    }

    /// Rules across policies: the keep budget of each server, and names that two
    /// policies on one server could both claim.
    fn check_servers(&mut self, raw: &RawConfig, policies: &[Policy], cap: usize) {
        let span_of = |name: &str| {
            raw.policy
                .iter()
                .find(|p| p.get_ref().name.get_ref() == name)
                .map_or(0..0, |p| p.get_ref().name.span())
        };
        let mut by_server: BTreeMap<u64, Vec<&Policy>> = BTreeMap::new();
        for p in policies {
            for s in &p.servers {
                by_server.entry(*s).or_default().push(p);
            }
        }
        for (server, ps) in &by_server {
            let total: usize = ps.iter().map(|p| p.keep).sum();
            let names: Vec<String> = ps
                .iter()
                .map(|p| format!("{} keeps {}", p.name, p.keep))
                .collect();
            let last = ps.last().map_or(String::new(), |p| p.name.clone());
            if total > cap {
                self.error(
                    span_of(&last),
                    &format!("policy[{last}].keep"),
                    format!(
                        "server {server} would need {total} snapshots ({}) but the provider allows {cap}; lower keep",
                        names.join(", ")
                    ),
                );
            } else if total == cap {
                self.warn(
                    span_of(&last),
                    &format!("policy[{last}].keep"),
                    format!(
                        "server {server}: keep adds up to the cap of {cap} ({}); every run must delete before it creates and a manual snapshot will block it",
                        names.join(", ")
                    ),
                );
            }
            for (i, a) in ps.iter().enumerate() {
                for b in &ps[i + 1..] {
                    if a.snapshot_name
                        .overlaps(&a.name, &b.snapshot_name, &b.name, *server)
                    {
                        self.error(
                            span_of(&b.name),
                            &format!("policy[{}].snapshot_name", b.name),
                            format!(
                                "on server {server}, names of policy {} and policy {} can look the same; put {{policy}} in snapshot_name",
                                a.name, b.name
                            ),
                        );
                    }
                }
            }
        }
    }
}

fn resolution_word(r: crate::schedule::Resolution) -> &'static str {
    use crate::schedule::Resolution::*;
    match r {
        Second => "second",
        Minute => "minute",
        Hour => "hour",
        Day => "day",
        Year => "year",
    }
}

fn needed_fields(r: crate::schedule::Resolution) -> &'static str {
    use crate::schedule::Resolution::*;
    match r {
        Second => "%m%d %H%M%S",
        Minute => "%m%d %H%M",
        Hour => "%m%d %H",
        Day | Year => "%m%d",
    }
}
