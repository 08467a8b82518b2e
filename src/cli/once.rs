//! `snaprotd once`: run the matching jobs now, once, and print a summary.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;
use serde_json::json;

use super::output::{self, errln, outln};
use super::{CliError, CliResult, load_config};
use crate::config::Config;
use crate::provider::{Client, ServerStatus};
use crate::rotation::{self, Job};
use crate::runner::{Report, Runner};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this policy
    #[arg(long)]
    policy: Option<String>,
    /// Only this server
    #[arg(long)]
    server: Option<u64>,
    /// Print the plan, make no changing call
    #[arg(long)]
    dry_run: bool,
    /// Print the summary as JSON
    #[arg(long)]
    json: bool,
    /// Skip a server another snaprotd process (the daemon) is working on, instead of
    /// waiting for it
    #[arg(long)]
    skip_busy: bool,
}

/// The (policy, server) pairs selected by `--policy` and `--server`.
fn selected(config: &Config, args: &Args) -> Result<Vec<(String, u64)>, CliError> {
    if let Some(p) = &args.policy
        && config.policy(p).is_none()
    {
        let names: Vec<&str> = config.policies.iter().map(|p| p.name.as_str()).collect();
        return Err(CliError::Failed(format!(
            "no policy named {p:?} (configured: {})",
            names.join(", ")
        )));
    }
    let jobs: Vec<(String, u64)> = config
        .policies
        .iter()
        .filter(|p| args.policy.as_ref().is_none_or(|n| *n == p.name))
        .flat_map(|p| p.servers.iter().map(move |s| (p.name.clone(), *s)))
        .filter(|(_, s)| args.server.is_none_or(|want| want == *s))
        .collect();
    if jobs.is_empty() {
        return Err(CliError::Failed(
            "no configured job matches --policy/--server".into(),
        ));
    }
    Ok(jobs)
}

pub async fn run(path: &Path, args: Args) -> CliResult {
    let config = Arc::new(load_config(path)?);
    let jobs = selected(&config, &args)?;
    if args.dry_run {
        return dry_run(&config, jobs, args.json).await;
    }
    let grace = config.daemon.shutdown_timeout;
    let mut runner = Runner::new(config).map_err(|e| CliError::Failed(e.to_string()))?;
    runner
        .state
        .become_owner_if_root()
        .and_then(|_| runner.state.check())
        .map_err(|e| CliError::Failed(e.to_string()))?;
    runner.skip_busy = args.skip_busy;
    let runner = Arc::new(runner);
    let signals = tokio::spawn(interrupt_on_signal(runner.interrupt.clone(), grace));
    let reports = runner.run_all(jobs, Utc::now()).await;
    runner.write_metrics();
    print_summary(&reports, args.json);
    if !args.json {
        outln!("{} provider request(s)", runner.client.requests_sent());
    }
    let failed = reports.iter().filter(|r| !r.ok).count();
    if runner.interrupt.is_set() {
        let signal = signals.await.unwrap_or(Interrupted::Term);
        return Err(CliError::Interrupted {
            signal: signal.name(),
            code: signal.exit_code(),
            completed: reports.iter().filter(|r| r.outcome.is_some()).count(),
            total: reports.len(),
        });
    }
    signals.abort();
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(Clone, Copy)]
enum Interrupted {
    Int,
    Term,
}

impl Interrupted {
    fn name(self) -> &'static str {
        match self {
            Interrupted::Int => "SIGINT",
            Interrupted::Term => "SIGTERM",
        }
    }

    /// 128 + the signal's number, as a shell reports a process the signal ended.
    fn exit_code(self) -> u8 {
        match self {
            Interrupted::Int => 130,
            Interrupted::Term => 143,
        }
    }
}

/// On Ctrl-C or SIGTERM: no new job starts, and every server a job stopped is started
/// again by its guard after its snapshot — waiting at most `grace` for the snapshot.
/// Later signals only say that this is under way.
async fn interrupt_on_signal(
    interrupt: crate::interrupt::Interrupt,
    grace: std::time::Duration,
) -> Interrupted {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        std::future::pending::<()>().await;
        unreachable!()
    };
    let first = tokio::select! {
        _ = int.recv() => Interrupted::Int,
        _ = term.recv() => Interrupted::Term,
    };
    interrupt.set(grace);
    errln!(
        "snaprotd: interrupted by {}: no new job starts; a server snaprotd stopped is started again \
         once its snapshot is done (waiting at most {}), then snaprotd exits",
        first.name(),
        humantime::format_duration(grace)
    );
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            errln!("snaprotd: still starting the servers it stopped again; it exits when they run");
        }
    });
    first
}

pub fn print_summary(reports: &[Report], as_json: bool) {
    if as_json {
        output::json(&reports);
        return;
    }
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| match (&r.outcome, &r.error) {
            _ if r.skipped.is_some() => vec![
                r.job.clone(),
                "SKIPPED".into(),
                r.skipped.clone().unwrap_or_default(),
                "0".into(),
                "-".into(),
            ],
            (Some(o), _) => vec![
                r.job.clone(),
                "ok".into(),
                format!(
                    "{}{}",
                    o.snapshot.name,
                    if o.adopted { " (adopted)" } else { "" }
                ),
                o.deleted.len().to_string(),
                format!("{:.1}s", r.seconds),
            ],
            (None, e) => vec![
                r.job.clone(),
                "FAILED".into(),
                e.clone().unwrap_or_default(),
                "0".into(),
                format!("{:.1}s", r.seconds),
            ],
        })
        .collect();
    output::table(&["JOB", "RESULT", "SNAPSHOT", "DELETED", "TIME"], &rows);
    let failed = reports.iter().filter(|r| !r.ok).count();
    let skipped = reports.iter().filter(|r| r.skipped.is_some()).count();
    outln!(
        "{} job(s): {} ok, {failed} failed{}",
        reports.len(),
        reports.len() - failed - skipped,
        if skipped > 0 {
            format!(", {skipped} skipped (server busy)")
        } else {
            String::new()
        }
    );
}

/// Reads only: lists each server, and prints what a run would do.
async fn dry_run(config: &Config, jobs: Vec<(String, u64)>, as_json: bool) -> CliResult {
    let client = Client::new(&config.api).map_err(|e| CliError::Failed(e.to_string()))?;
    let now = Utc::now();
    let mut plans = Vec::new();
    let mut failed = false;
    for (policy_name, server) in jobs {
        let Some(policy) = config.policy(&policy_name) else {
            continue;
        };
        let job = Job { policy, server };
        let name = job.snapshot_name(now);
        let result = async {
            let listing = client
                .list_snapshots(Some(server))
                .await
                .map_err(|e| e.to_string())?;
            let plan = rotation::plan(
                job,
                &config.policies,
                config.api.snapshot_cap,
                &name,
                &listing,
                &crate::state::StateDir::new(&config.daemon.state_dir).tainted(server),
            )
            .map_err(|e| e.to_string())?;
            let stop = if policy.stop_server {
                client
                    .server(server)
                    .await
                    .map_err(|e| e.to_string())?
                    .status
                    == ServerStatus::Running
            } else {
                false
            };
            Ok::<_, String>((plan, stop))
        }
        .await;
        match result {
            Ok((plan, stop)) => {
                if as_json {
                    plans.push(
                        json!({"job": job.id(), "ok": true, "stop_server": stop, "plan": plan}),
                    );
                    continue;
                }
                outln!("{}:", job.id());
                if let Some(a) = &plan.adopt {
                    outln!(
                        "  would adopt  {} (id {}, {}), already there",
                        a.name,
                        a.id,
                        a.status.as_str()
                    );
                } else {
                    outln!("  would create {}", plan.name);
                }
                outln!(
                    "  server       {}",
                    if stop {
                        "would be stopped first and started again after"
                    } else {
                        "left as it is"
                    }
                );
                for (s, reason) in &plan.make_room {
                    outln!(
                        "  would delete {} (id {}) before creating: {}",
                        s.name,
                        s.id,
                        reason.describe()
                    );
                }
                for (s, reason) in &plan.prune_after {
                    outln!(
                        "  would delete {} (id {}) after success: {}",
                        s.name,
                        s.id,
                        reason.describe()
                    );
                }
                if plan.make_room.is_empty() && plan.prune_after.is_empty() {
                    outln!("  would delete nothing");
                }
            }
            Err(e) => {
                failed = true;
                if as_json {
                    plans.push(json!({"job": job.id(), "ok": false, "error": e}));
                } else {
                    outln!("{}:\n  would fail: {e}", job.id());
                }
            }
        }
    }
    if as_json {
        output::json(&plans);
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
