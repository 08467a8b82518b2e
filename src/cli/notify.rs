//! `snaprotd notify --test`: a sample notice to every configured target — the
//! `[notify]` webhook and command, and each policy's `ping_url` — once each, and what
//! became of it. The sample is shaped as a real `recovered` notice (error null) and
//! marked `"test": true`. URLs are shown by scheme and host only.

use std::path::Path;

use clap_complete::engine::ArgValueCompleter;
use futures_util::future::join_all;

use super::output::{self, errln, outln};
use super::views::NotifyTestJson;
use super::{CliError, CliResult, Exit, load_config_offline};
use crate::job::JobId;
use crate::notify::{self, Message, Notice, Notifier, Ping, SnapshotRef};
use crate::rotation::Job;

/// `--test` is the one action, so it is required; the usage says so alone. (clap's own
/// line would list every option given, the global `--config` too, as if required.)
#[derive(clap::Args, Debug)]
#[command(override_usage = "snaprotd notify --test [--policy <POLICY>] [--json]")]
pub struct Args {
    /// Send a sample notification to every configured target and report each
    #[arg(long, required = true)]
    test: bool,
    /// Only this policy's ping_url (the sample then names this policy)
    #[arg(long, value_name = "POLICY", add = ArgValueCompleter::new(super::complete::policies))]
    policy: Option<String>,
    /// Print the result as JSON
    #[arg(long)]
    pub(super) json: bool,
}

/// The body of the sample's success ping (a check's event log shows it).
const SAMPLE_PING: &str = "a test from `snaprotd notify --test`; no run happened";

pub async fn run(path: &Path, args: Args) -> CliResult {
    let config = load_config_offline(path)?;
    let policies: Vec<_> = match &args.policy {
        Some(name) => match config.policy(name) {
            Some(p) => vec![p],
            None => {
                let names: Vec<&str> = config.policies.iter().map(|p| p.name.as_str()).collect();
                return Err(CliError::NoSuchPolicy {
                    name: name.clone(),
                    configured: names.join(", "),
                });
            }
        },
        None => config.policies.iter().collect(),
    };
    // The sample names a real job (the policy's first server given by id) and the
    // snapshot it would make now, as a real notice would.
    let now = chrono::Utc::now();
    let notice = match policies.first() {
        Some(p) => {
            let job = Job {
                policy: p,
                server: p.servers.first().copied().unwrap_or(0),
            };
            let snapshot = SnapshotRef {
                id: None,
                name: job.snapshot_name(now),
            };
            Notice::sample(
                &JobId::new(p.name.as_str(), job.server),
                Some(snapshot),
                now,
            )
        }
        None => Notice::sample(&JobId::new("test", 0), None, now),
    };
    let notify = &config.notify;
    let mut messages = Message::all(notify, &notice);
    messages.extend(
        policies
            .iter()
            .filter_map(|p| Message::ping(notify, &p.name, Ping::Success, SAMPLE_PING)),
    );
    // A policy asked for by name whose ping is not among the targets: say so.
    let unpinged = args
        .policy
        .as_deref()
        .filter(|name| !notify.pings.contains_key(*name));
    if messages.is_empty() {
        let why = match unpinged {
            Some(name) => format!(
                "policy {name} has no ping_url (its own or [defaults]'), and [notify] has no \
                 webhook_url or command"
            ),
            None => "set [notify] webhook_url or command, or a policy's ping_url".into(),
        };
        errln!("error: no notification target is configured: {why}");
        return Ok(Exit::Failure);
    }
    if let Some(name) = unpinged {
        let tried: Vec<&str> = messages
            .iter()
            .map(|m| match m {
                Message::Webhook { .. } => "webhook_url",
                Message::Command { .. } => "command",
                Message::Ping { .. } => "ping_url",
            })
            .collect();
        let verb = if tried.len() == 1 { "was" } else { "were" };
        errln!(
            "note: policy {name} has no ping_url: only the [notify] {} {verb} tried",
            tried.join(" and ")
        );
    }
    let notifier = Notifier::new();
    let results = join_all(
        messages
            .iter()
            .map(|m| notify::try_once(&notifier, m, notify.timeout)),
    )
    .await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    if args.json {
        let targets: Vec<NotifyTestJson> = messages
            .iter()
            .zip(&results)
            .map(|(m, r)| NotifyTestJson {
                target: m.target(),
                ok: r.is_ok(),
                error: r.as_ref().err().cloned(),
            })
            .collect();
        output::json(&serde_json::json!({ "targets": targets }));
    } else {
        let rows: Vec<Vec<String>> = messages
            .iter()
            .zip(&results)
            .map(|(m, r)| {
                vec![
                    m.target(),
                    match r {
                        Ok(()) => "ok".into(),
                        Err(e) => format!("FAILED: {e}"),
                    },
                ]
            })
            .collect();
        output::table(&["TARGET", "RESULT"], &rows);
        outln!(
            "{} target(s): {} ok, {failed} failed",
            messages.len(),
            messages.len() - failed
        );
    }
    Ok(if failed == 0 {
        Exit::Success
    } else {
        Exit::Failure
    })
}
