//! The next fire of every job, ordered by time, so the earliest is always at hand and
//! the daemon needs one alarm for the whole fleet. Pure: the wall-clock time is
//! always handed in.
//!
//! The jobs of a policy share its schedule and zone, so they fire together: the
//! timetable holds one entry per policy, with its servers, not one per job — a few
//! bytes per server for a fleet of ten thousand. A policy that names servers by name,
//! glob or `"all"` has jobs only the provider's server listing can say: when it is
//! due, the daemon takes it from [`Timetable::take_patterned`] and asks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::{Config, Policy};
use crate::job::JobId;

/// A policy's next fire: when, and which policy.
type Fire = (DateTime<Utc>, Arc<str>);

#[derive(Default)]
pub struct Timetable {
    /// Every policy that fires again, at its next fire, with its servers.
    queue: BTreeMap<Fire, Arc<[u64]>>,
    next: HashMap<Arc<str>, DateTime<Utc>>,
    jobs: usize,
    /// Due policies with patterns, with their fire time, until the daemon takes them.
    patterned: Vec<(Arc<str>, DateTime<Utc>)>,
}

impl Timetable {
    /// Every job of `config`, each at its first fire after `now`.
    pub fn new(config: &Config, now: DateTime<Utc>) -> Timetable {
        let mut t = Timetable::default();
        for p in &config.policies {
            if let Some(at) = p.schedule.next_fire(p.timezone, now) {
                t.insert(p, at);
            }
        }
        t
    }

    fn insert(&mut self, p: &Policy, at: DateTime<Utc>) {
        let name: Arc<str> = p.name.as_str().into();
        if let Some(old) = self.next.insert(name.clone(), at)
            && let Some(servers) = self.queue.remove(&(old, name.clone()))
        {
            self.jobs -= servers.len();
        }
        self.jobs += p.servers.len();
        self.queue.insert((at, name), p.servers.as_slice().into());
    }

    pub fn len(&self) -> usize {
        self.jobs
    }

    pub fn is_empty(&self) -> bool {
        self.jobs == 0
    }

    /// The earliest coming fire: when, its policy, and its first job as people read it
    /// (`nightly@12345`, or `nightly@web-*` for a policy that names its servers).
    pub fn earliest(&self, config: &Config) -> Option<(DateTime<Utc>, Arc<str>, String)> {
        let ((at, policy), servers) = self.queue.first_key_value()?;
        let first = match servers.first() {
            Some(s) => s.to_string(),
            None => config
                .policy(policy)
                .and_then(|p| p.patterns.first())
                .map_or_else(String::new, ToString::to_string),
        };
        Some((*at, policy.clone(), format!("{policy}@{first}")))
    }

    /// The policies with patterns that [`Timetable::take_due`] found due, each with the
    /// fire it was due at: their servers are to be asked of the provider.
    pub fn take_patterned(&mut self) -> Vec<(Arc<str>, DateTime<Utc>)> {
        std::mem::take(&mut self.patterned)
    }

    /// Takes every job due at or before `now`, with the fire time it was due at, and
    /// puts each back at its next fire after both that time and `now` — so fires missed
    /// while the machine slept run once, not once per missed fire.
    pub fn take_due(&mut self, config: &Config, now: DateTime<Utc>) -> Vec<(JobId, DateTime<Utc>)> {
        let mut due = Vec::new();
        let mut policies = Vec::new();
        while let Some(((at, _), _)) = self.queue.first_key_value() {
            if *at > now {
                break;
            }
            let Some(((at, policy), servers)) = self.queue.pop_first() else {
                break;
            };
            self.next.remove(&policy);
            self.jobs -= servers.len();
            due.extend(servers.iter().map(|s| (JobId::new(policy.clone(), *s), at)));
            if config.policy(&policy).is_some_and(|p| p.has_patterns()) {
                self.patterned.push((policy.clone(), at));
            }
            policies.push((policy, at));
        }
        for (policy, at) in policies {
            if let Some(p) = config.policy(&policy)
                && let Some(next) = p.schedule.next_fire(p.timezone, at.max(now))
            {
                self.insert(p, next);
            }
        }
        due
    }

    /// After the wall clock jumped: takes every job due by `now` (a forward jump's
    /// missed fires run once, as after a suspend), then computes every job's next fire
    /// again from `now`, so after a backward jump the fires of the new clock come back
    /// instead of waiting for the old clock's next fire.
    pub fn rebuild(&mut self, config: &Config, now: DateTime<Utc>) -> Vec<(JobId, DateTime<Utc>)> {
        let due = self.take_due(config, now);
        let patterned = self.take_patterned();
        *self = Timetable::new(config, now);
        self.patterned = patterned;
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn config(policies: &str) -> Config {
        Config::of_policies(policies)
    }

    const HOURLY: &str =
        "[[policy]]\nname = \"hourly\"\nservers = [1, 2]\nschedule = \"0 * * * *\"\nkeep = 2\n";
    const QUARTER: &str = "[[policy]]\nname = \"quarter\"\nservers = [3]\nschedule = \"*/15 * * * *\"\nkeep = 2\nsnapshot_name = \"{policy}-%Y%m%d-%H%M\"\n";

    fn hourly() -> Config {
        config(HOURLY)
    }

    fn job(server: u64) -> JobId {
        JobId::new("hourly", server)
    }

    /// Every coming fire, in order.
    fn fires(t: &Timetable) -> Vec<(DateTime<Utc>, JobId)> {
        t.queue
            .iter()
            .flat_map(|((at, policy), servers)| {
                servers
                    .iter()
                    .map(|s| (*at, JobId::new(policy.clone(), *s)))
            })
            .collect()
    }

    #[test]
    fn a_policy_naming_its_servers_is_due_like_any_other_and_handed_over_to_be_asked() {
        let config = config(&format!(
            "{HOURLY}[[policy]]\nname = \"web\"\nservers = [\"web-*\", 9]\nschedule = \"30 * * * *\"\nkeep = 2\n\
             [[policy]]\nname = \"all\"\nservers = \"all\"\nschedule = \"45 * * * *\"\nkeep = 2\n"
        ));
        let mut t = Timetable::new(&config, at("2026-11-24T12:40:00Z"));
        // A policy with no server by id still sets the alarm.
        assert_eq!(
            t.earliest(&config),
            Some((at("2026-11-24T12:45:00Z"), "all".into(), "all@all".into()))
        );
        assert!(t.take_due(&config, at("2026-11-24T12:45:00Z")).is_empty());
        assert_eq!(
            t.take_patterned(),
            vec![("all".into(), at("2026-11-24T12:45:00Z"))]
        );
        assert!(t.take_patterned().is_empty(), "handed over once");
        // Its servers listed by id fire from the timetable; the rest is asked.
        let due = t.take_due(&config, at("2026-11-24T13:30:00Z"));
        assert_eq!(due.len(), 3, "{due:?}");
        assert!(due.contains(&(JobId::new("web", 9), at("2026-11-24T13:30:00Z"))));
        assert_eq!(
            t.take_patterned(),
            vec![("web".into(), at("2026-11-24T13:30:00Z"))]
        );
    }

    #[test]
    fn nothing_is_due_before_the_first_fire_and_a_fire_is_due_at_its_instant() {
        let config = hourly();
        let mut t = Timetable::new(&config, at("2026-11-24T12:30:00Z"));
        assert!(
            t.take_due(&config, at("2026-11-24T12:59:59.999Z"))
                .is_empty()
        );
        assert_eq!(t.len(), 2);
        let due = t.take_due(&config, at("2026-11-24T13:00:00Z"));
        assert_eq!(
            due,
            vec![
                (job(1), at("2026-11-24T13:00:00Z")),
                (job(2), at("2026-11-24T13:00:00Z"))
            ]
        );
    }

    #[test]
    fn each_due_job_comes_with_the_fire_it_was_due_at_and_goes_back_at_its_next() {
        let config = config(&format!("{HOURLY}{QUARTER}"));
        let mut t = Timetable::new(&config, at("2026-11-24T12:30:00Z"));
        assert_eq!(
            t.earliest(&config),
            Some((
                at("2026-11-24T12:45:00Z"),
                "quarter".into(),
                "quarter@3".into()
            ))
        );
        let due = t.take_due(&config, at("2026-11-24T12:45:00Z"));
        assert_eq!(
            due,
            vec![(JobId::new("quarter", 3), at("2026-11-24T12:45:00Z"))]
        );
        assert_eq!(
            fires(&t),
            vec![
                (at("2026-11-24T13:00:00Z"), job(1)),
                (at("2026-11-24T13:00:00Z"), job(2)),
                (at("2026-11-24T13:00:00Z"), JobId::new("quarter", 3)),
            ]
        );
        let due = t.take_due(&config, at("2026-11-24T13:00:01Z"));
        assert_eq!(due.len(), 3, "{due:?}");
        assert_eq!(
            fires(&t),
            vec![
                (at("2026-11-24T13:15:00Z"), JobId::new("quarter", 3)),
                (at("2026-11-24T14:00:00Z"), job(1)),
                (at("2026-11-24T14:00:00Z"), job(2)),
            ]
        );
    }

    #[test]
    fn fires_missed_while_asleep_run_once_and_the_next_is_after_the_wake() {
        let config = hourly();
        let mut t = Timetable::new(&config, at("2026-11-24T12:30:00Z"));
        // Six fires passed while the machine slept.
        let due = t.take_due(&config, at("2026-11-24T18:10:00Z"));
        assert_eq!(
            due,
            vec![
                (job(1), at("2026-11-24T13:00:00Z")),
                (job(2), at("2026-11-24T13:00:00Z"))
            ]
        );
        assert_eq!(
            t.earliest(&config).map(|(at, ..)| at),
            Some(at("2026-11-24T19:00:00Z"))
        );
        assert!(t.take_due(&config, at("2026-11-24T18:10:00Z")).is_empty());
    }

    #[test]
    fn a_job_whose_policy_is_gone_is_due_once_and_not_put_back() {
        let both = config(&format!("{HOURLY}{QUARTER}"));
        let mut t = Timetable::new(&both, at("2026-11-24T12:30:00Z"));
        assert_eq!(t.len(), 3);
        let only_hourly = hourly();
        let due = t.take_due(&only_hourly, at("2026-11-24T12:50:00Z"));
        assert_eq!(
            due,
            vec![(JobId::new("quarter", 3), at("2026-11-24T12:45:00Z"))]
        );
        assert_eq!(t.len(), 2);
        assert!(fires(&t).iter().all(|(_, j)| &*j.policy == "hourly"));
    }

    #[test]
    fn a_clock_set_back_brings_the_fires_of_the_new_clock_back() {
        let config = hourly();
        // Built while the clock said 12:30; NTP then sets it back to 09:30.
        let mut t = Timetable::new(&config, at("2026-11-24T12:30:00Z"));
        assert_eq!(
            t.earliest(&config).map(|(at, ..)| at),
            Some(at("2026-11-24T13:00:00Z"))
        );
        assert!(t.take_due(&config, at("2026-11-24T09:30:00Z")).is_empty());

        let due = t.rebuild(&config, at("2026-11-24T09:30:00Z"));
        assert!(due.is_empty(), "{due:?}");
        assert_eq!(
            fires(&t),
            vec![
                (at("2026-11-24T10:00:00Z"), job(1)),
                (at("2026-11-24T10:00:00Z"), job(2))
            ]
        );
    }

    #[test]
    fn a_clock_set_forward_runs_the_missed_fires_once_and_goes_on_from_the_new_clock() {
        let config = hourly();
        let mut t = Timetable::new(&config, at("2026-11-24T12:30:00Z"));
        let mut due = t.rebuild(&config, at("2026-11-24T15:30:00Z"));
        due.sort();
        assert_eq!(
            due,
            vec![
                (job(1), at("2026-11-24T13:00:00Z")),
                (job(2), at("2026-11-24T13:00:00Z"))
            ]
        );
        assert_eq!(
            t.earliest(&config).map(|(at, ..)| at),
            Some(at("2026-11-24T16:00:00Z"))
        );
        assert_eq!(t.len(), 2);
    }
}
