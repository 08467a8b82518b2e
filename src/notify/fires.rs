//! A policy's `ping_url` is one check for the whole policy, while a fire of the policy
//! runs a job per server: the pings of a fire make one run of that check. `/start` goes
//! when the fire's first job starts; `/fail` when any of its jobs fails; a success only
//! while none of its jobs has failed, so a later job's success never hides an earlier
//! one's failure. Only the latest fire of each policy is remembered.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::Ping;

/// The latest fire of each policy with a ping target, and whether a job of it failed.
#[derive(Debug, Default)]
pub(super) struct Fires {
    latest: HashMap<String, Fire>,
}

#[derive(Debug, Clone, Copy)]
struct Fire {
    at: DateTime<Utc>,
    failed: bool,
}

impl Fires {
    /// A job of `policy`'s fire at `at` started (`Ping::Start`), succeeded
    /// (`Ping::Success`) or failed (`Ping::Fail`): the ping that tells the policy's
    /// target, if any.
    ///
    /// A job of an earlier fire that ends while a later one runs (it waited for its
    /// server) says nothing on success; its failure is sent, and counts against the
    /// later fire too, whose successes then send nothing.
    pub fn step(&mut self, policy: &str, at: DateTime<Utc>, step: Ping) -> Option<Ping> {
        let Some(fire) = self.latest.get_mut(policy) else {
            return self.begin(policy, at, step);
        };
        if at > fire.at {
            return self.begin(policy, at, step);
        }
        match step {
            Ping::Start => None,
            Ping::Fail => {
                fire.failed = true;
                Some(Ping::Fail)
            }
            Ping::Success => (at == fire.at && !fire.failed).then_some(Ping::Success),
        }
    }

    /// The first news of a fire: it becomes the policy's latest.
    fn begin(&mut self, policy: &str, at: DateTime<Utc>, step: Ping) -> Option<Ping> {
        let failed = step == Ping::Fail;
        self.latest.insert(policy.to_string(), Fire { at, failed });
        Some(step)
    }

    /// Forgets the policies `keep` says no (gone from the configuration, or without a
    /// `ping_url` now).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.latest.retain(|policy, _| keep(policy));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.latest.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ping::*;

    fn at(minute: u32) -> DateTime<Utc> {
        format!("2026-11-24T02:{minute:02}:00Z").parse().unwrap()
    }

    /// The pings of `steps`, each a job's step of the policy "p".
    fn pings(fires: &mut Fires, steps: &[(u32, Ping)]) -> Vec<Option<Ping>> {
        steps
            .iter()
            .map(|&(minute, step)| fires.step("p", at(minute), step))
            .collect()
    }

    #[test]
    fn a_fire_starts_once_and_its_jobs_succeed_together() {
        let mut f = Fires::default();
        let got = pings(
            &mut f,
            &[(0, Start), (0, Start), (0, Success), (0, Success)],
        );
        assert_eq!(got, [Some(Start), None, Some(Success), Some(Success)]);
    }

    #[test]
    fn a_failure_is_the_last_word_of_its_fire_in_either_order() {
        let mut f = Fires::default();
        let got = pings(&mut f, &[(0, Start), (0, Fail), (0, Start), (0, Success)]);
        assert_eq!(got, [Some(Start), Some(Fail), None, None]);
        let got = pings(
            &mut f,
            &[
                (1, Start),
                (1, Start),
                (1, Success),
                (1, Fail),
                (1, Success),
            ],
        );
        assert_eq!(got, [Some(Start), None, Some(Success), Some(Fail), None]);
        // Every failure is sent.
        assert_eq!(pings(&mut f, &[(1, Fail)]), [Some(Fail)]);
        // The next fire is a new run.
        let got = pings(&mut f, &[(2, Start), (2, Success)]);
        assert_eq!(got, [Some(Start), Some(Success)]);
    }

    #[test]
    fn a_fire_heard_of_first_at_its_end_is_a_run_of_its_own() {
        let mut f = Fires::default();
        assert_eq!(
            pings(&mut f, &[(0, Fail), (0, Success)]),
            [Some(Fail), None]
        );
        assert_eq!(pings(&mut f, &[(1, Success)]), [Some(Success)]);
    }

    #[test]
    fn an_earlier_fire_ending_late_starts_nothing_and_its_failure_holds() {
        let mut f = Fires::default();
        let got = pings(
            &mut f,
            &[
                (0, Start),
                (1, Start),
                (0, Success),
                (0, Start),
                (0, Fail),
                (1, Success),
            ],
        );
        assert_eq!(
            got,
            [Some(Start), Some(Start), None, None, Some(Fail), None]
        );
    }

    #[test]
    fn only_the_latest_fire_of_each_policy_is_kept() {
        let mut f = Fires::default();
        for minute in 0..50 {
            f.step("p", at(minute), Start);
            f.step("q", at(minute), Fail);
        }
        assert_eq!(f.len(), 2);
        f.retain(|p| p == "q");
        assert_eq!(f.len(), 1);
        assert_eq!(f.step("q", at(49), Success), None);
    }
}
