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
mod keep;
mod keys;
mod raw;
mod read;
mod schema;
mod servers;
mod sources;
pub mod template;

use std::path::Path;

pub use defaults::PATH as DEFAULT_PATH;
pub use errors::{ConfigError, ConfigErrors};
pub use keep::{Keep, Tier};
pub use keys::REQUIRED_POLICY_KEYS;
pub use schema::{
    ApiConfig, Config, DaemonConfig, HookCommand, Hooks, NotifyConfig, Policy, Timing, job_policy,
};
pub use servers::ServerPattern;
pub(crate) use sources::{Environment, Need, ProcessEnvironment};
pub use sources::{TOKEN_CREDENTIAL, TOKEN_ENV};
pub use template::NameTemplate;

impl Config {
    /// Reads and validates the file at `path`: a regular file of at most 1 MiB, opened
    /// without blocking (every command and the daemon's reload come through here).
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::load_for(path, Need::Token)
    }

    /// [`Config::load`] for a command that makes no API call (`status`, `next`): the
    /// token is not read, and `api.token` is `None`.
    pub fn load_offline(path: &Path) -> Result<Config, ConfigErrors> {
        Config::load_for(path, Need::NoToken)
    }

    fn load_for(path: &Path, need: Need) -> Result<Config, ConfigErrors> {
        let (source, _) = file::read_text(path, file::MAX_CONFIG_BYTES, "a configuration file")
            .map_err(|e| ConfigErrors::unreadable(path, e))?;
        Config::from_source_in(path, &source, &ProcessEnvironment, need)
    }

    /// Validates `source` as if it were the contents of `path`.
    pub fn from_source(path: &Path, source: &str) -> Result<Config, ConfigErrors> {
        Config::from_source_in(path, source, &ProcessEnvironment, Need::Token)
    }

    /// Validates `source` as if it were the contents of `path`, with the environment
    /// variables of `env`.
    pub(crate) fn from_source_in(
        path: &Path,
        source: &str,
        env: &dyn Environment,
        need: Need,
    ) -> Result<Config, ConfigErrors> {
        let locate = |p: errors::Problem| p.locate(path, source);
        // With problems of name or kind, the rules are checked on the rest of the
        // file too, so that one run reports every problem.
        let read::Read { raw, mut problems } = read::parse_all(source);
        let Some(raw) = raw else {
            return Err(ConfigErrors(problems.into_iter().map(locate).collect()));
        };
        let outside = sources::Outside::read(&raw.api, env, need);
        let found = build::config(path, &raw, outside);
        problems.extend(found.errors);
        if !problems.is_empty() {
            problems.sort_by_key(|p| p.span.as_ref().map_or(0, |s| s.start));
            return Err(ConfigErrors(problems.into_iter().map(locate).collect()));
        }
        let mut config = found.config.ok_or_else(|| ConfigErrors(Vec::new()))?;
        config.warnings = found.warnings.into_iter().map(locate).collect();
        let mut note = |key: String, span: std::ops::Range<usize>| {
            if let Some(at) = locate(errors::Problem::new(span, "", "")).at {
                config.written_at.insert(key, at);
            }
        };
        for p in &raw.policy {
            let p = p.get_ref();
            let name = p.name.get_ref();
            note(format!("policy[{name}].servers"), p.servers.span());
            if let Some(keep) = &p.keep {
                note(format!("policy[{name}].keep"), keep.span());
            }
        }
        if let Some(keep) = &raw.defaults.keep {
            note("defaults.keep".into(), keep.span());
        }
        Ok(config)
    }
}

impl Config {
    /// What `check` says of the policies of one server, for a server that patterns
    /// matched only at a fire: their `keep` within the cap, their snapshot names apart
    /// (the same rules, as text). Empty when they can share it.
    pub fn conflicts_on(&self, server: u64, policies: &[&Policy]) -> Vec<String> {
        let mut found = Vec::new();
        let cap = self.api.snapshot_cap;
        if let Err(p) = checks::keep_within_cap(server, policies, cap, (0..0, String::new())) {
            found.push(p.message);
        }
        for (i, a) in policies.iter().enumerate() {
            for b in &policies[i + 1..] {
                if let Err(p) = checks::names_apart(server, a, b, 0..0) {
                    found.push(p.message);
                }
            }
        }
        found
    }
}

#[cfg(test)]
impl Config {
    /// A configuration of `policies` (TOML), every other key at its default, for the
    /// tests of other modules.
    pub(crate) fn of_policies(policies: &str) -> Config {
        let env = sources::tests::Vars::of(&[(TOKEN_ENV, "t")]);
        Config::from_source_in(Path::new("snaprotd.toml"), policies, &env, Need::Token)
            .expect("a good configuration")
    }
}

#[cfg(test)]
mod tests;
