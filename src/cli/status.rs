//! `snaprotd status`: last run, outcome and next fire of every job, and the servers
//! snaprotd stopped and left stopped, from the state directory (no API call); with
//! `--provider`, also each job's newest completed snapshot from one account-wide
//! listing, and whether it is stale. A monitoring check: exit codes of the
//! monitoring-plugin convention (0 ok, 1 a last run failed, 2 overdue, stale or a server
//! left stopped, 3 unknown), and `--check` prints the plugin's one line.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use super::output::{self, errln, outln, ser_time};
use super::views::{RunJson, TimeJson};
use super::{CliError, CliResult, Exit, Health, load_config_offline};
use crate::config::file::{FileError, read_text};
use crate::config::{Config, Policy};
use crate::job::JobId;
use crate::provider::{Client, Snapshot, SnapshotStatus};
use crate::runner::RunReport;
use crate::state::{HookEntry, StateDir, StoppedEntry};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print the result as JSON
    #[arg(long)]
    pub(super) json: bool,
    /// Also ask the provider (one account-wide listing; needs the API token) for each
    /// job's newest completed snapshot: a job is stale when it is older than two periods
    /// of its schedule plus wait_timeout, or when there is none
    #[arg(long)]
    provider: bool,
    /// Print one line for Nagios, Icinga or Sensu: `SNAPROTD <STATE> - <summary> |
    /// <performance data>`, with the same exit code
    #[arg(long, conflicts_with = "json")]
    check: bool,
}

struct JobStatus {
    job: JobId,
    last_run: Option<RunReport>,
    next_fire: Option<DateTime<Utc>>,
    /// A fire that passed (with time to finish) and that no run answered.
    missed: Option<DateTime<Utc>>,
    /// With `--provider`: the job's newest snapshot, and whether it is stale.
    freshness: Option<Freshness>,
}

impl JobStatus {
    fn overdue(&self) -> bool {
        self.missed.is_some()
    }

    fn failed(&self) -> bool {
        self.last_run.as_ref().is_some_and(|l| !l.ok)
    }

    fn stale(&self) -> bool {
        self.freshness.as_ref().is_some_and(|f| f.stale)
    }
}

/// A job's newest snapshot at the provider, measured against its schedule.
struct Freshness {
    /// Its newest completed snapshot.
    newest: Option<Snapshot>,
    /// Two periods of the schedule plus `wait_timeout` (none: the schedule has no two
    /// fires to measure).
    limit: Option<chrono::Duration>,
    /// When the job was first scheduled, if the daemon has.
    known_since: Option<DateTime<Utc>>,
    stale: bool,
}

/// What `status` found.
struct Found {
    jobs: Vec<JobStatus>,
    /// Servers snaprotd stopped and did not start again (no job is working on them).
    stopped: Vec<StoppedEntry>,
    /// Freezes (`pre_snapshot`) whose thaw (`post_snapshot`) has not run (no job is
    /// working on their server).
    frozen: Vec<HookEntry>,
    /// Whether the provider was asked (`--provider`).
    provider: bool,
    /// Whether a daemon works on the state directory: `None` when none ever did (jobs
    /// run by `once` alone); `Some(false)`, it ran here and is down: nothing fires.
    daemon: Option<bool>,
}

impl Found {
    fn daemon_down(&self) -> bool {
        self.daemon == Some(false)
    }
}

/// Far above any record the daemon writes.
const MAX_RECORD_BYTES: u64 = 1024 * 1024;

/// How long after a fire its run may take before the job counts as overdue: a stop,
/// the snapshot, a start, its hooks, plus a minute.
fn grace(p: &Policy) -> chrono::Duration {
    let hooks = if p.hooks.any() {
        p.hooks.timeout * 2
    } else {
        std::time::Duration::ZERO
    };
    let d = p.stop_timeout * 2 + p.wait_timeout + hooks + std::time::Duration::from_secs(60);
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::hours(1))
}

async fn statuses(config: &Config, state: &StateDir, now: DateTime<Utc>) -> Vec<JobStatus> {
    let known = state.known_jobs().await;
    let mut out = Vec::new();
    // The jobs of servers listed by id, and those the daemon found for patterns.
    let jobs = crate::runner::known_jobs(config, &known);
    for p in &config.policies {
        // The last fire whose run should have ended by now.
        let due = p.schedule.previous_fire(p.timezone, now - grace(p));
        for job in jobs.iter().filter(|j| *j.policy == p.name).cloned() {
            let last_run = state.last_run::<RunReport>(&job).await;
            let answered = |fire: DateTime<Utc>| match &last_run {
                Some(l) => l.scheduled_for >= fire,
                None => known.get(&job).is_none_or(|since| *since >= fire),
            };
            let missed = due.filter(|fire| !answered(*fire));
            out.push(JobStatus {
                job,
                last_run,
                next_fire: p.schedule.next_fire(p.timezone, now),
                missed,
                freshness: None,
            });
        }
    }
    out
}

/// Older than this, a job's newest snapshot is stale: two periods of its schedule (the
/// time between its two latest fires, or its next two when it has not fired yet) plus
/// `wait_timeout`, as sanoid's `--monitor-snapshots` measures.
fn stale_after(p: &Policy, now: DateTime<Utc>) -> Option<chrono::Duration> {
    let (s, tz) = (&p.schedule, p.timezone);
    let latest_two = s
        .previous_fire(tz, now)
        .and_then(|b| Some((s.previous_fire(tz, b - chrono::Duration::seconds(1))?, b)));
    let (a, b) = latest_two.or_else(|| {
        let a = s.next_fire(tz, now)?;
        Some((a, s.next_fire(tz, a)?))
    })?;
    Some((b - a) * 2 + chrono::Duration::from_std(p.wait_timeout).ok()?)
}

/// Whether a job is stale: its newest completed snapshot is older than `limit`, or it
/// has none and has been scheduled for longer than that (a job the daemon never
/// scheduled is stale: nothing makes its snapshots).
fn is_stale(
    newest: Option<&Snapshot>,
    limit: Option<chrono::Duration>,
    known_since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    match (newest, limit, known_since) {
        (Some(s), Some(limit), _) => now - s.created_at > limit,
        (Some(_), None, _) => false,
        (None, Some(limit), Some(since)) => now - since > limit,
        (None, _, _) => true,
    }
}

/// The newest completed snapshot of every job, from a listing of the account: a
/// snapshot is a job's when its policy owns its name on its server.
fn newest_owned(config: &Config, snapshots: Vec<Snapshot>) -> HashMap<JobId, Snapshot> {
    let mut newest: HashMap<JobId, Snapshot> = HashMap::new();
    for s in snapshots {
        if s.status != SnapshotStatus::Completed {
            continue;
        }
        let server = s.server.id;
        let owner = config
            .policies
            .iter()
            .find(|p| p.may_cover(server) && p.owns(server, &s.name));
        let Some(p) = owner else { continue };
        let job = JobId::new(p.name.as_str(), server);
        match newest.get(&job) {
            Some(seen) if (seen.created_at, seen.id) >= (s.created_at, s.id) => {}
            _ => {
                newest.insert(job, s);
            }
        }
    }
    newest
}

/// Adds each job's newest snapshot and whether it is stale.
fn add_freshness(
    config: &Config,
    jobs: &mut [JobStatus],
    snapshots: Vec<Snapshot>,
    known: &std::collections::BTreeMap<JobId, DateTime<Utc>>,
    now: DateTime<Utc>,
) {
    let mut newest = newest_owned(config, snapshots);
    for j in jobs {
        let Some(p) = config.job_policy(&j.job.policy, j.job.server) else {
            continue;
        };
        let newest = newest.remove(&j.job);
        let limit = stale_after(p, now);
        let known_since = known.get(&j.job).copied();
        j.freshness = Some(Freshness {
            stale: is_stale(newest.as_ref(), limit, known_since, now),
            newest,
            limit,
            known_since,
        });
    }
}

/// Why what the state directory says cannot be trusted, if it cannot: it is missing,
/// or a directory or record in it cannot be read (by this user). Reading it would give
/// "never ran" for every job, and a monitoring check would report OK knowing nothing.
fn unreadable_state(root: &Path) -> Option<String> {
    use std::io::ErrorKind;
    let as_reason = |what: &Path, e: &std::io::Error| {
        let hint = if e.kind() == ErrorKind::PermissionDenied {
            "; run status as root or as the daemon's user"
        } else {
            ""
        };
        if what == root {
            format!("{e}{hint}")
        } else {
            format!("{}: {e}{hint}", what.display())
        }
    };
    match std::fs::metadata(root) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Some(
                "it does not exist (the daemon makes it when it starts): is [daemon] state_dir, \
                 or $STATE_DIRECTORY, the daemon's?"
                    .into(),
            );
        }
        Err(e) => return Some(as_reason(root, &e)),
        Ok(meta) if !meta.is_dir() => return Some("it is not a directory".into()),
        Ok(_) => {}
    }
    // The records sit in the directory and one level below it (runs/, stopped/, …).
    let mut dirs = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => return Some(as_reason(&dir, &e)),
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => return Some(as_reason(&dir, &e)),
            };
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "json") {
                // Opened without blocking, as a regular file of sane size, like the
                // configuration: a FIFO here must not hang a monitoring check.
                match read_text(&path, MAX_RECORD_BYTES, "a state record") {
                    Ok(_) => {}
                    // Replaced or removed by the daemon meanwhile.
                    Err(FileError::Io(e)) if e.kind() == ErrorKind::NotFound => {}
                    Err(FileError::Io(e)) => return Some(as_reason(&path, &e)),
                    Err(e) => return Some(format!("{}: {e}", path.display())),
                }
            } else if depth == 0 && entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push((path, 1));
            }
        }
    }
    None
}

/// The worst of what was found: overdue, stale or left stopped, then failed.
fn health(found: &Found) -> Health {
    let jobs = &found.jobs;
    if jobs.iter().any(|j| j.overdue() || j.stale())
        || !found.stopped.is_empty()
        || !found.frozen.is_empty()
        || found.daemon_down()
    {
        Health::Critical
    } else if jobs.iter().any(JobStatus::failed) {
        Health::Warning
    } else {
        Health::Ok
    }
}

/// Prints that nothing is known, and why; exit 3. `extra` adds fields to the JSON.
fn unknown(args: &Args, error: &str, extra: serde_json::Value) -> CliResult {
    if args.check {
        outln!("SNAPROTD UNKNOWN - {error}");
    } else if args.json {
        let mut doc = json!({ "status": "unknown" });
        if let (Some(doc), serde_json::Value::Object(extra)) = (doc.as_object_mut(), extra) {
            doc.extend(extra);
            doc.insert("error".into(), error.into());
        }
        output::json(&doc);
    } else {
        outln!("UNKNOWN: {error}");
    }
    Ok(Exit::Status(Health::Unknown))
}

pub async fn run(path: &Path, args: Args) -> CliResult {
    // A configuration that cannot be read leaves every job unknown: a monitoring
    // check says UNKNOWN (exit 3), not a code it does not know.
    let config = match load_config_offline(path) {
        Ok(config) => config,
        Err(CliError::Config(errors)) => {
            for line in errors.0.iter() {
                errln!("error: {line}");
            }
            let first = errors.0.first().map_or(String::new(), |e| e.to_string());
            let more = match errors.0.len() {
                0 | 1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            let error = format!("the configuration is not valid: {first}{more}");
            return unknown(&args, &error, json!({ "config": path }));
        }
        Err(e) => return Err(e),
    };
    let root = &config.daemon.state_dir;
    if let Some(reason) = unreadable_state(root) {
        let error = format!(
            "cannot read the state directory {}: {reason}",
            root.display()
        );
        return unknown(&args, &error, json!({ "state_dir": root }));
    }
    let now = Utc::now();
    let state = StateDir::new(root);
    let mut found = Found {
        jobs: statuses(&config, &state, now).await,
        stopped: state.servers_left_stopped().await,
        frozen: state.freezes_left().await,
        provider: args.provider,
        daemon: state.daemon_running().await,
    };
    if args.provider {
        // The token is read only now: without --provider, status needs none. A
        // token that cannot be read leaves the provider unknown, as a monitoring
        // check reports it.
        let api = match crate::config::Config::load(path) {
            Ok(with_token) => with_token.api,
            Err(errors) => {
                let error = format!("cannot read the API token: {errors}");
                return unknown(&args, &error, json!({}));
            }
        };
        let listed = match Client::new(&api) {
            Ok(client) => client.list_snapshots(None).await,
            Err(e) => Err(e),
        };
        match listed {
            Ok(listing) => {
                let known = state.known_jobs().await;
                add_freshness(&config, &mut found.jobs, listing.snapshots, &known, now);
            }
            Err(e) => {
                let error = format!("cannot list the snapshots at the provider: {e}");
                return unknown(&args, &error, json!({}));
            }
        }
    }
    let health = health(&found);
    if args.check {
        outln!("SNAPROTD {} - {}", health.plugin_word(), check_line(&found));
    } else if args.json {
        print_json(&found, health, now);
    } else {
        print_table(&config, &found, now);
    }
    Ok(Exit::Status(health))
}

/// Up to three items, then "…".
fn some(items: Vec<String>) -> String {
    let more = items.len() > 3;
    let mut shown: Vec<String> = items.into_iter().take(3).collect();
    if more {
        shown.push("…".into());
    }
    shown.join(", ")
}

/// The summary and performance data of `status --check`: what is wrong, the worst
/// first, naming a few jobs each.
fn check_line(found: &Found) -> String {
    let jobs = &found.jobs;
    let n = jobs.len();
    let of = |pick: fn(&JobStatus) -> bool, what: &str, say: fn(&JobStatus) -> String| {
        let hit: Vec<String> = jobs.iter().filter(|j| pick(j)).map(say).collect();
        (!hit.is_empty()).then(|| format!("{} of {n} jobs {what} ({})", hit.len(), some(hit)))
    };
    let stopped: Vec<String> = found
        .stopped
        .iter()
        .map(|e| e.server().to_string())
        .collect();
    let stopped_part = match stopped.len() {
        0 => None,
        1 => Some(format!("server {} left stopped", stopped[0])),
        k => Some(format!("{k} servers left stopped ({})", some(stopped))),
    };
    let frozen_part = match found.frozen.len() {
        0 => None,
        1 => Some(format!("server {} left frozen", found.frozen[0].server())),
        k => Some(format!(
            "{k} servers left frozen ({})",
            some(
                found
                    .frozen
                    .iter()
                    .map(|e| e.server().to_string())
                    .collect()
            )
        )),
    };
    let parts: Vec<String> = [
        found
            .daemon_down()
            .then(|| "the daemon is not running".to_string()),
        of(|j| j.overdue(), "overdue", |j| j.job.to_string()),
        of(JobStatus::stale, "stale", |j| {
            match j.freshness.as_ref().and_then(|f| f.newest.as_ref()) {
                Some(s) => format!("{} newest {} ago", j.job, output::age(s.created_at)),
                None => format!("{} none", j.job),
            }
        }),
        stopped_part,
        frozen_part,
        of(JobStatus::failed, "failed", |j| j.job.to_string()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let summary = if parts.is_empty() {
        format!("{n} jobs ok")
    } else {
        parts.join("; ")
    };
    let count = |pick: fn(&JobStatus) -> bool| jobs.iter().filter(|j| pick(j)).count();
    let stale = if found.provider {
        format!(" stale={}", count(JobStatus::stale))
    } else {
        String::new()
    };
    format!(
        "{summary} | jobs={n} failed={} overdue={}{stale} stopped={} frozen={}",
        count(JobStatus::failed),
        count(|j| j.overdue()),
        found.stopped.len(),
        found.frozen.len()
    )
}

/// A job's newest snapshot, for `--json`.
#[derive(Serialize)]
struct NewestJson {
    name: String,
    id: u64,
    #[serde(serialize_with = "ser_time")]
    created_at: DateTime<Utc>,
    age_seconds: i64,
}

/// A job, for `--json`.
#[derive(Serialize)]
struct StatusJobJson {
    job: String,
    policy: String,
    server: u64,
    last_run: Option<RunJson>,
    /// When the job last succeeded.
    last_success: TimeJson,
    next_fire: TimeJson,
    overdue: bool,
    /// The fire no run answered, when overdue.
    missed_fire: TimeJson,
    /// With `--provider`: its newest completed snapshot (`null`: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    newest_snapshot: Option<Option<NewestJson>>,
    /// With `--provider`.
    #[serde(skip_serializing_if = "Option::is_none")]
    stale: Option<bool>,
}

/// A server left stopped, for `--json`.
#[derive(Serialize)]
struct StoppedJson {
    server: u64,
    job: Option<String>,
    policy: Option<String>,
    snapshot_name: Option<String>,
    snapshot_id: Option<u64>,
    stopped_at: TimeJson,
    /// Why its record cannot be read, when it cannot.
    error: Option<String>,
}

fn print_json(found: &Found, health: Health, now: DateTime<Utc>) {
    let jobs: Vec<StatusJobJson> = found
        .jobs
        .iter()
        .map(|j| StatusJobJson {
            job: j.job.to_string(),
            policy: j.job.policy.to_string(),
            server: j.job.server,
            last_run: j.last_run.as_ref().map(RunJson::from),
            last_success: TimeJson(j.last_run.as_ref().and_then(RunReport::last_success)),
            next_fire: TimeJson(j.next_fire),
            overdue: j.overdue(),
            missed_fire: TimeJson(j.missed),
            newest_snapshot: j.freshness.as_ref().map(|f| {
                f.newest.as_ref().map(|s| NewestJson {
                    name: s.name.clone(),
                    id: s.id,
                    created_at: s.created_at,
                    age_seconds: (now - s.created_at).num_seconds(),
                })
            }),
            stale: j.freshness.as_ref().map(|f| f.stale),
        })
        .collect();
    let stopped: Vec<StoppedJson> = found
        .stopped
        .iter()
        .map(|e| match e {
            StoppedEntry::Record(r) => StoppedJson {
                server: r.server(),
                job: Some(r.job.to_string()),
                policy: Some(r.job.policy.to_string()),
                snapshot_name: Some(r.snapshot_name.clone()),
                snapshot_id: r.snapshot_id,
                stopped_at: TimeJson(Some(r.stopped_at)),
                error: None,
            },
            StoppedEntry::Corrupt { server, problem } => StoppedJson {
                server: *server,
                job: None,
                policy: None,
                snapshot_name: None,
                snapshot_id: None,
                stopped_at: TimeJson(None),
                error: Some(problem.clone()),
            },
        })
        .collect();
    let frozen: Vec<FrozenJson> = found.frozen.iter().map(FrozenJson::from).collect();
    output::json(&json!({
        "status": health.word(),
        "daemon": match found.daemon {
            None => "never_ran",
            Some(true) => "running",
            Some(false) => "not_running",
        },
        "jobs": jobs, "servers_stopped": stopped, "freezes_left": frozen,
    }));
}

fn print_table(config: &Config, found: &Found, now: DateTime<Utc>) {
    let zone = |job: &JobId| {
        config
            .policy(&job.policy)
            .map_or(chrono_tz::UTC, |p| p.timezone)
    };
    let rows: Vec<Vec<String>> = found
        .jobs
        .iter()
        .map(|j| {
            let tz = zone(&j.job);
            let (last, outcome) = match &j.last_run {
                Some(l) => (
                    output::when(l.finished_at, tz),
                    if l.ok { "ok" } else { "FAILED" },
                ),
                None => ("never".into(), "-"),
            };
            let next = j.next_fire.map_or("-".into(), |t| output::when(t, tz));
            let left = j.next_fire.map_or("-".into(), output::left);
            let problems: Vec<&str> = [(j.overdue(), "OVERDUE"), (j.stale(), "STALE")]
                .into_iter()
                .filter_map(|(is, word)| is.then_some(word))
                .collect();
            let outcome = if problems.is_empty() {
                outcome.to_string()
            } else {
                format!("{}, last {outcome}", problems.join(", "))
            };
            let mut row = vec![j.job.to_string(), last, next, left];
            if let Some(f) = &j.freshness {
                row.push(f.newest.as_ref().map_or("none".into(), |s| {
                    format!("{} ago", output::span((now - s.created_at).num_seconds()))
                }));
            }
            row.push(outcome);
            row
        })
        .collect();
    let mut header = vec!["JOB", "LAST RUN", "NEXT FIRE", "LEFT"];
    if found.provider {
        header.push("NEWEST");
    }
    header.push("OUTCOME");
    output::table(&header, &rows);
    if found.daemon_down() {
        outln!();
        outln!(
            "The daemon is not running: it worked on {} before, and no job fires until it \
             runs again (systemctl status snaprotd).",
            config.daemon.state_dir.display()
        );
    }
    let missed: Vec<(String, String)> = found
        .jobs
        .iter()
        .filter_map(|j| {
            let fire = j.missed?;
            Some((
                j.job.to_string(),
                format!(
                    "no run answered the fire of {}",
                    output::when(fire, zone(&j.job))
                ),
            ))
        })
        .collect();
    output::notes("Overdue jobs", &missed);
    let failures: Vec<(String, String)> = found
        .jobs
        .iter()
        .filter_map(|j| {
            let l = j.last_run.as_ref().filter(|l| !l.ok)?;
            Some((j.job.to_string(), l.message.clone()))
        })
        .collect();
    output::notes("Failed last runs", &failures);
    let stale: Vec<(String, String)> = found
        .jobs
        .iter()
        .filter(|j| j.stale())
        .filter_map(|j| Some((j.job.to_string(), stale_note(j.freshness.as_ref()?, now))))
        .collect();
    output::notes("Stale jobs", &stale);
    let stopped: Vec<(String, String)> = found
        .stopped
        .iter()
        .map(|e| (format!("server {}", e.server()), stopped_note(e, zone)))
        .collect();
    output::notes("Servers left stopped", &stopped);
    let frozen: Vec<(String, String)> = found
        .frozen
        .iter()
        .map(|e| (format!("server {}", e.server()), frozen_note(e, zone)))
        .collect();
    output::notes("Freezes not thawed", &frozen);
}

/// A freeze left behind, for `--json`.
#[derive(Serialize)]
struct FrozenJson {
    server: u64,
    job: Option<String>,
    snapshot_name: Option<String>,
    started_at: TimeJson,
    error: Option<String>,
}

impl From<&HookEntry> for FrozenJson {
    fn from(e: &HookEntry) -> FrozenJson {
        match e {
            HookEntry::Record(r) => FrozenJson {
                server: r.job.server,
                job: Some(r.job.to_string()),
                snapshot_name: Some(r.snapshot_name.clone()),
                started_at: TimeJson(Some(r.started_at)),
                error: None,
            },
            HookEntry::Corrupt {
                server, problem, ..
            } => FrozenJson {
                server: *server,
                job: None,
                snapshot_name: None,
                started_at: TimeJson(None),
                error: Some(problem.clone()),
            },
        }
    }
}

/// What a freeze left behind is, in a line.
fn frozen_note(e: &HookEntry, zone: impl Fn(&JobId) -> chrono_tz::Tz) -> String {
    match e {
        HookEntry::Record(r) => format!(
            "pre_snapshot of {} ran at {} for snapshot {}, and its post_snapshot did not; \
             the next job on the server, or the daemon's next start, runs it with SNAPROTD_RESULT=interrupted",
            r.job,
            output::when(r.started_at, zone(&r.job)),
            r.snapshot_name
        ),
        HookEntry::Corrupt {
            server, problem, ..
        } => format!(
            "its record hooks/{server}.json cannot be read ({problem}); check the server and thaw it by hand"
        ),
    }
}

/// Why a job is stale, in a line.
fn stale_note(f: &Freshness, now: DateTime<Utc>) -> String {
    let limit = f.limit.map_or(String::new(), |l| {
        format!(
            ", more than {} (two periods of the schedule plus wait_timeout)",
            output::span(l.num_seconds())
        )
    });
    match (&f.newest, f.known_since) {
        (Some(s), _) => format!(
            "its newest snapshot, {} (id {}), is {} old{limit}",
            s.name,
            s.id,
            output::span((now - s.created_at).num_seconds())
        ),
        (None, Some(since)) => format!(
            "no completed snapshot of this policy on this server, in {} since the job was first scheduled",
            output::span((now - since).num_seconds())
        ),
        (None, None) => "no completed snapshot of this policy on this server, and the daemon has not scheduled this job (is it running with this configuration?)".into(),
    }
}

/// What a server left stopped is, in a line.
fn stopped_note(e: &StoppedEntry, zone: impl Fn(&JobId) -> chrono_tz::Tz) -> String {
    match e {
        StoppedEntry::Record(r) => format!(
            "stopped by {} at {} for snapshot {}, and not started again (journalctl -u snaprotd SERVER_ID={})",
            r.job,
            output::when(r.stopped_at, zone(&r.job)),
            r.snapshot_name,
            r.server()
        ),
        StoppedEntry::Corrupt { server, problem } => format!(
            "its record stopped/{server}.json cannot be read ({problem}); the daemon starts it again at its next start"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(overdue: bool, ok: Option<bool>) -> JobStatus {
        let job = JobId::new("nightly", 1);
        let run = RunReport::new(job.clone(), Utc::now());
        JobStatus {
            job,
            last_run: ok.map(|ok| if ok { run } else { run.fail("no".into()) }),
            next_fire: None,
            missed: overdue.then(Utc::now),
            freshness: None,
        }
    }

    fn found(jobs: Vec<JobStatus>) -> Found {
        Found {
            jobs,
            stopped: Vec::new(),
            frozen: Vec::new(),
            provider: false,
            daemon: None,
        }
    }

    #[test]
    fn critical_outranks_warning_which_outranks_ok() {
        assert_eq!(health(&found(vec![])), Health::Ok);
        assert_eq!(
            health(&found(vec![job(false, None), job(false, Some(true))])),
            Health::Ok
        );
        assert_eq!(
            health(&found(vec![
                job(false, Some(true)),
                job(false, Some(false))
            ])),
            Health::Warning
        );
        assert_eq!(
            health(&found(vec![job(false, Some(false)), job(true, Some(true))])),
            Health::Critical
        );
        let mut stale = job(false, Some(false));
        stale.freshness = Some(Freshness {
            newest: None,
            limit: None,
            known_since: None,
            stale: true,
        });
        assert_eq!(health(&found(vec![stale])), Health::Critical);
        let mut left = found(vec![job(false, Some(false))]);
        left.stopped.push(StoppedEntry::Corrupt {
            server: 2,
            problem: "bad".into(),
        });
        assert_eq!(health(&left), Health::Critical);
        // A daemon that ran here and is down: nothing fires.
        let mut down = found(vec![job(false, Some(true))]);
        down.daemon = Some(false);
        assert_eq!(health(&down), Health::Critical);
        down.daemon = Some(true);
        assert_eq!(health(&down), Health::Ok);
    }

    fn policy(schedule: &str, wait: u64) -> Policy {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t").unwrap();
        let text = format!(
            "[api]\ntoken_file = {token:?}\n[[policy]]\nname = \"p\"\nservers = [1]\nschedule = \"{schedule}\"\nkeep = 1\nwait_timeout = \"{wait}s\"\n"
        );
        let mut config = Config::from_source(&dir.path().join("c.toml"), &text).unwrap();
        config.policies.remove(0)
    }

    #[test]
    fn stale_means_older_than_two_periods_plus_wait_timeout() {
        let now: DateTime<Utc> = "2026-11-24T10:00:00Z".parse().unwrap();
        let h = chrono::Duration::hours;
        // Daily at midnight, wait_timeout 10 minutes: 2 days and 10 minutes.
        let daily = policy("0 0 * * *", 600);
        let limit = stale_after(&daily, now).unwrap();
        assert_eq!(limit, h(48) + chrono::Duration::minutes(10));
        let s = chrono::Duration::seconds;
        // Every 6 hours: the time between its two latest fires.
        assert_eq!(
            stale_after(&policy("0 */6 * * *", 1), now),
            Some(h(12) + s(1))
        );
        // Weekdays only: seen on a Tuesday, Tuesday's fire came a day after Monday's;
        // seen on a Monday, Monday's came three days after Friday's.
        let weekdays = policy("0 1 * * 1-5", 1);
        assert_eq!(stale_after(&weekdays, now), Some(h(48) + s(1)));
        let monday: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        assert_eq!(stale_after(&weekdays, monday), Some(h(144) + s(1)));

        let snap = |age: chrono::Duration| Snapshot {
            id: 1,
            server: crate::provider::ServerRef { id: 1, name: None },
            name: "p".into(),
            status: SnapshotStatus::Completed,
            size_mb: None,
            created_at: now - age,
            description: None,
        };
        let limit = Some(limit);
        assert!(!is_stale(Some(&snap(h(48))), limit, None, now));
        assert!(is_stale(Some(&snap(h(49))), limit, None, now));
        // None: stale, unless the job is newer than the limit.
        assert!(is_stale(None, limit, None, now));
        assert!(is_stale(None, limit, Some(now - h(72)), now));
        assert!(!is_stale(None, limit, Some(now - h(1)), now));
    }

    #[test]
    fn a_missing_state_directory_or_a_file_in_its_place_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        let why = unreadable_state(&root).unwrap();
        assert!(why.starts_with("it does not exist"), "{why}");
        std::fs::write(&root, "").unwrap();
        assert_eq!(unreadable_state(&root).unwrap(), "it is not a directory");
    }

    #[test]
    fn an_empty_or_readable_state_directory_is_known() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(unreadable_state(dir.path()), None);
        std::fs::create_dir(dir.path().join("runs")).unwrap();
        std::fs::write(dir.path().join("runs/nightly@1.json"), "{}").unwrap();
        std::fs::write(dir.path().join("known-jobs.json"), "{}").unwrap();
        std::fs::write(dir.path().join("lock"), "").unwrap();
        assert_eq!(unreadable_state(dir.path()), None);
    }

    #[test]
    fn a_record_that_cannot_be_read_is_named_without_blocking_on_it() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        std::fs::create_dir(&runs).unwrap();
        let record = runs.join("nightly@1.json");
        std::fs::create_dir(&record).unwrap();
        let why = unreadable_state(dir.path()).unwrap();
        assert_eq!(
            why,
            format!(
                "{}: it is a directory, not a regular file",
                record.display()
            )
        );
        std::fs::remove_dir(&record).unwrap();
        let made = std::process::Command::new("mkfifo").arg(&record).status();
        assert!(made.is_ok_and(|s| s.success()));
        let why = unreadable_state(dir.path()).unwrap();
        assert!(
            why.ends_with("it is a FIFO (named pipe), not a regular file"),
            "{why}"
        );
    }
}
