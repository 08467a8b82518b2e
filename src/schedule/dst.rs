//! From a wall-clock time in a zone to the instant it fires at, with the DST rules of
//! PRODUCT.md: a repeated time (fall-back) fires at its first occurrence, a time
//! skipped by spring-forward fires at the first instant after the gap.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// Maps a wall-clock time in `tz` to the instant it fires at: the first occurrence of a
/// repeated time, or the first instant after a gap for a skipped one.
pub(super) fn wall_to_instant(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        LocalResult::None => {
            // Inside a gap: step to the first wall-clock minute that exists; that is
            // the instant of the transition (zone transitions fall on whole minutes).
            let mut probe = wall.with_second(0)?.with_nanosecond(0)?;
            for _ in 0..(48 * 60) {
                probe += Duration::minutes(1);
                if let LocalResult::Single(t) | LocalResult::Ambiguous(t, _) =
                    tz.from_local_datetime(&probe)
                {
                    return Some(t.with_timezone(&Utc));
                }
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Schedule;
    use super::super::tests::{fires, utc};
    use super::*;

    fn wall(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn a_wall_time_maps_to_its_first_occurrence_or_the_end_of_its_gap() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let at = |s: &str| wall_to_instant(berlin, wall(s)).unwrap();
        assert_eq!(at("2026-07-01 12:00:00"), utc("2026-07-01T10:00:00Z"));
        // Repeated: 02:30 CEST, not 02:30 CET.
        assert_eq!(at("2026-10-25 02:30:00"), utc("2026-10-25T00:30:00Z"));
        // Skipped: the gap ends at 03:00 CEST, 01:00 UTC, whatever the seconds.
        assert_eq!(at("2026-03-29 02:30:45"), utc("2026-03-29T01:00:00Z"));
        assert_eq!(at("2026-03-29 02:00:00"), utc("2026-03-29T01:00:00Z"));
    }

    #[test]
    fn a_skipped_day_fires_at_the_first_instant_after_it() {
        // Samoa skipped 2011-12-30 entirely (UTC-10 to UTC+14).
        let apia: Tz = "Pacific/Apia".parse().unwrap();
        let at = wall_to_instant(apia, wall("2011-12-30 12:00:00")).unwrap();
        assert_eq!(
            at.with_timezone(&apia).to_rfc3339(),
            "2011-12-31T00:00:00+14:00"
        );
    }

    #[test]
    fn berlin_spring_forward_runs_a_skipped_fire_right_after_the_gap() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let f = fires("30 2 * * *", berlin, "2026-03-28T12:00:00Z", 2);
        assert_eq!(
            f,
            vec!["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]
        );
        // Several fires inside the gap collapse into one.
        let f = fires("*/15 2 * * *", berlin, "2026-03-29T00:00:00Z", 2);
        assert_eq!(
            f,
            vec!["2026-03-29T01:00:00+00:00", "2026-03-30T00:00:00+00:00"]
        );
    }

    #[test]
    fn berlin_fall_back_fires_a_repeated_time_once_at_its_first_occurrence() {
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let f = fires("30 2 * * *", berlin, "2026-10-24T12:00:00Z", 2);
        assert_eq!(
            f,
            vec!["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
        );
        // Hourly: 02:00 CEST, then 03:00 CET — the second 02:00 is not fired again.
        let f = fires("0 * * * *", berlin, "2026-10-24T23:30:00Z", 3);
        assert_eq!(
            f,
            vec![
                "2026-10-25T00:00:00+00:00",
                "2026-10-25T02:00:00+00:00",
                "2026-10-25T03:00:00+00:00"
            ]
        );
        // Starting inside the second pass of the repeated hour does not re-fire it.
        let f = fires("30 2 * * *", berlin, "2026-10-25T01:10:00Z", 1);
        assert_eq!(f, vec!["2026-10-26T01:30:00+00:00"]);
    }

    #[test]
    fn southern_hemisphere_transitions_follow_the_same_rules() {
        // Australia/Sydney: 2026-04-05 03:00 AEDT -> 02:00 AEST; 2026-10-04 02:00 -> 03:00.
        let sydney: Tz = "Australia/Sydney".parse().unwrap();
        let f = fires("30 2 * * *", sydney, "2026-04-04T00:00:00Z", 2);
        assert_eq!(
            f,
            vec!["2026-04-04T15:30:00+00:00", "2026-04-05T16:30:00+00:00"]
        );
        let f = fires("30 2 * * *", sydney, "2026-10-03T00:00:00Z", 2);
        assert_eq!(
            f,
            vec!["2026-10-03T16:00:00+00:00", "2026-10-04T15:30:00+00:00"]
        );
    }

    #[test]
    fn previous_fire_inside_a_repeated_hour_is_that_days_first_occurrence() {
        // 2026-10-25T01:10Z is 02:10 CET, the second pass of Berlin's repeated hour;
        // 02:30 ran at its first occurrence, 02:30 CEST (00:30Z), that same morning.
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let s = Schedule::parse("30 2 * * *").unwrap();
        let p = s
            .previous_fire(berlin, utc("2026-10-25T01:10:00Z"))
            .unwrap();
        assert_eq!(
            p.with_timezone(&berlin).to_rfc3339(),
            "2026-10-25T02:30:00+02:00"
        );
    }
}
