//! Every key the file may hold, with the kind of value it takes: the file is checked
//! against this list before it is read into `raw.rs`, so that every unknown key (with
//! the known key it was likely meant to be) and every value of the wrong kind is
//! reported at once, in words, not only the first one serde meets and in Rust's type
//! names. A test holds this list and `raw.rs` together.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::errors::Problem;

/// The kind of value a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Text,
    WholeNumber,
    TrueOrFalse,
    /// Server ids, names and globs in a list, or `"all"`.
    Servers,
    /// A command and its arguments: `["/usr/local/bin/freeze", "--db"]`.
    ListOfText,
    Table(&'static [Key]),
    /// A whole number, or an inline table of these keys (`keep`).
    WholeNumberOrTable(&'static [Key]),
    /// `[[name]]` tables.
    Tables(&'static [Key]),
}

/// A key, its kind, and an example of its value for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Key {
    pub name: &'static str,
    pub kind: Kind,
    pub example: &'static str,
    pub required: bool,
}

const fn key(name: &'static str, kind: Kind, example: &'static str) -> Key {
    Key {
        name,
        kind,
        example,
        required: false,
    }
}

const fn required(name: &'static str, kind: Kind, example: &'static str) -> Key {
    Key {
        name,
        kind,
        example,
        required: true,
    }
}

use Kind::*;

const API: &[Key] = &[
    key("base_url", Text, "\"https://api.example.com/v1\""),
    key("token_file", Text, "\"/etc/snaprotd/token\""),
    key("token_env", Text, "\"SNAPROTD_API_TOKEN\""),
    key("request_timeout", Text, "\"30s\""),
    key("max_attempts", WholeNumber, "5"),
    key("retry_backoff", Text, "\"1s\""),
    key("snapshot_cap", WholeNumber, "5"),
    key("max_requests_per_second", WholeNumber, "10"),
];

const DAEMON: &[Key] = &[
    key("state_dir", Text, "\"/var/lib/snaprotd\""),
    key("max_concurrent_jobs", WholeNumber, "4"),
    key("shutdown_timeout", Text, "\"10m\""),
    key(
        "metrics_file",
        Text,
        "\"/var/lib/prometheus/node-exporter/snaprotd.prom\"",
    ),
];

/// The tiers of `keep = { … }` (`config/keep.rs`).
const TIERS: &[Key] = &[
    key("last", WholeNumber, "3"),
    key("hourly", WholeNumber, "24"),
    key("daily", WholeNumber, "7"),
    key("weekly", WholeNumber, "4"),
    key("monthly", WholeNumber, "6"),
    key("yearly", WholeNumber, "1"),
];

const NOTIFY: &[Key] = &[
    key(
        "webhook_url",
        Text,
        "\"https://hooks.example.org/snaprotd\"",
    ),
    key("command", ListOfText, "[\"/usr/local/bin/alert\"]"),
    key("timeout", Text, "\"10s\""),
    key("max_attempts", WholeNumber, "5"),
    key("retry_backoff", Text, "\"1s\""),
];

/// The keys a `[[policy]]` shares with `[defaults]`.
const SHARED: &[Key] = &[
    key("timezone", Text, "\"Europe/Berlin\""),
    key("keep", WholeNumberOrTable(TIERS), "3"),
    key("stop_server", TrueOrFalse, "true"),
    key("snapshot_name", Text, "\"{policy}-{date}-{time}\""),
    key("poll_interval", Text, "\"10s\""),
    key("wait_timeout", Text, "\"1h\""),
    key("stop_timeout", Text, "\"5m\""),
    key("catch_up", TrueOrFalse, "true"),
    key(
        "pre_snapshot",
        ListOfText,
        "[\"/usr/local/bin/freeze\", \"--db\"]",
    ),
    key("post_snapshot", ListOfText, "[\"/usr/local/bin/thaw\"]"),
    key("hook_timeout", Text, "\"60s\""),
    key("ping_url", Text, "\"https://hc-ping.com/<uuid>\""),
];

const POLICY_OWN: &[Key] = &[
    required("name", Text, "\"nightly\""),
    required("servers", Servers, "[12345, \"web-*\"]"),
    required("schedule", Text, "\"30 2 * * *\""),
    key("description", Text, "\"nightly backup\""),
];

/// The keys every `[[policy]]` must have.
pub const REQUIRED_POLICY_KEYS: &[&str] = &["name", "servers", "schedule"];

const TOP: &[Key] = &[
    key("api", Table(API), "[api]"),
    key("daemon", Table(DAEMON), "[daemon]"),
    key("defaults", Table(SHARED), "[defaults]"),
    key("notify", Table(NOTIFY), "[notify]"),
    key("policy", Tables(&[]), "[[policy]]"),
];

/// The keys of a `[[policy]]`: its own and the shared ones.
fn policy_keys() -> impl Iterator<Item = &'static Key> {
    POLICY_OWN.iter().chain(SHARED)
}

/// The example of the key at `path`, as problems name keys (`notify.webhook_url`,
/// `policy[nightly].ping_url`, `defaults.pre_snapshot`): each key's own, from this
/// list, for a message that says how to write it.
pub(super) fn example(path: &str) -> Option<&'static str> {
    let (table, name) = path.split_once('.')?;
    let table = table.split_once('[').map_or(table, |(t, _)| t);
    let keys: Vec<&'static Key> = match TOP.iter().find(|k| k.name == table)?.kind {
        Tables(_) => policy_keys().collect(),
        Table(keys) => keys.iter().collect(),
        _ => return None,
    };
    keys.into_iter().find(|k| k.name == name).map(|k| k.example)
}

/// Every problem of kind and name in `document`.
pub(super) fn check(document: &DeTable<'_>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let top: Vec<&Key> = TOP.iter().collect();
    table(document, &top, "", None, &mut problems);
    // In the order of the file.
    problems.sort_by_key(|p| p.span.as_ref().map_or(0, |s| s.start));
    problems
}

/// `source` with every key/value pair that has a problem blanked out (spaces, line
/// breaks kept, so every other value keeps its place), for reading the rest; `None`
/// when a problem is not of one pair (a missing key).
pub(super) fn without_bad_pairs(source: &str, document: &DeTable<'_>) -> Option<String> {
    let mut pairs = Vec::new();
    let top: Vec<&Key> = TOP.iter().collect();
    bad_pairs(document, &top, &mut pairs)?;
    let mut bytes = source.as_bytes().to_vec();
    for range in pairs {
        for b in bytes.get_mut(range)? {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
    String::from_utf8(bytes).ok()
}

/// The byte ranges (key to end of value) of the pairs [`table`] reports.
fn bad_pairs(
    t: &DeTable<'_>,
    keys: &[&'static Key],
    pairs: &mut Vec<std::ops::Range<usize>>,
) -> Option<()> {
    for key in keys.iter().filter(|k| k.required) {
        if !t.keys().any(|k| k.get_ref() == key.name) {
            return None;
        }
    }
    for (k, v) in t {
        let pair = k.span().start..v.span().end;
        let Some(key) = keys.iter().find(|key| key.name == k.get_ref()) else {
            pairs.push(pair);
            continue;
        };
        let mut inner = Vec::new();
        value(key, v, "", &mut inner);
        if inner.is_empty() {
            continue;
        }
        match (key.kind, v.get_ref()) {
            (Table(keys), DeValue::Table(t)) => {
                let keys: Vec<&Key> = keys.iter().collect();
                bad_pairs(t, &keys, pairs)?;
            }
            (Tables(_), DeValue::Array(items)) => {
                let keys: Vec<&Key> = policy_keys().collect();
                for item in items.iter() {
                    let DeValue::Table(t) = item.get_ref() else {
                        return None;
                    };
                    bad_pairs(t, &keys, pairs)?;
                }
            }
            // A required key of the wrong kind cannot be left out.
            _ if key.required => return None,
            _ => pairs.push(pair),
        }
    }
    Some(())
}

/// Checks the keys of one table, named `path` (empty at the top), whose header or
/// place is at `at` (for a missing key).
fn table(
    t: &DeTable<'_>,
    keys: &[&'static Key],
    path: &str,
    at: Option<std::ops::Range<usize>>,
    problems: &mut Vec<Problem>,
) {
    let full = |name: &str| {
        if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    };
    for (k, v) in t {
        let name: &str = k.get_ref();
        match keys.iter().find(|key| key.name == name) {
            Some(key) => value(key, v, &full(name), problems),
            None => problems.push(Problem::new(
                k.span(),
                full(name),
                unknown(name, path, keys),
            )),
        }
    }
    for key in keys.iter().filter(|k| k.required) {
        if !t.keys().any(|k| k.get_ref() == key.name) {
            let what = if path.is_empty() {
                "the file".to_string()
            } else {
                path.to_string()
            };
            problems.push(Problem::new(
                at.clone().unwrap_or(0..0),
                full(key.name),
                format!(
                    "{what} has no `{}`: add a line like {} = {}",
                    key.name, key.name, key.example
                ),
            ));
        }
    }
}

/// "unknown key `kep` in [[policy]]; did you mean `keep`?"
fn unknown(name: &str, path: &str, keys: &[&'static Key]) -> String {
    let place = match path {
        "" => "at the top of the file".to_string(),
        p if p.starts_with("policy[") && p.ends_with(']') => "in a [[policy]]".to_string(),
        // A table inside one (`keep = { … }`).
        p => match p.rsplit_once('.') {
            Some((_, inner)) => format!("in {inner}"),
            None => format!("in [{p}]"),
        },
    };
    let closest = keys
        .iter()
        .map(|k| (strsim::damerau_levenshtein(name, k.name), k.name))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min();
    let names: Vec<&str> = keys.iter().map(|k| k.name).collect();
    match closest {
        Some((_, k)) => format!("unknown key `{name}` {place}; did you mean `{k}`?"),
        None => format!(
            "unknown key `{name}` {place}; the keys there are {}",
            names.join(", ")
        ),
    }
}

fn value(key: &Key, v: &Spanned<DeValue<'_>>, path: &str, problems: &mut Vec<Problem>) {
    let wrong = |problems: &mut Vec<Problem>, span, found: &str| {
        let like = match key.kind {
            Table(_) | Tables(_) => key.example.to_string(),
            WholeNumberOrTable(_) => format!(
                "{0} = {1} or {0} = {{ daily = 2, weekly = 2 }}",
                key.name, key.example
            ),
            _ => format!("{} = {}", key.name, key.example),
        };
        problems.push(Problem::new(
            span,
            path,
            format!(
                "expected {}, like {like}; found {found}",
                expected(key.kind)
            ),
        ))
    };
    match (key.kind, v.get_ref()) {
        (Text, DeValue::String(_)) | (TrueOrFalse, DeValue::Boolean(_)) => {}
        (WholeNumberOrTable(keys), DeValue::Table(t)) => {
            let keys: Vec<&Key> = keys.iter().collect();
            table(t, &keys, path, Some(v.span()), problems);
        }
        (WholeNumber | WholeNumberOrTable(_), DeValue::Integer(i)) => {
            if i64::from_str_radix(i.as_str(), i.radix()).is_err() {
                wrong(problems, v.span(), "a number too large");
            }
        }
        (Servers, DeValue::String(_)) => {}
        (Servers, DeValue::Array(items)) => {
            for item in items.iter() {
                match item.get_ref() {
                    DeValue::Integer(i) if i64::from_str_radix(i.as_str(), i.radix()).is_ok() => {}
                    DeValue::String(_) => {}
                    other => problems.push(Problem::new(
                        item.span(),
                        path,
                        format!(
                            "expected server ids (whole numbers) or names in quotes, like {} = {}; found {}",
                            key.name,
                            key.example,
                            found(other)
                        ),
                    )),
                }
            }
        }
        (ListOfText, DeValue::Array(items)) => {
            for item in items.iter() {
                if !matches!(item.get_ref(), DeValue::String(_)) {
                    problems.push(Problem::new(
                        item.span(),
                        path,
                        format!(
                            "expected a program and its arguments, each in quotes, like {} = {}; found {}",
                            key.name,
                            key.example,
                            found(item.get_ref())
                        ),
                    ));
                }
            }
        }
        (Table(keys), DeValue::Table(t)) => {
            let keys: Vec<&Key> = keys.iter().collect();
            table(t, &keys, path, Some(v.span()), problems);
        }
        (Tables(_), DeValue::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let DeValue::Table(t) = item.get_ref() else {
                    wrong(problems, item.span(), found(item.get_ref()));
                    continue;
                };
                let name = match t.get("name").map(|n| n.get_ref()) {
                    Some(DeValue::String(n)) => n.to_string(),
                    _ => i.to_string(),
                };
                let keys: Vec<&Key> = policy_keys().collect();
                table(
                    t,
                    &keys,
                    &format!("{path}[{name}]"),
                    Some(item.span()),
                    problems,
                );
            }
        }
        (_, other) => wrong(problems, v.span(), found(other)),
    }
}

fn expected(kind: Kind) -> &'static str {
    match kind {
        Text => "text in quotes",
        WholeNumber => "a whole number",
        WholeNumberOrTable(_) => "a whole number or a table",
        TrueOrFalse => "true or false",
        Servers => "a list of server ids and names, or \"all\"",
        ListOfText => "a list of text in quotes",
        Table(_) => "a table",
        Tables(_) => "tables",
    }
}

fn found(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "text",
        DeValue::Integer(_) => "a whole number",
        DeValue::Float(_) => "a number with a fraction",
        DeValue::Boolean(_) => "true or false",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_example_by_the_path_problems_name_it_with() {
        assert_eq!(
            example("notify.webhook_url"),
            Some("\"https://hooks.example.org/snaprotd\"")
        );
        assert_eq!(
            example("notify.command"),
            Some("[\"/usr/local/bin/alert\"]")
        );
        assert_eq!(
            example("policy[nightly].ping_url"),
            Some("\"https://hc-ping.com/<uuid>\"")
        );
        assert_eq!(
            example("defaults.post_snapshot"),
            Some("[\"/usr/local/bin/thaw\"]")
        );
        assert_eq!(example("policy[p].nope"), None);
        assert_eq!(example("k"), None);
    }

    fn problems(source: &str) -> Vec<(String, String)> {
        let doc = DeTable::parse(source).unwrap();
        check(doc.get_ref())
            .into_iter()
            .map(|p| (p.key, p.message))
            .collect()
    }

    /// Every key of the list, with its example, is read by `raw.rs` (which refuses
    /// what it does not know): the list and the structures hold the same keys.
    #[test]
    fn the_required_keys_are_the_ones_marked() {
        let marked: Vec<&str> = policy_keys()
            .filter(|k| k.required)
            .map(|k| k.name)
            .collect();
        assert_eq!(marked, REQUIRED_POLICY_KEYS);
    }

    #[test]
    fn every_key_listed_is_a_key_of_the_file() {
        let mut text = String::new();
        for (table, keys) in [
            ("api", API),
            ("daemon", DAEMON),
            ("defaults", SHARED),
            ("notify", NOTIFY),
        ] {
            text.push_str(&format!("[{table}]\n"));
            for k in keys {
                text.push_str(&format!("{} = {}\n", k.name, k.example));
            }
        }
        text.push_str("[[policy]]\n");
        for k in policy_keys() {
            match k.kind {
                // Its table form, with every key of the table.
                WholeNumberOrTable(inner) => {
                    let pairs: Vec<String> = inner
                        .iter()
                        .map(|i| format!("{} = {}", i.name, i.example))
                        .collect();
                    text.push_str(&format!("{} = {{ {} }}\n", k.name, pairs.join(", ")));
                }
                _ => text.push_str(&format!("{} = {}\n", k.name, k.example)),
            }
        }
        assert_eq!(problems(&text), vec![]);
        let read = super::super::read::parse(&text);
        assert!(read.is_ok(), "{:?}", read.err());
    }

    #[test]
    fn every_unknown_key_is_reported_with_the_key_it_was_likely_meant_to_be() {
        let found = problems(
            "[api]\nbase_ur = \"x\"\n[[policy]]\nname = \"a\"\nservers = [1]\n\
             schedule = \"@daily\"\nkep = 3\nstop_servr = true\nflavour = 1\n[apis]\n",
        );
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "api.base_ur",
                "policy[a].kep",
                "policy[a].stop_servr",
                "policy[a].flavour",
                "apis"
            ]
        );
        assert!(
            found[0].1.ends_with("did you mean `base_url`?"),
            "{found:?}"
        );
        assert!(found[1].1.ends_with("did you mean `keep`?"), "{found:?}");
        assert!(
            found[2].1.ends_with("did you mean `stop_server`?"),
            "{found:?}"
        );
        assert!(
            found[3].1.contains("the keys there are name, servers"),
            "{found:?}"
        );
        assert!(found[4].1.ends_with("did you mean `api`?"), "{found:?}");
    }

    #[test]
    fn values_of_the_wrong_kind_are_named_in_words() {
        let found = problems(
            "[api]\nmax_attempts = 1.5\n[[policy]]\nname = \"a\"\nservers = [1, true]\n\
             schedule = \"@daily\"\nkeep = \"3\"\nstop_server = \"yes\"\n",
        );
        assert_eq!(
            found,
            [
                (
                    "api.max_attempts".into(),
                    "expected a whole number, like max_attempts = 5; found a number with a fraction"
                        .into()
                ),
                (
                    "policy[a].servers".into(),
                    "expected server ids (whole numbers) or names in quotes, like servers = [12345, \"web-*\"]; found true or false"
                        .into()
                ),
                (
                    "policy[a].keep".into(),
                    "expected a whole number or a table, like keep = 3 or keep = { daily = 2, weekly = 2 }; found text".into()
                ),
                (
                    "policy[a].stop_server".into(),
                    "expected true or false, like stop_server = true; found text".into()
                ),
            ]
        );
        for (_, message) in &found {
            assert!(!message.contains("i64") && !message.contains("invalid type"));
        }
    }

    #[test]
    fn keep_is_a_number_or_a_table_of_known_tiers() {
        let found = problems(
            "[defaults]\nkeep = { daily = 2, wekly = 1 }\n[[policy]]\nname = \"a\"\n\
             servers = [1]\nschedule = \"@daily\"\nkeep = { monthly = \"1\", fortnightly = 2 }\n",
        );
        assert_eq!(
            found,
            [
                (
                    "defaults.keep.wekly".into(),
                    "unknown key `wekly` in keep; did you mean `weekly`?".into()
                ),
                (
                    "policy[a].keep.monthly".into(),
                    "expected a whole number, like monthly = 6; found text".into()
                ),
                (
                    "policy[a].keep.fortnightly".into(),
                    "unknown key `fortnightly` in keep; the keys there are last, hourly, daily, \
                     weekly, monthly, yearly"
                        .into()
                ),
            ]
        );
        assert_eq!(problems("[defaults]\nkeep = { yearly = 1 }\n"), []);
    }

    #[test]
    fn a_hook_is_a_list_of_text() {
        let found = problems(
            "[defaults]\npre_snapshot = \"/bin/freeze --db\"\n[[policy]]\nname = \"a\"\n\
             servers = [1]\nschedule = \"@daily\"\npost_snapshot = [\"/bin/thaw\", 3]\n\
             hook_timeout = 5\n",
        );
        assert_eq!(
            found,
            [
                (
                    "defaults.pre_snapshot".into(),
                    "expected a list of text in quotes, like pre_snapshot = \
                     [\"/usr/local/bin/freeze\", \"--db\"]; found text"
                        .into()
                ),
                (
                    "policy[a].post_snapshot".into(),
                    "expected a program and its arguments, each in quotes, like post_snapshot = \
                     [\"/usr/local/bin/thaw\"]; found a whole number"
                        .into()
                ),
                (
                    "policy[a].hook_timeout".into(),
                    "expected text in quotes, like hook_timeout = \"60s\"; found a whole number"
                        .into()
                ),
            ]
        );
    }

    #[test]
    fn a_policy_without_a_required_key_says_what_to_add() {
        let found = problems("[[policy]]\nname = \"a\"\nschedule = \"@daily\"\n");
        assert_eq!(
            found,
            [(
                "policy[a].servers".into(),
                "policy[a] has no `servers`: add a line like servers = [12345, \"web-*\"]".into()
            )]
        );
        assert_eq!(
            problems("policy = 3\n"),
            [(
                "policy".into(),
                "expected tables, like [[policy]]; found a whole number".into()
            )]
        );
    }
}
