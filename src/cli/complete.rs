//! Shell completions. The shell asks `snaprotd` itself (`COMPLETE=bash snaprotd …`,
//! clap_complete's `CompleteEnv`), so completions follow the binary they come with,
//! leave out the hidden `assets` command, and can offer what the configuration holds:
//! policy names for `--policy` and server ids for `--server`, when the configuration
//! (`-c PATH` on the line being completed, `SNAPROTD_CONFIG`, or the default) can be
//! read. The package installs the shells' registration scripts (`assets.rs`).

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use clap_complete::engine::CompletionCandidate;

use crate::config::{Config, DEFAULT_PATH};

/// The environment variable the registration scripts set when they ask for completions.
pub const VAR: &str = "COMPLETE";

/// The configuration named on the line being completed, else by `SNAPROTD_CONFIG`,
/// else the default path.
fn config_path(words: impl Iterator<Item = OsString>) -> PathBuf {
    let mut words = words.peekable();
    let mut named = None;
    while let Some(w) = words.next() {
        let text = w.to_string_lossy();
        if text == "-c" || text == "--config" {
            named = words.peek().map(PathBuf::from);
        } else if let Some(p) = text.strip_prefix("--config=") {
            named = Some(PathBuf::from(p));
        }
    }
    named
        .or_else(|| std::env::var_os("SNAPROTD_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

/// The configuration, if it can be read (no token needed); nothing otherwise, as a
/// completion must not print errors.
fn config() -> Option<Config> {
    Config::load_offline(&config_path(std::env::args_os())).ok()
}

fn starting_with(
    values: impl Iterator<Item = String>,
    current: &OsStr,
) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    let mut values: Vec<String> = values.filter(|v| v.starts_with(&*current)).collect();
    values.sort();
    values.dedup();
    values.into_iter().map(CompletionCandidate::new).collect()
}

/// The configured policies' names.
pub fn policies(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(config) = config() else {
        return Vec::new();
    };
    starting_with(config.policies.into_iter().map(|p| p.name), current)
}

/// The servers the configured policies name.
pub fn servers(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(config) = config() else {
        return Vec::new();
    };
    let ids = config
        .policies
        .iter()
        .flat_map(|p| p.servers.iter().map(u64::to_string))
        .collect::<Vec<_>>();
    starting_with(ids.into_iter(), current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_is_the_one_on_the_line() {
        let words = |w: &[&str]| w.iter().map(OsString::from).collect::<Vec<_>>().into_iter();
        assert_eq!(
            config_path(words(&[
                "snaprotd", "--", "snaprotd", "-c", "/x.toml", "once"
            ])),
            PathBuf::from("/x.toml")
        );
        assert_eq!(
            config_path(words(&["snaprotd", "once", "--config=/y.toml"])),
            PathBuf::from("/y.toml")
        );
    }
}
