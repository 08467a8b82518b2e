//! What the provider's documentation does not say, and what snaprotd assumes instead
//! (API.md, "Not documented"). Each decision is a named constant or function here.

use std::time::Duration;

use super::types::{ServerStatus, SnapshotStatus};

// There is no documented `GET /snapshots/ID/`: a snapshot's status is read from the
// server's listing, `GET /snapshots/?server_id=ID`, by `id` (`Rotation::wait_completed`,
// through the shared `Listings`).

/// Status values: `in_progress` and `completed` are documented; `failed` and `error`
/// are taken as failure; anything else counts as still running (logged once), bounded
/// by the wait time-out.
pub fn snapshot_status(text: &str) -> SnapshotStatus {
    match text {
        "completed" => SnapshotStatus::Completed,
        "in_progress" => SnapshotStatus::InProgress,
        "failed" | "error" => SnapshotStatus::Failed(text.to_string()),
        other => SnapshotStatus::Other(other.to_string()),
    }
}

/// Servers live under `/servers/` with the snapshot API's conventions:
/// `GET /servers/ID/` → `{id, name, status}`, `POST /servers/ID/stop/` and
/// `POST /servers/ID/start/` → 202 or 200 with the server object.
pub fn server_status(text: &str) -> ServerStatus {
    match text {
        "running" => ServerStatus::Running,
        "stopped" => ServerStatus::Stopped,
        "stopping" => ServerStatus::Stopping,
        "starting" => ServerStatus::Starting,
        "restoring" => ServerStatus::Restoring,
        other => ServerStatus::Other(other.to_string()),
    }
}

/// Servers are listed, not documented, like snapshots: `GET /servers/` →
/// `{count, next, results: [{id, name, status}]}`, paginated as below. snaprotd reads it
/// to turn a policy's server names and globs into ids (`Client::list_servers`).
pub const SERVERS_LISTING: &str = "servers/";

/// Pagination is Django-REST-style: `count`, `results` and an optional `next` (an
/// absolute URL, or null). `next` is followed only on the base URL's own origin, so
/// the token is never sent elsewhere; this many pages at most.
pub const MAX_PAGES: usize = 10_000;

/// A snapshot missing from this many listings in a row is gone; one listing without it
/// proves nothing (an index that lags behind, a page that shifted).
pub const MISSING_POLLS_FOR_GONE: u32 = 3;

/// How long one whole listing (all its pages) may take.
pub const MAX_LISTING_TIME: Duration = Duration::from_secs(10 * 60);

/// The largest answer read: a listing page, a snapshot, an error. Past it the answer is
/// dropped as unreadable (an endless or runaway body never grows memory past this).
pub const MAX_BODY: usize = 16 << 20;

/// No rate limits are documented: a 429 may carry `Retry-After` in seconds (or as an
/// HTTP date). A wait longer than this is cut to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How long a request outside a job (a command, a shared listing) keeps being sent
/// again through 429s before it fails.
pub const RATE_LIMITED_FOR: Duration = Duration::from_secs(10 * 60);

/// 5xx answers come during maintenance and are worth retrying; 429 means the request
/// was not applied, so even a create can be retried after it.
pub fn is_retryable(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// Error bodies are not documented: usually JSON with `detail` or `message`. Whatever
/// came back is shown, cut to this many characters.
pub const MAX_ERROR_TEXT: usize = 300;

/// Pulls the human text out of an error body.
pub fn error_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(&text) {
        for key in ["detail", "message", "error"] {
            if let Some(serde_json::Value::String(s)) = map.get(key) {
                return s.clone();
            }
        }
    }
    text.trim().to_string()
}
