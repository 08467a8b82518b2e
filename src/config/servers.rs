//! Which servers a policy covers: ids as written, and patterns — a server's name, a
//! glob over names, or every server of the account — that only the provider's server
//! listing can turn into ids (`runner/fleet.rs` does, at each fire).

use std::fmt;

/// A server named in `servers` other than by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerPattern {
    /// `servers = "all"`: every server of the account.
    All,
    /// `"db-01"`: the server of this name.
    Name(String),
    /// `"web-*"`: every server whose name matches (`*`, `?`, `[a-z]`).
    Glob(glob::Pattern),
}

impl ServerPattern {
    /// Reads one entry of a `servers` list that is not an id: a glob when it holds
    /// `*`, `?` or `[`, else a name.
    pub fn parse(text: &str) -> Result<ServerPattern, String> {
        if text.trim().is_empty() {
            return Err("an empty server name".into());
        }
        if text.contains(['*', '?', '[']) {
            glob::Pattern::new(text)
                .map(ServerPattern::Glob)
                .map_err(|e| format!("{text:?} is not a glob: {}", e.msg))
        } else {
            Ok(ServerPattern::Name(text.to_string()))
        }
    }

    /// Whether the server named `name` is one of this pattern's.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            ServerPattern::All => true,
            ServerPattern::Name(n) => n == name,
            ServerPattern::Glob(g) => g.matches(name),
        }
    }
}

impl fmt::Display for ServerPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerPattern::All => f.write_str("all"),
            ServerPattern::Name(n) => f.write_str(n),
            ServerPattern::Glob(g) => f.write_str(g.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_exactly_and_globs_by_their_wildcards() {
        let web = ServerPattern::parse("web-*").unwrap();
        assert!(web.matches("web-01") && web.matches("web-") && !web.matches("db-web-1"));
        let one = ServerPattern::parse("db-0?").unwrap();
        assert!(one.matches("db-01") && !one.matches("db-010"));
        let name = ServerPattern::parse("db-01").unwrap();
        assert!(name.matches("db-01") && !name.matches("db-011"));
        assert!(ServerPattern::All.matches("anything"));
        assert!(ServerPattern::parse("web-[").is_err());
        assert!(ServerPattern::parse(" ").is_err());
        assert_eq!(web.to_string(), "web-*");
    }
}
