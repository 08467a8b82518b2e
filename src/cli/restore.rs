//! `snaprotd restore`: restore a server from a snapshot (by id or by name), after
//! confirmation, and with `--wait` until the server runs again. Also the confirmation
//! and the server's lock that `prune` takes the same way.

use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::time::Duration;

use clap_complete::engine::ArgValueCompleter;
use tokio::time::Instant;

use super::output::{self, errln, outln};
use super::progress::Progress;
use super::views::RestoreJson;
use super::{CliError, CliResult, Exit, load_config};
use crate::config::Config;
use crate::provider::{Client, ServerStatus, Snapshot};
use crate::rotation::{self, Owner};
use crate::runner::Runner;
use crate::state::{ServerLock, StateDir};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The snapshot to restore from: its id, or its name (`snaprotd list` shows both)
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,
    /// The server whose snapshot of that name to restore from (names repeat across
    /// the servers of one policy)
    #[arg(long, value_name = "ID", add = ArgValueCompleter::new(super::complete::servers))]
    server: Option<u64>,
    /// Do not ask for confirmation
    #[arg(long)]
    yes: bool,
    /// Wait until the server runs again, showing its status
    #[arg(long)]
    wait: bool,
    /// How long --wait waits at most (the provider says restoring takes 5 to 15 minutes)
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Print the result as JSON
    #[arg(long)]
    pub(super) json: bool,
}

pub async fn run(path: &Path, args: Args) -> CliResult {
    let config = load_config(path)?;
    let client = Client::new(&config.api)?;
    let listing = client.list_snapshots(None).await?.snapshots;
    let snapshot = find(listing, &args.snapshot, args.server)?;
    let server = snapshot.server.id;
    let what = format!(
        "server {server} from snapshot {} (id {}, created {})",
        snapshot.name,
        snapshot.id,
        created(&config, &snapshot)
    );
    match confirm(
        args.yes,
        &format!("Restore {what}?\nThis stops the server and overwrites all its data."),
    ) {
        Confirmed::Yes => {}
        Confirmed::No => {
            errln!("Not restored.");
            return Ok(Exit::Failure);
        }
        Confirmed::NotATerminal => return Err(CliError::NotConfirmed(what)),
    }
    // A job on this server (the daemon's, or a `once`) finishes first; with --wait, no
    // job starts on it until it runs again.
    let state = open_state(&config).await?;
    let _lock = hold_server(&config, &state, server).await?;
    let answer = client.restore_snapshot(snapshot.id).await?;
    if !args.json {
        outln!(
            "Restoring {what}: {}",
            answer.message.as_deref().unwrap_or("accepted")
        );
    }
    let waited = if args.wait {
        let said = answer.server.as_ref().map(|s| s.status.clone());
        let interval = config
            .policies
            .iter()
            .find(|p| p.servers.contains(&server))
            .map_or(config.defaults.poll_interval, |p| p.poll_interval);
        Some(wait_running(&client, server, said, interval, args.timeout).await?)
    } else {
        None
    };
    if args.json {
        output::json(&RestoreJson {
            snapshot: (&snapshot).into(),
            server,
            message: answer.message,
            waited_seconds: waited.map(|d| d.as_secs_f64()),
        });
    }
    Ok(Exit::Success)
}

/// The snapshot whose id or name is `wanted`: exactly one, or an error that says what
/// to do.
fn find(listing: Vec<Snapshot>, wanted: &str, server: Option<u64>) -> Result<Snapshot, CliError> {
    let id = wanted.parse::<u64>().ok();
    let mut matching: Vec<Snapshot> = listing
        .into_iter()
        .filter(|s| Some(s.id) == id || s.name == wanted)
        .filter(|s| server.is_none_or(|want| s.server.id == want))
        .collect();
    if matching.len() > 1 {
        matching.sort_by_key(|s| s.id);
        let ids = matching
            .iter()
            .map(|s| {
                format!(
                    "id {} on server {}, created {}",
                    s.id,
                    s.server.id,
                    output::when(s.created_at, chrono_tz::UTC)
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(CliError::AmbiguousSnapshot {
            name: wanted.to_string(),
            count: matching.len(),
            ids,
        });
    }
    matching
        .pop()
        .ok_or_else(|| CliError::NoSuchSnapshot(wanted.to_string()))
}

/// When `s` was made: in its policy's zone, or UTC when no policy owns it.
fn created(config: &Config, s: &Snapshot) -> String {
    let zone = Owner::of(&config.policies, s)
        .policy()
        .map_or(chrono_tz::UTC, |p| p.timezone);
    output::when(s.created_at, zone)
}

/// Polls the server's status until it runs, with a progress line, for at most
/// `timeout`. Returns how long it took.
async fn wait_running(
    client: &Client,
    server: u64,
    said: Option<ServerStatus>,
    interval: Duration,
    timeout: Duration,
) -> Result<Duration, CliError> {
    let mut progress = Progress::new(format!("restoring server {server}"));
    let deadline = Instant::now() + timeout;
    // Right after the restore call a provider may still show the server running: that
    // is believed once it was seen not running, or after a few reads.
    let mut left_running = said.is_some_and(|s| s != ServerStatus::Running);
    let mut reads = 0;
    loop {
        let status = client
            .server(server)
            .await
            .map_err(|source| CliError::RestoreWait { server, source })?
            .status;
        reads += 1;
        if status == ServerStatus::Running && (left_running || reads >= 3) {
            let took = progress.elapsed();
            progress.finish("runs again");
            return Ok(took);
        }
        left_running |= status != ServerStatus::Running;
        progress.update(status.as_str());
        let now = Instant::now();
        if now >= deadline {
            return Err(CliError::RestoreTimeout {
                server,
                status: status.as_str().to_string(),
                timeout: humantime::format_duration(timeout).to_string(),
            });
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
    }
}

/// What the operator said to a question.
pub(super) enum Confirmed {
    Yes,
    No,
    /// Not asked: standard input is not a terminal and `--yes` was not given.
    NotATerminal,
}

/// Asks `question` on the terminal (on standard error, so standard output stays the
/// command's) and reads the answer: only `yes` goes on. `--yes` answers for it.
pub(super) fn confirm(yes: bool, question: &str) -> Confirmed {
    if yes {
        return Confirmed::Yes;
    }
    if !std::io::stdin().is_terminal() {
        return Confirmed::NotATerminal;
    }
    {
        use std::io::Write as _;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{question}\nType yes to go on: ");
        let _ = err.flush();
    }
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if answer.trim() == "yes" {
        Confirmed::Yes
    } else {
        Confirmed::No
    }
}

/// The state directory, checked, as the daemon and `once` use it.
pub(super) async fn open_state(config: &Config) -> Result<StateDir, CliError> {
    let state = StateDir::new(&config.daemon.state_dir);
    state.become_owner_if_root()?;
    state.check().await?;
    Ok(state)
}

/// Takes `server`'s lock, as every job does, waiting (and saying so) while another
/// snaprotd process works on it; then settles, as every job does first, what a run cut
/// short left on the server: a freeze is thawed (`post_snapshot` with
/// `SNAPROTD_RESULT=interrupted`), and a server snaprotd stopped is started again after
/// its snapshot.
pub(super) async fn hold_server(
    config: &Config,
    state: &StateDir,
    server: u64,
) -> Result<ServerLock, CliError> {
    let lock = state
        .lock_server(server, |holder| {
            errln!(
                "server {server} is busy: another snaprotd process{holder} is working on it; waiting"
            )
        })
        .await?;
    let runner = Runner::new(std::sync::Arc::new(config.clone()))?;
    if let Err(e) = Box::pin(rotation::settle(&runner.rotation(), server)).await {
        tracing::warn!(server_id = server, "{e}");
    }
    Ok(lock)
}
