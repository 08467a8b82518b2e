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
pub use pages::{ListingInfo, ServerListing};
pub use retry::with_deadline;
pub use stats::ApiStats;
pub use types::{
    RestoreAnswer, Server, ServerPage, ServerRef, ServerStatus, Snapshot, SnapshotPage,
    SnapshotStatus,
};

pub use crate::token::ApiToken;
