//! `snaprotd demo`: the embedded default. A simulator in this process, a few servers,
//! a fast schedule, and the whole lifecycle in the terminal: creating, waiting,
//! stopping and starting, pruning, making room, and a manual snapshot left alone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::output::{self, outln};
use super::{CliError, CliResult, Exit};
use crate::config::Config;
use crate::daemon::Control;
use crate::rotation::Owner;
use crate::runner::RunReport;
use crate::sim::{SimHandle, SimOptions};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// How long the demo runs
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Keep the demo's files (configuration, state directory) after it ends
    #[arg(long)]
    keep: bool,
}

const WEB: u64 = 101;
const DB: u64 = 102;
const FULL: u64 = 103;

fn config_text(base_url: &str, token_file: &str, state_dir: &str) -> String {
    format!(
        r#"# The demo's configuration (written by `snaprotd demo`).
[api]
base_url = "{base_url}"
token_file = "{token_file}"
request_timeout = "5s"
retry_backoff = "200ms"
max_requests_per_second = 100

[daemon]
state_dir = "{state_dir}"

[defaults]
snapshot_name = "{{policy}}-%Y%m%d-%H%M%S"
poll_interval = "250ms"
wait_timeout = "20s"
stop_timeout = "10s"

# Two servers snapshotted every 5 seconds, keeping 2. Server {FULL} starts with three
# manual snapshots, so from its third run on the cap is full and the oldest snapshot
# of this policy makes room — the manual ones are never touched.
[[policy]]
name = "frequent"
servers = [{WEB}, {FULL}]
schedule = "*/5 * * * * *"
keep = 2
description = "Demo rotation"

# A database server that is stopped for a consistent snapshot and started again.
[[policy]]
name = "consistent"
servers = [{DB}]
schedule = "*/8 * * * * *"
keep = 2
stop_server = true
"#
    )
}

/// How long a demo job runs at most (a stop, the snapshot, a start, with margin).
const DEMO_RUN: chrono::Duration = chrono::Duration::milliseconds(4000);

/// The first instant from `at` (to the half second, within a minute) at which no job
/// of `config` fired in the last [`DEMO_RUN`].
fn quiet_moment(config: &Config, at: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    (0..120)
        .map(|half| at + chrono::Duration::milliseconds(500 * half))
        .find(|t| {
            config.policies.iter().all(|p| {
                p.schedule
                    .previous_fire(p.timezone, *t)
                    .is_none_or(|fired| *t - fired >= DEMO_RUN)
            })
        })
        .unwrap_or(at)
}

pub async fn run(args: Args) -> CliResult {
    fn failed<E: std::error::Error + Send + Sync + 'static>(
        what: &'static str,
    ) -> impl FnOnce(E) -> CliError {
        move |e| CliError::Demo {
            what,
            source: Box::new(e),
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("snaprotd-demo-")
        .tempdir()
        .map_err(failed("cannot make a temporary directory"))?;
    let options = SimOptions {
        create_time: Duration::from_millis(1500),
        transition_time: Duration::from_millis(400),
        ..SimOptions::default()
    };
    let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let sim = SimHandle::start(listen, options)
        .await
        .map_err(failed("cannot start the simulator"))?;
    sim.add_server(WEB, "web-01");
    sim.add_server(DB, "db-01");
    sim.add_server(FULL, "files-01");
    {
        let mut state = sim.state();
        for (days, name) in [
            (30, "before-upgrade"),
            (20, "pre-migration"),
            (10, "known-good"),
        ] {
            state.add_snapshot(
                FULL,
                name,
                "completed",
                Utc::now() - chrono::Duration::days(days),
            );
        }
    }

    let token_file = dir.path().join("token");
    let state_dir = dir.path().join("state");
    let config_file = dir.path().join("snaprotd.toml");
    std::fs::write(&token_file, sim.token()).map_err(failed("cannot write the token"))?;
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .map_err(failed("cannot protect the token"))?;
    let text = config_text(
        sim.base_url(),
        &token_file.display().to_string(),
        &state_dir.display().to_string(),
    );
    std::fs::write(&config_file, text).map_err(failed("cannot write the configuration"))?;
    let config = Arc::new(Config::load(&config_file)?);

    outln!(
        "snaprotd demo: simulator at {}, files in {}",
        sim.base_url(),
        dir.path().display()
    );
    outln!(
        "servers: {WEB} web-01, {DB} db-01 (stopped for its snapshots), {FULL} files-01 (3 manual snapshots)"
    );
    outln!(
        "running the schedule for {}…\n",
        humantime::format_duration(args.duration)
    );

    // The daemon's own loop, stopped (as by SIGTERM) when the time is up, at a moment
    // no job runs: a stop cuts a run short, as it should, but the demo would then end
    // on a run that did nothing.
    let (controls, handed) = tokio::sync::mpsc::unbounded_channel();
    let end = quiet_moment(&config, Utc::now() + args.duration);
    let timer = tokio::spawn(async move {
        let wait = (end - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let _ = controls.send(Control::Stop("the demo's time is up"));
    });
    crate::daemon::run(&config_file, handed).await?;
    timer.abort();

    let state = crate::state::StateDir::new(&config.daemon.state_dir);
    let mut failures = Vec::new();
    for p in &config.policies {
        for job in p.jobs() {
            if state
                .last_run::<RunReport>(&job)
                .await
                .is_some_and(|r| !r.ok)
            {
                failures.push(job.to_string());
            }
        }
    }
    let client =
        crate::provider::Client::new(&config.api).map_err(failed("cannot build the client"))?;
    outln!(
        "\nafter {}, the provider holds:",
        humantime::format_duration(args.duration)
    );
    let snapshots = client
        .list_snapshots(None)
        .await
        .map_err(failed("cannot list snapshots"))?;
    let rows: Vec<Vec<String>> = snapshots
        .iter()
        .map(|s| {
            vec![
                s.server.id.to_string(),
                s.name.clone(),
                s.status.as_str().to_string(),
                output::age(s.created_at),
                Owner::of(&config.policies, s).to_string(),
            ]
        })
        .collect();
    output::table(&["SERVER", "NAME", "STATUS", "AGE", "OWNER"], &rows);
    let manual = snapshots
        .iter()
        .filter(|s| matches!(Owner::of(&config.policies, s), Owner::Manual))
        .count();
    let stopped: Vec<u64> = [WEB, DB, FULL]
        .into_iter()
        .filter(|id| sim.state().server_status(*id) != Some("running"))
        .collect();
    let listed = |items: &[String], none: &str| {
        if items.is_empty() {
            none.to_string()
        } else {
            items.join(", ")
        }
    };
    let stopped: Vec<String> = stopped.iter().map(u64::to_string).collect();
    outln!();
    outln!("manual snapshots left alone: {manual} of 3");
    outln!("servers not running:         {}", listed(&stopped, "none"));
    outln!("failing jobs:                {}", listed(&failures, "none"));
    if args.keep {
        outln!("files kept in {}", dir.keep().display());
    } else {
        outln!("files removed (--keep keeps them)");
    }
    if manual != 3 || !stopped.is_empty() || !failures.is_empty() {
        return Err(CliError::DemoFailed);
    }
    Ok(Exit::Success)
}
