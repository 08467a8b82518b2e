//! `snaprotd notify --test`: a sample notice to every configured target — the
//! `[notify]` webhook and command, and each policy's `ping_url` — once each, and what
//! became of it. URLs are shown by scheme and host only.

use std::path::Path;

use clap_complete::engine::ArgValueCompleter;
use futures_util::future::join_all;

use super::output::{self, errln, outln};
use super::views::NotifyTestJson;
use super::{CliError, CliResult, Exit, load_config_offline};
use crate::job::JobId;
use crate::notify::{self, Message, Notice, Notifier, Outcome, Ping};

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

/// What the sample says it is.
const SAMPLE: &str = "a test notification from `snaprotd notify --test`; nothing failed";

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
    let job = match policies.first() {
        Some(p) if args.policy.is_some() => {
            JobId::new(p.name.as_str(), p.servers.first().copied().unwrap_or(0))
        }
        _ => JobId::new("test", 0),
    };
    let notice = Notice::new(
        &job,
        Outcome::Test,
        None,
        Some(SAMPLE.into()),
        0.0,
        chrono::Utc::now(),
    );
    let notify = &config.notify;
    let mut messages = Message::all(notify, &notice);
    messages.extend(
        policies
            .iter()
            .filter_map(|p| Message::ping(notify, &p.name, Ping::Success, SAMPLE)),
    );
    if messages.is_empty() {
        errln!(
            "error: no notification target is configured: set [notify] webhook_url or command, \
             or a policy's ping_url"
        );
        return Ok(Exit::Failure);
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
