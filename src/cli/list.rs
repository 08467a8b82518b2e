//! `snaprotd list`: the snapshots, with status, size, when they were made, and who made
//! them (a policy, `orphan:<policy>`, or `manual`: see `rotation::Owner`).

use std::path::Path;

use serde_json::json;

use super::views::ListedJson;
use super::{CliError, CliResult, Exit, load_config, output};
use crate::provider::{Client, Snapshot};
use crate::rotation::Owner;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this server
    #[arg(long, value_name = "ID", add = clap_complete::engine::ArgValueCompleter::new(super::complete::servers))]
    server: Option<u64>,
    /// Print the list as JSON
    #[arg(long)]
    pub(super) json: bool,
}

pub async fn run(path: &Path, args: Args) -> CliResult {
    let config = load_config(path)?;
    let client = Client::new(&config.api)?;
    let mut snapshots = client.list_snapshots(args.server).await?.snapshots;
    if snapshots.is_empty() {
        return nothing_listed(&client, args.server, args.json).await;
    }
    snapshots.sort_by_key(|s| (s.server.id, s.created_at, s.id));
    let owned: Vec<(&Snapshot, Owner<'_>)> = snapshots
        .iter()
        .map(|s| (s, Owner::of(&config.policies, s)))
        .collect();
    if args.json {
        let list: Vec<ListedJson> = owned.iter().map(|(s, o)| ListedJson::new(s, o)).collect();
        output::json(&json!({ "snapshots": list }));
        return Ok(Exit::Success);
    }
    let rows: Vec<Vec<String>> = owned
        .iter()
        .map(|(s, owner)| {
            // A policy's snapshot in its zone; what belongs to no policy in UTC.
            let zone = owner.policy().map_or(chrono_tz::UTC, |p| p.timezone);
            vec![
                s.server.id.to_string(),
                s.id.to_string(),
                s.name.clone(),
                s.status.as_str().to_string(),
                s.size_mb.map_or("-".into(), |m| format!("{m} MB")),
                output::when(s.created_at, zone),
                output::age(s.created_at),
                owner.to_string(),
            ]
        })
        .collect();
    output::table(
        &[
            "SERVER", "ID", "NAME", "STATUS", "SIZE", "CREATED", "AGE", "OWNER",
        ],
        &rows,
    );
    Ok(Exit::Success)
}

/// An empty listing says why: no snapshots, or (for `--server`) no such server, when
/// the provider can tell (its server status; see `provider::assumptions`).
async fn nothing_listed(client: &Client, server: Option<u64>, json: bool) -> CliResult {
    let said = match server {
        None => "no snapshots at the provider".to_string(),
        Some(id) => match client.server(id).await {
            Ok(_) => format!("server {id} has no snapshots"),
            Err(e) if e.is_not_found() => return Err(CliError::NoSuchServer(id)),
            Err(e) => format!(
                "server {id} has no snapshots, or does not exist (its status could not be read: {e})"
            ),
        },
    };
    if json {
        output::json(&json!({ "snapshots": [] }));
    } else {
        output::outln!("{said}");
    }
    Ok(Exit::Success)
}
