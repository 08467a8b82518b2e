//! `snaprotd once`: run the matching jobs now, once, and print a summary.

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use clap_complete::engine::ArgValueCompleter;
use serde_json::json;

use super::output::{self, outln};
use super::signals::{StopSignal, interrupt_on_signal};
use super::views::{RunJson, SnapshotJson, deletions, kept};
use super::{CliError, CliResult, Exit, load_config};
use crate::config::{Config, Policy};
use crate::job::JobId;
use crate::provider::{ApiError, Client, ServerStatus};
use crate::rotation::{self, Job, retention};
use crate::runner::{RunReport, Runner};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this policy
    #[arg(long, value_name = "POLICY", add = ArgValueCompleter::new(super::complete::policies))]
    policy: Option<String>,
    /// Only this server
    #[arg(long, value_name = "ID", add = ArgValueCompleter::new(super::complete::servers))]
    server: Option<u64>,
    /// Print the plan, make no changing call
    #[arg(long)]
    dry_run: bool,
    /// Print the summary as JSON
    #[arg(long)]
    pub(super) json: bool,
    /// Skip a server another snaprotd process (the daemon) is working on, instead of
    /// waiting for it
    #[arg(long)]
    skip_busy: bool,
}

/// What `--policy` and `--server` select (of `once` and `coverage`): the jobs of
/// servers listed by id, and the policies that name servers by name, glob or `"all"`
/// (whose jobs only the provider's server listing says).
pub(super) fn by_id<'c>(
    config: &'c Config,
    policy: Option<&str>,
    server: Option<u64>,
) -> Result<(Vec<JobId>, Vec<&'c Policy>), CliError> {
    if let Some(p) = policy
        && config.policy(p).is_none()
    {
        let names: Vec<&str> = config.policies.iter().map(|p| p.name.as_str()).collect();
        return Err(CliError::NoSuchPolicy {
            name: p.to_string(),
            configured: names.join(", "),
        });
    }
    let policies = || {
        config
            .policies
            .iter()
            .filter(move |p| policy.is_none_or(|n| n == p.name))
    };
    let jobs = policies()
        .flat_map(|p| p.jobs())
        .filter(|job| server.is_none_or(|want| want == job.server))
        .collect();
    Ok((jobs, policies().filter(|p| p.has_patterns()).collect()))
}

/// The error for a selection that holds no job.
pub(super) fn no_matching_job(policy: Option<&str>, server: Option<u64>) -> CliError {
    let mut wanted = Vec::new();
    if let Some(p) = policy {
        wanted.push(format!("--policy {p}"));
    }
    if let Some(s) = server {
        wanted.push(format!("--server {s}"));
    }
    if wanted.is_empty() {
        return CliError::NoJob;
    }
    CliError::NoMatchingJob(wanted.join(" "))
}

/// Who asks the provider for the servers of policies that name them.
enum Asker<'a> {
    /// `--dry-run`: only asks.
    Client(&'a Client),
    /// A run: also remembers the jobs found in the state directory, as the daemon
    /// does, so that `status` and the metrics show them.
    Runner(&'a Runner),
}

/// The jobs selected by `--policy` and `--server`; those of servers named by name or
/// glob are asked of the provider (one listing). When that listing fails, the jobs of
/// servers listed by id still run, as in the daemon; the error comes back beside them
/// (the run then exits 1), or alone when there is no such job.
async fn selected(
    config: &Config,
    args: &Args,
    asker: Asker<'_>,
) -> Result<(Vec<JobId>, Option<ApiError>), CliError> {
    let (policy, server) = (args.policy.as_deref(), args.server);
    let (mut jobs, patterned) = by_id(config, policy, server)?;
    let mut unlisted = None;
    if !patterned.is_empty() {
        let names: Vec<Arc<str>> = patterned.iter().map(|p| p.name.as_str().into()).collect();
        let found = match asker {
            Asker::Client(client) => crate::runner::ask_fleet(client, config, &names)
                .await
                .map(|(resolved, _)| resolved.jobs),
            Asker::Runner(runner) => runner.fleet(&names, true, Utc::now()).await,
        };
        let found = match found {
            Ok(found) => found,
            Err(e) if jobs.is_empty() => return Err(e.into()),
            Err(e) => {
                tracing::error!(
                    "cannot list the account's servers: {e}; only the servers listed by id run"
                );
                unlisted = Some(e);
                Vec::new()
            }
        };
        for job in found {
            if !jobs.contains(&job) && server.is_none_or(|want| want == job.server) {
                jobs.push(job);
            }
        }
        let order = |j: &JobId| config.policies.iter().position(|p| *p.name == *j.policy);
        jobs.sort_by_key(|j| (order(j), j.server));
    }
    if jobs.is_empty() {
        return Err(no_matching_job(policy, server));
    }
    Ok((jobs, unlisted))
}

pub async fn run(path: &Path, args: Args) -> CliResult {
    let config = Arc::new(load_config(path)?);
    if args.dry_run {
        let client = Client::new(&config.api)?;
        let (jobs, unlisted) = selected(&config, &args, Asker::Client(&client)).await?;
        let exit = dry_run(&config, &client, jobs, args.json).await?;
        return Ok(if unlisted.is_some() {
            Exit::Failure
        } else {
            exit
        });
    }
    let grace = config.daemon.shutdown_timeout;
    let mut runner = Runner::new(config.clone())?;
    runner.state.become_owner_if_root()?;
    runner.state.check().await?;
    let (jobs, unlisted) = selected(&config, &args, Asker::Runner(&runner)).await?;
    runner.skip_busy = args.skip_busy;
    let runner = Arc::new(runner);
    let signals = tokio::spawn(interrupt_on_signal(runner.interrupt.clone(), grace));
    let reports = runner.run_all(jobs, Utc::now()).await;
    runner.write_metrics().await;
    print_summary(&reports, args.json);
    if !args.json {
        outln!("{} provider request(s)", runner.client.requests_sent());
    }
    runner.finish_notifications().await;
    let failed = reports.iter().filter(|r| !r.ok).count();
    if runner.interrupt.is_set() {
        let signal = signals.await.unwrap_or(StopSignal::Term);
        return Err(CliError::Interrupted {
            signal,
            completed: reports.iter().filter(|r| r.outcome.is_some()).count(),
            total: reports.len(),
        });
    }
    signals.abort();
    Ok(if failed == 0 && unlisted.is_none() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// `once --json`: each run is made into its JSON view as it is written.
#[derive(serde::Serialize)]
struct RunsJson<'a> {
    #[serde(serialize_with = "runs_json")]
    runs: &'a [RunReport],
}

fn runs_json<S: serde::Serializer>(runs: &&[RunReport], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(runs.iter().map(RunJson::from))
}

pub fn print_summary(reports: &[RunReport], as_json: bool) {
    if as_json {
        output::json(&RunsJson { runs: reports });
        return;
    }
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| match &r.outcome {
            _ if r.skipped.is_some() => vec![
                r.job.to_string(),
                "SKIPPED".into(),
                "-".into(),
                "0".into(),
                "-".into(),
            ],
            Some(o) => vec![
                r.job.to_string(),
                "ok".into(),
                format!(
                    "{}{}",
                    o.snapshot.name,
                    if o.adopted {
                        " (adopted: it existed)"
                    } else {
                        ""
                    }
                ),
                o.deleted.len().to_string(),
                format!("{:.1}s", r.seconds),
            ],
            None => vec![
                r.job.to_string(),
                "FAILED".into(),
                r.snapshot_name.clone().unwrap_or_else(|| "-".into()),
                "0".into(),
                format!("{:.1}s", r.seconds),
            ],
        })
        .collect();
    output::table(&["JOB", "RESULT", "SNAPSHOT", "DELETED", "TOOK"], &rows);
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
    let why: Vec<(String, String)> = reports
        .iter()
        .filter_map(|r| {
            let text = r.skipped.clone().or_else(|| {
                (!r.ok).then(|| r.error.clone().unwrap_or_else(|| r.message.clone()))
            })?;
            Some((r.job.to_string(), text))
        })
        .collect();
    output::notes("Failed or skipped", &why);
}

/// Reads only: lists each server, and prints what a run would do.
async fn dry_run(config: &Config, client: &Client, jobs: Vec<JobId>, as_json: bool) -> CliResult {
    let state = crate::state::StateDir::new(&config.daemon.state_dir);
    let now = Utc::now();
    let mut plans = Vec::new();
    let mut failed = false;
    for JobId { policy, server } in jobs {
        let Some(policy) = config.policy(&policy) else {
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
                now,
                &listing,
                &state.tainted(server).await,
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
                // Hooks run only around the create of a new snapshot.
                let hooks = &policy.hooks;
                let would_hook = plan.adopt.is_none() && hooks.any();
                if as_json {
                    plans.push(json!({
                        "job": job.id().to_string(), "ok": true, "stop_server": stop,
                        "name": plan.name,
                        "adopt": plan.adopt.as_ref().map(SnapshotJson::from),
                        "make_room": deletions(&plan.make_room),
                        "prune_after": deletions(&plan.prune_after),
                        "kept_by": plan.new_held,
                        "keep": kept(&plan.kept),
                        "hooks": would_hook.then(|| json!({
                            "pre_snapshot": hooks.pre_snapshot.as_ref().map(|c| c.argv()),
                            "post_snapshot": hooks.post_snapshot.as_ref().map(|c| c.argv()),
                        })),
                    }));
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
                if policy.keep.is_tiered() {
                    outln!("  kept by      {}", retention::kept_by(&plan.new_held));
                }
                outln!(
                    "  server       {}",
                    if stop {
                        "would be stopped first and started again after"
                    } else {
                        "left as it is"
                    }
                );
                if let (true, Some(pre)) = (would_hook, &hooks.pre_snapshot) {
                    outln!(
                        "  pre hook     would run {pre} {}before the create",
                        if stop {
                            "after the server is stopped, "
                        } else {
                            ""
                        }
                    );
                }
                if let (true, Some(post)) = (would_hook, &hooks.post_snapshot) {
                    outln!(
                        "  post hook    would run {post} once the create is answered (or has failed, or the pre hook has)"
                    );
                }
                if plan.adopt.is_some() && hooks.any() {
                    outln!(
                        "  hooks        none: they run only around the create of a new snapshot"
                    );
                }
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
                for (s, held) in &plan.kept {
                    outln!(
                        "  would keep   {} (id {}, created {}): {}",
                        s.name,
                        s.id,
                        output::when(s.created_at, policy.timezone),
                        retention::kept_by(held)
                    );
                }
            }
            Err(e) => {
                failed = true;
                if as_json {
                    plans.push(json!({"job": job.id().to_string(), "ok": false, "error": e}));
                } else {
                    outln!("{}:\n  would fail: {e}", job.id());
                }
            }
        }
    }
    if as_json {
        output::json(&json!({ "plans": plans }));
    }
    Ok(if failed { Exit::Failure } else { Exit::Success })
}
