//! Configuration errors as the operator reads them: file, line, column, key, and what
//! to do. Rules and sources report a [`Problem`] at a byte span of the file; it is
//! placed at line and column only when the text is at hand.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in the configuration, with where it is.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Line and column, both counted from 1.
    pub at: Option<(usize, usize)>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.at {
            write!(f, ":{line}:{col}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All the problems found in one configuration file.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// The file could not be read at all.
    pub(super) fn unreadable(file: &Path, why: impl fmt::Display) -> ConfigErrors {
        ConfigErrors(vec![ConfigError {
            file: file.to_path_buf(),
            at: None,
            key: String::new(),
            message: format!("cannot read the configuration: {why}"),
        }])
    }
}

/// A problem found by a rule or a source: the bytes of the file it is about (none for
/// the file as a whole), the key that names it, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Problem {
    pub span: Option<Range<usize>>,
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(span: Range<usize>, key: impl Into<String>, message: impl fmt::Display) -> Self {
        Problem {
            span: Some(span),
            key: key.into(),
            message: message.to_string(),
        }
    }

    /// About the file as a whole: no position, no key.
    pub fn of_file(message: impl fmt::Display) -> Self {
        Problem {
            span: None,
            key: String::new(),
            message: message.to_string(),
        }
    }

    /// The problem as the operator reads it, at line and column of `source`.
    pub fn locate(self, file: &Path, source: &str) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            at: self.span.map(|s| line_col(source, s.start)),
            key: self.key,
            message: self.message,
        }
    }
}

/// Line and column (from 1; the column counted in characters) of byte `offset`.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_placed_at_line_and_column_in_characters() {
        let source = "a = 1\nbé = \"x\"\n";
        let at = |offset| line_col(source, offset);
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(6), (2, 1));
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(at(12), (2, 6));
        assert_eq!(at(1000), (3, 1));
        // Inside a character: its start.
        assert_eq!(at(8), (2, 2));
    }

    #[test]
    fn an_error_reads_file_line_column_key_and_message() {
        let p = Problem::new(6..7, "api.max_attempts", "0 is out of range");
        let e = p.locate(Path::new("/etc/s.toml"), "[api]\nmax_attempts = 0\n");
        assert_eq!(
            e.to_string(),
            "/etc/s.toml:2:1: key `api.max_attempts`: 0 is out of range"
        );
        let e = Problem::of_file("no [[policy]]").locate(Path::new("s.toml"), "");
        assert_eq!(e.to_string(), "s.toml: no [[policy]]");
    }
}
