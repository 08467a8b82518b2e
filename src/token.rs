//! The provider's bearer token, a secret: read by `config` from its sources, sent by
//! `provider`. It has a module of its own so that neither of the two needs the other
//! for it.

/// The bearer token. It is never printed: `Debug` shows `***`, there is no `Display`,
/// and every error message built from an answer has the token blanked out.
#[derive(Clone)]
pub struct ApiToken(String);

impl ApiToken {
    /// A token from text as read from a file or variable (surrounding blanks dropped).
    pub fn new(text: &str) -> Option<ApiToken> {
        let t = text.trim();
        (!t.is_empty()).then(|| ApiToken(t.to_string()))
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
