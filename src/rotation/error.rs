//! What went wrong in a run.

use super::hooks::HookFailure;
use crate::provider::ApiError;
use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("{step}: {source}")]
    Api {
        step: &'static str,
        #[source]
        source: ApiError,
    },
    #[error(
        "server {server} is at the cap ({used} of {cap} snapshots: {occupants}) and none of them is one policy {policy} would delete; \
         {}delete a snapshot by hand, lower keep of another policy on this server, or raise [api] snapshot_cap if the provider allows more",
        orphan_advice(*.server, .orphans)
    )]
    CapFull {
        server: u64,
        policy: String,
        used: usize,
        cap: usize,
        occupants: String,
        /// Snapshots snaprotd made for a policy that no longer owns them, "NAME (id N)".
        orphans: Vec<String>,
    },
    #[error("snapshot {name} (id {id}) ended as {status:?}")]
    SnapshotFailed {
        name: String,
        id: u64,
        status: String,
    },
    #[error("snapshot {name} (id {id}) is still {status:?} after wait_timeout ({timeout})")]
    WaitTimeout {
        name: String,
        id: u64,
        status: String,
        timeout: String,
    },
    #[error(
        "{step}: the provider's listing does not add up ({doubt}); nothing is deleted on its word this run"
    )]
    ListingInDoubt { step: &'static str, doubt: String },
    #[error("snapshot {name} (id {id}) disappeared while waiting for it")]
    Vanished { name: String, id: u64 },
    #[error("server {server} did not become {want} within {timeout} (last seen {seen:?})")]
    ServerTimeout {
        server: u64,
        want: &'static str,
        seen: String,
        timeout: String,
    },
    /// A `pre_snapshot` or `post_snapshot` command failed; `then` says what it meant.
    #[error("{failure}; {then}")]
    Hook {
        failure: HookFailure,
        then: &'static str,
    },
    #[error("interrupted {0}: snaprotd is stopping")]
    Interrupted(&'static str),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "server {server} runs again, but its stopped-server record could not be removed ({source}); the next run on it removes it"
    )]
    RecordStays {
        server: u64,
        #[source]
        source: StateError,
    },
    #[error(
        "{first}; and starting server {server} again failed too: {restart} (it stays recorded as stopped and is started again by the next run on it or the next start of snaprotd)"
    )]
    NotRestarted {
        server: u64,
        first: String,
        restart: String,
    },
}

/// What to do about the orphans taking places on `server`, when there are any.
fn orphan_advice(server: u64, orphans: &[String]) -> String {
    if orphans.is_empty() {
        return String::new();
    }
    format!(
        "snaprotd made {} of them for a policy that no longer owns them ({}): delete those with \
         `snaprotd prune --orphans --server {server}`; or ",
        orphans.len(),
        orphans.join(", ")
    )
}

impl RotationError {
    pub(super) fn api(step: &'static str) -> impl FnOnce(ApiError) -> RotationError {
        move |source| RotationError::Api { step, source }
    }
}
