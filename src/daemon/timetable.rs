//! The next fire of every job, ordered by time, so the earliest is always at hand and
//! the daemon needs one alarm for the whole fleet.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::config::Config;

/// A job: one policy on one server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    pub policy: String,
    pub server: u64,
}

impl JobKey {
    pub fn id(&self) -> String {
        crate::rotation::job_id(&self.policy, self.server)
    }
}

#[derive(Default)]
pub struct Timetable {
    /// (fire time, job) for every job that fires again.
    queue: BTreeSet<(DateTime<Utc>, JobKey)>,
    next: HashMap<JobKey, DateTime<Utc>>,
}

impl Timetable {
    /// Every job of `config`, each at its first fire after `now`.
    pub fn new(config: &Config, now: DateTime<Utc>) -> Timetable {
        let mut t = Timetable::default();
        for p in &config.policies {
            if let Some(at) = p.schedule.next_fire(p.timezone, now) {
                for s in &p.servers {
                    t.insert(
                        JobKey {
                            policy: p.name.clone(),
                            server: *s,
                        },
                        at,
                    );
                }
            }
        }
        t
    }

    fn insert(&mut self, job: JobKey, at: DateTime<Utc>) {
        if let Some(old) = self.next.insert(job.clone(), at) {
            self.queue.remove(&(old, job.clone()));
        }
        self.queue.insert((at, job));
    }

    pub fn len(&self) -> usize {
        self.next.len()
    }

    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }

    /// The earliest coming fire.
    pub fn earliest(&self) -> Option<(DateTime<Utc>, &JobKey)> {
        self.queue.first().map(|(at, job)| (*at, job))
    }

    pub fn next_fire_of(&self, job: &JobKey) -> Option<DateTime<Utc>> {
        self.next.get(job).copied()
    }

    /// Takes every job due at or before `now`, with the fire time it was due at, and
    /// puts each back at its next fire after both that time and `now` — so fires missed
    /// while the machine slept run once, not once per missed fire.
    pub fn take_due(
        &mut self,
        config: &Config,
        now: DateTime<Utc>,
    ) -> Vec<(JobKey, DateTime<Utc>)> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.queue.first() {
            if *at > now {
                break;
            }
            let Some((at, job)) = self.queue.pop_first() else {
                break;
            };
            self.next.remove(&job);
            due.push((job, at));
        }
        for (job, at) in &due {
            if let Some(p) = config.policy(&job.policy)
                && let Some(next) = p.schedule.next_fire(p.timezone, (*at).max(now))
            {
                self.insert(job.clone(), next);
            }
        }
        due
    }
}
