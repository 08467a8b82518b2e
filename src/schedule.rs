//! When a policy fires: cron expressions with crontab(5) meaning, in a time zone.
//!
//! This is the one place that turns a schedule into instants. `check`, `next`,
//! `status`, the demo and the daemon all call [`Schedule::next_fire`], so they can
//! never disagree about when a job runs.
//!
//! Cron fields are matched on the *wall clock* of the policy's zone (croner works on a
//! naive local time here), and the wall-clock time is then mapped to an instant with
//! the DST rules of PRODUCT.md:
//! - a wall-clock time skipped by spring-forward fires at the first instant after the gap;
//! - a wall-clock time that occurs twice (fall-back) fires once, at its first occurrence.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// How far back (in seconds, about 270 years) [`Schedule::previous_fire`] looks: past
/// the longest gap between two fires of any schedule that fires at all.
const PREVIOUS_FIRE_REACH: i64 = 1 << 33;

/// A parsed cron expression (5 fields, 6 with seconds, or an `@` macro).
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: Cron,
}

/// How finely a schedule's fires are spread: the coarsest calendar unit in which two
/// fires can never fall. A name template must be at least this fine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resolution {
    Second,
    Minute,
    Hour,
    Day,
    Year,
}

impl Schedule {
    /// Parses `expr` as crontab(5) does: weekday 0 and 7 are Sunday, month and weekday
    /// names are allowed in their own field (checked by [`Field::normalise`]), and when both day-of-month and day-of-week are restricted a day matching either
    /// fires. A field "restricted" means one that does not start with `*`, as in cron
    /// itself; croner only treats a bare `*` as unrestricted, so `*/2` in one of the
    /// two day fields is turned into croner's explicit AND (`+` on the weekday field).
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let trimmed = expr.trim();
        if trimmed.is_empty() {
            return Err("empty cron expression".into());
        }
        let normalised = if trimmed.starts_with('@') {
            match trimmed.to_ascii_lowercase().as_str() {
                "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight"
                | "@hourly" => trimmed.replace("@midnight", "@daily"),
                other => {
                    return Err(format!(
                        "unknown macro {other:?} (use @hourly, @daily, @weekly, @monthly or @yearly)"
                    ));
                }
            }
        } else {
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            if fields.len() != 5 && fields.len() != 6 {
                return Err(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (with seconds first), found {}",
                    fields.len()
                ));
            }
            let offset = fields.len() - 5;
            let (dom, dow) = (fields[offset + 2], fields[offset + 4]);
            let mut fields: Vec<String> = fields
                .iter()
                .zip(&Field::ALL[1 - offset..])
                .map(|(text, field)| field.normalise(text))
                .collect::<Result<_, _>>()?;
            let starred = |f: &str| f.starts_with('*');
            if (starred(dom) || starred(dow)) && dom != "*" && dow != "*" {
                fields[offset + 4] = format!("+{dow}");
            }
            fields.join(" ")
        };
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(&normalised)
            .map_err(|e| format!("invalid cron expression {trimmed:?}: {e}"))?;
        // Make sure it fires at all (e.g. "0 0 30 2 *" never does).
        let probe = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        let fires = probe.is_some_and(|p| cron.find_next_occurrence(&p, false).is_ok());
        if !fires {
            return Err(format!("cron expression {trimmed:?} never fires"));
        }
        Ok(Schedule {
            expr: trimmed.to_string(),
            cron,
        })
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

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

    /// The coarsest unit of time that is guaranteed to hold at most one fire.
    pub fn resolution(&self) -> Resolution {
        let p = &self.cron.pattern;
        let (s, m, h) = (
            p.seconds.values().len(),
            p.minutes.values().len(),
            p.hours.values().len(),
        );
        if s > 1 {
            return Resolution::Second;
        }
        if m > 1 {
            return Resolution::Minute;
        }
        if h > 1 {
            return Resolution::Hour;
        }
        // One fire a day at most; is there at most one day a year? Look at four years
        // from a leap year, which covers every calendar shape cron can express.
        let mut at = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        let mut years_seen = std::collections::HashSet::new();
        while let Some(t) = at {
            let Ok(next) = self.cron.find_next_occurrence(&t, false) else {
                break;
            };
            if next.year() > 2003 {
                break;
            }
            if !years_seen.insert(next.year()) {
                return Resolution::Day;
            }
            at = Some(next);
        }
        Resolution::Year
    }

    fn next_wall_time(&self, wall: NaiveDateTime) -> Option<NaiveDateTime> {
        let as_utc = Utc.from_utc_datetime(&wall);
        self.cron
            .find_next_occurrence(&as_utc, false)
            .ok()
            .map(|t| t.naive_utc())
    }
}

/// A field of a cron expression, for checking it before croner sees it: croner turns
/// month and weekday names into numbers wherever they stand (`0 0 * * jan` would fire
/// on Mondays) and skips empty list items (`1,,15`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Field {
    const ALL: [Field; 6] = [
        Field::Second,
        Field::Minute,
        Field::Hour,
        Field::DayOfMonth,
        Field::Month,
        Field::DayOfWeek,
    ];

    fn name(self) -> &'static str {
        match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        }
    }

    /// What the field takes, for error messages.
    fn takes(self) -> &'static str {
        match self {
            Field::Second | Field::Minute => "0-59",
            Field::Hour => "0-23",
            Field::DayOfMonth => "1-31",
            Field::Month => "1-12 or jan..dec",
            Field::DayOfWeek => "0-7 or sun..sat",
        }
    }

    /// Checks the field as crontab(5) reads it — a comma-separated list of `*`, values
    /// and ranges `a-b`, each with an optional `/step` — and writes the names of this
    /// field as numbers, so croner sees no name at all. Names stand only in their own
    /// field; a step is a number; no list item is empty. Numbers and croner's `L`, `W`,
    /// `#` and `?` forms are left for croner to check.
    fn normalise(self, text: &str) -> Result<String, String> {
        let fail = |why: String| format!("{} field {text:?}: {why}", self.name());
        let mut items = Vec::new();
        for item in text.split(',') {
            if item.is_empty() {
                return Err(fail(
                    "an empty item in the list (two commas in a row, or one at an end)".into(),
                ));
            }
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => (range, Some(step)),
                None => (item, None),
            };
            let mut out = range
                .split('-')
                .enumerate()
                .map(|(i, value)| self.value(value, i > 0))
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?
                .join("-");
            if let Some(step) = step {
                if step.is_empty() || !step.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(fail(format!("the step {step:?} after `/` is not a number")));
                }
                out = format!("{out}/{step}");
            }
            items.push(out);
        }
        Ok(items.join(","))
    }

    /// One value of a range: a name of this field becomes its number (Sunday ending a
    /// range is 7, so `sat-sun` works); anything else with letters is refused.
    fn value(self, value: &str, ends_range: bool) -> Result<String, String> {
        if !value.bytes().any(|b| b.is_ascii_alphabetic()) {
            return Ok(value.to_string());
        }
        let lower = value.to_ascii_lowercase();
        let names: &[&str] = match self {
            Field::Month => &MONTHS,
            Field::DayOfWeek => &WEEKDAYS,
            _ => &[],
        };
        if let Some(i) = names.iter().position(|n| *n == lower) {
            let number = match self {
                Field::Month => i + 1,
                _ if i == 0 && ends_range => 7,
                _ => i,
            };
            return Ok(number.to_string());
        }
        let takes = self.takes();
        if MONTHS.contains(&lower.as_str()) {
            return Err(format!(
                "{lower} is a month name, which only the month field takes; this field takes {takes}"
            ));
        }
        if WEEKDAYS.contains(&lower.as_str()) {
            return Err(format!(
                "{lower} is a weekday name, which only the day-of-week field takes; this field takes {takes}"
            ));
        }
        let day_form = |b: u8| b.is_ascii_digit() || matches!(b, b'L' | b'l' | b'W' | b'w' | b'#');
        if matches!(self, Field::DayOfMonth | Field::DayOfWeek) && value.bytes().all(day_form) {
            return Ok(value.to_string());
        }
        Err(format!(
            "{value:?} is not a value this field takes ({takes})"
        ))
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.expr)
    }
}

/// Maps a wall-clock time in `tz` to the instant it fires at: the first occurrence of a
/// repeated time, or the first instant after a gap for a skipped one.
fn wall_to_instant(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
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
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn fires(expr: &str, tz: Tz, from: &str, n: usize) -> Vec<String> {
        let s = Schedule::parse(expr).unwrap();
        let mut at = utc(from);
        let mut out = Vec::new();
        for _ in 0..n {
            at = s.next_fire(tz, at).unwrap();
            out.push(at.to_rfc3339());
        }
        out
    }

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
        assert!(Schedule::parse("0 0 * * * * 2027").is_err());
        assert!(Schedule::parse("@reboot").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("0 0 30 2 *").is_err());
    }

    #[test]
    fn names_belong_to_their_own_field_and_lists_have_no_empty_items() {
        let refused = [
            (
                "0 0 * * jan",
                "day-of-week field \"jan\": jan is a month name",
            ),
            (
                "0 0 * * mon,jul",
                "day-of-week field \"mon,jul\": jul is a month name",
            ),
            ("0 0 * mon *", "month field \"mon\": mon is a weekday name"),
            (
                "0 0 * jan-fri *",
                "month field \"jan-fri\": fri is a weekday name",
            ),
            (
                "0 0 mon * *",
                "day-of-month field \"mon\": mon is a weekday name",
            ),
            ("0 jan * * *", "hour field \"jan\": jan is a month name"),
            ("0 0 * * monday", "day-of-week field \"monday\""),
            ("0 0 * * */mon", "day-of-week field \"*/mon\""),
            (
                "1,,15 * * * *",
                "minute field \"1,,15\": an empty item in the list",
            ),
            (
                "1, * * * *",
                "minute field \"1,\": an empty item in the list",
            ),
            (
                "0 0 * * ,mon",
                "day-of-week field \",mon\": an empty item in the list",
            ),
            (
                "0 0 * jan, *",
                "month field \"jan,\": an empty item in the list",
            ),
            (
                "5, 0 * * * *",
                "second field \"5,\": an empty item in the list",
            ),
        ];
        for (expr, says) in refused {
            match Schedule::parse(expr) {
                Ok(_) => panic!("{expr:?} was accepted"),
                Err(e) => assert!(e.contains(says), "{expr:?}: {e}"),
            }
        }
    }

    #[test]
    fn names_work_in_ranges_lists_and_steps_as_numbers_do() {
        let same = [
            ("0 0 * * mon-fri", "0 0 * * 1-5"),
            ("0 0 * * Mon,WED,fri", "0 0 * * 1,3,5"),
            ("0 0 * * sat-sun", "0 0 * * 6,0"),
            ("0 0 * * sun", "0 0 * * 0"),
            ("0 0 * * mon-sun/2", "0 0 * * 1,3,5,0"),
            ("0 0 1 jan,jul *", "0 0 1 1,7 *"),
            ("0 0 1 jan-dec/3 *", "0 0 1 1-12/3 *"),
            ("0 0 1 JUN-aug *", "0 0 1 6-8 *"),
            ("0 0 1-7 * mon", "0 0 1-7 * 1"),
        ];
        for (named, numbered) in same {
            assert_eq!(
                fires(named, Tz::UTC, "2026-11-23T00:00:00Z", 30),
                fires(numbered, Tz::UTC, "2026-11-23T00:00:00Z", 30),
                "{named} against {numbered}"
            );
        }
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

    #[test]
    fn resolution_is_the_coarsest_unit_holding_one_fire() {
        let r = |e: &str| Schedule::parse(e).unwrap().resolution();
        assert_eq!(r("*/5 * * * * *"), Resolution::Second);
        assert_eq!(r("*/5 * * * *"), Resolution::Minute);
        assert_eq!(r("0 */6 * * *"), Resolution::Hour);
        assert_eq!(r("30 2 * * *"), Resolution::Day);
        assert_eq!(r("@weekly"), Resolution::Day);
        assert_eq!(r("@yearly"), Resolution::Year);
        assert_eq!(r("0 0 29 2 *"), Resolution::Year);
    }
}

/// Previous and next fires checked against each other, and against every fire listed
/// wall minute by wall minute, over zones with odd transitions: Lord Howe's 30-minute
/// shift, Chatham's +12:45/+13:45, Santiago's midnight changes, Havana's midnight gap,
/// Troll's two-hour shift, Dublin's negative DST, Casablanca's Ramadan reversals,
/// Samoa's skipped day, and zones without DST.
#[cfg(test)]
mod fires_agree {
    use std::collections::BTreeSet;
    use std::sync::OnceLock;

    use proptest::prelude::*;

    use super::*;

    const ZONES: &[&str] = &[
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "America/Santiago",
        "Europe/Berlin",
        "America/New_York",
        "Asia/Kolkata",
        "Australia/Sydney",
        "America/St_Johns",
        "America/Havana",
        "Antarctica/Troll",
        "Europe/Dublin",
        "Africa/Casablanca",
        "Pacific/Apia",
        "Asia/Tehran",
        "UTC",
    ];

    const SCHEDULES: &[&str] = &[
        "30 2 * * *",
        "0 * * * *",
        "*/15 * * * *",
        "0 0 * * *",
        "30 0 * * *",
        "15 1,2,3 * * *",
        "45 23 * * *",
        "0 2 * * sun",
        "59 1 * * 1-5",
        "0 0 1 * *",
        "*/20 * * * * *",
        "30 */2 * * *",
        "0 0 29 2 *",
        "@hourly",
        "@weekly",
    ];

    /// The hours (as instants) around which each zone changed its offset, 2005–2032.
    fn transitions(tz: Tz) -> &'static [i64] {
        static ALL: OnceLock<Vec<(Tz, Vec<i64>)>> = OnceLock::new();
        let all = ALL.get_or_init(|| {
            ZONES
                .iter()
                .map(|z| {
                    let tz: Tz = z.parse().unwrap();
                    let offset = |ts: i64| {
                        let t = DateTime::from_timestamp(ts, 0).unwrap();
                        t.with_timezone(&tz).naive_local() - t.naive_utc()
                    };
                    let start = Utc
                        .with_ymd_and_hms(2005, 1, 1, 0, 0, 0)
                        .unwrap()
                        .timestamp();
                    let end = Utc
                        .with_ymd_and_hms(2032, 1, 1, 0, 0, 0)
                        .unwrap()
                        .timestamp();
                    // Day by day, then the hour within the day.
                    let mut found = Vec::new();
                    let mut day = start;
                    while day < end {
                        if offset(day) != offset(day + 86400) {
                            found.extend(
                                (0..24)
                                    .map(|h| day + h * 3600)
                                    .filter(|ts| offset(*ts) != offset(ts + 3600)),
                            );
                        }
                        day += 86400;
                    }
                    (tz, found)
                })
                .collect()
        });
        all.iter()
            .find(|(z, _)| *z == tz)
            .map(|(_, t)| t.as_slice())
            .unwrap_or(&[])
    }

    /// An instant in whole seconds: mostly within six hours of one of the zone's
    /// transitions, sometimes anywhere in 2005–2032.
    fn instant(tz: Tz, pick: usize, near: bool, shift: i64) -> DateTime<Utc> {
        let t = transitions(tz);
        let ts = if near && !t.is_empty() {
            t[pick % t.len()] + shift % (6 * 3600)
        } else {
            Utc.with_ymd_and_hms(2018, 6, 1, 0, 0, 0)
                .unwrap()
                .timestamp()
                + shift
        };
        DateTime::from_timestamp(ts, 0).unwrap()
    }

    /// Every fire whose wall time lies within 30 hours of `at`'s, listed wall minute by
    /// wall minute (for schedules firing on whole minutes).
    fn listed_fires(s: &Schedule, tz: Tz, at: DateTime<Utc>) -> BTreeSet<DateTime<Utc>> {
        let wall = at.with_timezone(&tz).naive_local().with_second(0).unwrap();
        let mut fires = BTreeSet::new();
        for m in -30 * 60..=30 * 60 {
            let w = wall + Duration::minutes(m);
            if s.cron.is_time_matching(&Utc.from_utc_datetime(&w)).unwrap() {
                fires.insert(wall_to_instant(tz, w).unwrap());
            }
        }
        fires
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn previous_and_next_fire_agree_around_transitions(
            zone in 0..ZONES.len(),
            schedule in 0..SCHEDULES.len(),
            pick in 0usize..1000,
            near in proptest::bool::weighted(0.85),
            shift in -(10i64 * 365 * 86400)..(10 * 365 * 86400),
        ) {
            let tz: Tz = ZONES[zone].parse().unwrap();
            let s = Schedule::parse(SCHEDULES[schedule]).unwrap();
            let t = instant(tz, pick, near, shift);
            let second = Duration::seconds(1);

            let p = s.previous_fire(tz, t).expect("a previous fire");
            let n = s.next_fire(tz, t).expect("a next fire");
            prop_assert!(p <= t && t < n, "{p} <= {t} < {n}");
            // No fire lies strictly between the previous fire and t, nor between t and
            // the next fire; both are fires.
            prop_assert_eq!(s.next_fire(tz, p), Some(n), "a fire between {} and {}", p, n);
            prop_assert_eq!(s.next_fire(tz, p - second), Some(p), "{} is not a fire", p);
            prop_assert_eq!(s.previous_fire(tz, n), Some(n), "{} is not a fire", n);
            prop_assert_eq!(s.previous_fire(tz, n - second), Some(p), "a fire between {} and {}", p, n);
            prop_assert_eq!(s.previous_fire(tz, t + Duration::milliseconds(999)), Some(p));

            // Against the fires listed minute by minute, where the schedule fires on
            // whole minutes and the list reaches far enough.
            if s.resolution() != Resolution::Second {
                let fires = listed_fires(&s, tz, t);
                let window = |f: &DateTime<Utc>| (*f - t).num_hours().abs() < 26;
                if let Some(listed) = fires.range(..=t).next_back().filter(|f| window(f)) {
                    prop_assert_eq!(p, *listed, "previous fire at {}", t);
                }
                if let Some(listed) = fires.range(t + second..).next().filter(|f| window(f)) {
                    prop_assert_eq!(n, *listed, "next fire at {}", t);
                }
            }
        }
    }
}
