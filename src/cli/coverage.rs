//! `snaprotd coverage`: the restore points each job will hold at the end of each of the
//! coming days, if its schedule runs from now, starting with no snapshot, and every
//! fire succeeds. Each fire adds a snapshot made at the fire time and applies the
//! rotation's own retention rule (`rotation/retention.rs`), so the two cannot disagree.
//! No API call, no token.

use std::path::Path;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use clap_complete::engine::ArgValueCompleter;
use serde::Serialize;

use super::output::{self, outln};
use super::{CliError, CliResult, Exit, load_config_offline};
use crate::config::{Keep, Policy};
use crate::rotation::retention;
use crate::state::StateDir;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this policy
    #[arg(long, value_name = "POLICY", add = ArgValueCompleter::new(super::complete::policies))]
    policy: Option<String>,
    /// Only this server
    #[arg(long, value_name = "ID", add = ArgValueCompleter::new(super::complete::servers))]
    server: Option<u64>,
    /// How many days to show, today first (1 to 400)
    #[arg(long, value_name = "N", default_value_t = 35, value_parser = clap::value_parser!(u32).range(1..=400))]
    days: u32,
    /// Print the result as JSON
    #[arg(long)]
    pub(super) json: bool,
}

/// The most fires played for one job: a schedule firing every second would take long.
pub const MAX_FIRES: usize = 200_000;

/// The restore points held at the end of one day (in the policy's zone), oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Day {
    pub date: NaiveDate,
    #[serde(serialize_with = "ser_times")]
    pub kept: Vec<DateTime<Utc>>,
    /// When the day ends.
    #[serde(skip)]
    pub end: DateTime<Utc>,
}

fn ser_times<S: serde::Serializer>(times: &[DateTime<Utc>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(times.iter().map(|t| output::json_time(*t)))
}

/// The first instant of `date` in `zone` (midnight, or the first time after a gap).
fn day_start(zone: Tz, date: NaiveDate) -> DateTime<Utc> {
    let midnight = date.and_time(chrono::NaiveTime::MIN);
    (0..=24 * 4)
        .find_map(|quarter| {
            zone.from_local_datetime(&(midnight + Duration::minutes(15 * quarter)))
                .earliest()
        })
        .map_or_else(|| Utc.from_utc_datetime(&midnight), |t| t.to_utc())
}

/// Plays `keep` over the fires of `policy` after `from`, for `days` days from
/// `from`'s date in the policy's zone: `None` when it fires more than [`MAX_FIRES`]
/// times in them.
pub fn play(policy: &Policy, keep: &Keep, from: DateTime<Utc>, days: u32) -> Option<Vec<Day>> {
    let zone = policy.timezone;
    let first = from.with_timezone(&zone).date_naive();
    // Newest first, as retention takes them.
    let mut held: Vec<DateTime<Utc>> = Vec::new();
    let mut next = policy.schedule.next_fire(zone, from);
    let mut fires = 0;
    let mut out = Vec::new();
    for date in first.iter_days().take(days as usize) {
        let end = day_start(zone, date.succ_opt()?);
        while let Some(at) = next.filter(|t| *t < end) {
            fires += 1;
            if fires > MAX_FIRES {
                return None;
            }
            held.insert(0, at);
            let verdicts = retention::apply(keep, zone, &held);
            held = held
                .into_iter()
                .zip(verdicts)
                .filter(|(_, kept_by)| !kept_by.is_empty())
                .map(|(t, _)| t)
                .collect();
            next = policy.schedule.next_fire(zone, at);
        }
        out.push(Day {
            date,
            kept: held.iter().rev().copied().collect(),
            end,
        });
    }
    Some(out)
}

/// One job's days. A policy that names its servers by name or glob has one row for
/// all of them (`policy@web-*`, no `server`): they share its schedule and keep.
#[derive(Serialize)]
struct JobCoverage<'a> {
    job: String,
    policy: &'a str,
    server: Option<u64>,
    timezone: &'static str,
    keep: Keep,
    days: Vec<Day>,
}

pub async fn run(path: &Path, args: Args) -> CliResult {
    let config = load_config_offline(path)?;
    let (policy, server) = (args.policy.as_deref(), args.server);
    let (jobs, patterned) = super::once::by_id(&config, policy, server)?;
    let mut rows: Vec<(String, &Policy, Option<u64>)> = Vec::new();
    for job in jobs {
        if let Some(p) = config.job_policy(&job.policy, job.server) {
            rows.push((job.to_string(), p, Some(job.server)));
        }
    }
    // The servers of policies that name them: those the last listing found (the
    // state directory's known jobs), else one row for them all.
    let known = StateDir::new(&config.daemon.state_dir).known_jobs().await;
    for p in patterned {
        let found: Vec<u64> = known
            .keys()
            .filter(|j| *j.policy == p.name && !p.servers.contains(&j.server))
            .map(|j| j.server)
            .collect();
        if found.is_empty() && server.is_none() {
            let named: Vec<String> = p.patterns.iter().map(ToString::to_string).collect();
            rows.push((format!("{}@{}", p.name, named.join(",")), p, None));
        }
        for s in found
            .into_iter()
            .filter(|s| server.is_none_or(|want| want == *s))
        {
            rows.push((format!("{}@{s}", p.name), p, Some(s)));
        }
    }
    if rows.is_empty() {
        return Err(super::once::no_matching_job(policy, server));
    }
    let now = Utc::now();
    let mut shown = Vec::new();
    let mut skipped: Vec<(String, String)> = Vec::new();
    for (job, policy, server) in rows {
        let Some(days) = play(policy, &policy.keep, now, args.days) else {
            skipped.push((job, too_many_fires(policy, now, args.days)));
            continue;
        };
        shown.push(JobCoverage {
            job,
            policy: &policy.name,
            server,
            timezone: policy.timezone.name(),
            keep: policy.keep,
            days,
        });
    }
    if shown.is_empty()
        && let Some((_, why)) = skipped.first()
    {
        return Err(CliError::TooManyFires(why.clone()));
    }
    if args.json {
        let skipped: Vec<_> = skipped
            .iter()
            .map(|(job, why)| serde_json::json!({ "job": job, "message": why }))
            .collect();
        output::json(&serde_json::json!({ "jobs": shown, "skipped": skipped }));
    } else {
        timeline(&shown, args.days);
        output::notes("Not shown", &skipped);
    }
    Ok(Exit::Success)
}

/// Why a policy's coverage over `days` is not played, and how many days would be.
fn too_many_fires(policy: &Policy, now: DateTime<Utc>, days: u32) -> String {
    let zone = policy.timezone;
    let day_later = now + Duration::days(1);
    let mut per_day = 0usize;
    let mut next = policy.schedule.next_fire(zone, now);
    while let Some(at) = next.filter(|t| *t < day_later && per_day <= MAX_FIRES) {
        per_day += 1;
        next = policy.schedule.next_fire(zone, at);
    }
    let fit = MAX_FIRES / per_day.max(1);
    let ask = match fit {
        0 => "it fires too often to be played over a whole day".to_string(),
        n => format!("--days {n} shows it"),
    };
    format!(
        "policy {} fires more than {MAX_FIRES} times in {days} days, the most coverage plays for a job; {ask}",
        policy.name
    )
}

/// The age band of a restore point `age` old: under a day, a week, a month, a year.
fn band(age: Duration) -> char {
    match age.num_hours() {
        h if h < 24 => 'h',
        h if h < 7 * 24 => 'd',
        h if h < 31 * 24 => 'w',
        h if h < 365 * 24 => 'm',
        _ => 'y',
    }
}

/// One day's mark: a letter per restore point, newest first ("hdw"), runs counted
/// when long ("3h2dw"), `·` for none.
fn mark(day: &Day) -> String {
    if day.kept.is_empty() {
        return "·".into();
    }
    let letters: Vec<char> = day.kept.iter().rev().map(|t| band(day.end - *t)).collect();
    if letters.len() <= 6 {
        return letters.into_iter().collect();
    }
    let mut out = String::new();
    let mut i = 0;
    while i < letters.len() {
        let run = letters[i..]
            .iter()
            .take_while(|c| **c == letters[i])
            .count();
        if run > 1 {
            out.push_str(&run.to_string());
        }
        out.push(letters[i]);
        i += run;
    }
    out
}

/// The terminal's view: a week a block, a row per job, a column per day.
fn timeline(jobs: &[JobCoverage<'_>], days: u32) {
    let Some(first) = jobs
        .iter()
        .filter_map(|j| j.days.first())
        .map(|d| d.date)
        .min()
    else {
        return;
    };
    let days = match days {
        1 => "1 day".to_string(),
        n => format!("{n} days"),
    };
    outln!("Restore points held at the end of each day from {first} ({days}), if every fire");
    outln!("from now succeeds; dates in each policy's time zone. A letter per restore point,");
    outln!("newest first, by its age at the day's end: h under a day, d under a week, w under a");
    outln!("month, m under a year, y older; 3d: three d; · none.");
    let last = jobs
        .iter()
        .filter_map(|j| j.days.last())
        .map(|d| d.date)
        .max()
        .unwrap_or(first);
    let cells: Vec<Vec<(NaiveDate, String)>> = jobs
        .iter()
        .map(|j| j.days.iter().map(|d| (d.date, mark(d))).collect())
        .collect();
    let width = cells
        .iter()
        .flatten()
        .map(|(_, m)| m.chars().count())
        .max()
        .unwrap_or(1)
        .max("Mon 23".len());
    let label = jobs
        .iter()
        .map(|j| j.job.len())
        .max()
        .unwrap_or(0)
        .max("week of 2026-11-23".len());
    let mut monday = first - Duration::days(i64::from(first.weekday().num_days_from_monday()));
    while monday <= last {
        outln!();
        let mut header = format!("{:<label$}", format!("week of {monday}"));
        for d in monday.iter_days().take(7) {
            header.push_str(&format!("  {:<width$}", d.format("%a %d").to_string()));
        }
        outln!("{}", header.trim_end());
        for (j, row) in jobs.iter().zip(&cells) {
            let mut line = format!("{:<label$}", j.job);
            for d in monday.iter_days().take(7) {
                let cell = row
                    .iter()
                    .find(|(date, _)| *date == d)
                    .map_or("", |(_, m)| m.as_str());
                line.push_str(&format!("  {cell:<width$}"));
            }
            outln!("{}", line.trim_end());
        }
        monday += Duration::days(7);
    }
    outln!();
    outln!("At the end of the last day, made on:");
    for j in jobs {
        let Some(day) = j.days.last() else { continue };
        let zone: Tz = j.timezone.parse().unwrap_or(chrono_tz::UTC);
        let dates: Vec<String> = day
            .kept
            .iter()
            .rev()
            .map(|t| t.with_timezone(&zone).format("%Y-%m-%d").to_string())
            .collect();
        outln!(
            "  {:<label$}  {} (keep {})",
            j.job,
            if dates.is_empty() {
                "none".to_string()
            } else {
                dates.join(" ")
            },
            j.keep
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Tier;

    fn policy(schedule: &str, zone: Tz) -> Policy {
        let config = crate::config::Config::from_source(
            Path::new("t.toml"),
            &format!(
                "[api]\ntoken_env = \"HOME\"\n[[policy]]\nname = \"p\"\nservers = [1]\n\
                 schedule = \"{schedule}\"\ntimezone = \"{}\"\nsnapshot_name = \"{{policy}}-%Y%m%d-%H%M%S\"\n",
                zone.name()
            ),
        )
        .unwrap();
        config.policies[0].clone()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn each_day_holds_what_retention_keeps_of_the_fires_so_far() {
        let p = policy("0 0 * * *", chrono_tz::UTC);
        let keep = Keep::tiers([(Tier::Daily, 2), (Tier::Weekly, 2)]).unwrap();
        // Tuesday 2026-11-24, 20:00.
        let days = play(&p, &keep, at("2026-11-24T20:00:00Z"), 14).unwrap();
        assert_eq!(days.len(), 14);
        assert_eq!(days[0].date.to_string(), "2026-11-24");
        assert!(days[0].kept.is_empty(), "no fire yet on the first day");
        assert_eq!(days[1].kept, [at("2026-11-25T00:00:00Z")]);
        // Sunday 2026-12-06 (week 49) ends with Dec 6 and 5 (daily), Nov 29 (week 48).
        assert_eq!(days[12].date.to_string(), "2026-12-06");
        assert_eq!(
            days[12].kept,
            [
                at("2026-11-29T00:00:00Z"),
                at("2026-12-05T00:00:00Z"),
                at("2026-12-06T00:00:00Z")
            ]
        );
        // At the day's end: a day, two days and a week old.
        assert_eq!(mark(&days[12]), "ddw");
    }

    #[test]
    fn days_end_at_midnight_in_the_policys_zone() {
        let p = policy("30 23 * * *", chrono_tz::Europe::Berlin);
        let days = play(&p, &Keep::newest(2), at("2026-11-24T12:00:00Z"), 2).unwrap();
        // 23:30 in Berlin is 22:30 UTC, on the same day there.
        assert_eq!(days[0].kept, [at("2026-11-24T22:30:00Z")]);
        assert_eq!(days[0].end, at("2026-11-24T23:00:00Z"));
    }

    #[test]
    fn a_schedule_firing_too_often_is_refused_rather_than_played_for_long() {
        let p = policy("* * * * * *", chrono_tz::UTC);
        assert!(play(&p, &Keep::newest(1), at("2026-11-24T00:00:00Z"), 3).is_none());
    }

    #[test]
    fn long_runs_of_one_band_are_counted() {
        let end = at("2026-11-24T00:00:00Z");
        let kept: Vec<_> = (1..=8)
            .map(|h| end - Duration::hours(h * 2))
            .rev()
            .collect();
        let day = Day {
            date: end.date_naive(),
            kept,
            end,
        };
        assert_eq!(mark(&day), "8h");
    }
}
