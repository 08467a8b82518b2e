//! `snaprotd list`: the snapshots, with status, size, age and owner.

use std::path::Path;

use serde_json::json;

use super::views::SnapshotJson;
use super::{CliResult, Exit, load_config, output};
use crate::config::Config;
use crate::provider::{Client, Snapshot};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this server
    #[arg(long)]
    server: Option<u64>,
    /// Print the list as JSON
    #[arg(long)]
    json: bool,
}

/// A snapshot and the policy that owns it.
#[derive(serde::Serialize)]
struct ListEntry {
    #[serde(flatten)]
    snapshot: SnapshotJson,
    owner: String,
}

/// The policy that owns `s`, or "manual".
pub fn owner(config: &Config, s: &Snapshot) -> String {
    config
        .policies
        .iter()
        .filter(|p| p.servers.contains(&s.server.id))
        .find(|p| p.owns(s.server.id, &s.name))
        .map_or_else(|| "manual".to_string(), |p| p.name.clone())
}

pub async fn run(path: &Path, args: Args) -> CliResult {
    let config = load_config(path)?;
    let client = Client::new(&config.api)?;
    let mut snapshots = client.list_snapshots(args.server).await?.snapshots;
    snapshots.sort_by_key(|s| (s.server.id, s.created_at, s.id));
    if args.json {
        let list: Vec<_> = snapshots
            .iter()
            .map(|s| ListEntry {
                snapshot: s.into(),
                owner: owner(&config, s),
            })
            .collect();
        output::json(&json!({ "snapshots": list }));
        return Ok(Exit::Success);
    }
    let rows: Vec<Vec<String>> = snapshots
        .iter()
        .map(|s| {
            vec![
                s.server.id.to_string(),
                s.id.to_string(),
                s.name.clone(),
                s.status.as_str().to_string(),
                s.size_mb.map_or("-".into(), |m| format!("{m} MB")),
                output::age(s.created_at),
                owner(&config, s),
            ]
        })
        .collect();
    output::table(
        &["SERVER", "ID", "NAME", "STATUS", "SIZE", "AGE", "OWNER"],
        &rows,
    );
    Ok(Exit::Success)
}
