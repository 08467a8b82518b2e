//! The provider's bearer token, a secret: read by `config` from its sources, sent by
//! `provider`. It has a module of its own so that neither of the two needs the other
//! for it.

/// The bearer token. It is never printed: `Debug` shows `***`, there is no `Display`,
/// and every error message built from an answer has the token blanked out.
#[derive(Clone)]
pub struct ApiToken(String);

/// Why text read from a token source is not a token. None of these shows the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenProblem {
    #[error("is empty")]
    Empty,
    #[error(
        "starts with a byte-order mark (an editor saved it as \"UTF-8 with BOM\"); save it as plain text"
    )]
    ByteOrderMark,
    #[error("holds more than one line; it must hold the token alone, on one line")]
    SeveralLines,
    #[error("starts with \"Bearer \"; write the token alone: snaprotd adds the \"Bearer\" itself")]
    BearerPrefix,
    #[error("holds a space, a tab or a control character inside the token")]
    Blank,
}

impl ApiToken {
    /// A token from text as read from a file or variable: the token alone, on one line
    /// (a final line break and surrounding blanks are dropped). Text that would fail
    /// only later, as a 401 or a network error, is refused now with the reason.
    pub fn parse(text: &str) -> Result<ApiToken, TokenProblem> {
        if text.starts_with('\u{feff}') {
            return Err(TokenProblem::ByteOrderMark);
        }
        let t = text.trim();
        if t.is_empty() {
            return Err(TokenProblem::Empty);
        }
        if t.contains(['\n', '\r']) {
            return Err(TokenProblem::SeveralLines);
        }
        if t.len() > 7 && t[..7].eq_ignore_ascii_case("bearer ") {
            return Err(TokenProblem::BearerPrefix);
        }
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TokenProblem::Blank);
        }
        Ok(ApiToken(t.to_string()))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_alone_on_one_line() {
        assert_eq!(ApiToken::parse("  abc123\n").unwrap().expose(), "abc123");
        assert_eq!(ApiToken::parse("abc123\r\n").unwrap().expose(), "abc123");
        let refused = [
            (" \n", TokenProblem::Empty),
            ("\u{feff}abc", TokenProblem::ByteOrderMark),
            ("abc\ndef\n", TokenProblem::SeveralLines),
            ("abc\n\n# the old one\nxyz", TokenProblem::SeveralLines),
            ("Bearer abc", TokenProblem::BearerPrefix),
            ("bearer abc", TokenProblem::BearerPrefix),
            ("abc def", TokenProblem::Blank),
            ("abc\u{7}", TokenProblem::Blank),
        ];
        for (text, problem) in refused {
            assert_eq!(ApiToken::parse(text).err(), Some(problem), "{text:?}");
        }
    }
}
