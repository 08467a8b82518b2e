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
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ask {
    /// The policy is due at this fire: every job runs.
    Fire(DateTime<Utc>),
    /// Start-up: a job whose last fire (`previous`) passed while snaprotd was down
    /// runs once now (unless it is among `resumed`, whose cut-short run carries on);
    /// the others are only remembered.
    CatchUp {
        previous: DateTime<Utc>,
        resumed: Arc<[JobId]>,
    },
    /// Start-up or reload: the jobs are remembered (for `status` and the metrics).
    Remember,
}

/// The jobs a listing gave, with the fire each runs for, and how many jobs each
/// policy has now; or, when the configuration was reloaded while the servers were
/// listed, what to ask again under the new one.
pub(super) struct Found {
    pub fire: Vec<(JobId, DateTime<Utc>)>,
    pub counts: Vec<(Arc<str>, usize)>,
    /// The configuration the listing was read for (`Daemon::generation`).
    pub generation: u64,
    pub asks: Vec<(Arc<str>, Ask)>,
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
        let generation = self.generation;
        tokio::spawn(async move {
            let wanted: Vec<Arc<str>> = asks.iter().map(|(p, _)| p.clone()).collect();
            let now = Utc::now();
            let jobs = match runner.fleet(&wanted, true, now).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    let names: Vec<&str> = wanted.iter().map(|p| &**p).collect();
                    let error = format!(
                        "cannot list the account's servers for policy {}: {e}; the servers it names by name or glob get no snapshot this time",
                        names.join(", ")
                    );
                    error!("{error}");
                    // Told like a failed run: a ping_url's check and the webhook do
                    // not stay green while a fleet gets no snapshot.
                    for (policy, ask) in &asks {
                        if let Ask::Fire(at) = ask {
                            runner.notify_unlisted(policy, *at, &error);
                        }
                    }
                    return;
                }
            };
            // Read after the listing remembered the jobs it found (a new one: now).
            let known = runner.state.known_jobs().await;
            let mut found = Found {
                fire: Vec::new(),
                counts: Vec::new(),
                generation,
                asks: asks.clone(),
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
                    match ask {
                        Ask::Fire(at) => found.fire.push((job.clone(), *at)),
                        Ask::CatchUp { resumed, .. } if resumed.contains(job) => {}
                        &Ask::CatchUp { previous, .. } => {
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
    /// An answer read for a configuration since reloaded is not acted on (a server it
    /// found may be one the new patterns leave out): the servers are asked again, for
    /// the policies that still name theirs.
    pub(super) fn on_fleet(&mut self, found: Found) {
        if found.generation != self.generation {
            let config = self.runner.config.clone();
            let again: Vec<(Arc<str>, Ask)> = found
                .asks
                .into_iter()
                .filter(|(p, _)| config.policy(p).is_some_and(|p| p.has_patterns()))
                .collect();
            tracing::info!(
                "the configuration was reloaded while the servers were listed; asking again for {} policy(ies)",
                again.len()
            );
            self.ask_fleet(again);
            return;
        }
        for (policy, count) in found.counts {
            self.patterned_jobs.insert(policy, count);
        }
        for (job, at) in found.fire {
            self.fire(job, at);
        }
        crate::systemd::status(&self.status_line());
    }
}
