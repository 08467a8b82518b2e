//! From the file as written (`raw.rs`) to a [`Config`]: every key through its rule in
//! `checks.rs` or to its default from `defaults.rs`, a policy's keys from the policy or
//! from `[defaults]`, then the rules across policies. Every problem is collected, so an
//! operator fixes a file in one go rather than one error per run.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use url::Url;

use super::checks::{self, At};
use super::defaults;
use super::errors::Problem;
use super::keep::Keep;
use super::raw::{RawConfig, RawPolicy, RawPolicyKeys, S};
use super::schema::{
    ApiConfig, Config, DaemonConfig, HookCommand, Hooks, NotifyConfig, Policy, Timing,
};
use super::sources::Outside;
use super::template::NameTemplate;

/// What checking a file found: the configuration when it holds, and every problem.
pub(super) struct Found {
    pub config: Option<Config>,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

pub(super) fn config(path: &Path, raw: &RawConfig, outside: Outside) -> Found {
    let mut found = Found {
        config: None,
        errors: Vec::new(),
        warnings: outside.warnings,
    };
    found.errors.extend(outside.errors);
    let api = api(raw, outside.token, &mut found);
    let daemon = daemon(raw, outside.state_directory, &mut found);
    let cap = api
        .as_ref()
        .map_or(defaults::SNAPSHOT_CAP, |a| a.snapshot_cap);
    let policies = policies(raw, cap, &mut found);
    across_policies(raw, &policies, cap, &mut found);
    let timing = timing(&raw.defaults, &mut found);
    let notify = notify(raw, &mut found);
    if let (Some(api), Some(daemon), Some(defaults), Some(notify)) = (api, daemon, timing, notify) {
        found.config = Some(Config {
            path: path.to_path_buf(),
            api,
            daemon,
            policies,
            defaults,
            notify,
            warnings: Vec::new(),
            written_at: Default::default(),
        });
    }
    found
}

impl Found {
    fn take<T>(&mut self, checked: Result<T, Problem>) -> Option<T> {
        match checked {
            Ok(v) => Some(v),
            Err(problem) => {
                // A `[defaults]` key used by several policies is reported once.
                if !self.errors.contains(&problem) {
                    self.errors.push(problem);
                }
                None
            }
        }
    }

    /// A key that may be left out: its value through `rule`, or `default`.
    fn optional<T: Clone, U>(
        &mut self,
        value: &S<T>,
        key: &str,
        default: U,
        rule: impl FnOnce(&At<T>) -> Result<U, Problem>,
    ) -> Option<U> {
        match value {
            None => Some(default),
            Some(v) => self.take(rule(&At::of(v, key))),
        }
    }

    /// A policy's key: its own value, else `[defaults]`'s, through `rule`; else `default`.
    fn chosen<T: Clone, U>(
        &mut self,
        own: &S<T>,
        shared: &S<T>,
        policy: &str,
        key: &str,
        default: U,
        rule: impl FnOnce(&At<T>) -> Result<U, Problem>,
    ) -> Option<U> {
        match pick(own, shared, policy, key) {
            None => Some(default),
            Some(v) => self.take(rule(&v)),
        }
    }
}

/// A policy's own value of `key`, else the one in `[defaults]`, with the key that
/// names where it was written.
fn pick<T: Clone>(own: &S<T>, shared: &S<T>, policy: &str, key: &str) -> Option<At<T>> {
    match (own, shared) {
        (Some(v), _) => Some(At::of(v, format!("policy[{policy}].{key}"))),
        (None, Some(v)) => Some(At::of(v, format!("defaults.{key}"))),
        (None, None) => None,
    }
}

fn api(
    raw: &RawConfig,
    token: Option<(crate::token::ApiToken, String)>,
    found: &mut Found,
) -> Option<ApiConfig> {
    let a = &raw.api;
    let base_url = match &a.base_url {
        None => Url::parse(defaults::BASE_URL).ok(),
        Some(v) => found.take(checks::base_url(&At::of(v, "api.base_url"))),
    };
    let request_timeout = found.optional(
        &a.request_timeout,
        "api.request_timeout",
        defaults::REQUEST_TIMEOUT,
        checks::duration,
    );
    let retry_backoff = found.optional(
        &a.retry_backoff,
        "api.retry_backoff",
        defaults::RETRY_BACKOFF,
        checks::duration,
    );
    let max_attempts = found.optional(
        &a.max_attempts,
        "api.max_attempts",
        defaults::MAX_ATTEMPTS,
        |v| checks::int_in(v, checks::MAX_ATTEMPTS).map(|n| n as u32),
    );
    let snapshot_cap = found.optional(
        &a.snapshot_cap,
        "api.snapshot_cap",
        defaults::SNAPSHOT_CAP,
        |v| checks::int_in(v, checks::SNAPSHOT_CAP).map(|n| n as usize),
    );
    let max_requests_per_second = found.optional(
        &a.max_requests_per_second,
        "api.max_requests_per_second",
        None,
        |v| checks::int_in(v, checks::MAX_REQUESTS_PER_SECOND).map(|r| Some(r as f64)),
    );
    let (token, token_source) = match token {
        Some((token, source)) => (Some(token), source),
        None if found.errors.is_empty() => (None, "none (not read: not needed)".to_string()),
        None => return None,
    };
    Some(ApiConfig {
        base_url: base_url?,
        token,
        token_source,
        request_timeout: request_timeout?,
        max_attempts: max_attempts?,
        retry_backoff: retry_backoff?,
        snapshot_cap: snapshot_cap?,
        max_requests_per_second: max_requests_per_second?,
    })
}

fn daemon(
    raw: &RawConfig,
    state_directory: Option<PathBuf>,
    found: &mut Found,
) -> Option<DaemonConfig> {
    let d = &raw.daemon;
    let state_dir = d
        .state_dir
        .as_ref()
        .map(|v| PathBuf::from(v.get_ref()))
        .or(state_directory)
        .unwrap_or_else(|| PathBuf::from(defaults::STATE_DIR));
    let max_concurrent_jobs = found.optional(
        &d.max_concurrent_jobs,
        "daemon.max_concurrent_jobs",
        defaults::MAX_CONCURRENT_JOBS,
        |v| checks::int_in(v, checks::MAX_CONCURRENT_JOBS).map(|n| n as usize),
    );
    let shutdown_timeout = found.optional(
        &d.shutdown_timeout,
        "daemon.shutdown_timeout",
        defaults::SHUTDOWN_TIMEOUT,
        checks::duration,
    );
    Some(DaemonConfig {
        state_dir,
        max_concurrent_jobs: max_concurrent_jobs?,
        shutdown_timeout: shutdown_timeout?,
        metrics_file: d.metrics_file.as_ref().map(|f| PathBuf::from(f.get_ref())),
    })
}

/// The `[notify]` table, and each policy's `ping_url` (its own, else `[defaults]`'s).
fn notify(raw: &RawConfig, found: &mut Found) -> Option<NotifyConfig> {
    let n = &raw.notify;
    let webhook_url = found.optional(&n.webhook_url, "notify.webhook_url", None, |v| {
        checks::notify_url(v).map(Some)
    });
    let command = match &n.command {
        None => Some(None),
        Some(v) => {
            let v = At::of(v, "notify.command");
            let command = found.take(checks::hook_command(&v));
            if let Some(why) = command.as_ref().and_then(not_runnable) {
                found.warnings.push(v.problem(
                    why.replace("every run of the policy fails", "every notice to it fails"),
                ));
            }
            command.map(Some)
        }
    };
    let timeout = found.optional(
        &n.timeout,
        "notify.timeout",
        defaults::NOTIFY_TIMEOUT,
        checks::duration,
    );
    let max_attempts = found.optional(
        &n.max_attempts,
        "notify.max_attempts",
        defaults::NOTIFY_MAX_ATTEMPTS,
        |v| checks::int_in(v, checks::MAX_ATTEMPTS).map(|n| n as u32),
    );
    let retry_backoff = found.optional(
        &n.retry_backoff,
        "notify.retry_backoff",
        defaults::NOTIFY_RETRY_BACKOFF,
        checks::duration,
    );
    let mut pings = BTreeMap::new();
    let mut all_read = true;
    for p in &raw.policy {
        let p = p.get_ref();
        let name = p.name.get_ref();
        if let Some(v) = pick(&p.ping_url, &raw.defaults.ping_url, name, "ping_url") {
            match found.take(checks::notify_url(&v)) {
                Some(url) => {
                    pings.insert(name.clone(), url);
                }
                None => all_read = false,
            }
        }
    }
    all_read.then_some(())?;
    Some(NotifyConfig {
        webhook_url: webhook_url?,
        command: command?,
        timeout: timeout?,
        max_attempts: max_attempts?,
        retry_backoff: retry_backoff?,
        pings,
    })
}

/// The `[defaults]` timings.
fn timing(d: &RawPolicyKeys, found: &mut Found) -> Option<Timing> {
    let mut duration = |v: &S<String>, key: &str, default| {
        found.optional(v, &format!("defaults.{key}"), default, checks::duration)
    };
    let poll_interval = duration(&d.poll_interval, "poll_interval", defaults::POLL_INTERVAL);
    let wait_timeout = duration(&d.wait_timeout, "wait_timeout", defaults::WAIT_TIMEOUT);
    let stop_timeout = duration(&d.stop_timeout, "stop_timeout", defaults::STOP_TIMEOUT);
    Some(Timing {
        poll_interval: poll_interval?,
        wait_timeout: wait_timeout?,
        stop_timeout: stop_timeout?,
    })
}

fn policies(raw: &RawConfig, cap: usize, found: &mut Found) -> Vec<Policy> {
    let mut taken = HashSet::new();
    let policies = raw
        .policy
        .iter()
        .filter_map(|p| policy(p.get_ref(), &raw.defaults, cap, &mut taken, found))
        .collect();
    if raw.policy.is_empty() {
        found.warnings.push(Problem::of_file(
            "no [[policy]] is configured; nothing will be snapshotted",
        ));
    }
    policies
}

fn policy(
    p: &RawPolicy,
    d: &RawPolicyKeys,
    cap: usize,
    taken: &mut HashSet<String>,
    found: &mut Found,
) -> Option<Policy> {
    let name = p.name.get_ref();
    let name_at = At::of(&p.name, "policy.name");
    let named = found
        .take(checks::plain_policy_name(&name_at))
        .and_then(|()| found.take(checks::unique_policy_name(&name_at, taken)));
    if named.is_some() {
        taken.insert(name.clone());
    }
    let key = |k: &str| format!("policy[{name}].{k}");

    let servers = match checks::servers(&At::of(&p.servers, key("servers"))) {
        Ok(ids) => Some(ids),
        Err(problems) => {
            found.errors.extend(problems);
            None
        }
    };
    let schedule = found.take(checks::schedule(&At::of(&p.schedule, key("schedule"))));
    let timezone = found.chosen(
        &p.timezone,
        &d.timezone,
        name,
        "timezone",
        defaults::TIMEZONE,
        checks::timezone,
    );
    let keep = found.chosen(
        &p.keep,
        &d.keep,
        name,
        "keep",
        Keep::newest(defaults::keep(cap)),
        |v| checks::keep(v, cap),
    );
    let snapshot_name = snapshot_name(p, d, found);
    if let (Some(template), Some(schedule), Some(servers)) = (&snapshot_name, &schedule, &servers) {
        let zone = timezone.unwrap_or(chrono_tz::UTC);
        found.take(checks::name_fine_enough(
            template,
            schedule,
            zone,
            chrono::Utc::now(),
        ));
        // A server a pattern matches may have the longest id there is.
        let (ids, patterns) = servers;
        let longest = (!patterns.is_empty()).then_some(u64::MAX);
        let all: Vec<u64> = ids.iter().copied().chain(longest).collect();
        found.take(checks::name_short_enough(template, name, &all));
    }
    let description = match &p.description {
        None => Some(None),
        Some(v) => found
            .take(checks::description(&At::of(v, key("description"))))
            .map(Some),
    };
    let flag = |own: &S<bool>, shared: &S<bool>, k: &str, default: bool| {
        pick(own, shared, name, k).map_or(default, |v| v.value)
    };
    let stop_server = flag(
        &p.stop_server,
        &d.stop_server,
        "stop_server",
        defaults::STOP_SERVER,
    );
    let catch_up = flag(&p.catch_up, &d.catch_up, "catch_up", defaults::CATCH_UP);
    let mut duration = |own: &S<String>, shared: &S<String>, k: &str, default| {
        found.chosen(own, shared, name, k, default, checks::duration)
    };
    let poll_interval = duration(
        &p.poll_interval,
        &d.poll_interval,
        "poll_interval",
        defaults::POLL_INTERVAL,
    );
    let wait_timeout = duration(
        &p.wait_timeout,
        &d.wait_timeout,
        "wait_timeout",
        defaults::WAIT_TIMEOUT,
    );
    let stop_timeout = duration(
        &p.stop_timeout,
        &d.stop_timeout,
        "stop_timeout",
        defaults::STOP_TIMEOUT,
    );
    let hooks = hooks(p, d, found);

    named?;
    Some(Policy {
        name: name.clone(),
        servers: servers.as_ref()?.0.clone(),
        patterns: servers?.1,
        schedule: schedule?,
        timezone: timezone?,
        keep: keep?,
        stop_server,
        snapshot_name: snapshot_name?.value,
        description: description?,
        poll_interval: poll_interval?,
        wait_timeout: wait_timeout?,
        stop_timeout: stop_timeout?,
        catch_up,
        hooks: hooks?,
    })
}

/// The policy's `pre_snapshot`, `post_snapshot` and `hook_timeout`, each its own or
/// `[defaults]`'s. A program that is not there (or not executable) now is warned about,
/// not refused: it may be installed after the configuration, and every run checks.
fn hooks(p: &RawPolicy, d: &RawPolicyKeys, found: &mut Found) -> Option<Hooks> {
    let name = p.name.get_ref();
    let mut command = |own: &S<Vec<toml::Spanned<String>>>, shared: &S<_>, k: &str| {
        let Some(v) = pick(own, shared, name, k) else {
            return Some(None);
        };
        let command = found.take(checks::hook_command(&v))?;
        if let Some(why) = not_runnable(&command) {
            let warning = v.problem(why);
            if !found.warnings.contains(&warning) {
                found.warnings.push(warning);
            }
        }
        Some(Some(command))
    };
    let pre_snapshot = command(&p.pre_snapshot, &d.pre_snapshot, "pre_snapshot");
    let post_snapshot = command(&p.post_snapshot, &d.post_snapshot, "post_snapshot");
    let timeout = found.chosen(
        &p.hook_timeout,
        &d.hook_timeout,
        name,
        "hook_timeout",
        defaults::HOOK_TIMEOUT,
        checks::duration,
    );
    Some(Hooks {
        pre_snapshot: pre_snapshot?,
        post_snapshot: post_snapshot?,
        timeout: timeout?,
    })
}

/// Why a hook's program cannot run as things are (as this user sees them), if so.
fn not_runnable(command: &HookCommand) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let program = command.program().display();
    match std::fs::metadata(command.program()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
            "there is no {program}: every run of the policy fails until there is"
        )),
        Err(e) => Some(format!(
            "cannot look at {program} ({e}): every run of the policy fails if it cannot run it"
        )),
        Ok(m) if !m.is_file() => Some(format!(
            "{program} is not a file: every run of the policy fails until it is a program"
        )),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Some(format!(
            "{program} is not executable (chmod 755 it): every run of the policy fails until it is"
        )),
        Ok(_) => None,
    }
}

/// The policy's template, with where it was written (the built-in default: nowhere).
fn snapshot_name(p: &RawPolicy, d: &RawPolicyKeys, found: &mut Found) -> Option<At<NameTemplate>> {
    let name = p.name.get_ref();
    match pick(&p.snapshot_name, &d.snapshot_name, name, "snapshot_name") {
        // Not written: a problem of the default is the policy's, at its name.
        None => NameTemplate::parse(defaults::SNAPSHOT_NAME)
            .ok()
            .map(|t| At {
                value: t,
                span: p.name.span(),
                key: format!("policy[{name}].snapshot_name"),
            }),
        Some(v) => found.take(checks::snapshot_name(&v)).map(|t| At {
            value: t,
            span: v.span,
            key: v.key,
        }),
    }
}

/// The rules across policies: the keep budget of each server, and names that two
/// policies on one server could both claim.
fn across_policies(raw: &RawConfig, policies: &[Policy], cap: usize, found: &mut Found) {
    let name_span = |name: &str| -> Range<usize> {
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
    // Where the `keep` of a policy is written: its own key, else `[defaults]`, else
    // (the default) its name.
    let keep_at = |name: &str| -> (Range<usize>, String) {
        let policy = raw
            .policy
            .iter()
            .find(|p| p.get_ref().name.get_ref() == name);
        match (
            policy.and_then(|p| p.get_ref().keep.as_ref()),
            &raw.defaults.keep,
        ) {
            (Some(k), _) => (k.span(), format!("policy[{name}].keep")),
            (None, Some(k)) => (k.span(), "defaults.keep".into()),
            (None, None) => (name_span(name), format!("policy[{name}].keep")),
        }
    };
    for (server, ps) in &by_server {
        let last = ps
            .last()
            .map_or((0..0, String::new()), |p| keep_at(&p.name));
        match checks::keep_within_cap(*server, ps, cap, last) {
            Ok(None) => {}
            Ok(Some(warning)) => found.warnings.push(warning),
            Err(problem) => found.errors.push(problem),
        }
        for (i, a) in ps.iter().enumerate() {
            for b in &ps[i + 1..] {
                found.take(checks::names_apart(*server, a, b, name_span(&b.name)));
            }
        }
    }
}
