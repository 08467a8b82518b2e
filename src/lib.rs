//! snaprotd: rolling, dated snapshots of VPS servers through the provider's Snapshots API.
//!
//! The map of the parts is in ARCHITECTURE.md. In short: [`config`] reads and checks
//! the policies, [`schedule`] says when they fire, [`rotation`] runs one job against
//! the [`provider`], [`runner`] runs many, [`daemon`] runs them on schedule, [`state`]
//! remembers what must survive a restart, [`cli`] is the command line, and [`sim`] is
//! the provider simulator used by the tests and the demo.
#![forbid(unsafe_code)]
// Output goes through `cli::output`, which stops quietly at a closed pipe where
// `println!` would panic.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod admission;
pub mod bucket;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod failpoint;
pub mod interrupt;
pub mod job;
pub mod metrics;
pub mod names;
pub mod notify;
pub mod process;
pub mod provider;
pub mod rotation;
pub mod runner;
pub mod schedule;
pub mod sim;
pub mod state;
pub mod systemd;
pub mod token;

/// The target of progress events: what a long wait is at, for a status line on a
/// terminal (`cli/logging.rs`); a `key` field names what waits, and an empty message
/// ends its entry. Other log outputs leave them out.
pub const PROGRESS: &str = "snaprotd::progress";

#[cfg(test)]
mod architecture;
