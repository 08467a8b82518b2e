//! The provider's API: the HTTP client and the shapes of its answers.
//!
//! Everything the provider's documentation leaves open is decided in this module and
//! nowhere else; `assumptions.rs` lists those decisions one by one (API.md, "Not
//! documented"), so adapting to the real API means editing one file.

pub mod assumptions;
pub mod budget;
mod client;
mod error;
mod listing;
mod listings;
mod pages;
mod retry;
mod stats;
mod text;
mod types;

pub use client::{Client, Created};
pub use error::ApiError;
pub use listing::Listing;
pub use listings::Listings;
pub use pages::ListingInfo;
pub use retry::with_deadline;
pub use stats::ApiStats;
pub use types::{
    RestoreAnswer, Server, ServerRef, ServerStatus, Snapshot, SnapshotPage, SnapshotStatus,
};

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
