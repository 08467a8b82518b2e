//! The daemon's side of policies that name servers by name, glob or `"all"`: when such
//! policies are due (or at start-up and after a reload), one task lists the account's
//! servers for all of them together and hands the loop the jobs to fire
//! (`runner/fleet.rs`). The loop never waits for the provider.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::error;

use super::Daemon;
use super::start::missed;
use crate::job::JobId;

/// What a policy's jobs found by the listing are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ask {
    /// The policy is due at this fire: every job runs.
    Fire(DateTime<Utc>),
    /// Start-up: a job whose last fire (`previous`) passed while snaprotd was down
    /// runs once now; the others are only remembered.
    CatchUp { previous: DateTime<Utc> },
    /// Start-up or reload: the jobs are remembered (for `status` and the metrics).
    Remember,
}

/// The jobs a listing gave, with the fire each runs for, and how many jobs each
/// policy has now.
pub(super) struct Found {
    pub fire: Vec<(JobId, DateTime<Utc>)>,
    pub counts: Vec<(Arc<str>, usize)>,
}

impl Daemon {
    /// Lists the account's servers in a task of its own for the policies of `asks`,
    /// and sends the loop what to fire. The jobs of servers a policy lists by id are
    /// not among them: the timetable fires those, listing or not.
    pub(super) fn ask_fleet(&self, asks: Vec<(Arc<str>, Ask)>) {
        if asks.is_empty() {
            return;
        }
        let runner = self.runner.clone();
        let tx = self.fleet_tx.clone();
        tokio::spawn(async move {
            let wanted: Vec<Arc<str>> = asks.iter().map(|(p, _)| p.clone()).collect();
            let now = Utc::now();
            let jobs = match runner.fleet(&wanted, true, now).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    let names: Vec<&str> = wanted.iter().map(|p| &**p).collect();
                    error!(
                        "cannot list the account's servers for policy {}: {e}; the servers it names by name or glob get no snapshot this time",
                        names.join(", ")
                    );
                    return;
                }
            };
            // Read after the listing remembered the jobs it found (a new one: now).
            let known = runner.state.known_jobs().await;
            let mut found = Found {
                fire: Vec::new(),
                counts: Vec::new(),
            };
            for (policy, ask) in &asks {
                let Some(p) = runner.config.policy(policy) else {
                    continue;
                };
                // Those of servers listed by id are the timetable's.
                let matched: Vec<&JobId> = jobs
                    .iter()
                    .filter(|j| j.policy == *policy && !p.servers.contains(&j.server))
                    .collect();
                found.counts.push((policy.clone(), matched.len()));
                for job in matched {
                    match *ask {
                        Ask::Fire(at) => found.fire.push((job.clone(), at)),
                        Ask::CatchUp { previous } => {
                            let since = known.get(job).copied();
                            if missed(&runner.state, job, previous, since, p.timezone).await {
                                found.fire.push((job.clone(), now));
                            }
                        }
                        Ask::Remember => {}
                    }
                }
            }
            let _ = tx.send(found);
        });
    }

    /// A listing's answer: its jobs fire, and the count of jobs is brought up to date.
    pub(super) fn on_fleet(&mut self, found: Found) {
        for (policy, count) in found.counts {
            self.patterned_jobs.insert(policy, count);
        }
        for (job, at) in found.fire {
            self.fire(job, at);
        }
        crate::systemd::status(&self.status_line());
    }
}
