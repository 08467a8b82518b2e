//! The configuration: what it holds (`schema.rs`), its defaults (`defaults.rs`), the
//! rules it must follow (`checks.rs`), what it reads besides its file (`sources.rs`),
//! and its errors with file, line, column and key (`errors.rs`).
//!
//! Loading reads the file (`file.rs`), turns the TOML into structures that remember
//! where each value was written (`read.rs`, `raw.rs`), reads the token and the
//! environment (`sources.rs`), then applies every rule and default (`build.rs`),
//! collecting every problem, so an operator fixes a file in one go rather than one
//! error per run.

mod build;
mod checks;
mod defaults;
mod errors;
pub(crate) mod file;
mod raw;
mod read;
mod schema;
mod sources;
pub mod template;

use std::path::Path;

pub use defaults::PATH as DEFAULT_PATH;
pub use errors::{ConfigError, ConfigErrors};
pub use schema::{ApiConfig, Config, DaemonConfig, Policy, Timing, job_policy};
pub(crate) use sources::{Environment, ProcessEnvironment};
pub use sources::{TOKEN_CREDENTIAL, TOKEN_ENV};
pub use template::NameTemplate;

impl Config {
    /// Reads and validates the file at `path`: a regular file of at most 1 MiB, opened
    /// without blocking (every command and the daemon's reload come through here).
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let (source, _) = file::read_text(path, file::MAX_CONFIG_BYTES, "a configuration file")
            .map_err(|e| ConfigErrors::unreadable(path, e))?;
        Config::from_source(path, &source)
    }

    /// Validates `source` as if it were the contents of `path`.
    pub fn from_source(path: &Path, source: &str) -> Result<Config, ConfigErrors> {
        Config::from_source_in(path, source, &ProcessEnvironment)
    }

    /// Validates `source` as if it were the contents of `path`, with the environment
    /// variables of `env`.
    pub(crate) fn from_source_in(
        path: &Path,
        source: &str,
        env: &dyn Environment,
    ) -> Result<Config, ConfigErrors> {
        let locate = |p: errors::Problem| p.locate(path, source);
        let raw = read::parse(source).map_err(|p| ConfigErrors(vec![locate(p)]))?;
        let outside = sources::Outside::read(&raw.api, env);
        let found = build::config(path, &raw, outside);
        if !found.errors.is_empty() {
            return Err(ConfigErrors(found.errors.into_iter().map(locate).collect()));
        }
        let mut config = found.config.ok_or_else(|| ConfigErrors(Vec::new()))?;
        config.warnings = found
            .warnings
            .into_iter()
            .map(|w| locate(w).to_string())
            .collect();
        Ok(config)
    }
}

#[cfg(test)]
mod tests;
