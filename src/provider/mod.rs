//! The provider's API: the HTTP client and the shapes of its answers.
//!
//! Everything the provider's documentation leaves open is decided in this module and
//! nowhere else; `assumptions.rs` lists those decisions one by one (API.md, "Not
//! documented"), so adapting to the real API means editing one file.

pub mod assumptions;
pub mod budget;
mod client;
mod listing;
mod listings;
mod types;

pub use client::{ApiError, ApiStats, Client, Created, ListingInfo, with_deadline};
pub use listing::Listing;
pub use listings::Listings;
pub use types::{RestoreAnswer, Server, ServerStatus, Snapshot, SnapshotPage, SnapshotStatus};

pub use crate::token::ApiToken;
