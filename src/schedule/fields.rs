//! The fields of a cron expression, checked as crontab(5) reads them before croner sees
//! them: croner turns month and weekday names into numbers wherever they stand
//! (`0 0 * * jan` would fire on Mondays) and skips empty list items (`1,,15`).

use super::error::{FieldProblem, ScheduleError};

/// A field of a cron expression, in the order of a 6-field expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
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
    pub(super) const ALL: [Field; 6] = [
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

    /// The numbers the field takes.
    fn bounds(self) -> (u32, u32) {
        match self {
            Field::Second | Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 7),
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
    pub(super) fn normalise(self, text: &str) -> Result<String, ScheduleError> {
        let fail = |problem| ScheduleError::Field {
            field: self.name(),
            text: text.to_string(),
            problem,
        };
        let mut items = Vec::new();
        for item in text.split(',') {
            if item.is_empty() {
                return Err(fail(FieldProblem::EmptyItem));
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
                    return Err(fail(FieldProblem::StepNotANumber(step.to_string())));
                }
                if step.bytes().all(|b| b == b'0') {
                    return Err(fail(FieldProblem::StepZero));
                }
                out = format!("{out}/{step}");
            }
            items.push(out);
        }
        Ok(items.join(","))
    }

    /// One value of a range: a name of this field becomes its number (Sunday ending a
    /// range is 7, so `sat-sun` works); anything else with letters is refused.
    fn value(self, value: &str, ends_range: bool) -> Result<String, FieldProblem> {
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            let (low, high) = self.bounds();
            return match value.parse::<u32>() {
                Ok(n) if (low..=high).contains(&n) => Ok(value.to_string()),
                _ => Err(FieldProblem::OutOfRange {
                    value: value.to_string(),
                    takes: self.takes(),
                }),
            };
        }
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
            return Err(FieldProblem::MonthName { name: lower, takes });
        }
        if WEEKDAYS.contains(&lower.as_str()) {
            return Err(FieldProblem::WeekdayName { name: lower, takes });
        }
        let day_form = |b: u8| b.is_ascii_digit() || matches!(b, b'L' | b'l' | b'W' | b'w' | b'#');
        if matches!(self, Field::DayOfMonth | Field::DayOfWeek) && value.bytes().all(day_form) {
            return Ok(value.to_string());
        }
        Err(FieldProblem::NotAValue {
            value: value.to_string(),
            takes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(field: Field, text: &str) -> FieldProblem {
        match field.normalise(text) {
            Err(ScheduleError::Field { problem, .. }) => problem,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn names_become_numbers_in_their_own_field_only() {
        assert_eq!(Field::Month.normalise("jan,JUL-dec/2").unwrap(), "1,7-12/2");
        assert_eq!(Field::DayOfWeek.normalise("mon-fri").unwrap(), "1-5");
        assert_eq!(Field::DayOfWeek.normalise("sat-sun").unwrap(), "6-7");
        assert_eq!(Field::DayOfWeek.normalise("sun").unwrap(), "0");
        assert_eq!(Field::Minute.normalise("*/5,7").unwrap(), "*/5,7");
        assert_eq!(
            problem(Field::DayOfWeek, "jan"),
            FieldProblem::MonthName {
                name: "jan".into(),
                takes: "0-7 or sun..sat"
            }
        );
        assert_eq!(
            problem(Field::Hour, "MON"),
            FieldProblem::WeekdayName {
                name: "mon".into(),
                takes: "0-23"
            }
        );
    }

    #[test]
    fn lists_steps_and_day_forms_are_checked() {
        assert_eq!(problem(Field::Minute, "1,,2"), FieldProblem::EmptyItem);
        assert_eq!(problem(Field::Minute, ",2"), FieldProblem::EmptyItem);
        assert_eq!(
            problem(Field::Minute, "*/x"),
            FieldProblem::StepNotANumber("x".into())
        );
        assert_eq!(
            problem(Field::Minute, "*/"),
            FieldProblem::StepNotANumber(String::new())
        );
        assert_eq!(Field::DayOfMonth.normalise("L").unwrap(), "L");
        assert_eq!(Field::DayOfWeek.normalise("5#2").unwrap(), "5#2");
        assert_eq!(
            problem(Field::Minute, "L"),
            FieldProblem::NotAValue {
                value: "L".into(),
                takes: "0-59"
            }
        );
    }

    #[test]
    fn numbers_are_checked_against_the_fields_range() {
        let out = |field: Field, value: &str| FieldProblem::OutOfRange {
            value: value.into(),
            takes: field.takes(),
        };
        assert_eq!(problem(Field::Hour, "25"), out(Field::Hour, "25"));
        assert_eq!(problem(Field::Minute, "61"), out(Field::Minute, "61"));
        assert_eq!(problem(Field::Minute, "5-60"), out(Field::Minute, "60"));
        assert_eq!(problem(Field::DayOfMonth, "0"), out(Field::DayOfMonth, "0"));
        assert_eq!(problem(Field::Month, "13"), out(Field::Month, "13"));
        assert_eq!(problem(Field::DayOfWeek, "8"), out(Field::DayOfWeek, "8"));
        assert_eq!(
            problem(Field::Hour, "99999999999999999999"),
            out(Field::Hour, "99999999999999999999")
        );
        assert_eq!(problem(Field::Minute, "*/0"), FieldProblem::StepZero);
        assert_eq!(Field::DayOfWeek.normalise("0,7").unwrap(), "0,7");
        assert_eq!(Field::Hour.normalise("0-23/6").unwrap(), "0-23/6");
        assert_eq!(
            Field::Hour.normalise("25").unwrap_err().to_string(),
            "hour field \"25\": 25 is out of range: this field takes 0-23"
        );
    }

    #[test]
    fn the_message_names_the_field_and_its_text() {
        let e = Field::DayOfMonth.normalise("mon").unwrap_err();
        assert_eq!(
            e.to_string(),
            "day-of-month field \"mon\": mon is a weekday name, which only the day-of-week field takes; this field takes 1-31"
        );
    }
}
