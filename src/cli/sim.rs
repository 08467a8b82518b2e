//! `snaprotd sim`: the provider simulator as a server.

use std::net::SocketAddr;
use std::time::Duration;

use super::output::{errln, outln};
use super::{CliError, CliResult, Exit};
use crate::sim::{SimHandle, SimOptions};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port; the first line printed is the URL)
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The token clients must send (shown when the simulator starts)
    #[arg(long, default_value = SIM_TOKEN)]
    token: String,
    /// Servers to create, as comma-separated ids or ranges (1-1000), named server-<ID>
    /// (while it runs, `POST <URL without /api/v1>/_sim/servers` with
    /// {"id": 7, "name": "web-7"} adds one)
    #[arg(long, value_delimiter = ',', value_parser = parse_ids)]
    servers: Vec<Vec<u64>>,
    /// Snapshots per page of the list
    #[arg(long, default_value_t = 100)]
    page_size: usize,
    /// How long a snapshot stays in_progress
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    create_time: Duration,
    /// How long a server takes to stop or start
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    transition_time: Duration,
    /// Added to every answer
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// Snapshots allowed per server
    #[arg(long, default_value_t = 5)]
    cap: usize,
    /// Requests per second accepted; past it, 429 with Retry-After
    #[arg(long)]
    rate_limit: Option<f64>,
    /// Requests the rate limit accepts at once after a quiet spell (default: one
    /// second's worth)
    #[arg(long, requires = "rate_limit")]
    rate_burst: Option<f64>,
}

pub async fn run(args: Args) -> CliResult {
    if !args.listen.ip().is_loopback() {
        return Err(CliError::NotLoopback);
    }
    // The simulator's token is no secret: it is shown, so a client knows what to send.
    let token = args.token.clone();
    let options = SimOptions {
        token: args.token,
        page_size: args.page_size,
        create_time: args.create_time,
        transition_time: args.transition_time,
        latency: args.latency,
        cap: args.cap,
        rate_limit: args.rate_limit,
        rate_burst: args.rate_burst,
        ..SimOptions::default()
    };
    let sim = SimHandle::start(args.listen, options)
        .await
        .map_err(|source| CliError::Io {
            what: format!("cannot listen on {}", args.listen),
            source,
        })?;
    {
        let mut state = sim.state();
        for id in args.servers.iter().flatten() {
            state.add_server(*id, &format!("server-{id}"));
        }
    }
    outln!("{}", sim.base_url());
    errln!(
        "simulator listening on {} (controls under http://{}/_sim/)",
        sim.base_url(),
        sim.addr
    );
    errln!("clients send the token {token} (--token to choose another)");
    super::signals::stop_signal().await;
    Ok(Exit::Success)
}

/// The token when none is given.
const SIM_TOKEN: &str = "sim-token";

/// "7" or "1-1000".
fn parse_ids(text: &str) -> Result<Vec<u64>, String> {
    let number = |t: &str| t.trim().parse::<u64>().map_err(|e| format!("{t:?}: {e}"));
    match text.split_once('-') {
        Some((a, b)) => Ok((number(a)?..=number(b)?).collect()),
        None => Ok(vec![number(text)?]),
    }
}
