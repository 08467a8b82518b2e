//! From TOML text to the file as written (`raw.rs`), with a problem the reader finds
//! placed at its key. For a key or value of the wrong kind, the key is the path the
//! deserializer was at (`serde_path_to_error`) and the place is toml's span; for a
//! syntax error, where no deserializer ran, the key is the one the parser was reading
//! when it stopped (its events, from `toml_parser`).

use serde_path_to_error::Segment;
use toml::de::{DeTable, Deserializer};
use toml_parser::decoder::Encoding;
use toml_parser::parser::{EventReceiver, RecursionGuard};
use toml_parser::{ErrorSink, Raw, Source, Span};

use super::errors::Problem;
use super::raw::RawConfig;

/// The field names `toml::Spanned` reads its value through; not keys of the file.
const SPANNED_FIELD: &str = "$__serde_spanned_private";
/// As deep as the toml crate lets arrays and inline tables nest.
const MAX_DEPTH: u32 = 80;

#[cfg(test)]
pub(super) fn parse(source: &str) -> Result<RawConfig, Vec<Problem>> {
    strict(source)
}

/// What reading the file came to: the problems of syntax, name and kind, and the file
/// as written — all of it when there are none, else the rest of it without the pairs
/// that have them (so that the rules can be checked on it too), when that can be read.
pub(super) struct Read {
    pub raw: Option<RawConfig>,
    pub problems: Vec<Problem>,
}

pub(super) fn parse_all(source: &str) -> Read {
    match strict(source) {
        Ok(raw) => Read {
            raw: Some(raw),
            problems: Vec::new(),
        },
        Err(problems) => Read {
            raw: DeTable::parse(source)
                .ok()
                .and_then(|d| super::keys::without_bad_pairs(source, d.get_ref()))
                .and_then(|cleaned| strict(&cleaned).ok()),
            problems,
        },
    }
}

/// The file as written, or every problem of syntax, name or kind in it: a syntax
/// error stops the reading, but every unknown key and every value of the wrong kind is
/// reported (`keys.rs`).
fn strict(source: &str) -> Result<RawConfig, Vec<Problem>> {
    let syntax = |e: toml::de::Error| {
        let span = e.span().unwrap_or(0..0);
        vec![Problem::new(
            span.clone(),
            key_read_at(source, span.start),
            message(&e),
        )]
    };
    // One parse at a time: a fleet's file parsed is many times its size.
    let problems = super::keys::check(DeTable::parse(source).map_err(syntax)?.get_ref());
    if !problems.is_empty() {
        return Err(problems);
    }
    let document = Deserializer::parse(source).map_err(syntax)?;
    serde_path_to_error::deserialize(document).map_err(|e| {
        let key = key_of(source, e.path());
        let span = e.inner().span().unwrap_or(0..0);
        vec![Problem::new(span, key, message(e.inner()))]
    })
}

fn message(e: &toml::de::Error) -> String {
    match e.message().trim() {
        "duplicate key" => {
            "duplicate key: it is set earlier in the same table; keep one of the two".into()
        }
        other => other.to_string(),
    }
}

/// A deserializer's path as the configuration names keys: `api.max_attempts`,
/// `policy[nightly].keep` (a policy by its name, else by its place from 0), without the
/// places of list items.
fn key_of(source: &str, path: &serde_path_to_error::Path) -> String {
    let mut key = String::new();
    for segment in path {
        match segment {
            Segment::Map { key: k } if !k.starts_with(SPANNED_FIELD) => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(k);
            }
            Segment::Seq { index } if key == "policy" => {
                let name = policy_name(source, *index).unwrap_or_else(|| index.to_string());
                key = format!("policy[{name}]");
            }
            _ => {}
        }
    }
    key
}

/// The `name` of the `index`th `[[policy]]`, when it has one.
fn policy_name(source: &str, index: usize) -> Option<String> {
    let document = DeTable::parse(source).ok()?;
    let policy = document.get_ref().get("policy")?.get_ref().get(index)?;
    let name = policy.get_ref().get("name")?.get_ref().as_str()?;
    Some(name.to_string())
}

/// The key the parser was reading when it reached `offset`: the keys of the last table
/// header, then those of the key/value pair being read (inside inline tables too).
fn key_read_at(source: &str, offset: usize) -> String {
    let source = Source::new(source);
    let tokens = source.lex().into_vec();
    let mut reading = KeyBeingRead {
        source,
        offset,
        header: Vec::new(),
        keys: Vec::new(),
        open: Vec::new(),
        in_header: false,
    };
    let mut guarded = RecursionGuard::new(&mut reading, MAX_DEPTH);
    toml_parser::parser::parse_document(&tokens, &mut guarded, &mut ());
    reading.header.extend(reading.keys);
    reading.header.join(".")
}

struct KeyBeingRead<'s> {
    source: Source<'s>,
    offset: usize,
    /// The keys of the last `[table]` or `[[table]]` header.
    header: Vec<String>,
    /// The keys of the pair being read, from the header down.
    keys: Vec<String>,
    /// The arrays and inline tables open in the pair's value.
    open: Vec<Open>,
    in_header: bool,
}

enum Open {
    Array,
    /// An inline table, and how many keys lead to it.
    Table(usize),
}

impl KeyBeingRead<'_> {
    /// Whether an event at `span` came before the offset (events after it are ignored).
    fn before(&self, span: Span) -> bool {
        span.start() < self.offset
    }

    fn header_open(&mut self, span: Span) {
        if self.before(span) {
            self.header.clear();
            self.keys.clear();
            self.open.clear();
            self.in_header = true;
        }
    }
}

impl EventReceiver for KeyBeingRead<'_> {
    fn std_table_open(&mut self, span: Span, _: &mut dyn ErrorSink) {
        self.header_open(span);
    }
    fn array_table_open(&mut self, span: Span, _: &mut dyn ErrorSink) {
        self.header_open(span);
    }
    fn std_table_close(&mut self, span: Span, _: &mut dyn ErrorSink) {
        if self.before(span) {
            self.in_header = false;
        }
    }
    fn array_table_close(&mut self, span: Span, _: &mut dyn ErrorSink) {
        if self.before(span) {
            self.in_header = false;
        }
    }
    fn inline_table_open(&mut self, span: Span, _: &mut dyn ErrorSink) -> bool {
        if self.before(span) {
            self.open.push(Open::Table(self.keys.len()));
        }
        true
    }
    fn inline_table_close(&mut self, span: Span, _: &mut dyn ErrorSink) {
        if self.before(span)
            && let Some(Open::Table(n)) = self.open.pop()
        {
            self.keys.truncate(n);
        }
    }
    fn array_open(&mut self, span: Span, _: &mut dyn ErrorSink) -> bool {
        if self.before(span) {
            self.open.push(Open::Array);
        }
        true
    }
    fn array_close(&mut self, span: Span, _: &mut dyn ErrorSink) {
        if self.before(span) {
            self.open.pop();
        }
    }
    fn simple_key(&mut self, span: Span, encoding: Option<Encoding>, _: &mut dyn ErrorSink) {
        // A key starting at the offset is the one the error is about.
        if span.start() > self.offset {
            return;
        }
        let Some(text) = self.source.input().get(span.start()..span.end()) else {
            return;
        };
        let mut key = std::borrow::Cow::Borrowed("");
        Raw::new_unchecked(text, encoding, span).decode_key(&mut key, &mut ());
        if self.in_header {
            self.header.push(key.into_owned());
        } else {
            self.keys.push(key.into_owned());
        }
    }
    fn value_sep(&mut self, span: Span, _: &mut dyn ErrorSink) {
        // A comma in an inline table ends its pair.
        if self.before(span)
            && let Some(Open::Table(n)) = self.open.last()
        {
            self.keys.truncate(*n);
        }
    }
    fn newline(&mut self, span: Span, _: &mut dyn ErrorSink) {
        if self.before(span) && self.open.is_empty() {
            self.keys.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key and "line:column" of the problem in `source`.
    fn problem(source: &str) -> (String, String) {
        let p = parse(source).map(|_| ()).unwrap_err().remove(0);
        let located = p.clone().locate(std::path::Path::new("f"), source);
        let (line, col) = located.at.unwrap();
        (p.key, format!("{line}:{col}"))
    }

    fn at(key: &str, place: &str) -> (String, String) {
        (key.to_string(), place.to_string())
    }

    #[test]
    fn an_unknown_key_is_named_with_its_table_and_pointed_at() {
        assert_eq!(
            problem("[api]\nbase_urll = 1\n"),
            at("api.base_urll", "2:1")
        );
        assert_eq!(problem("[apis]\n"), at("apis", "1:2"));
        assert_eq!(
            problem("api = { base_urll = \"x\" }\n"),
            at("api.base_urll", "1:9")
        );
        assert_eq!(
            problem("api.base_urll = \"x\"\n"),
            at("api.base_urll", "1:5")
        );
    }

    #[test]
    fn a_value_of_the_wrong_kind_names_its_key_and_points_at_the_value() {
        assert_eq!(
            problem("[api]\nmax_attempts = \"five\"\n"),
            at("api.max_attempts", "2:16")
        );
        assert_eq!(
            problem("[daemon]\nstate_dir = \"\"\"\nx\n\"\"\"\nmax_concurrent_jobs = true\n"),
            at("daemon.max_concurrent_jobs", "5:23")
        );
    }

    #[test]
    fn a_wrong_item_in_a_multi_line_list_names_the_list() {
        let source =
            "[[policy]]\nname = \"a\"\nservers = [\n  1,\n  2.5,\n]\nschedule = \"@daily\"\n";
        assert_eq!(problem(source), at("policy[a].servers", "5:3"));
    }

    #[test]
    fn a_policy_is_named_by_its_name_or_else_its_place() {
        let named = "[[policy]]\nname = \"a\"\nservers = [1]\nschedule = \"@daily\"\n\
                     [[policy]]\nname = \"b\"\nservers = [1]\nschedule = \"@daily\"\nkeeep = 1\n";
        assert_eq!(problem(named), at("policy[b].keeep", "9:1"));
        let unnamed = "[[policy]]\nservers = [1]\nschedule = \"@daily\"\n";
        let (key, _) = problem(unnamed);
        assert_eq!(key, "policy[0].name");
        let e = parse(unnamed).map(|_| ()).unwrap_err().remove(0);
        assert_eq!(
            e.message,
            "policy[0] has no `name`: add a line like name = \"nightly\""
        );
    }

    #[test]
    fn a_syntax_error_names_the_key_the_parser_was_reading() {
        assert_eq!(problem("[api\n"), at("api", "1:5"));
        assert_eq!(problem("x = \n"), at("x", "1:5"));
        assert_eq!(
            problem("[api]\nmax_attempts = 5\n[api]\n"),
            at("api", "3:2")
        );
        assert_eq!(
            problem("[api]\nmax_attempts = 5\nmax_attempts = 6\n"),
            at("api.max_attempts", "3:1")
        );
        assert_eq!(
            problem("[api]\nx = { a = 1, b = }\n"),
            at("api.x.b", "2:18")
        );
        assert_eq!(
            problem("[daemon]\n\"state dir\" = [1,\n 2,, 3]\n"),
            at("daemon.state dir", "3:4")
        );
    }
}
