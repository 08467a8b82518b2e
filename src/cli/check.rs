//! `snaprotd check`: validate the configuration and show what it will do.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::output::{self, outln};
use super::views::ConfigErrorJson;
use super::{CliResult, Exit, load_config};
use crate::config::Policy;
use crate::notify::shown;

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

pub fn run(path: &Path, args: Args) -> CliResult {
    // With --json, the errors are printed as JSON by `cli::main`, as every command's.
    let config = load_config(path)?;
    if args.json {
        let policies: Vec<_> = config
            .policies
            .iter()
            .map(|p| {
                json!({
                    "name": p.name, "servers": p.servers, "schedule": p.schedule.expr(),
                    "timezone": p.timezone.name(), "keep": p.keep, "stop_server": p.stop_server,
                    "snapshot_name": p.snapshot_name.source(),
                    "pre_snapshot": p.hooks.pre_snapshot.as_ref().map(|h| h.to_string()),
                    "post_snapshot": p.hooks.post_snapshot.as_ref().map(|h| h.to_string()),
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
        let servers: Vec<String> = p.servers.iter().map(|s| s.to_string()).collect();
        outln!("  servers       {}", servers.join(", "));
        outln!(
            "  schedule      {} ({})",
            p.schedule.expr(),
            p.timezone.name()
        );
        outln!("  keep          {}", p.keep);
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
