//! Why a cron expression was refused: the kinds `Schedule::parse` returns, each with
//! the words an operator reads after the key that holds the expression.

/// A schedule that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("empty cron expression")]
    Empty,
    #[error("unknown macro {0:?} (use @hourly, @daily, @weekly, @monthly or @yearly)")]
    UnknownMacro(String),
    #[error(
        "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (with seconds first), found {0}"
    )]
    FieldCount(usize),
    /// One field does not read as crontab(5) reads it.
    #[error("{field} field {text:?}: {problem}")]
    Field {
        field: &'static str,
        text: String,
        problem: FieldProblem,
    },
    /// croner refused the expression (a value out of range, a malformed range, …).
    #[error("invalid cron expression {expr:?}: {source}")]
    Invalid {
        expr: String,
        source: croner::errors::CronError,
    },
    #[error("cron expression {0:?} never fires")]
    NeverFires(String),
}

/// What is wrong inside one field of a cron expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldProblem {
    #[error("an empty item in the list (two commas in a row, or one at an end)")]
    EmptyItem,
    #[error("the step {0:?} after `/` is not a number")]
    StepNotANumber(String),
    #[error("{name} is a month name, which only the month field takes; this field takes {takes}")]
    MonthName { name: String, takes: &'static str },
    #[error(
        "{name} is a weekday name, which only the day-of-week field takes; this field takes {takes}"
    )]
    WeekdayName { name: String, takes: &'static str },
    #[error("{value} is out of range: this field takes {takes}")]
    OutOfRange { value: String, takes: &'static str },
    #[error("a step of 0 never moves on; use 1 or more")]
    StepZero,
    #[error("{value:?} is not a value this field takes ({takes})")]
    NotAValue { value: String, takes: &'static str },
}
