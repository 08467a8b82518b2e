//! The servers of policies that name them by name, glob or `"all"`: one listing of the
//! account's servers (`GET /servers/`) for all the policies firing together, read
//! again at every fire, so a server created since is picked up without a reload and
//! one deleted or renamed is dropped. A server the patterns matched is held to the
//! rules `check` holds ids to (the policies covering it keep no more than the cap, and
//! their names stay apart); one that breaks them gets no job.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::{error, info, warn};

use super::Runner;
use crate::config::{Config, Policy};
use crate::job::JobId;
use crate::provider::{ApiError, Client, Server, ServerListing};

/// What the server listing says of some policies.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The jobs of the policies asked, on the servers they list by id and those their
    /// patterns match.
    pub jobs: Vec<JobId>,
    /// Servers a policy's patterns matched but that get no job of it, and why.
    pub refused: Vec<Refused>,
    /// Patterns that match no server, with their policy.
    pub unmatched: Vec<(Arc<str>, String)>,
}

/// A server a policy's patterns matched, refused: the policies covering it could not
/// share it (their keep past the cap, their names alike).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refused {
    pub server: u64,
    pub name: String,
    pub policy: Arc<str>,
    pub why: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "server {} ({}) matches the servers of policy {} but gets no job of it: {}; narrow the patterns or lower keep",
            self.server, self.name, self.policy, self.why
        )
    }
}

/// The jobs of the policies named `wanted` (those of `config`), given the account's
/// servers `listing`. Pure.
pub fn resolve(config: &Config, wanted: &[Arc<str>], listing: &[Server]) -> Resolved {
    let mut out = Resolved::default();
    let mut refused = BTreeMap::new();
    for name in wanted {
        let Some(p) = config.policy(name) else {
            continue;
        };
        let mut servers: BTreeSet<u64> = p.servers.iter().copied().collect();
        for pattern in &p.patterns {
            let mut any = false;
            for s in listing.iter().filter(|s| pattern.matches(server_name(s))) {
                any = true;
                servers.insert(s.id);
            }
            if !any {
                out.unmatched.push((name.clone(), pattern.to_string()));
            }
        }
        for s in listing {
            if !servers.contains(&s.id) || p.servers.contains(&s.id) {
                continue;
            }
            let why = refused
                .entry(s.id)
                .or_insert_with(|| conflicts(config, s))
                .clone();
            if let Some(why) = why {
                out.refused.push(Refused {
                    server: s.id,
                    name: server_name(s).to_string(),
                    policy: name.clone(),
                    why,
                });
                servers.remove(&s.id);
            }
        }
        out.jobs
            .extend(servers.into_iter().map(|s| JobId::new(name.clone(), s)));
    }
    out
}

/// A server's name; one without a name matches only `"all"`.
fn server_name(s: &Server) -> &str {
    s.name.as_deref().unwrap_or("")
}

/// Why the policies covering `server` cannot share it, if they cannot.
fn conflicts(config: &Config, server: &Server) -> Option<String> {
    let covering: Vec<&Policy> = config
        .policies
        .iter()
        .filter(|p| p.covers(server.id, server_name(server)))
        .collect();
    let found = config.conflicts_on(server.id, &covering);
    (!found.is_empty()).then(|| found.join("; "))
}

/// Lists the account's servers and gives what they make of the policies `wanted`,
/// saying which servers are refused and which patterns match nothing.
pub async fn ask(
    client: &Client,
    config: &Config,
    wanted: &[Arc<str>],
) -> Result<(Resolved, ServerListing), ApiError> {
    let listing = client.list_servers().await?;
    let resolved = resolve(config, wanted, &listing.servers);
    for r in &resolved.refused {
        error!(server_id = r.server, policy = %r.policy, "{r}");
    }
    for (policy, pattern) in &resolved.unmatched {
        warn!(
            policy = %policy,
            "{pattern:?} in the servers of policy {policy} matches no server of the account"
        );
    }
    Ok((resolved, listing))
}

impl Runner {
    /// Lists the account's servers once and gives the jobs of the policies `wanted`,
    /// saying what each pattern matched that it did not before, and what no longer
    /// matches, when `remember` (the daemon: the state directory's known jobs are the
    /// fleet it saw last; `status` and the metrics read them).
    pub async fn fleet(
        &self,
        wanted: &[Arc<str>],
        remember: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<JobId>, ApiError> {
        let (resolved, listing) = ask(&self.client, &self.config, wanted).await?;
        if remember {
            let _one = self.fleet_lock.lock().await;
            let names: BTreeMap<u64, &str> = listing
                .servers
                .iter()
                .map(|s| (s.id, server_name(s)))
                .collect();
            let mut known = self.state.known_jobs().await;
            let mut changed = false;
            let mut added: Vec<&JobId> = Vec::new();
            for job in &resolved.jobs {
                if !known.contains_key(job) {
                    known.insert(job.clone(), now);
                    changed = true;
                    if self
                        .config
                        .policy(&job.policy)
                        .is_some_and(|p| !p.servers.contains(&job.server))
                    {
                        added.push(job);
                    }
                }
            }
            let now_jobs: BTreeSet<&JobId> = resolved.jobs.iter().collect();
            let gone: Vec<JobId> = known
                .keys()
                .filter(|j| wanted.contains(&j.policy) && !now_jobs.contains(j))
                .cloned()
                .collect();
            let mut dropped = Vec::new();
            for job in gone {
                let refused = resolved
                    .refused
                    .iter()
                    .any(|r| r.server == job.server && r.policy == job.policy);
                // A listing that came short proves nothing gone.
                if !listing.complete && !refused {
                    continue;
                }
                known.remove(&job);
                changed = true;
                if !refused {
                    dropped.push(job);
                }
            }
            self.say_changes(&added, &dropped, &names);
            if changed && let Err(e) = self.state.record_known_jobs(&known).await {
                warn!("cannot record the known jobs: {e}");
            }
        }
        Ok(resolved.jobs)
    }
}

impl Runner {
    /// Logs the jobs a listing added and dropped: each on its own line, or, when a
    /// policy gained or lost many at once (the first listing of `"all"`), one line.
    fn say_changes(&self, added: &[&JobId], dropped: &[JobId], names: &BTreeMap<u64, &str>) {
        const EACH: usize = 5;
        for p in &self.config.policies {
            let written = p.servers_written().join(", ");
            let mine: Vec<&JobId> = added
                .iter()
                .copied()
                .filter(|j| *j.policy == p.name)
                .collect();
            let named =
                |j: &JobId| format!("{} ({})", j.server, names.get(&j.server).unwrap_or(&""));
            if mine.len() > EACH {
                let some: Vec<String> = mine[..EACH].iter().map(|j| named(j)).collect();
                info!(
                    policy = %p.name,
                    "{} servers match the servers of policy {} ({written}): {} and {} more; their jobs are added",
                    mine.len(),
                    p.name,
                    some.join(", "),
                    mine.len() - EACH
                );
            } else {
                for job in mine {
                    info!(
                        policy = %job.policy,
                        server_id = job.server,
                        job_id = %job,
                        "server {} matches the servers of policy {} ({written}); job {job} added",
                        named(job),
                        job.policy
                    );
                }
            }
            let gone: Vec<&JobId> = dropped.iter().filter(|j| *j.policy == p.name).collect();
            if gone.len() > EACH {
                let some: Vec<String> = gone[..EACH].iter().map(|j| j.server.to_string()).collect();
                warn!(
                    policy = %p.name,
                    "{} servers no longer match the servers of policy {} ({written}): {} and {} more; their jobs are dropped, their snapshots stay",
                    gone.len(),
                    p.name,
                    some.join(", "),
                    gone.len() - EACH
                );
            } else {
                for job in gone {
                    warn!(
                        policy = %job.policy,
                        server_id = job.server,
                        job_id = %job,
                        "server {} no longer matches the servers of policy {} ({written}); job {job} dropped, its snapshots stay",
                        job.server,
                        job.policy
                    );
                }
            }
        }
    }
}

/// The jobs of `config` to show and count: those of servers listed by id, and those
/// the daemon found for patterns at their last fire (`known`).
pub fn known_jobs(config: &Config, known: &BTreeMap<JobId, DateTime<Utc>>) -> Vec<JobId> {
    let mut jobs: BTreeSet<JobId> = config.policies.iter().flat_map(Policy::jobs).collect();
    jobs.extend(
        known
            .keys()
            .filter(|j| config.policy(&j.policy).is_some_and(Policy::has_patterns))
            .cloned(),
    );
    let order: BTreeMap<&str, usize> = config
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    let mut jobs: Vec<JobId> = jobs.into_iter().collect();
    jobs.sort_by_key(|j| (order.get(&*j.policy).copied(), j.server));
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ServerStatus;

    fn config(policies: &str) -> Config {
        Config::of_policies(policies)
    }

    fn server(id: u64, name: &str) -> Server {
        Server {
            id,
            name: Some(name.into()),
            status: ServerStatus::Running,
        }
    }

    fn jobs(r: &Resolved) -> Vec<String> {
        r.jobs.iter().map(ToString::to_string).collect()
    }

    const WEB: &str = "[[policy]]\nname = \"web\"\nservers = [7, \"web-*\", \"db-01\"]\nschedule = \"@daily\"\nkeep = 2\n";

    #[test]
    fn ids_names_and_globs_become_jobs_and_a_pattern_that_matches_nothing_is_named() {
        let c = config(WEB);
        let listing = [
            server(1, "web-1"),
            server(2, "db-01"),
            server(3, "db-02"),
            server(4, "web-2"),
        ];
        let r = resolve(&c, &["web".into()], &listing);
        assert_eq!(jobs(&r), ["web@1", "web@2", "web@4", "web@7"]);
        assert!(r.refused.is_empty() && r.unmatched.is_empty(), "{r:?}");
        let r = resolve(&c, &["web".into()], &[server(3, "db-02")]);
        assert_eq!(jobs(&r), ["web@7"]);
        assert_eq!(
            r.unmatched,
            [
                ("web".into(), "web-*".into()),
                ("web".into(), "db-01".into())
            ]
        );
    }

    #[test]
    fn all_covers_every_server_even_one_without_a_name() {
        let c = config(
            "[[policy]]\nname = \"all\"\nservers = \"all\"\nschedule = \"@daily\"\nkeep = 2\n",
        );
        let nameless = Server {
            id: 9,
            name: None,
            status: ServerStatus::Running,
        };
        let r = resolve(&c, &["all".into()], &[server(1, "a"), nameless]);
        assert_eq!(jobs(&r), ["all@1", "all@9"]);
    }

    #[test]
    fn a_server_two_policies_cover_beyond_the_cap_gets_no_job() {
        let c = config(&format!(
            "{WEB}[[policy]]\nname = \"every\"\nservers = \"all\"\nschedule = \"@daily\"\nkeep = 4\n"
        ));
        let listing = [server(1, "web-1"), server(5, "mail")];
        let r = resolve(&c, &["web".into(), "every".into()], &listing);
        assert_eq!(jobs(&r), ["web@7", "every@5"]);
        let refused: Vec<(u64, &str)> = r.refused.iter().map(|r| (r.server, &*r.policy)).collect();
        assert_eq!(refused, [(1, "web"), (1, "every")], "{r:?}");
        assert!(r.refused[0].why.contains("would need 6 snapshots"), "{r:?}");
        assert!(
            r.refused[0].to_string().starts_with(
                "server 1 (web-1) matches the servers of policy web but gets no job of it: server 1 would need 6"
            ),
            "{}",
            r.refused[0]
        );
    }

    #[test]
    fn the_jobs_shown_are_those_by_id_and_those_found_for_patterns() {
        let c = config(&format!(
            "{WEB}[[policy]]\nname = \"ids\"\nservers = [3]\nschedule = \"@daily\"\nkeep = 2\n"
        ));
        let t = Utc::now();
        let known = BTreeMap::from([
            (JobId::new("web", 4), t),
            (JobId::new("ids", 8), t),
            (JobId::new("gone", 1), t),
        ]);
        let shown: Vec<String> = known_jobs(&c, &known)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["web@4", "web@7", "ids@3"]);
    }
}
