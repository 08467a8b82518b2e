//! `snaprotd next`: the coming fires across all policies, in time order.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{CliResult, Exit, load_config_offline, output};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// How many fires to show
    #[arg(long, short = 'n', default_value_t = 10)]
    count: usize,
    /// Print the result as JSON
    #[arg(long)]
    pub(super) json: bool,
}

pub fn run(path: &Path, args: Args) -> CliResult {
    let config = load_config_offline(path)?;
    // Merge the policies' fire sequences: repeatedly take the earliest pending fire.
    let now = Utc::now();
    let mut pending: Vec<(Option<DateTime<Utc>>, usize)> = config
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| (p.schedule.next_fire(p.timezone, now), i))
        .collect();
    let mut fires = Vec::new();
    while fires.len() < args.count {
        let Some(slot) = pending
            .iter_mut()
            .filter(|(t, _)| t.is_some())
            .min_by_key(|(t, _)| *t)
        else {
            break;
        };
        let (Some(at), i) = *slot else { break };
        let p = &config.policies[i];
        fires.push((at, p));
        slot.0 = p.schedule.next_fire(p.timezone, at);
    }
    if args.json {
        let list: Vec<_> = fires
            .iter()
            .map(|(at, p)| {
                json!({
                    "at": output::json_time(*at), "policy": p.name,
                    "timezone": p.timezone.name(), "servers": p.servers,
                    "server_patterns": p.patterns.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })
            })
            .collect();
        output::json(&json!({ "fires": list }));
    } else {
        let rows: Vec<Vec<String>> = fires
            .iter()
            .map(|(at, p)| {
                vec![
                    output::when(*at, p.timezone),
                    output::left(*at),
                    p.name.clone(),
                    p.servers_written().join(", "),
                ]
            })
            .collect();
        output::table(&["TIME", "LEFT", "POLICY", "SERVERS"], &rows);
    }
    Ok(Exit::Success)
}
