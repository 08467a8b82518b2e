//! How a command ends, and the one place where that becomes an exit code: a command
//! returns an [`Exit`] or a [`CliError`], and `cli::main` asks this file for the code.

use std::io;

use super::signals::StopSignal;
use crate::config::ConfigErrors;
use crate::daemon::DaemonError;
use crate::provider::ApiError;
use crate::state::StateError;

/// A command that ran to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It did everything it was asked to.
    Success,
    /// Something it was asked to do failed or was declined: a job failed, a dry run
    /// would fail, a restore was not confirmed.
    Failure,
    /// `status`: what the jobs' states say.
    Status(Health),
}

/// What `status` found, by the monitoring-plugin convention (Nagios, Icinga, Sensu):
/// the worst of what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    /// Every job's last run is ok; nothing is overdue, stale or left stopped.
    Ok,
    /// A job's last run failed.
    Warning,
    /// A fire passed and no run answered it; a job's newest snapshot is too old or
    /// missing (`--provider`); a server snaprotd stopped was not started again.
    Critical,
    /// The state could not be read, or the provider could not be asked (`--provider`):
    /// nothing is known.
    Unknown,
}

impl Health {
    /// The word `status --json` shows.
    pub fn word(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Warning => "warning",
            Health::Critical => "critical",
            Health::Unknown => "unknown",
        }
    }

    /// The word a monitoring plugin's line starts with.
    pub fn plugin_word(self) -> &'static str {
        match self {
            Health::Ok => "OK",
            Health::Warning => "WARNING",
            Health::Critical => "CRITICAL",
            Health::Unknown => "UNKNOWN",
        }
    }
}

/// What a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Daemon(DaemonError),
    #[error("no policy named {name:?} (configured: {configured})")]
    NoSuchPolicy { name: String, configured: String },
    #[error(
        "no configured job matches {0} (`snaprotd check` lists the policies and their servers)"
    )]
    NoMatchingJob(String),
    #[error(
        "no job to run: the servers the policies name match no server of the account (`snaprotd check` shows what each pattern matches)"
    )]
    NoJob,
    #[error("{0}")]
    TooManyFires(String),
    #[error(
        "snapshot {0:?} does not exist (no snapshot has that id or name); `snaprotd list` shows the snapshots"
    )]
    NoSuchSnapshot(String),
    #[error(
        "{count} snapshots are named {name:?} ({ids}); add --server ID, or restore one by its id (`snaprotd list` shows them)"
    )]
    AmbiguousSnapshot {
        name: String,
        count: usize,
        ids: String,
    },
    #[error(
        "server {0} does not exist (the provider knows no such server); `snaprotd list` shows the servers that have snapshots"
    )]
    NoSuchServer(u64),
    #[error(
        "restoring {0} overwrites all data on the server; pass --yes to confirm when not on a terminal"
    )]
    NotConfirmed(String),
    #[error("the restore of server {server} was accepted, but waiting for it failed: {source}")]
    RestoreWait {
        server: u64,
        #[source]
        source: ApiError,
    },
    #[error(
        "server {server} is still {status} after {timeout} (--timeout); the restore goes on at the provider"
    )]
    RestoreTimeout {
        server: u64,
        status: String,
        timeout: String,
    },
    #[error(
        "prune deletes orphans only: pass --orphans to delete the snapshots snaprotd made for a policy that \
         no longer owns them (`snaprotd list` shows them as orphan:<policy>); a policy's own snapshots are pruned by its runs"
    )]
    PruneWhat,
    #[error(
        "deleting {0} snapshot(s) cannot be undone; pass --yes to confirm when not on a terminal (--dry-run shows them)"
    )]
    PruneNotConfirmed(usize),
    #[error(
        "the provider's listing does not add up ({0}); nothing is deleted on its word: try again later"
    )]
    ListingInDoubt(String),
    #[error("the simulator listens on loopback addresses only")]
    NotLoopback,
    #[error("cannot catch {signal}: {source}")]
    Signal {
        signal: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("demo: {what}: {source}")]
    Demo {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the demo did not end as it should")]
    DemoFailed,
    /// Stopped by a signal.
    #[error("interrupted by {}: {completed} of {total} job(s) completed", signal.name())]
    Interrupted {
        signal: StopSignal,
        completed: usize,
        total: usize,
    },
}

impl From<DaemonError> for CliError {
    fn from(e: DaemonError) -> CliError {
        match e {
            DaemonError::Config(e) => CliError::Config(e),
            other => CliError::Daemon(other),
        }
    }
}

/// A bad configuration (sysexits' EX_CONFIG): systemd does not restart on it.
const EXIT_CONFIG: u8 = 78;

/// The process's exit code for how the command ended; a success whose output could not
/// be written (for another reason than a closed pipe) is a failure.
pub fn code(result: &Result<Exit, CliError>, output_failed: bool) -> u8 {
    match result {
        Ok(exit) if output_failed && exit.code() == 0 => 1,
        Ok(exit) => exit.code(),
        Err(e) => e.code(),
    }
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success | Exit::Status(Health::Ok) => 0,
            Exit::Failure | Exit::Status(Health::Warning) => 1,
            Exit::Status(Health::Critical) => 2,
            Exit::Status(Health::Unknown) => 3,
        }
    }
}

impl CliError {
    pub fn code(&self) -> u8 {
        match self {
            CliError::Config(_) => EXIT_CONFIG,
            // As a shell reports a process the signal ended.
            CliError::Interrupted { signal, .. } => 128 + signal.number(),
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ending_has_its_exit_code() {
        let codes: Vec<u8> = [
            Exit::Success,
            Exit::Failure,
            Exit::Status(Health::Ok),
            Exit::Status(Health::Warning),
            Exit::Status(Health::Critical),
            Exit::Status(Health::Unknown),
        ]
        .map(Exit::code)
        .into();
        assert_eq!(codes, [0, 1, 0, 1, 2, 3]);
        let interrupted = |signal| CliError::Interrupted {
            signal,
            completed: 0,
            total: 1,
        };
        assert_eq!(interrupted(StopSignal::Int).code(), 130);
        assert_eq!(interrupted(StopSignal::Term).code(), 143);
        assert_eq!(CliError::Config(ConfigErrors(Vec::new())).code(), 78);
        assert_eq!(CliError::NoMatchingJob(String::new()).code(), 1);
        // Output that could not be written fails a success, and only a success.
        assert_eq!(code(&Ok(Exit::Success), true), 1);
        assert_eq!(code(&Ok(Exit::Status(Health::Critical)), true), 2);
        assert_eq!(code(&Ok(Exit::Success), false), 0);
        // A bad configuration found by the daemon is still a bad configuration.
        let from_daemon = CliError::from(DaemonError::Config(ConfigErrors(Vec::new())));
        assert_eq!(from_daemon.code(), 78);
    }
}
