//! `snaprotd restore`: restore a server from a snapshot, after confirmation.

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use super::output::{self, errln, outln};
use super::{CliError, CliResult, Exit, load_config};
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
    let client = Client::new(&config.api)?;
    let snapshot = client
        .list_snapshots(None)
        .await?
        .snapshots
        .into_iter()
        .find(|s| s.id == args.snapshot_id)
        .ok_or(CliError::NoSuchSnapshot(args.snapshot_id))?;
    let what = format!(
        "server {} from snapshot {} (id {}, created {})",
        snapshot.server.id,
        snapshot.name,
        snapshot.id,
        snapshot.created_at.to_rfc3339()
    );
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::NotConfirmed(what));
        }
        output::write(format_args!(
            "Restore {what}?\nThis stops the server and overwrites all its data. Type yes to go on: "
        ));
        output::flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if answer.trim() != "yes" {
            outln!("Not restored.");
            return Ok(Exit::Failure);
        }
    }
    // A job on this server (the daemon's, or a `once`) finishes first.
    let state = crate::state::StateDir::new(&config.daemon.state_dir);
    state.become_owner_if_root()?;
    state.check().await?;
    let _lock = state
        .lock_server(snapshot.server.id, |holder| {
            errln!(
                "server {} is busy: another snaprotd process{holder} is working on it; waiting",
                snapshot.server.id
            )
        })
        .await?;
    let answer = client.restore_snapshot(snapshot.id).await?;
    outln!(
        "Restoring {what}: {}",
        answer.message.unwrap_or_else(|| "accepted".into())
    );
    Ok(Exit::Success)
}
