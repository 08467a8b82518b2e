//! Snapshot name templates: rendering a dated name, and matching names back to the
//! policy that owns them.
//!
//! A template is a sequence of literal text, `{policy}`, `{server}` and fixed-width
//! strftime fields. Because every field renders to a fixed number of digits, the set
//! of names a template can produce is a sequence of character classes (a literal
//! character or "any digit"); ownership is matching against that sequence, and two
//! templates can produce a common name exactly when their sequences line up.

use chrono::{DateTime, TimeZone};

use crate::schedule::Resolution;

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

fn allowed_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

impl NameTemplate {
    pub fn parse(source: &str) -> Result<NameTemplate, String> {
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
                        Some(other) => {
                            return Err(format!(
                                "unsupported field %{other} (use %Y %m %d %H %M %S %j)"
                            ));
                        }
                        None => return Err("a lone % at the end".into()),
                    };
                    Part::Time(field)
                }
                '{' => {
                    let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                    match name.as_str() {
                        "policy" => Part::Policy,
                        "server" => Part::Server,
                        other => {
                            return Err(format!(
                                "unknown placeholder {{{other}}} (use {{policy}} or {{server}})"
                            ));
                        }
                    }
                }
                c if allowed_char(c) => {
                    literal.push(c);
                    continue;
                }
                c => {
                    return Err(format!(
                        "character {c:?} is not allowed in a snapshot name (letters, digits, - and _ only)"
                    ));
                }
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
            return Err("the template is empty".into());
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

    /// The finest unit the name tells apart, counting fields from the year down without
    /// a gap: `%Y%m%d-%H` tells hours apart, `%Y-%H` only years.
    pub fn resolution(&self) -> Option<Resolution> {
        let has = |f: Field| self.parts.contains(&Part::Time(f));
        if !has(Field::Year) {
            return None;
        }
        let day = has(Field::DayOfYear) || (has(Field::Month) && has(Field::Day));
        Some(if !day {
            Resolution::Year
        } else if !has(Field::Hour) {
            Resolution::Day
        } else if !has(Field::Minute) {
            Resolution::Hour
        } else if !has(Field::Second) {
            Resolution::Minute
        } else {
            Resolution::Second
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
    fn bad_templates_are_refused() {
        assert!(NameTemplate::parse("x %Y").is_err());
        assert!(NameTemplate::parse("x-%F").is_err());
        assert!(NameTemplate::parse("{host}-%Y").is_err());
        assert!(NameTemplate::parse("").is_err());
    }

    #[test]
    fn resolution_counts_fields_from_the_year_down() {
        let r = |s: &str| NameTemplate::parse(s).unwrap().resolution();
        assert_eq!(r("a-%Y%m%d-%H%M"), Some(Resolution::Minute));
        assert_eq!(r("a-%Y%j"), Some(Resolution::Day));
        assert_eq!(r("a-%Y-%H"), Some(Resolution::Year));
        assert_eq!(r("a-%m%d"), None);
    }
}
