//! Fire times: the next fire after an instant, and the last one at or before it, both
//! as instants, for a schedule read on the wall clock of a zone.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::Schedule;
use super::dst::wall_to_instant;

/// How far back (in seconds, about 270 years) [`Schedule::previous_fire`] looks: past
/// the longest gap between two fires of any schedule that fires at all.
const PREVIOUS_FIRE_REACH: i64 = 1 << 33;

impl Schedule {
    /// The first fire strictly after `after`, as an instant, for a policy in zone `tz`.
    pub fn next_fire(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut wall = after.with_timezone(&tz).naive_local();
        // A bounded search: each step moves the wall clock forward, and only wall times
        // inside a repeated hour (at most a few per fall-back) are skipped.
        for _ in 0..10_000 {
            let candidate = self.next_wall_time(wall)?;
            let instant = wall_to_instant(tz, candidate)?;
            if instant > after {
                return Some(instant);
            }
            // The second occurrence of a repeated wall time, or a gap fire collapsed
            // onto an instant that already fired: go on from there.
            wall = candidate;
        }
        None
    }

    /// The last fire at or before `at` (for catch-up and overdue checks).
    ///
    /// Defined through [`Schedule::next_fire`], so the two cannot disagree: it is the
    /// next fire after the latest instant whose next fire is not after `at`. Walking
    /// back on the wall clock instead goes wrong wherever the wall clock itself went
    /// back: inside a repeated hour, the wall times after `at`'s already fired. Fires
    /// fall on whole seconds, so that instant is found over whole seconds: back from
    /// `at` in doubling steps until a fire lies between, then by halving the interval.
    pub fn previous_fire(&self, tz: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let fired_by = |ts: i64| {
            DateTime::from_timestamp(ts, 0)
                .and_then(|m| self.next_fire(tz, m))
                .is_some_and(|f| f <= at)
        };
        // `fired_by(hi)` never holds: no whole second lies in (hi, at].
        let hi = at.timestamp();
        let mut step = 1i64;
        while !fired_by(hi - step) {
            step *= 2;
            if step > PREVIOUS_FIRE_REACH {
                return None;
            }
        }
        let (mut lo, mut hi) = (hi - step, hi);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fired_by(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        self.next_fire(tz, DateTime::from_timestamp(lo, 0)?)
    }

    /// The next wall-clock time after `wall` that the cron fields match.
    fn next_wall_time(&self, wall: NaiveDateTime) -> Option<NaiveDateTime> {
        let as_utc = Utc.from_utc_datetime(&wall);
        self.cron
            .find_next_occurrence(&as_utc, false)
            .ok()
            .map(|t| t.naive_utc())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{fires, utc};
    use super::*;

    #[test]
    fn weekday_seven_and_zero_are_sunday() {
        let a = fires("0 4 * * 7", Tz::UTC, "2026-11-23T00:00:00Z", 2);
        let b = fires("0 4 * * 0", Tz::UTC, "2026-11-23T00:00:00Z", 2);
        let c = fires("0 4 * * sun", Tz::UTC, "2026-11-23T00:00:00Z", 2);
        assert_eq!(
            a,
            vec!["2026-11-29T04:00:00+00:00", "2026-12-06T04:00:00+00:00"]
        );
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn restricted_day_fields_are_joined_with_or() {
        // The 1st of the month or any Friday, as crontab(5) says.
        let f = fires("0 0 1 * 5", Tz::UTC, "2026-11-23T00:00:00Z", 3);
        assert_eq!(
            f,
            vec![
                "2026-11-27T00:00:00+00:00",
                "2026-12-01T00:00:00+00:00",
                "2026-12-04T00:00:00+00:00"
            ]
        );
    }

    #[test]
    fn a_starred_step_in_a_day_field_is_unrestricted_as_in_cron() {
        // "*/2" starts with '*', so crontab ANDs it with the weekday: odd days that are Fridays.
        let f = fires("0 0 */2 * 5", Tz::UTC, "2026-11-23T00:00:00Z", 2);
        assert_eq!(
            f,
            vec!["2026-11-27T00:00:00+00:00", "2026-12-11T00:00:00+00:00"]
        );
    }

    #[test]
    fn six_fields_have_seconds_first_and_macros_work() {
        let f = fires("*/20 * * * * *", Tz::UTC, "2026-11-23T00:00:00Z", 2);
        assert_eq!(
            f,
            vec!["2026-11-23T00:00:20+00:00", "2026-11-23T00:00:40+00:00"]
        );
        let f = fires("@daily", Tz::UTC, "2026-11-23T10:00:00Z", 1);
        assert_eq!(f, vec!["2026-11-24T00:00:00+00:00"]);
        let f = fires("@midnight", Tz::UTC, "2026-11-23T10:00:00Z", 1);
        assert_eq!(f, vec!["2026-11-24T00:00:00+00:00"]);
        let f = fires("@monthly", Tz::UTC, "2026-11-23T10:00:00Z", 2);
        assert_eq!(
            f,
            vec!["2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"]
        );
    }

    #[test]
    fn the_next_fire_is_strictly_after_the_instant() {
        let s = Schedule::parse("30 2 * * *").unwrap();
        let at = utc("2026-11-23T02:30:00Z");
        assert_eq!(s.next_fire(Tz::UTC, at), Some(utc("2026-11-24T02:30:00Z")));
        let just_before = at - chrono::Duration::milliseconds(1);
        assert_eq!(s.next_fire(Tz::UTC, just_before), Some(at));
    }

    #[test]
    fn fires_follow_the_wall_clock_of_the_zone() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        let f = fires("0 9 * * *", tokyo, "2026-11-23T00:00:00Z", 2);
        assert_eq!(
            f,
            vec!["2026-11-24T00:00:00+00:00", "2026-11-25T00:00:00+00:00"]
        );
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let f = fires("0 0 * * *", kolkata, "2026-11-23T00:00:00Z", 1);
        assert_eq!(f, vec!["2026-11-23T18:30:00+00:00"]);
    }

    #[test]
    fn a_leap_day_schedule_waits_for_the_next_leap_year() {
        let f = fires("0 0 29 2 *", Tz::UTC, "2026-11-23T00:00:00Z", 2);
        assert_eq!(
            f,
            vec!["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"]
        );
        let s = Schedule::parse("0 0 29 2 *").unwrap();
        assert_eq!(
            s.previous_fire(Tz::UTC, utc("2027-06-01T00:00:00Z")),
            Some(utc("2024-02-29T00:00:00Z"))
        );
    }

    #[test]
    fn previous_fire_is_the_last_one_not_after_the_instant() {
        let s = Schedule::parse("30 2 * * *").unwrap();
        let p = s
            .previous_fire(Tz::UTC, utc("2026-11-23T10:00:00Z"))
            .unwrap();
        assert_eq!(p, utc("2026-11-23T02:30:00Z"));
        let p = s
            .previous_fire(Tz::UTC, utc("2026-11-23T02:30:00Z"))
            .unwrap();
        assert_eq!(p, utc("2026-11-23T02:30:00Z"));
    }
}
