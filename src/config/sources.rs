//! What the configuration takes from outside its file: the API token (a token file, an
//! environment variable, the systemd credential) and systemd's `STATE_DIRECTORY`. All
//! the I/O of loading besides reading the file itself; the rules in `checks.rs` stay pure.

use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::errors::Problem;
use super::file;
use super::raw::RawApi;
use crate::token::{ApiToken, TokenProblem};

/// The environment variable read for the token when no other source is configured.
pub const TOKEN_ENV: &str = "SNAPROTD_API_TOKEN";
/// The systemd credential name (`LoadCredential=api-token:…`).
pub const TOKEN_CREDENTIAL: &str = "api-token";

/// The environment variables loading reads, and the token file it falls back to;
/// tests hand in their own.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
    /// The token file read when no source is configured: the one the unit hands over
    /// as the credential `api-token` (`/etc/snaprotd/token`).
    fn token_file(&self) -> PathBuf;
}

/// The process's own environment.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn token_file(&self) -> PathBuf {
        PathBuf::from(super::defaults::TOKEN_FILE)
    }
}

/// Whether a command needs the API token: `status` and `next` make no API call, so
/// they read none (and work for a user who cannot read it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Token,
    NoToken,
}

/// What was read from outside the file, and the problems met reading it.
pub(super) struct Outside {
    /// The token, and where it came from (for `check`; never the token itself).
    pub token: Option<(ApiToken, String)>,
    /// The first directory of systemd's `STATE_DIRECTORY`.
    pub state_directory: Option<PathBuf>,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

impl Outside {
    pub fn read(api: &RawApi, env: &dyn Environment, need: Need) -> Outside {
        let mut warnings = Vec::new();
        let (token, errors) = match need {
            Need::NoToken => (None, Vec::new()),
            Need::Token => match token(api, env, &mut warnings) {
                Ok(token) => (Some(token), Vec::new()),
                Err(problem) => (None, vec![problem]),
            },
        };
        Outside {
            token,
            state_directory: state_directory(env),
            errors,
            warnings,
        }
    }
}

/// The token, from the first configured source: `token_file`, `token_env`, the
/// systemd credential, `SNAPROTD_API_TOKEN`, then the file the unit hands over as the
/// credential (`/etc/snaprotd/token`), so that `sudo snaprotd once` next to the service
/// needs no setting.
fn token(
    api: &RawApi,
    env: &dyn Environment,
    warnings: &mut Vec<Problem>,
) -> Result<(ApiToken, String), Problem> {
    match (&api.token_file, &api.token_env) {
        (Some(_), Some(e)) => Err(Problem::new(
            e.span(),
            "api.token_env",
            "set either token_file or token_env, not both",
        )),
        (Some(f), None) => token_file(f, env, warnings),
        (None, Some(e)) => token_env(e, env),
        (None, None) => {
            if let Some(found) = credential(env)? {
                return Ok(found);
            }
            if let Some(text) = env.var(TOKEN_ENV) {
                match ApiToken::parse(&text) {
                    Ok(token) => return Ok((token, format!("environment variable {TOKEN_ENV}"))),
                    Err(TokenProblem::Empty) => {}
                    Err(problem) => {
                        return Err(Problem::new(
                            0..0,
                            "api.token_env",
                            format!("environment variable {TOKEN_ENV} {problem}"),
                        ));
                    }
                }
            }
            let path = env.token_file();
            let why_not = match file::read_text(&path, file::MAX_TOKEN_BYTES, "a token file") {
                Err(file::FileError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                    String::new()
                }
                Err(e) => format!(" ({} cannot be read by this user: {e})", path.display()),
                Ok((text, _)) => match ApiToken::parse(&text) {
                    Ok(token) => return Ok((token, format!("file {}", path.display()))),
                    Err(problem) => {
                        return Err(Problem::new(
                            0..0,
                            "api.token_file",
                            format!("the token file {} {problem}", path.display()),
                        ));
                    }
                },
            };
            Err(Problem::new(
                0..0,
                "api.token_file",
                format!(
                    "no API token{why_not}: write it to {}, set [api] token_file or \
                     token_env, provide the systemd credential {TOKEN_CREDENTIAL}, or set \
                     {TOKEN_ENV}",
                    path.display()
                ),
            ))
        }
    }
}

fn token_file(
    f: &Spanned<String>,
    env: &dyn Environment,
    warnings: &mut Vec<Problem>,
) -> Result<(ApiToken, String), Problem> {
    const KEY: &str = "api.token_file";
    let path = Path::new(f.get_ref());
    let (text, meta) =
        file::read_text(path, file::MAX_TOKEN_BYTES, "a token file").map_err(|e| {
            let denied = matches!(&e, file::FileError::Io(io)
                if io.kind() == std::io::ErrorKind::PermissionDenied);
            let hint = match (denied, credential(env)) {
                (true, Ok(Some(_))) => format!(
                    "; the systemd credential {TOKEN_CREDENTIAL} is there and would serve: \
                     remove token_file from [api] (the unit hands the token file over as \
                     that credential, to a user who cannot read the file itself)"
                ),
                (true, _) => format!(
                    "; under systemd, snaprotd runs as a dynamic user who cannot read it: \
                     leave token_file unset and let the unit hand it over as the credential \
                     {TOKEN_CREDENTIAL}"
                ),
                (false, _) => String::new(),
            };
            Problem::new(
                f.span(),
                KEY,
                format!("cannot read the token file {}: {e}{hint}", path.display()),
            )
        })?;
    if let Some(w) = readable_by_others(path, meta.permissions().mode(), f.span()) {
        warnings.push(w);
    }
    let token = ApiToken::parse(&text).map_err(|problem| {
        Problem::new(
            f.span(),
            KEY,
            format!("the token file {} {problem}", path.display()),
        )
    })?;
    Ok((token, format!("file {}", path.display())))
}

fn token_env(e: &Spanned<String>, env: &dyn Environment) -> Result<(ApiToken, String), Problem> {
    let name = e.get_ref();
    let problem = |what: String| Problem::new(e.span(), "api.token_env", what);
    match env.var(name).as_deref().map(ApiToken::parse) {
        Some(Ok(t)) => Ok((t, format!("environment variable {name}"))),
        None | Some(Err(TokenProblem::Empty)) => Err(problem(format!(
            "environment variable {name} is not set or empty"
        ))),
        Some(Err(p)) => Err(problem(format!("environment variable {name} {p}"))),
    }
}

/// The systemd credential, when systemd passed one that can be read and is not empty;
/// one that holds something else than a token is an error.
fn credential(env: &dyn Environment) -> Result<Option<(ApiToken, String)>, Problem> {
    let Some(dir) = env.var("CREDENTIALS_DIRECTORY") else {
        return Ok(None);
    };
    let path = Path::new(&dir).join(TOKEN_CREDENTIAL);
    let Ok((text, _)) = file::read_text(&path, file::MAX_TOKEN_BYTES, "a token file") else {
        return Ok(None);
    };
    match ApiToken::parse(&text) {
        Ok(token) => Ok(Some((
            token,
            format!("systemd credential {TOKEN_CREDENTIAL}"),
        ))),
        Err(TokenProblem::Empty) => Ok(None),
        Err(problem) => Err(Problem::new(
            0..0,
            "api.token_file",
            format!("the systemd credential {TOKEN_CREDENTIAL} {problem}"),
        )),
    }
}

/// A warning when a token file's `mode` lets every user read it.
fn readable_by_others(path: &Path, mode: u32, span: Range<usize>) -> Option<Problem> {
    (mode & 0o004 != 0).then(|| {
        Problem::new(
            span,
            "api.token_file",
            format!("{} is readable by every user; chmod 600 it", path.display()),
        )
    })
}

/// The first directory of `STATE_DIRECTORY` (systemd may list several, `:`-separated).
fn state_directory(env: &dyn Environment) -> Option<PathBuf> {
    env.var("STATE_DIRECTORY")?
        .split(':')
        .next()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::HashMap;

    use super::*;

    /// An environment of the given variables only.
    pub(crate) struct Vars(pub HashMap<String, String>);

    impl Vars {
        pub(crate) fn of(pairs: &[(&str, &str)]) -> Vars {
            Vars(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        }
    }

    impl Environment for Vars {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
        fn token_file(&self) -> PathBuf {
            self.0
                .get(DEFAULT_TOKEN_FILE)
                .map_or_else(|| PathBuf::from("/nonexistent/token"), PathBuf::from)
        }
    }

    /// The name under which `Vars` holds the path of the default token file.
    pub(crate) const DEFAULT_TOKEN_FILE: &str = "(default token file)";

    fn read(api: &RawApi, env: &dyn Environment) -> Outside {
        Outside::read(api, env, Need::Token)
    }

    fn api(text: &str) -> RawApi {
        toml::from_str(text).unwrap()
    }

    fn source(outside: &Outside) -> &str {
        &outside.token.as_ref().unwrap().1
    }

    #[test]
    fn the_token_comes_from_the_first_source_configured() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TOKEN_CREDENTIAL), "from-credential\n").unwrap();
        let creds = dir.path().to_str().unwrap();
        let both = Vars::of(&[("CREDENTIALS_DIRECTORY", creds), (TOKEN_ENV, "t")]);
        assert_eq!(
            source(&read(&api(""), &both)),
            "systemd credential api-token"
        );
        let env_only = Vars::of(&[(TOKEN_ENV, "t")]);
        assert_eq!(
            source(&read(&api(""), &env_only)),
            "environment variable SNAPROTD_API_TOKEN"
        );
        let named = Vars::of(&[("MY_TOKEN", "t"), ("CREDENTIALS_DIRECTORY", creds)]);
        let o = read(&api("token_env = \"MY_TOKEN\""), &named);
        assert_eq!(source(&o), "environment variable MY_TOKEN");
    }

    #[test]
    fn an_empty_credential_falls_through_to_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TOKEN_CREDENTIAL), "\n").unwrap();
        let env = Vars::of(&[
            ("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap()),
            (TOKEN_ENV, "t"),
        ]);
        assert_eq!(
            source(&read(&api(""), &env)),
            "environment variable SNAPROTD_API_TOKEN"
        );
    }

    #[test]
    fn no_token_anywhere_says_where_one_may_come_from() {
        let o = read(&api(""), &Vars::of(&[]));
        assert!(o.token.is_none());
        assert_eq!(o.errors[0].key, "api.token_file");
        assert!(
            o.errors[0]
                .message
                .starts_with("no API token: write it to /nonexistent/token, set [api] token_file")
        );
        let o = read(
            &api("token_env = \"UNSET\""),
            &Vars::of(&[(TOKEN_ENV, "t")]),
        );
        assert_eq!(
            o.errors,
            vec![Problem::new(
                12..19,
                "api.token_env",
                "environment variable UNSET is not set or empty"
            )]
        );
    }

    #[test]
    fn token_file_and_token_env_together_are_refused() {
        let o = read(
            &api("token_file = \"/t\"\ntoken_env = \"X\""),
            &Vars::of(&[("X", "t")]),
        );
        assert_eq!(o.errors[0].key, "api.token_env");
        assert_eq!(
            o.errors[0].message,
            "set either token_file or token_env, not both"
        );
    }

    #[test]
    fn a_token_file_is_read_and_warned_about_when_others_can_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "secret\n").unwrap();
        let config = api(&format!("token_file = \"{}\"", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let o = read(&config, &Vars::of(&[]));
        assert_eq!(source(&o), format!("file {}", path.display()));
        assert!(o.warnings.is_empty());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = read(&config, &Vars::of(&[]));
        assert!(
            o.warnings[0]
                .message
                .ends_with("is readable by every user; chmod 600 it")
        );
        std::fs::write(&path, " \n").unwrap();
        let o = read(&config, &Vars::of(&[]));
        let said = |problem| format!("the token file {} {problem}", path.display());
        assert_eq!(o.errors[0].message, said(TokenProblem::Empty));
        for (text, problem) in [
            ("\u{feff}secret\n", TokenProblem::ByteOrderMark),
            ("secret\nother\n", TokenProblem::SeveralLines),
            ("Bearer secret\n", TokenProblem::BearerPrefix),
        ] {
            std::fs::write(&path, text).unwrap();
            let o = read(&config, &Vars::of(&[]));
            assert_eq!(o.errors[0].message, said(problem));
            assert!(!o.errors[0].message.contains("secret"));
        }
    }

    #[test]
    fn the_state_directory_is_the_first_systemd_gives() {
        let dir = |v: &str| state_directory(&Vars::of(&[("STATE_DIRECTORY", v)]));
        assert_eq!(
            dir("/var/lib/a:/var/lib/b"),
            Some(PathBuf::from("/var/lib/a"))
        );
        assert_eq!(dir("/var/lib/a"), Some(PathBuf::from("/var/lib/a")));
        assert_eq!(dir(""), None);
        assert_eq!(state_directory(&Vars::of(&[])), None);
    }
}

#[cfg(test)]
mod fallbacks {
    use super::tests::{DEFAULT_TOKEN_FILE, Vars};
    use super::*;

    #[test]
    fn without_a_source_the_units_token_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let env = Vars::of(&[(DEFAULT_TOKEN_FILE, path.to_str().unwrap())]);
        let api = RawApi::default();
        let o = Outside::read(&api, &env, Need::Token);
        assert!(o.errors[0].message.starts_with(&format!(
            "no API token: write it to {}, set [api] token_file",
            path.display()
        )));
        std::fs::write(&path, "secret\n").unwrap();
        let o = Outside::read(&api, &env, Need::Token);
        assert_eq!(o.token.unwrap().1, format!("file {}", path.display()));
    }

    #[test]
    fn a_command_that_needs_no_token_reads_none() {
        let api: RawApi = toml::from_str("token_file = \"/nonexistent/token\"").unwrap();
        let o = Outside::read(&api, &Vars::of(&[]), Need::NoToken);
        assert!(o.token.is_none() && o.errors.is_empty() && o.warnings.is_empty());
    }

    #[test]
    fn an_unreadable_token_file_with_the_credential_at_hand_says_to_use_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TOKEN_CREDENTIAL), "secret\n").unwrap();
        // A directory cannot be read as a file: not "permission denied", so no hint.
        let api: RawApi =
            toml::from_str(&format!("token_file = \"{}\"", dir.path().display())).unwrap();
        let env = Vars::of(&[("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap())]);
        let o = Outside::read(&api, &env, Need::Token);
        assert!(
            !o.errors[0].message.contains("credential"),
            "{:?}",
            o.errors
        );
    }
}
