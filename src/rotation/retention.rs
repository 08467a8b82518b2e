//! The retention rule, pure, in one place: which snapshots a policy's `keep` holds.
//! Pruning, making room (`plan.rs`) and `snaprotd coverage` all apply it, so they
//! cannot disagree.
//!
//! The semantics are restic's `forget --keep-*` as restic 0.14–0.16 apply them: the
//! snapshots are taken newest first; each tier with a count left keeps a snapshot whose
//! period (its hour, day, ISO week, month or year in the policy's time zone; for `last`
//! each snapshot is a period of its own) differs from the period of the last snapshot
//! that tier kept, and its count goes down by one. A snapshot kept by several tiers
//! counts once. So a tier keeps the newest snapshot of each of its N most recent
//! periods that hold one, and a tier with fewer periods than N keeps nothing extra.

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::config::{Keep, Tier};

/// A tier that keeps a snapshot, and the period it keeps it for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    pub tier: Tier,
    /// "2026-11-24" (daily), "2026-11-24 14h" (hourly), "2026-W48" (weekly), "2026-11"
    /// (monthly), "2026" (yearly), "#2" (last: the second newest).
    pub period: String,
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.tier.key(), self.period)
    }
}

/// The tiers keeping a snapshot, in `keep`'s order: "last #1, daily 2026-11-24".
pub fn kept_by(held: &[Held]) -> String {
    held.iter()
        .map(Held::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The period of `tier` that `t` falls in: a value that differs between periods.
/// `index` is the snapshot's place (newest first), `last`'s period.
fn period(tier: Tier, t: &DateTime<Tz>, index: usize) -> i64 {
    let (y, m, d, h) = (
        i64::from(t.year()),
        i64::from(t.month()),
        i64::from(t.day()),
        i64::from(t.hour()),
    );
    match tier {
        Tier::Last => index as i64,
        Tier::Hourly => ((y * 100 + m) * 100 + d) * 100 + h,
        Tier::Daily => (y * 100 + m) * 100 + d,
        Tier::Weekly => {
            let w = t.iso_week();
            i64::from(w.year()) * 100 + i64::from(w.week())
        }
        Tier::Monthly => y * 100 + m,
        Tier::Yearly => y,
    }
}

/// The period's name, for a snapshot a tier keeps.
fn label(tier: Tier, t: &DateTime<Tz>, index: usize) -> String {
    match tier {
        Tier::Last => format!("#{}", index + 1),
        Tier::Hourly => t.format("%Y-%m-%d %Hh").to_string(),
        Tier::Daily => t.format("%Y-%m-%d").to_string(),
        Tier::Weekly => {
            let w = t.iso_week();
            format!("{}-W{:02}", w.year(), w.week())
        }
        Tier::Monthly => t.format("%Y-%m").to_string(),
        Tier::Yearly => t.format("%Y").to_string(),
    }
}

/// For each of `newest_first` (snapshot times, newest first: the order given is the
/// order applied, so a caller that must keep one puts it first), the tiers that keep
/// it; empty: it goes.
pub fn apply(keep: &Keep, zone: Tz, newest_first: &[DateTime<Utc>]) -> Vec<Vec<Held>> {
    struct Bucket {
        tier: Tier,
        left: usize,
        last: Option<i64>,
    }
    let mut buckets: Vec<Bucket> = keep
        .used()
        .map(|(tier, left)| Bucket {
            tier,
            left,
            last: None,
        })
        .collect();
    newest_first
        .iter()
        .enumerate()
        .map(|(i, at)| {
            let local = at.with_timezone(&zone);
            let mut held = Vec::new();
            for b in buckets.iter_mut().filter(|b| b.left > 0) {
                let value = period(b.tier, &local, i);
                if b.last != Some(value) {
                    b.last = Some(value);
                    b.left -= 1;
                    held.push(Held {
                        tier: b.tier,
                        period: label(b.tier, &local, i),
                    });
                }
            }
            held
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    fn kept(keep: &Keep, zone: Tz, times: &[DateTime<Utc>]) -> Vec<usize> {
        apply(keep, zone, times)
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.is_empty())
            .map(|(i, _)| i)
            .collect()
    }

    fn tiers(list: &[(Tier, usize)]) -> Keep {
        Keep::tiers(list.iter().copied()).unwrap()
    }

    #[test]
    fn keep_n_keeps_the_n_newest() {
        let times: Vec<_> = (1..=5).rev().map(|d| utc(2026, 1, d, 2)).collect();
        assert_eq!(kept(&Keep::newest(3), Tz::UTC, &times), [0, 1, 2]);
        let held = apply(&Keep::newest(3), Tz::UTC, &times);
        assert_eq!(kept_by(&held[1]), "last #2");
    }

    #[test]
    fn daily_keeps_the_newest_of_each_of_the_n_most_recent_days() {
        // Two a day on Jan 5, 4 and 3.
        let times = [
            utc(2026, 1, 5, 14),
            utc(2026, 1, 5, 2),
            utc(2026, 1, 4, 14),
            utc(2026, 1, 4, 2),
            utc(2026, 1, 3, 14),
        ];
        let keep = tiers(&[(Tier::Daily, 2)]);
        assert_eq!(kept(&keep, Tz::UTC, &times), [0, 2]);
        assert_eq!(
            kept_by(&apply(&keep, Tz::UTC, &times)[2]),
            "daily 2026-01-04"
        );
    }

    #[test]
    fn a_tier_with_fewer_periods_than_its_count_keeps_nothing_extra() {
        let times = [utc(2026, 1, 5, 14), utc(2026, 1, 5, 2), utc(2026, 1, 5, 1)];
        assert_eq!(kept(&tiers(&[(Tier::Daily, 3)]), Tz::UTC, &times), [0]);
    }

    #[test]
    fn a_snapshot_kept_by_several_tiers_counts_once_and_says_each() {
        // Sunday Jan 4 2026 ends ISO week 1; Jan 5 starts week 2.
        let times = [utc(2026, 1, 5, 2), utc(2026, 1, 4, 2), utc(2026, 1, 3, 2)];
        let keep = tiers(&[(Tier::Daily, 2), (Tier::Weekly, 2)]);
        let held = apply(&keep, Tz::UTC, &times);
        assert_eq!(kept_by(&held[0]), "daily 2026-01-05, weekly 2026-W02");
        assert_eq!(kept_by(&held[1]), "daily 2026-01-04, weekly 2026-W01");
        assert!(held[2].is_empty());
    }

    #[test]
    fn periods_are_read_in_the_policys_zone() {
        // 23:30 UTC on Jan 4 is already Jan 5 in Berlin: one day there, two in UTC.
        let times = [utc(2026, 1, 5, 1), utc(2026, 1, 4, 23)];
        let keep = tiers(&[(Tier::Daily, 2)]);
        assert_eq!(kept(&keep, Tz::UTC, &times), [0, 1]);
        assert_eq!(kept(&keep, chrono_tz::Europe::Berlin, &times), [0]);
    }

    #[test]
    fn iso_week_53_and_the_year_it_belongs_to() {
        // 2026-12-31 (Thursday) and 2027-01-01 (Friday) are both in 2026-W53.
        let times = [
            utc(2027, 1, 1, 12),
            utc(2026, 12, 31, 12),
            utc(2026, 12, 27, 12),
        ];
        let keep = tiers(&[(Tier::Weekly, 3)]);
        let held = apply(&keep, Tz::UTC, &times);
        assert_eq!(kept_by(&held[0]), "weekly 2026-W53");
        assert!(held[1].is_empty());
        assert_eq!(kept_by(&held[2]), "weekly 2026-W52");
    }

    #[test]
    fn monthly_and_yearly_keep_the_newest_of_their_period() {
        let times = [
            utc(2027, 1, 2, 0),
            utc(2026, 12, 30, 0),
            utc(2026, 12, 1, 0),
            utc(2026, 11, 1, 0),
        ];
        let keep = tiers(&[(Tier::Monthly, 2), (Tier::Yearly, 2)]);
        let held = apply(&keep, Tz::UTC, &times);
        assert_eq!(kept_by(&held[0]), "monthly 2027-01, yearly 2027");
        assert_eq!(kept_by(&held[1]), "monthly 2026-12, yearly 2026");
        assert!(held[2].is_empty() && held[3].is_empty());
    }
}
