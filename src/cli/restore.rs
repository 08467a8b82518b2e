//! `snaprotd restore`: restore a server from a snapshot, after confirmation.

use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use super::output::{self, errln, outln};
use super::{CliError, CliResult, load_config};
use crate::provider::Client;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The snapshot to restore from
    snapshot_id: u64,
    /// Do not ask for confirmation
    #[arg(long)]
    yes: bool,
}

pub async fn run(path: &Path, args: Args) -> CliResult {
    let config = load_config(path)?;
    let client = Client::new(&config.api).map_err(|e| CliError::Failed(e.to_string()))?;
    let failed = |e: crate::provider::ApiError| CliError::Failed(e.to_string());
    let snapshot = client
        .list_snapshots(None)
        .await
        .map_err(failed)?
        .snapshots
        .into_iter()
        .find(|s| s.id == args.snapshot_id)
        .ok_or_else(|| CliError::Failed(format!("snapshot {} does not exist", args.snapshot_id)))?;
    let what = format!(
        "server {} from snapshot {} (id {}, created {})",
        snapshot.server.id,
        snapshot.name,
        snapshot.id,
        snapshot.created_at.to_rfc3339()
    );
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::Failed(format!(
                "restoring {what} overwrites all data on the server; pass --yes to confirm when not on a terminal"
            )));
        }
        output::write(format_args!(
            "Restore {what}?\nThis stops the server and overwrites all its data. Type yes to go on: "
        ));
        output::flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if answer.trim() != "yes" {
            outln!("Not restored.");
            return Ok(ExitCode::from(1));
        }
    }
    // A job on this server (the daemon's, or a `once`) finishes first.
    let state = crate::state::StateDir::new(&config.daemon.state_dir);
    state
        .become_owner_if_root()
        .and_then(|_| state.check())
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let _lock = state
        .lock_server(snapshot.server.id, |holder| {
            errln!(
                "server {} is busy: another snaprotd process{holder} is working on it; waiting",
                snapshot.server.id
            )
        })
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let answer = client.restore_snapshot(snapshot.id).await.map_err(failed)?;
    outln!(
        "Restoring {what}: {}",
        answer.message.unwrap_or_else(|| "accepted".into())
    );
    Ok(ExitCode::SUCCESS)
}
