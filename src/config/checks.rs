//! The rules a configuration must follow, one function each, pure: a value with where
//! it was written goes in, the typed value or the problem comes out. `build.rs` applies
//! them to the file; the token and environment are read in `sources.rs`.

use std::collections::HashSet;
use std::fmt;
use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use toml::Spanned;
use url::{Host, Url};

use super::errors::Problem;
use super::keep::{Keep, Tier};
use super::raw::{RawKeep, RawServer, RawServers};
use super::schema::Policy;
use super::servers::ServerPattern;
use super::template::{self, Clash, NameTemplate};
use crate::names::is_plain_name;
use crate::schedule::Schedule;

pub(super) const MAX_ATTEMPTS: RangeInclusive<i64> = 1..=20;
pub(super) const SNAPSHOT_CAP: RangeInclusive<i64> = 1..=1000;
pub(super) const MAX_REQUESTS_PER_SECOND: RangeInclusive<i64> = 1..=10_000;
pub(super) const MAX_CONCURRENT_JOBS: RangeInclusive<i64> = 1..=100_000;
/// The longest policy description, in characters.
pub(super) const MAX_DESCRIPTION: usize = 200;

/// A value of the file, where it was written, and the key that names it.
#[derive(Debug, Clone)]
pub(super) struct At<T> {
    pub value: T,
    pub span: Range<usize>,
    pub key: String,
}

impl<T> At<T> {
    pub fn of(v: &Spanned<T>, key: impl Into<String>) -> At<T>
    where
        T: Clone,
    {
        At {
            value: v.get_ref().clone(),
            span: v.span(),
            key: key.into(),
        }
    }

    pub fn problem(&self, message: impl fmt::Display) -> Problem {
        Problem::new(self.span.clone(), self.key.clone(), message)
    }
}

/// A duration longer than zero, written as humantime reads it ("30s", "10m").
pub(super) fn duration(v: &At<String>) -> Result<Duration, Problem> {
    match humantime::parse_duration(&v.value) {
        Ok(d) if d.is_zero() => Err(v.problem("must be longer than zero")),
        Ok(d) => Ok(d),
        Err(e) => Err(v.problem(format!(
            "{:?} is not a duration ({e}); write e.g. \"30s\", \"10m\", \"1h\"",
            v.value
        ))),
    }
}

/// A whole number within `range`.
pub(super) fn int_in(v: &At<i64>, range: RangeInclusive<i64>) -> Result<i64, Problem> {
    if range.contains(&v.value) {
        Ok(v.value)
    } else {
        Err(v.problem(format!(
            "{} is out of range: must be {} to {}",
            v.value,
            range.start(),
            range.end()
        )))
    }
}

/// The provider's URL: https, or http to loopback only; no credentials in it.
pub(super) fn base_url(v: &At<String>) -> Result<Url, Problem> {
    let url = Url::parse(v.value.trim_end_matches('/'))
        .map_err(|e| v.problem(format!("{:?} is not a URL: {e}", v.value)))?;
    https_or_loopback(v, url, "the token goes in token_file")
}

/// A URL notices or pings go to (`webhook_url`, `ping_url`), as `base_url`: https, or
/// http to loopback only; no credentials in it. It is a secret: a problem never shows
/// it whole.
pub(super) fn notify_url(v: &At<String>) -> Result<Url, Problem> {
    let url = Url::parse(v.value.trim_end_matches('/'))
        .map_err(|e| v.problem(format!("is not a URL ({e}){}", write_like(&v.key))))?;
    https_or_loopback(v, url, "put the secret in the path, as hc-ping.com does")
}

/// https, or http to loopback only; no user name or password.
fn https_or_loopback(v: &At<String>, url: Url, instead: &str) -> Result<Url, Problem> {
    let loopback = match url.host() {
        Some(Host::Domain(d)) => d == "localhost",
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(v.problem(
                "http:// is allowed only for loopback (127.0.0.0/8, ::1, localhost); use https://",
            ));
        }
        other => {
            return Err(v.problem(format!("scheme {other}:// is not supported; use https://")));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(v.problem(format!("must not carry credentials; {instead}")));
    }
    Ok(url)
}

/// A policy name holds letters, digits, `-` and `_` only.
pub(super) fn plain_policy_name(v: &At<String>) -> Result<(), Problem> {
    if is_plain_name(&v.value) {
        Ok(())
    } else {
        Err(v.problem(format!("{:?}: use letters, digits, - and _ only", v.value)))
    }
}

/// No two policies share a name.
pub(super) fn unique_policy_name(v: &At<String>, taken: &HashSet<String>) -> Result<(), Problem> {
    if taken.contains(&v.value) {
        Err(v.problem(format!("a policy named {:?} is already defined", v.value)))
    } else {
        Ok(())
    }
}

/// A policy lists at least one server: each a positive id or a name (a glob among
/// them), none twice; or it says `"all"`.
pub(super) fn servers(v: &At<RawServers>) -> Result<(Vec<u64>, Vec<ServerPattern>), Vec<Problem>> {
    let list = match &v.value {
        RawServers::Text(t) if t == "all" => return Ok((Vec::new(), vec![ServerPattern::All])),
        RawServers::Text(t) if t.eq_ignore_ascii_case("all") => {
            return Err(vec![v.problem(format!(
                "{t:?}: write servers = \"all\" (in lower case) for every server of the account"
            ))]);
        }
        RawServers::Text(t) => {
            return Err(vec![v.problem(format!(
                "{t:?} is one text, not a list: write servers = [{t:?}], or servers = \"all\" for every server of the account"
            ))]);
        }
        RawServers::List(list) => list,
    };
    if list.is_empty() {
        return Err(vec![v.problem("lists no server")]);
    }
    let mut ids = Vec::new();
    let mut patterns = Vec::new();
    let mut problems = Vec::new();
    for s in list {
        let problem = |message: String| Problem::new(s.span(), v.key.clone(), message);
        match s.get_ref() {
            RawServer::Id(id) => match u64::try_from(*id) {
                Ok(id) if id > 0 && !ids.contains(&id) => ids.push(id),
                Ok(id) if id > 0 => problems.push(problem(format!("server {id} is listed twice"))),
                _ => problems.push(problem(format!("{id} is not a server id"))),
            },
            RawServer::Name(n) if n == "all" => problems.push(problem(
                "\"all\" stands alone: write servers = \"all\"".into(),
            )),
            RawServer::Name(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                problems.push(problem(format!(
                    "{n:?} is in quotes, so a server's name; for the server with id {n} write {n} without quotes"
                )))
            }
            RawServer::Name(n) => match ServerPattern::parse(n) {
                Ok(p) if patterns.contains(&p) => {
                    problems.push(problem(format!("{n:?} is listed twice")))
                }
                Ok(p) => patterns.push(p),
                Err(e) => problems.push(problem(format!(
                    "{e}; a name is matched exactly, a glob by * ? and [a-z]"
                ))),
            },
        }
    }
    if problems.is_empty() {
        Ok((ids, patterns))
    } else {
        Err(problems)
    }
}

/// A cron expression that fires.
pub(super) fn schedule(v: &At<String>) -> Result<Schedule, Problem> {
    Schedule::parse(&v.value).map_err(|e| v.problem(e))
}

/// An IANA time zone.
pub(super) fn timezone(v: &At<String>) -> Result<Tz, Problem> {
    v.value.parse::<Tz>().map_err(|_| {
        v.problem(format!(
            "{:?} is not an IANA time zone (e.g. \"Europe/Berlin\")",
            v.value
        ))
    })
}

/// A policy keeps at least one snapshot, and no more than the provider allows: `keep =
/// N`, or tiers each keeping 1 or more (unknown tier names are refused by `keys.rs`),
/// adding up to at most the cap.
pub(super) fn keep(v: &At<RawKeep>, cap: usize) -> Result<Keep, Problem> {
    let tiers = match &v.value {
        RawKeep::Newest(n) => {
            let max = i64::try_from(cap).unwrap_or(i64::MAX);
            let at = At {
                value: *n,
                span: v.span.clone(),
                key: v.key.clone(),
            };
            return int_in(&at, 1..=max).map(|n| Keep::newest(n as usize));
        }
        RawKeep::Tiers(tiers) => tiers,
    };
    let mut counted = Vec::new();
    for (name, n) in tiers {
        let Some(tier) = Tier::from_key(name) else {
            return Err(v.problem(format!("{name} is not a tier")));
        };
        match usize::try_from(*n) {
            Ok(n) if n >= 1 => counted.push((tier, n)),
            _ => {
                return Err(v.problem(format!(
                    "{name} = {n} keeps nothing: each tier keeps 1 or more; leave {name} out instead"
                )));
            }
        }
    }
    let Some(keep) = Keep::tiers(counted) else {
        return Err(v.problem(format!(
            "names no tier: write keep = 3 for the newest 3, or tiers like keep = {{ daily = 2, weekly = 2 }} ({})",
            TIER_KEYS
        )));
    };
    if keep.total() > cap {
        return Err(v.problem(format!(
            "keeps up to {} snapshots ({keep}) but the provider allows {cap} per server; lower a tier",
            keep.total()
        )));
    }
    Ok(keep)
}

/// The tiers, for messages.
const TIER_KEYS: &str = "tiers: last, hourly, daily, weekly, monthly, yearly";

/// A snapshot name template.
pub(super) fn snapshot_name(v: &At<String>) -> Result<NameTemplate, Problem> {
    NameTemplate::parse(&v.value).map_err(|e| v.problem(e))
}

/// Two fires of the schedule never render the same name, in the policy's zone and across
/// its clock changes from `now` on; the advice names exactly the fields to add.
pub(super) fn name_fine_enough(
    name: &At<NameTemplate>,
    schedule: &Schedule,
    zone: Tz,
    now: DateTime<Utc>,
) -> Result<(), Problem> {
    let template = name.value.source();
    match name.value.tells_apart(schedule, zone, now) {
        Ok(()) => Ok(()),
        Err(Clash::NoYear) => Err(name.problem(format!(
            "{template:?} has no %Y: names would repeat every year"
        ))),
        Err(Clash::Coarse(c)) => {
            let when = |t: &DateTime<Tz>| t.format("%Y-%m-%d %H:%M:%S %:z").to_string();
            let moved = match c.moved_from {
                Some(skipped) => format!(
                    " (for {}, skipped by the clock change)",
                    skipped.format("%H:%M:%S")
                ),
                None => String::new(),
            };
            Err(name.problem(format!(
                "{template:?} is too coarse for schedule {:?}: the fires at {}{moved} and {} would get the same name; add {}",
                schedule.expr(),
                when(&c.first),
                when(&c.second),
                c.add
            )))
        }
    }
}

/// Every name the template renders for the policy's servers is short enough.
pub(super) fn name_short_enough(
    name: &At<NameTemplate>,
    policy: &str,
    servers: &[u64],
) -> Result<(), Problem> {
    let longest = servers
        .iter()
        .map(|s| name.value.rendered_len(policy, *s))
        .max();
    match longest {
        Some(longest) if longest > template::MAX_NAME_LEN => Err(name.problem(format!(
            "renders names of {longest} characters; at most {} are allowed",
            template::MAX_NAME_LEN
        ))),
        _ => Ok(()),
    }
}

/// A description of at most [`MAX_DESCRIPTION`] characters.
pub(super) fn description(v: &At<String>) -> Result<String, Problem> {
    if v.value.chars().count() > MAX_DESCRIPTION {
        Err(v.problem(format!("is longer than {MAX_DESCRIPTION} characters")))
    } else {
        Ok(v.value.clone())
    }
}

/// The policies of one server keep no more than the cap in all; exactly the cap works
/// but earns a warning (`Ok(Some(_))`). `last` is where the `keep` of the last of
/// `policies` is written, and its key: the problem is reported there.
pub(super) fn keep_within_cap(
    server: u64,
    policies: &[&Policy],
    cap: usize,
    (last, key): (Range<usize>, String),
) -> Result<Option<Problem>, Problem> {
    let total: usize = policies.iter().map(|p| p.keep.total()).sum();
    let names = policies
        .iter()
        .map(|p| format!("{} keeps {}", p.name, p.keep))
        .collect::<Vec<_>>()
        .join(", ");
    if total > cap {
        Err(Problem::new(
            last,
            key,
            format!(
                "server {server} would need {total} snapshots ({names}) but the provider allows {cap}; lower keep"
            ),
        ))
    } else if total == cap {
        Ok(Some(Problem::new(
            last,
            key,
            format!(
                "server {server}: keep adds up to the cap of {cap} ({names}); every run must delete before it creates and a manual snapshot will block it"
            ),
        )))
    } else {
        Ok(None)
    }
}

/// Two policies on one server cannot claim the same snapshot name; reported at `b`'s
/// name (`at`).
pub(super) fn names_apart(
    server: u64,
    a: &Policy,
    b: &Policy,
    at: Range<usize>,
) -> Result<(), Problem> {
    if a.snapshot_name
        .overlaps(&a.name, &b.snapshot_name, &b.name, server)
    {
        Err(Problem::new(
            at,
            format!("policy[{}].snapshot_name", b.name),
            format!(
                "on server {server}, names of policy {} and policy {} can look the same; put {{policy}} in snapshot_name",
                a.name, b.name
            ),
        ))
    } else {
        Ok(())
    }
}

/// `; write it like <the key's own example>` (from the list of keys), or nothing for
/// a key without one.
fn write_like(key: &str) -> String {
    super::keys::example(key).map_or(String::new(), |e| format!("; write it like {e}"))
}

/// A hook's (or the notify command's) command: a program by absolute path (it runs without a shell or a search
/// path), then its arguments; no NUL byte in any word (it could not be passed on).
pub(super) fn hook_command(
    v: &At<Vec<Spanned<String>>>,
) -> Result<super::schema::HookCommand, Problem> {
    let Some((program, args)) = v.value.split_first() else {
        return Err(v.problem(format!(
            "is empty: give the program's absolute path first, then its arguments{}; \
             or leave the key out",
            write_like(&v.key)
        )));
    };
    let at =
        |word: &Spanned<String>, message: String| Problem::new(word.span(), v.key.clone(), message);
    if let Some(word) = v.value.iter().find(|w| w.get_ref().contains('\0')) {
        return Err(at(word, format!("{:?} holds a NUL byte", word.get_ref())));
    }
    let path = std::path::Path::new(program.get_ref());
    if !path.is_absolute() || program.get_ref().ends_with('/') {
        return Err(at(
            program,
            format!(
                "{:?} is not the absolute path of a program: snaprotd starts it without a \
                 shell and without a search path{}",
                program.get_ref(),
                write_like(&v.key)
            ),
        ));
    }
    Ok(super::schema::HookCommand::new(
        path.to_path_buf(),
        args.iter().map(|a| a.get_ref().clone()).collect(),
    ))
}

#[cfg(test)]
mod tests;
