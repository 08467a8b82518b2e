//! The command line: one file per command; this file holds the clap definition and
//! the logging set-up. Exit codes are decided in `exit.rs`, signals caught in
//! `signals.rs`.

mod assets;
mod check;
mod complete;
mod coverage;
mod demo;
mod exit;
mod list;
mod logging;
mod manpage;
mod next;
mod notify;
mod once;
mod output;
mod progress;
mod prune;
mod restore;
mod signals;
mod sim;
mod status;
mod views;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::{Config, DEFAULT_PATH};
pub use exit::{CliError, Exit, Health};
use output::errln;

#[derive(Parser, Debug)]
#[command(
    name = "snaprotd",
    version,
    about = "Keeps rolling, dated snapshots of VPS servers through the provider's Snapshots API",
    long_about = "Keeps rolling, dated snapshots of VPS servers through the provider's Snapshots API.\n\n\
        Per-server policies in one TOML file say when to snapshot (a cron schedule in a \
        time zone), how many snapshots to keep and whether to stop the server first. On \
        each fire snaprotd creates a named, dated snapshot, waits for it to complete, \
        starts the server again if it stopped it, and prunes the policy's older snapshots \
        so the provider's cap per server is respected. It never touches a snapshot it did \
        not make, never prunes after a failure, and never leaves a server it stopped \
        stopped.\n\n\
        Run as a systemd service (snaprotd.service), it logs every step to the journal; \
        `snaprotd status` is a monitoring check.",
    propagate_version = true
)]
pub struct Cli {
    /// The configuration file
    #[arg(short, long, global = true, help_heading = "Global options", env = "SNAPROTD_CONFIG", default_value = DEFAULT_PATH, value_name = "PATH")]
    pub config: PathBuf,

    /// Where log lines go: the journal, plain text on standard error, or the journal
    /// when standard error is connected to it (as under systemd)
    #[arg(long, global = true, help_heading = "Global options", value_enum, default_value_t = LogTarget::Auto)]
    pub log: LogTarget,

    /// Log warnings and errors only (no progress line either)
    #[arg(
        short,
        long,
        global = true,
        help_heading = "Global options",
        conflicts_with = "verbose"
    )]
    pub quiet: bool,

    /// Log more: each request to the provider and its answer (-v), everything snaprotd
    /// says (-vv); SNAPROTD_LOG overrides
    #[arg(short, long, global = true, help_heading = "Global options", action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// What to do; without a command, snaprotd runs the daemon
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogTarget {
    Auto,
    Journald,
    Text,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon (what a bare `snaprotd` does)
    Run,
    /// Last run, outcome and next fire of every job; exit 0 ok, 1 failed, 2 overdue/stale/left stopped, 3 unknown
    ///
    /// Reads the state directory (with --provider, also one listing of the snapshots).
    /// Exit codes, as monitoring plugins use them: 0 ok, 1 a last run failed, 2 overdue (a
    /// fire passed and no run answered it), a job stale (--provider) or a server snaprotd
    /// stopped left stopped, 3 unknown (the state directory is missing or cannot be read
    /// by this user, or the provider cannot be asked; nothing is known).
    Status(status::Args),
    /// Validate the configuration; print each policy, its servers and next three fires
    Check(check::Args),
    /// Run the matching jobs now, once, and print a summary
    Once(once::Args),
    /// The coming fires across all policies, in time order
    Next(next::Args),
    /// The restore points each job's keep will hold at the end of each coming day
    ///
    /// Plays each job's schedule forward from now, starting with no snapshot, as if every
    /// fire succeeds: each fire adds a snapshot made at the fire time, and the rotation's
    /// own retention rule decides what stays. Shows, per job and day (in the policy's time
    /// zone), the restore points held at the day's end. Makes no API call and reads no
    /// token.
    Coverage(coverage::Args),
    /// The snapshots, with status, size, age and the policy that owns each
    List(list::Args),
    /// Restore a server from a snapshot (overwrites the server's data)
    Restore(restore::Args),
    /// Send a sample notification to every configured target (--test)
    ///
    /// The [notify] webhook_url gets the sample notice POSTed as JSON, the [notify] command
    /// gets it on stdin, and each policy's ping_url a success ping. Each is tried once,
    /// within [notify] timeout; the exit status is 1 when any failed.
    Notify(notify::Args),
    /// Delete snapshots snaprotd made for a policy that no longer owns them (--orphans)
    ///
    /// An orphan is a snapshot whose description names a snaprotd policy that this
    /// configuration does not have on that server (removed, renamed, or no longer listing
    /// the server). A second snaprotd with another configuration on the same account sees
    /// the first one's snapshots as orphans: look at --dry-run before confirming.
    Prune(prune::Args),
    /// Run the provider simulator (for tests and trials)
    Sim(sim::Args),
    /// The whole lifecycle against a built-in simulator on a fast schedule
    Demo(demo::Args),
    /// Write the man page and shell completions into a directory (for packaging)
    #[command(hide = true)]
    Assets(assets::Args),
}

impl Command {
    /// Whether the command was asked for JSON output.
    fn wants_json(&self) -> bool {
        match self {
            Command::Status(a) => a.json,
            Command::Check(a) => a.json,
            Command::Once(a) => a.json,
            Command::Next(a) => a.json,
            Command::Coverage(a) => a.json,
            Command::List(a) => a.json,
            Command::Restore(a) => a.json,
            Command::Prune(a) => a.json,
            Command::Notify(a) => a.json,
            Command::Run | Command::Sim(_) | Command::Demo(_) | Command::Assets(_) => false,
        }
    }
}

/// A command line clap refused: help and version are printed as asked; an error exits
/// 2, except for `status`, a monitoring check, whose usage error is UNKNOWN (3) as the
/// monitoring-plugin convention has it.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || intended_command(std::env::args().skip(1)).as_deref() != Some("status")
    {
        e.exit()
    }
    let _ = e.print();
    std::process::exit(i32::from(exit::code(
        &Ok(Exit::Status(Health::Unknown)),
        false,
    )))
}

/// The command a command line meant: its first word that is neither an option nor the
/// value of one.
fn intended_command(args: impl Iterator<Item = String>) -> Option<String> {
    let mut args = args;
    while let Some(a) = args.next() {
        match a.as_str() {
            "-c" | "--config" | "--log" => {
                args.next();
            }
            a if a.starts_with('-') => {}
            a => return Some(a.to_string()),
        }
    }
    None
}

/// How a command ends; `exit.rs` turns it into the exit code.
pub type CliResult = Result<Exit, CliError>;

pub fn main() -> ExitCode {
    // A shell asking for completions (`COMPLETE=bash snaprotd …`) is answered, and the
    // process ends here.
    clap_complete::CompleteEnv::with_factory(Cli::command)
        .var(complete::VAR)
        .complete();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage_error(e),
    };
    let json = cli.command.as_ref().is_some_and(Command::wants_json);
    logging::init(
        cli.log,
        logging::Verbosity {
            quiet: cli.quiet,
            verbose: cli.verbose,
        },
    );
    log_panics();
    let result = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(source) => Err(CliError::Io {
            what: "cannot start the async runtime".into(),
            source,
        }),
    };
    logging::clear_status_line();
    if json && let Err(e) = &result {
        // A script that asked for JSON gets its error as JSON too.
        output::json(&views::ErrorJson::from(e));
    }
    let output_failed = output::finish();
    match &result {
        Ok(_) => {}
        Err(CliError::Config(errors)) => {
            for line in errors.0.iter() {
                errln!("error: {line}");
            }
        }
        Err(other) => errln!("error: {other}"),
    }
    ExitCode::from(exit::code(&result, output_failed))
}

async fn run(cli: Cli) -> CliResult {
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            crate::daemon::run(&cli.config, signals::daemon_controls()?).await?;
            Ok(Exit::Success)
        }
        Command::Status(args) => status::run(&cli.config, args).await,
        Command::Check(args) => check::run(&cli.config, args).await,
        Command::Once(args) => once::run(&cli.config, args).await,
        Command::Next(args) => next::run(&cli.config, args),
        Command::Coverage(args) => coverage::run(&cli.config, args).await,
        Command::List(args) => list::run(&cli.config, args).await,
        Command::Restore(args) => restore::run(&cli.config, args).await,
        Command::Prune(args) => prune::run(&cli.config, args).await,
        Command::Notify(args) => notify::run(&cli.config, args).await,
        Command::Sim(args) => sim::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Assets(args) => assets::run(args),
    }
}

/// Loads the configuration and prints its warnings.
pub fn load_config(path: &std::path::Path) -> Result<Config, CliError> {
    warned(Config::load(path)?)
}

/// Loads the configuration without the API token, for a command that makes no API
/// call, and prints its warnings.
pub fn load_config_offline(path: &std::path::Path) -> Result<Config, CliError> {
    warned(Config::load_offline(path)?)
}

/// Prints the configuration's warnings as `check` prints its errors (the daemon logs
/// them instead).
fn warned(config: Config) -> Result<Config, CliError> {
    for w in &config.warnings {
        errln!("warning: {w}");
    }
    Ok(config)
}

/// A panic is logged as an internal error (in the journal, with priority err) rather
/// than printed raw; a panic inside a job is then reported as that job's failure.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let at = info
            .location()
            .map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
        tracing::error!("internal error{at}: {what} (a bug in snaprotd, please report it)");
    }));
}
