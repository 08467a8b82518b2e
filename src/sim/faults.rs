//! Fault injection: what the simulator does wrong, and to which requests.

use serde::{Deserialize, Serialize};

/// A fault hits the next `times` requests that match `method` and `path` (a prefix of
/// the path after `/api/v1`, query included; both optional).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fault {
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default = "one")]
    pub times: u32,
    #[serde(flatten)]
    pub action: FaultAction,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// Answer with this status (and `Retry-After`) without applying the request.
    Status {
        status: u16,
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// Apply the request, then drop the connection without answering.
    DropAfterApply,
    /// Apply the request, then never answer (the client times out).
    HangAfterApply,
    /// Apply the request and answer 200 with a body that is not JSON.
    Malformed,
    /// Wait this long before handling the request.
    Latency { ms: u64 },
    /// A created snapshot ends as `failed` instead of `completed`.
    SnapshotFails,
    /// A created snapshot stays `in_progress` forever.
    SnapshotNeverCompletes,
    /// A listing shows its last snapshot twice, as offset pagination does when a
    /// snapshot is created while the pages are read (`count` stays true).
    RepeatEntry,
    /// A listing shows its last snapshot twice, the second time with another status
    /// (two reads of a changing list).
    ConflictingEntry,
    /// A listing ignores `?server_id=` and shows every server's snapshots.
    IgnoreServerFilter,
    /// A listing leaves out the snapshots in progress (an eventually consistent index).
    OmitInProgress,
    /// A create is applied, but its answer shows another snapshot of the account.
    AnswerOtherSnapshot,
    /// Answer 200 with a body that never ends.
    EndlessBody,
    /// Answer `status` with this body; `{token}` in it becomes the caller's bearer token
    /// (as error pages that echo the request do).
    Body { status: u16, body: String },
}

impl Fault {
    pub fn new(method: &str, path: &str, action: FaultAction) -> Fault {
        Fault {
            method: Some(method.to_string()),
            path: Some(path.to_string()),
            times: 1,
            action,
        }
    }

    /// Answers `status` (with `Retry-After` seconds, if given) without applying the request.
    pub fn status(method: &str, path: &str, status: u16, retry_after: Option<u64>) -> Fault {
        Fault::new(
            method,
            path,
            FaultAction::Status {
                status,
                retry_after,
            },
        )
    }

    pub fn times(mut self, n: u32) -> Fault {
        self.times = n;
        self
    }

    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.times > 0
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path.as_deref().is_none_or(|p| path.starts_with(p))
    }
}

/// Takes the first pending fault that matches the request, counting it down.
pub fn take(faults: &mut Vec<Fault>, method: &str, path: &str) -> Option<FaultAction> {
    let i = faults.iter().position(|f| f.matches(method, path))?;
    faults[i].times -= 1;
    let action = faults[i].action.clone();
    if faults[i].times == 0 {
        faults.remove(i);
    }
    Some(action)
}
