//! `snaprotd check`: validate the configuration and show what it will do.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::output::{self, errln, outln};
use super::views::ConfigErrorJson;
use std::sync::Arc;

use super::{CliError, CliResult, Exit, load_config};
use crate::config::{Config, ConfigError, ConfigErrors, Keep, Policy};
use crate::notify::shown;
use crate::provider::{Client, Server};
use crate::runner::{Resolved, resolve};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print the result as JSON
    #[arg(long)]
    pub(super) json: bool,
}

/// The next `n` fires of a policy.
pub fn next_fires(policy: &Policy, n: usize) -> Vec<DateTime<Utc>> {
    let mut at = Utc::now();
    let mut out = Vec::new();
    for _ in 0..n {
        let Some(t) = policy.schedule.next_fire(policy.timezone, at) else {
            break;
        };
        out.push(t);
        at = t;
    }
    out
}

/// What the provider's server listing makes of the policies with patterns: for each
/// such policy, the servers it covers (`None`: the listing could not be read, and why).
struct Matches {
    servers: Result<Vec<Server>, String>,
    resolved: Resolved,
}

impl Matches {
    /// Asks the provider, within a short wait, when a policy names servers.
    async fn ask(config: &Config) -> Option<Matches> {
        let wanted: Vec<Arc<str>> = config
            .policies
            .iter()
            .filter(|p| p.has_patterns())
            .map(|p| p.name.as_str().into())
            .collect();
        if wanted.is_empty() {
            return None;
        }
        let listed = async {
            let client = Client::new(&config.api).map_err(|e| e.to_string())?;
            let asked = tokio::time::timeout(ASK_FOR, client.list_servers()).await;
            match asked {
                Ok(Ok(listing)) => Ok(listing.servers),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!(
                    "no answer within {}",
                    humantime::format_duration(ASK_FOR)
                )),
            }
        }
        .await;
        let resolved = match &listed {
            Ok(servers) => resolve(config, &wanted, servers),
            Err(_) => Resolved::default(),
        };
        Some(Matches {
            servers: listed,
            resolved,
        })
    }

    /// The servers `p`'s patterns match (also one it lists by id), as id and name.
    fn of(&self, p: &Policy) -> Result<Vec<(u64, String)>, String> {
        let servers = self.servers.as_ref().map_err(Clone::clone)?;
        Ok(servers
            .iter()
            .filter(|s| {
                let name = s.name.as_deref().unwrap_or("");
                p.patterns.iter().any(|pattern| pattern.matches(name))
            })
            .map(|s| (s.id, s.name.clone().unwrap_or_default()))
            .collect())
    }

    /// The servers the patterns matched that the policies covering them cannot share,
    /// as errors of the configuration: `check` refuses them as it refuses ids.
    fn errors(&self, config: &Config) -> Vec<ConfigError> {
        self.resolved
            .refused
            .iter()
            .map(|r| config.servers_problem(&r.policy, r.to_string()))
            .collect()
    }

    /// Each pattern that matches no server, as a warning.
    fn warnings(&self, config: &Config) -> Vec<ConfigError> {
        self.resolved
            .unmatched
            .iter()
            .map(|(policy, pattern)| {
                config.servers_problem(
                    policy,
                    format!("{pattern:?} matches no server of the account now"),
                )
            })
            .collect()
    }
}

/// How far `check` plays a tiered policy's schedule.
const PLAYED_DAYS: u32 = 400;

/// The tiers of a tiered `keep` that add no restore point on the policy's schedule:
/// played over [`PLAYED_DAYS`] with the tier left out, the restore points held are the
/// same every day (restic's rules: a tier counts only the periods the others do not
/// reach, so `monthly = 1` over a nightly `daily` keeps nothing more).
fn tiers_short(config: &Config) -> Vec<ConfigError> {
    let now = Utc::now();
    let held = |p: &Policy, keep: &Keep| {
        super::coverage::play(p, keep, now, PLAYED_DAYS)
            .map(|days| days.into_iter().map(|d| d.kept).collect::<Vec<_>>())
    };
    let mut found = Vec::new();
    for p in config.policies.iter().filter(|p| p.keep.is_tiered()) {
        let Some(all) = held(p, &p.keep) else {
            continue;
        };
        let idle: Vec<String> = p
            .keep
            .used()
            .filter(|(tier, _)| {
                let without = p.keep.used().filter(|(t, _)| t != tier);
                Keep::tiers(without).is_some_and(|k| held(p, &k).as_ref() == Some(&all))
            })
            .map(|(tier, n)| format!("{} {n}", tier.key()))
            .collect();
        if !idle.is_empty() {
            found.push(config.keep_problem(
                &p.name,
                format!(
                    "{} add(s) no restore point on the schedule {}: a tier counts only the periods the others do not reach; \
                     leave it out or change it (`snaprotd coverage --policy {}` shows what is held)",
                    idle.join(" and "),
                    p.schedule.expr(),
                    p.name
                ),
            ));
        }
    }
    found
}

/// How long `check` waits for the provider's server listing.
const ASK_FOR: std::time::Duration = std::time::Duration::from_secs(20);

pub async fn run(path: &Path, args: Args) -> CliResult {
    // With --json, the errors are printed as JSON by `cli::main`, as every command's.
    let mut config = load_config(path)?;
    let matches = Matches::ask(&config).await;
    if let Some(m) = &matches {
        let errors = m.errors(&config);
        if !errors.is_empty() {
            return Err(CliError::Config(ConfigErrors(errors)));
        }
        for w in m.warnings(&config) {
            errln!("warning: {w}");
            config.warnings.push(w);
        }
    }
    for w in tiers_short(&config) {
        errln!("warning: {w}");
        config.warnings.push(w);
    }
    let matched = |p: &Policy| {
        matches
            .as_ref()
            .filter(|_| p.has_patterns())
            .map(|m| m.of(p))
    };
    if args.json {
        let policies: Vec<_> = config
            .policies
            .iter()
            .map(|p| {
                json!({
                    "name": p.name, "servers": p.servers,
                    "server_patterns": p.patterns.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "matched_servers": matched(p).map(|m| match m {
                        Ok(found) => json!(found.into_iter().map(|(id, name)| json!({"id": id, "name": name})).collect::<Vec<_>>()),
                        Err(e) => json!({ "error": e }),
                    }),
                    "schedule": p.schedule.expr(),
                    "timezone": p.timezone.name(), "keep": p.keep, "keep_total": p.keep.total(), "stop_server": p.stop_server,
                    "snapshot_name": p.snapshot_name.source(),
                    "pre_snapshot": p.hooks.pre_snapshot.as_ref().map(|h| h.argv()),
                    "post_snapshot": p.hooks.post_snapshot.as_ref().map(|h| h.argv()),
                    "ping": config.notify.pings.get(&p.name).map(shown),
                    "next_fires": next_fires(p, 3).into_iter().map(output::json_time).collect::<Vec<_>>(),
                })
            })
            .collect();
        output::json(&json!({
            "config": config.path, "ok": true,
            "warnings": config.warnings.iter().map(ConfigErrorJson::from).collect::<Vec<_>>(),
            "token_source": config.api.token_source, "policies": policies,
            "notify": {
                "webhook": config.notify.webhook_url.as_ref().map(shown),
                "command": config.notify.command.as_ref().map(|c| c.argv()),
            },
        }));
        return Ok(Exit::Success);
    }
    outln!("{}: ok", config.path.display());
    outln!(
        "provider   {} (token from {})",
        config.api.base_url,
        config.api.token_source
    );
    outln!("state      {}", config.daemon.state_dir.display());
    let n = &config.notify;
    let mut targets = Vec::new();
    if let Some(url) = &n.webhook_url {
        targets.push(format!("webhook {}", shown(url)));
    }
    if let Some(command) = &n.command {
        targets.push(format!("command {command}"));
    }
    if !targets.is_empty() {
        outln!(
            "notify     {} (on a failure and the first success after one; timeout {}, {} attempt(s))",
            targets.join(", "),
            humantime::format_duration(n.timeout),
            n.max_attempts
        );
    }
    for p in &config.policies {
        outln!();
        outln!("policy {}", p.name);
        outln!("  servers       {}", p.servers_written().join(", "));
        match matched(p) {
            None => {}
            Some(Ok(found)) if found.is_empty() => {
                outln!("  matching      no server of the account now")
            }
            Some(Ok(found)) => {
                let found: Vec<String> = found
                    .iter()
                    .map(|(id, name)| format!("{name} ({id})"))
                    .collect();
                outln!("  matching now  {}", found.join(", "));
            }
            Some(Err(e)) => outln!("  matching      not known: cannot list the servers ({e})"),
        }
        outln!(
            "  schedule      {} ({})",
            p.schedule.expr(),
            p.timezone.name()
        );
        if p.keep.is_tiered() {
            outln!(
                "  keep          {} (see the restore points it holds: snaprotd coverage --policy {})",
                p.keep,
                p.name
            );
        } else {
            outln!("  keep          {}", p.keep);
        }
        outln!("  stop_server   {}", p.stop_server);
        outln!("  snapshot_name {}", p.snapshot_name.source());
        for (key, hook) in [
            ("pre_snapshot ", &p.hooks.pre_snapshot),
            ("post_snapshot", &p.hooks.post_snapshot),
        ] {
            if let Some(hook) = hook {
                outln!(
                    "  {key} {hook} (hook_timeout {})",
                    humantime::format_duration(p.hooks.timeout)
                );
            }
        }
        if let Some(url) = config.notify.pings.get(&p.name) {
            outln!("  ping_url      {} (/start, success, /fail)", shown(url));
        }
        for (i, t) in next_fires(p, 3).into_iter().enumerate() {
            outln!(
                "  {}    {}  (in {})",
                if i == 0 { "next fires" } else { "          " },
                output::when(t, p.timezone),
                output::left(t)
            );
        }
    }
    Ok(Exit::Success)
}
