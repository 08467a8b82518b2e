//! The commands a policy runs around the create of a new snapshot, for application
//! consistency: `pre_snapshot` (a freeze) and `post_snapshot` (a thaw).
//!
//! [`around`] is the one place that orders them: `pre_snapshot`, then the create only
//! if it succeeded, then `post_snapshot` whenever the hooks began — after the create
//! was answered, after it failed, after `pre_snapshot` failed — so that a freeze is
//! always thawed. An existing snapshot that is adopted runs no hook: nothing is frozen
//! for it.
//!
//! A freeze outlives snaprotd when snaprotd ends between the two hooks (a crash,
//! SIGKILL, a power loss): so a record is written before `pre_snapshot` starts
//! (`hooks/<server>.json`) and removed once `post_snapshot` has ended. [`thaw_left`],
//! called before anything else by every job on the server (holding its lock) and
//! before a stopped server is started again, runs the `post_snapshot` of a record
//! left behind with `SNAPROTD_RESULT=interrupted`.
//!
//! A hook is a program by absolute path with its arguments (no shell), stdin from
//! `/dev/null`, a clean environment (`PATH` and the `SNAPROTD_*` variables: nothing of
//! snaprotd's own, where a token may be), in a process group of its own. The whole group
//! is killed at `hook_timeout`, when the interrupt's grace ends (`pre_snapshot` only: a
//! thaw, like starting the server again, still runs after it), and when the job's task
//! is dropped. Its output goes to the job's log line by line, bounded.

use std::future::Future;

use tokio::time::Instant;
use tracing::{error, info, warn};

use super::{Job, Rotation, RotationError, secs};
use crate::config::HookCommand;
use crate::interrupt::Interrupt;
use crate::process::{self, Program};
use crate::state::{HookEntry, HookRecord, StateDir};

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pre,
    Post,
}

impl Phase {
    /// The key that configures it.
    pub fn key(self) -> &'static str {
        match self {
            Phase::Pre => "pre_snapshot",
            Phase::Post => "post_snapshot",
        }
    }

    /// `SNAPROTD_PHASE`.
    fn word(self) -> &'static str {
        match self {
            Phase::Pre => "pre",
            Phase::Post => "post",
        }
    }
}

/// What `post_snapshot` is told of the create (`SNAPROTD_RESULT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The create was answered with a snapshot (it may still be in progress).
    Ok,
    /// No snapshot: the create was refused or failed, or not sent (snaprotd stopping).
    CreateFailed,
    /// No snapshot: `pre_snapshot` failed.
    PreFailed,
    /// Unknown: snaprotd ended (a crash, SIGKILL, a power loss) after `pre_snapshot`
    /// started and before `post_snapshot` ended; the next job on the server thaws.
    Interrupted,
}

impl Created {
    pub fn word(self) -> &'static str {
        match self {
            Created::Ok => "ok",
            Created::CreateFailed => "create-failed",
            Created::PreFailed => "pre-failed",
            Created::Interrupted => "interrupted",
        }
    }
}

/// How a hook that did not succeed ended (`Interrupted`: at the interrupt's end).
pub use crate::process::End as HookEnd;

/// A hook that did not succeed: which, how it ended, and the last line it wrote to
/// stderr.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} `{command}` {}{}", .phase.key(), describe(.end), last_line(.last_stderr))]
pub struct HookFailure {
    pub phase: Phase,
    pub command: String,
    pub end: HookEnd,
    pub last_stderr: Option<String>,
}

fn describe(end: &HookEnd) -> String {
    match end {
        HookEnd::NotStarted(e) => format!("could not be started: {e}"),
        HookEnd::Exited(code) => format!("exited with status {code}"),
        HookEnd::Killed(signal) => format!("was killed by {signal}"),
        HookEnd::TimedOut(after) => format!(
            "did not finish within hook_timeout ({}): it was killed with every process it started",
            humantime::format_duration(*after)
        ),
        HookEnd::Interrupted => {
            "was still running when snaprotd stopped (shutdown_timeout ended): it was killed with every process it started".to_string()
        }
    }
}

fn last_line(line: &Option<String>) -> String {
    match line {
        Some(l) => format!(", last said on stderr: {l:?}"),
        None => String::new(),
    }
}

/// The hooks of one run: the job and the name of the snapshot being made.
pub(super) struct Hooks<'a> {
    pub job: Job<'a>,
    pub snapshot_name: &'a str,
    pub interrupt: &'a Interrupt,
    /// Where the freeze is recorded while it may hold.
    pub state: &'a StateDir,
}

/// What [`around`] came to: the create's result (or `pre_snapshot`'s failure), and
/// `post_snapshot`'s failure when the create succeeded — the run fails for it once the
/// snapshot is waited for.
pub(super) struct Around<T> {
    pub created: Result<T, RotationError>,
    pub post: Result<(), RotationError>,
}

/// Runs `create` between the policy's hooks: `pre_snapshot` first (its failure: no
/// create), then `post_snapshot` whenever the hooks began. Without hooks, only `create`.
pub(super) async fn around<T>(
    hooks: &Hooks<'_>,
    create: impl Future<Output = Result<T, RotationError>>,
) -> Around<T> {
    let config = &hooks.job.policy.hooks;
    if !config.any() {
        return Around {
            created: create.await,
            post: Ok(()),
        };
    }
    if hooks.interrupt.is_set() {
        return Around {
            created: Err(RotationError::Interrupted(
                "before the hooks and the create",
            )),
            post: Ok(()),
        };
    }
    let pre = match &config.pre_snapshot {
        Some(command) => {
            if let Err(failure) = Box::pin(hooks.note_freeze(command)).await {
                return Around {
                    created: Err(RotationError::Hook {
                        failure,
                        then: "no hook ran and no snapshot was made",
                    }),
                    post: Ok(()),
                };
            }
            Box::pin(hooks.run(Phase::Pre, command, None)).await
        }
        None => Ok(()),
    };
    let (created, result) = match pre {
        Ok(()) => {
            let created = create.await;
            let result = match created {
                Ok(_) => Created::Ok,
                Err(_) => Created::CreateFailed,
            };
            (created, result)
        }
        Err(failure) => (
            Err(RotationError::Hook {
                failure,
                then: "no snapshot was made",
            }),
            Created::PreFailed,
        ),
    };
    let post = match &config.post_snapshot {
        Some(command) => Box::pin(hooks.run(Phase::Post, command, Some(result))).await,
        None => Ok(()),
    };
    if config.pre_snapshot.is_some() {
        Box::pin(hooks.forget_freeze()).await;
    }
    let post = post.map_err(|failure| {
        let then = match result {
            Created::Ok => {
                "the snapshot was made and is waited for, but the run fails: what pre_snapshot froze may still be frozen"
            }
            _ => "the run had failed already",
        };
        error!(hook = Phase::Post.key(), "{failure}; {then}");
        RotationError::Hook { failure, then }
    });
    Around {
        created,
        post: if result == Created::Ok { post } else { Ok(()) },
    }
}

/// Before anything else on `server` (its lock held): runs the `post_snapshot` of a
/// freeze that snaprotd ended in (`SNAPROTD_RESULT=interrupted`), then forgets it.
/// A record whose policy is gone or has no `post_snapshot` any more, or that cannot be
/// read, is reported and forgotten: nothing waits for a thaw that cannot come. Returns
/// whether there was a record.
pub(super) async fn thaw_left(rot: &Rotation<'_>, server: u64) -> bool {
    let Some(entry) = rot.state.hooks_left(server).await else {
        return false;
    };
    let r = match entry {
        HookEntry::Record(r) => r,
        HookEntry::Corrupt {
            problem, set_aside, ..
        } => {
            let kept = set_aside.map_or("it was removed".into(), |p| {
                format!("it is set aside as {}", p.display())
            });
            error!(
                server_id = server,
                "the record of a pre_snapshot hook started on server {server} (hooks/{server}.json) \
                 cannot be read ({problem}); {kept}. snaprotd ended before its post_snapshot did, \
                 and cannot tell which post_snapshot to run: the freeze may still hold — check the \
                 server and thaw it by hand"
            );
            return true;
        }
    };
    let what = format!(
        "pre_snapshot of {} for snapshot {} started at {} and snaprotd ended before its \
         post_snapshot did (a crash, SIGKILL or a power loss)",
        r.job,
        r.snapshot_name,
        crate::schedule::shown(r.started_at, chrono_tz::UTC)
    );
    let policy = crate::config::job_policy(rot.policies, &r.job.policy, server);
    match policy.map(|p| (p, p.hooks.post_snapshot.as_ref())) {
        Some((policy, Some(command))) => {
            warn!(
                server_id = server,
                job_id = %r.job,
                snapshot_name = %r.snapshot_name,
                "{what}: running post_snapshot now, with SNAPROTD_RESULT=interrupted"
            );
            let hooks = Hooks {
                job: Job { policy, server },
                snapshot_name: &r.snapshot_name,
                interrupt: rot.interrupt,
                state: rot.state,
            };
            if let Err(failure) = hooks
                .run(Phase::Post, command, Some(Created::Interrupted))
                .await
            {
                error!(
                    hook = Phase::Post.key(),
                    job_id = %r.job,
                    "{failure}; the freeze of {} may still hold",
                    r.job
                );
            }
        }
        found => {
            let why = match found {
                None => format!(
                    "policy {} is no longer configured on server {server}",
                    r.job.policy
                ),
                Some(_) => format!("policy {} has no post_snapshot any more", r.job.policy),
            };
            error!(
                server_id = server,
                job_id = %r.job,
                snapshot_name = %r.snapshot_name,
                "{what}; {why}, so no thaw runs: the freeze of {} may still hold — check the \
                 server and thaw it by hand",
                r.job
            );
        }
    }
    if let Err(e) = rot.state.clear_hooks(server).await {
        error!(
            server_id = server,
            "{e}; the record of the freeze of {} stays, and the next job on server {server} \
             runs its post_snapshot again",
            r.job
        );
    }
    true
}

impl Hooks<'_> {
    /// Records the freeze before `pre_snapshot` starts, so that a thaw still runs if
    /// snaprotd ends before `post_snapshot` has. No hook runs when it cannot be written.
    async fn note_freeze(&self, command: &HookCommand) -> Result<(), HookFailure> {
        let record = HookRecord {
            job: self.job.id(),
            snapshot_name: self.snapshot_name.to_string(),
            started_at: chrono::Utc::now(),
        };
        self.state
            .record_hooks(&record)
            .await
            .map_err(|e| HookFailure {
                phase: Phase::Pre,
                command: command.to_string(),
                end: HookEnd::NotStarted(format!(
                    "its start could not be recorded in the state directory ({e})"
                )),
                last_stderr: None,
            })
    }

    /// `post_snapshot` has ended (or there is none): the freeze is no longer recorded.
    async fn forget_freeze(&self) {
        if let Err(e) = self.state.clear_hooks(self.job.server).await {
            warn!(
                "{e}; the next job on server {} runs post_snapshot again, with \
                 SNAPROTD_RESULT=interrupted",
                self.job.server
            );
        }
    }

    /// Runs one hook to its end, its output in the job's log.
    async fn run(
        &self,
        phase: Phase,
        command: &HookCommand,
        created: Option<Created>,
    ) -> Result<(), HookFailure> {
        let key = phase.key();
        let timeout = self.job.policy.hooks.timeout;
        let fail = |end, last_stderr| HookFailure {
            phase,
            command: command.to_string(),
            end,
            last_stderr,
        };
        match created {
            Some(c) => info!(
                hook = key,
                "running {key} `{command}` (result {})",
                c.word()
            ),
            None => info!(hook = key, "running {key} `{command}`"),
        }
        let started = Instant::now();
        let mut env = vec![
            ("SNAPROTD_POLICY", self.job.policy.name.clone()),
            ("SNAPROTD_SERVER_ID", self.job.server.to_string()),
            ("SNAPROTD_SNAPSHOT_NAME", self.snapshot_name.to_string()),
            ("SNAPROTD_PHASE", phase.word().to_string()),
        ];
        if let Some(c) = created {
            env.push(("SNAPROTD_RESULT", c.word().to_string()));
        }
        let program = Program {
            command,
            env,
            stdin: None,
            timeout,
            label: key,
        };
        // Only pre_snapshot ends with the interrupt's grace: a thaw still runs.
        let cut_short = async {
            match phase {
                Phase::Pre => self.interrupt.grace_over().await,
                Phase::Post => std::future::pending().await,
            }
        };
        match process::run(program, cut_short).await {
            Ok(()) => {
                info!(
                    hook = key,
                    "{key} `{command}` succeeded in {}",
                    secs(started.elapsed())
                );
                Ok(())
            }
            Err(f) => Err(fail(f.end, f.last_stderr)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_failure_says_how_the_hook_ended_and_its_last_stderr_line() {
        let f = HookFailure {
            phase: Phase::Pre,
            command: "/usr/local/bin/freeze --db".into(),
            end: HookEnd::Exited(3),
            last_stderr: Some("cannot lock tables".into()),
        };
        assert_eq!(
            f.to_string(),
            "pre_snapshot `/usr/local/bin/freeze --db` exited with status 3, last said on stderr: \"cannot lock tables\""
        );
        let f = HookFailure {
            end: HookEnd::TimedOut(Duration::from_millis(500)),
            last_stderr: None,
            ..f
        };
        assert!(
            f.to_string()
                .ends_with("did not finish within hook_timeout (500ms): it was killed with every process it started"),
            "{f}"
        );
    }
}
