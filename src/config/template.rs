//! Snapshot name templates: rendering a dated name, and matching names back to the
//! policy that owns them.
//!
//! A template is a sequence of literal text, `{policy}`, `{server}` and fixed-width
//! strftime fields. Because every field renders to a fixed number of digits, the set
//! of names a template can produce is a sequence of character classes (a literal
//! character or "any digit"); ownership is matching against that sequence, and two
//! templates can produce a common name exactly when their sequences line up.

use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Timelike};

use crate::names::is_name_char;

mod clash;

pub use clash::{Clash, Coarse};

/// The longest snapshot name the product creates.
pub const MAX_NAME_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    DayOfYear,
}

impl Field {
    /// Coarsest first, in the order advice names them.
    const ALL: [Field; 7] = [
        Field::Year,
        Field::Month,
        Field::Day,
        Field::DayOfYear,
        Field::Hour,
        Field::Minute,
        Field::Second,
    ];

    fn width(self) -> usize {
        match self {
            Field::Year => 4,
            Field::DayOfYear => 3,
            _ => 2,
        }
    }

    fn strftime(self) -> &'static str {
        match self {
            Field::Year => "%Y",
            Field::Month => "%m",
            Field::Day => "%d",
            Field::Hour => "%H",
            Field::Minute => "%M",
            Field::Second => "%S",
            Field::DayOfYear => "%j",
        }
    }

    /// What the field shows of a wall-clock time.
    fn of(self, wall: NaiveDateTime) -> u32 {
        match self {
            // Only compared, never shown: the year's bits are kept as they are.
            Field::Year => wall.year().cast_unsigned(),
            Field::Month => wall.month(),
            Field::Day => wall.day(),
            Field::Hour => wall.hour(),
            Field::Minute => wall.minute(),
            Field::Second => wall.second(),
            Field::DayOfYear => wall.ordinal(),
        }
    }

    fn is_clock(self) -> bool {
        matches!(self, Field::Hour | Field::Minute | Field::Second)
    }
}

/// A set of time fields: those a template holds, or those it should add.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fields(u8);

impl Fields {
    fn bit(f: Field) -> u8 {
        1 << (f as u8)
    }

    fn has(self, f: Field) -> bool {
        self.0 & Self::bit(f) != 0
    }

    fn with(self, f: Field) -> Fields {
        Fields(self.0 | Self::bit(f))
    }

    fn and(self, other: Fields) -> Fields {
        Fields(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether two wall-clock times agree on every field of the set: the same name.
    fn same(self, a: NaiveDateTime, b: NaiveDateTime) -> bool {
        Field::ALL
            .iter()
            .all(|&f| !self.has(f) || f.of(a) == f.of(b))
    }

    /// Whether the set tells every day of the calendar apart: a year and either the day
    /// of the year or the month and the day.
    fn has_date(self) -> bool {
        self.has(Field::Year)
            && (self.has(Field::DayOfYear) || (self.has(Field::Month) && self.has(Field::Day)))
    }
}

/// The fields as a template writes them, date and clock apart: "%m%d", "%H", "%d %H%M".
impl std::fmt::Display for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = |clock: bool| -> String {
            Field::ALL
                .iter()
                .filter(|&&x| self.has(x) && x.is_clock() == clock)
                .map(|x| x.strftime())
                .collect()
        };
        let (date, clock) = (group(false), group(true));
        match (date.is_empty(), clock.is_empty()) {
            (false, false) => write!(f, "{date} {clock}"),
            (true, _) => f.write_str(&clock),
            (false, true) => f.write_str(&date),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Policy,
    Server,
    Time(Field),
}

/// A parsed `snapshot_name` template.
#[derive(Debug, Clone)]
pub struct NameTemplate {
    source: String,
    parts: Vec<Part>,
}

/// One character position of the names a template renders for a given policy and server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Char(char),
    Digit,
}

/// Why a `snapshot_name` template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unsupported field %{0} (use %Y %m %d %H %M %S %j)")]
    UnsupportedField(char),
    #[error("a lone % at the end")]
    LonePercent,
    #[error("unknown placeholder {{{0}}} (use {{policy}} or {{server}})")]
    UnknownPlaceholder(String),
    #[error("placeholder {{{0} is not closed with }}")]
    UnclosedPlaceholder(String),
    #[error("character {0:?} is not allowed in a snapshot name (letters, digits, - and _ only)")]
    NotAllowed(char),
    #[error("the template is empty")]
    Empty,
}

impl NameTemplate {
    pub fn parse(source: &str) -> Result<NameTemplate, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            let part = match c {
                '%' => {
                    let field = match chars.next() {
                        Some('Y') => Field::Year,
                        Some('m') => Field::Month,
                        Some('d') => Field::Day,
                        Some('H') => Field::Hour,
                        Some('M') => Field::Minute,
                        Some('S') => Field::Second,
                        Some('j') => Field::DayOfYear,
                        Some(other) => return Err(TemplateError::UnsupportedField(other)),
                        None => return Err(TemplateError::LonePercent),
                    };
                    Part::Time(field)
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    match name.as_str() {
                        _ if !closed => return Err(TemplateError::UnclosedPlaceholder(name)),
                        "policy" => Part::Policy,
                        "server" => Part::Server,
                        _ => return Err(TemplateError::UnknownPlaceholder(name)),
                    }
                }
                c if is_name_char(c) => {
                    literal.push(c);
                    continue;
                }
                c => return Err(TemplateError::NotAllowed(c)),
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if parts.is_empty() {
            return Err(TemplateError::Empty);
        }
        Ok(NameTemplate {
            source: source.to_string(),
            parts,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The name for `policy` on `server` at `at` (already in the policy's zone).
    pub fn render<Tz: TimeZone>(&self, policy: &str, server: u64, at: &DateTime<Tz>) -> String
    where
        Tz::Offset: std::fmt::Display,
    {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Policy => out.push_str(policy),
                Part::Server => out.push_str(&server.to_string()),
                Part::Time(f) => out.push_str(&at.format(f.strftime()).to_string()),
            }
        }
        out
    }

    /// Whether `name` is one this template renders for `policy` on `server`.
    pub fn matches(&self, policy: &str, server: u64, name: &str) -> bool {
        let classes = self.classes(policy, server);
        name.chars().count() == classes.len()
            && name.chars().zip(classes).all(|(c, class)| match class {
                Class::Char(want) => c == want,
                Class::Digit => c.is_ascii_digit(),
            })
    }

    /// Whether some name is matched by both templates (for policies sharing a server).
    pub fn overlaps(
        &self,
        policy: &str,
        other: &NameTemplate,
        other_policy: &str,
        server: u64,
    ) -> bool {
        let a = self.classes(policy, server);
        let b = other.classes(other_policy, server);
        a.len() == b.len()
            && a.iter().zip(&b).all(|(x, y)| match (x, y) {
                (Class::Char(p), Class::Char(q)) => p == q,
                (Class::Char(c), Class::Digit) | (Class::Digit, Class::Char(c)) => {
                    c.is_ascii_digit()
                }
                (Class::Digit, Class::Digit) => true,
            })
    }

    /// The length of every name this template renders for `policy` on `server`.
    pub fn rendered_len(&self, policy: &str, server: u64) -> usize {
        self.classes(policy, server).len()
    }

    /// The time fields the template holds.
    fn fields(&self) -> Fields {
        self.parts
            .iter()
            .fold(Fields::default(), |set, part| match part {
                Part::Time(f) => set.with(*f),
                _ => set,
            })
    }

    fn classes(&self, policy: &str, server: u64) -> Vec<Class> {
        let mut out = Vec::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.extend(s.chars().map(Class::Char)),
                Part::Policy => out.extend(policy.chars().map(Class::Char)),
                Part::Server => out.extend(server.to_string().chars().map(Class::Char)),
                Part::Time(f) => out.extend(std::iter::repeat_n(Class::Digit, f.width())),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn renders_and_matches_its_own_names_only() {
        let t = NameTemplate::parse("{policy}-%Y%m%d-%H%M").unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 2, 30, 0).unwrap();
        let name = t.render("nightly", 7, &at);
        assert_eq!(name, "nightly-20261123-0230");
        assert!(t.matches("nightly", 7, &name));
        assert!(!t.matches("nightly", 7, "nightly-20261123-0230x"));
        assert!(!t.matches("nightly", 7, "nightly-2026112-02300"));
        assert!(!t.matches("nightly", 7, "nightly-manual-0230"));
        assert!(!t.matches("weekly", 7, &name));
    }

    #[test]
    fn overlap_is_detected_between_look_alike_templates() {
        let a = NameTemplate::parse("snap-%Y%m%d").unwrap();
        let b = NameTemplate::parse("snap-2026%m%d").unwrap();
        assert!(a.overlaps("a", &b, "b", 1));
        let c = NameTemplate::parse("{policy}-%Y%m%d").unwrap();
        assert!(!c.overlaps("daily", &c, "weekly", 1));
        assert!(c.overlaps("d1", &c, "d1", 1));
    }

    #[test]
    fn bad_templates_are_refused_saying_why() {
        let e = |s: &str| NameTemplate::parse(s).unwrap_err();
        assert_eq!(e("x %Y"), TemplateError::NotAllowed(' '));
        assert_eq!(e("x-%F"), TemplateError::UnsupportedField('F'));
        assert_eq!(e("x-%"), TemplateError::LonePercent);
        assert_eq!(
            e("{host}-%Y"),
            TemplateError::UnknownPlaceholder("host".into())
        );
        assert_eq!(e(""), TemplateError::Empty);
        assert_eq!(
            e("x.%Y").to_string(),
            "character '.' is not allowed in a snapshot name (letters, digits, - and _ only)"
        );
        assert_eq!(
            e("{host}").to_string(),
            "unknown placeholder {host} (use {policy} or {server})"
        );
    }

    #[test]
    fn a_placeholder_left_open_is_refused() {
        let e = NameTemplate::parse("{policy-%Y%m%d").unwrap_err();
        assert_eq!(
            e,
            TemplateError::UnclosedPlaceholder("policy-%Y%m%d".into())
        );
        assert_eq!(
            NameTemplate::parse("%Y{policy").unwrap_err().to_string(),
            "placeholder {policy is not closed with }"
        );
    }

    #[test]
    fn renders_every_field_at_its_fixed_width() {
        let t = NameTemplate::parse("{server}_{policy}-%Y-%m-%d-%H-%M-%S-%j").unwrap();
        let at = Utc.with_ymd_and_hms(2026, 2, 3, 4, 5, 6).unwrap();
        let name = t.render("p", 42, &at);
        assert_eq!(name, "42_p-2026-02-03-04-05-06-034");
        assert_eq!(t.rendered_len("p", 42), name.len());
        assert!(t.matches("p", 42, &name));
        assert!(!t.matches("p", 43, &name));
    }

    #[test]
    fn renders_the_wall_clock_of_the_policys_zone() {
        let t = NameTemplate::parse("{policy}-%Y%m%d-%H%M").unwrap();
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let at = Utc
            .with_ymd_and_hms(2026, 12, 31, 23, 30, 0)
            .unwrap()
            .with_timezone(&berlin);
        assert_eq!(t.render("n", 1, &at), "n-20270101-0030");
    }

    #[test]
    fn matching_wants_digits_where_fields_stand_and_the_literal_text_elsewhere() {
        let t = NameTemplate::parse("snap-%Y").unwrap();
        assert!(t.matches("any", 1, "snap-0000"));
        assert!(!t.matches("any", 1, "snap-20a6"));
        assert!(!t.matches("any", 1, "Snap-2026"));
        assert!(!t.matches("any", 1, "snap-２０２６"));
        assert!(!t.matches("any", 1, ""));
    }

    #[test]
    fn templates_of_different_lengths_or_literals_never_overlap() {
        let a = NameTemplate::parse("snap-%Y%m%d").unwrap();
        let b = NameTemplate::parse("snap-%Y%m%d%H").unwrap();
        assert!(!a.overlaps("p", &b, "q", 1));
        let c = NameTemplate::parse("snip-%Y%m%d").unwrap();
        assert!(!a.overlaps("p", &c, "q", 1));
        // {server} renders the server's digits, which a date field can match.
        let d = NameTemplate::parse("snap-{server}%m%d").unwrap();
        assert!(a.overlaps("p", &d, "q", 2026));
        assert!(!a.overlaps("p", &d, "q", 7));
    }

    #[test]
    fn fields_are_named_date_first_then_clock() {
        let fields = |s: &str| NameTemplate::parse(s).unwrap().fields().to_string();
        assert_eq!(fields("a-%H%M-%Y%m%d"), "%Y%m%d %H%M");
        assert_eq!(fields("a-%Y%j"), "%Y%j");
        assert_eq!(fields("a-%S"), "%S");
        assert_eq!(fields("a"), "");
    }
}
