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
//!
//! Parsing and the schedule's resolution are here; the fields as crontab(5) reads them
//! in `fields.rs`, fire times in `fires.rs`, the DST rules in `dst.rs`.

mod dst;
mod error;
mod fields;
mod fires;

/// A time as people read it everywhere (tables, log lines, `STATUS=`): to the second,
/// in `zone` with its offset (`2026-11-24 02:30:00 +01:00`). A job's times are shown
/// in its policy's zone; times of no policy in UTC.
pub fn shown(t: chrono::DateTime<chrono::Utc>, zone: chrono_tz::Tz) -> String {
    t.with_timezone(&zone)
        .format("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

#[cfg(test)]
mod fires_agree;

use chrono::{TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

pub use error::{FieldProblem, ScheduleError};
use fields::Field;

/// A parsed cron expression (5 fields, 6 with seconds, or an `@` macro).
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: Cron,
}

/// How finely a schedule's fires are spread: the coarsest calendar unit in which two
/// fires can never fall (the tests that hold croner to crontab use it; the name check
/// reads the schedule's real fires: `config/template/clash.rs`).
#[cfg(test)]
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
    /// names are allowed in their own field (checked by [`Field::normalise`]), and when
    /// both day-of-month and day-of-week are restricted a day matching either fires. A
    /// field "restricted" means one that does not start with `*`, as in cron itself;
    /// croner only treats a bare `*` as unrestricted, so `*/2` in one of the two day
    /// fields is turned into croner's explicit AND (`+` on the weekday field).
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = expr.trim();
        if trimmed.is_empty() {
            return Err(ScheduleError::Empty);
        }
        let normalised = if trimmed.starts_with('@') {
            match trimmed.to_ascii_lowercase().as_str() {
                "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight"
                | "@hourly" => trimmed.replace("@midnight", "@daily"),
                other => return Err(ScheduleError::UnknownMacro(other.to_string())),
            }
        } else {
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            if fields.len() != 5 && fields.len() != 6 {
                return Err(ScheduleError::FieldCount(fields.len()));
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
            .map_err(|source| ScheduleError::Invalid {
                expr: trimmed.to_string(),
                source,
            })?;
        // Make sure it fires at all (e.g. "0 0 30 2 *" never does).
        let probe = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        let fires = probe.is_some_and(|p| cron.find_next_occurrence(&p, false).is_ok());
        if !fires {
            return Err(ScheduleError::NeverFires(trimmed.to_string()));
        }
        Ok(Schedule {
            expr: trimmed.to_string(),
            cron,
        })
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The coarsest unit of time that is guaranteed to hold at most one fire.
    #[cfg(test)]
    pub fn resolution(&self) -> Resolution {
        use chrono::Datelike;
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
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.expr)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use chrono::DateTime;
    use chrono_tz::Tz;

    use super::*;

    pub(crate) fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// The first `n` fires of `expr` in `tz` after `from`, as RFC 3339 in UTC.
    pub(crate) fn fires(expr: &str, tz: Tz, from: &str, n: usize) -> Vec<String> {
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
    fn expressions_that_cannot_fire_are_refused_with_the_reason() {
        let e = |s: &str| Schedule::parse(s).unwrap_err();
        assert!(matches!(e("  "), ScheduleError::Empty));
        assert!(matches!(e("@reboot"), ScheduleError::UnknownMacro(m) if m == "@reboot"));
        assert!(matches!(
            e("0 0 * * * * 2027"),
            ScheduleError::FieldCount(7)
        ));
        assert!(matches!(e("0 0 *"), ScheduleError::FieldCount(3)));
        assert!(
            matches!(e("61 * * * *"), ScheduleError::Field { field: "minute", text, .. } if text == "61")
        );
        assert!(matches!(e("0 0 30 2 *"), ScheduleError::NeverFires(x) if x == "0 0 30 2 *"));
        assert_eq!(
            e("0 0 30 2 *").to_string(),
            "cron expression \"0 0 30 2 *\" never fires"
        );
        assert_eq!(
            e("30 25 * * *").to_string(),
            "hour field \"25\": 25 is out of range: this field takes 0-23"
        );
    }

    #[test]
    fn the_expression_is_kept_as_written_without_surrounding_blanks() {
        let s = Schedule::parse("  @Daily ").unwrap();
        assert_eq!(s.expr(), "@Daily");
        assert_eq!(s.to_string(), "@Daily");
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
                Err(e) => assert!(e.to_string().contains(says), "{expr:?}: {e}"),
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
    fn resolution_is_the_coarsest_unit_holding_one_fire() {
        let r = |e: &str| Schedule::parse(e).unwrap().resolution();
        assert_eq!(r("*/5 * * * * *"), Resolution::Second);
        assert_eq!(r("*/5 * * * *"), Resolution::Minute);
        assert_eq!(r("0 */6 * * *"), Resolution::Hour);
        assert_eq!(r("30 2 * * *"), Resolution::Day);
        assert_eq!(r("@weekly"), Resolution::Day);
        assert_eq!(r("@yearly"), Resolution::Year);
        assert_eq!(r("0 0 29 2 *"), Resolution::Year);
        assert_eq!(r("0 0 1 1,7 *"), Resolution::Day);
    }
}
