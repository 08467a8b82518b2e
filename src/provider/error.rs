//! Why a call to the provider failed, in words an operator can act on.

/// Why a call to the provider failed. Messages carry the provider's own text, cut to
/// a sane length, and never the token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{call}: authentication failed (HTTP 401): {message} — check the API token")]
    Unauthorized { call: String, message: String },
    #[error("{call}: not found (HTTP 404): {message}")]
    NotFound { call: String, message: String },
    #[error("{call}: rejected (HTTP 400): {message}")]
    Rejected { call: String, message: String },
    #[error("{call}: HTTP {status} after {attempts} attempt(s): {message}")]
    Status {
        call: String,
        status: u16,
        attempts: u32,
        message: String,
    },
    #[error("{call}: {message} (after {attempts} attempt(s))")]
    Network {
        call: String,
        message: String,
        attempts: u32,
    },
    #[error("{call}: the provider's answer could not be read: {message}")]
    Malformed { call: String, message: String },
    #[error("{call}: {message}")]
    Protocol { call: String, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Setup(String),
}

impl ApiError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::NotFound { .. })
    }
}
