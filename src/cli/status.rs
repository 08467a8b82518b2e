//! `snaprotd status`: last run, outcome and next fire of every job, from the state
//! directory; usable as a monitoring check (exit codes of the monitoring-plugin
//! convention: 0 ok, 1 a last run failed, 2 overdue, 3 unknown).

use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::output::{self, outln};
use super::views::{RunJson, TimeJson};
use super::{CliResult, Exit, Health, load_config_offline};
use crate::config::file::{FileError, read_text};
use crate::config::{Config, Policy};
use crate::job::JobId;
use crate::runner::RunReport;
use crate::state::StateDir;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

struct JobStatus {
    job: JobId,
    last_run: Option<RunReport>,
    next_fire: Option<DateTime<Utc>>,
    /// A fire passed (with time to finish) and no run answered it.
    overdue: bool,
}

/// Far above any record the daemon writes.
const MAX_RECORD_BYTES: u64 = 1024 * 1024;

/// How long after a fire its run may take before the job counts as overdue: a stop,
/// the snapshot, a start, plus a minute.
fn grace(p: &Policy) -> chrono::Duration {
    let d = p.stop_timeout * 2 + p.wait_timeout + std::time::Duration::from_secs(60);
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::hours(1))
}

async fn statuses(config: &Config, now: DateTime<Utc>) -> Vec<JobStatus> {
    let state = StateDir::new(&config.daemon.state_dir);
    let known = state.known_jobs().await;
    let mut out = Vec::new();
    for p in &config.policies {
        // The last fire whose run should have ended by now.
        let due = p.schedule.previous_fire(p.timezone, now - grace(p));
        for job in p.jobs() {
            let last_run = state.last_run::<RunReport>(&job).await;
            let answered = |fire: DateTime<Utc>| match &last_run {
                Some(l) => l.scheduled_for >= fire,
                None => known.get(&job).is_none_or(|since| *since >= fire),
            };
            let overdue = due.is_some_and(|fire| !answered(fire));
            out.push(JobStatus {
                job,
                last_run,
                next_fire: p.schedule.next_fire(p.timezone, now),
                overdue,
            });
        }
    }
    out
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

/// What the jobs' states say, the worst first: overdue, then failed.
fn health(jobs: &[JobStatus]) -> Health {
    if jobs.iter().any(|j| j.overdue) {
        Health::Overdue
    } else if jobs
        .iter()
        .any(|j| j.last_run.as_ref().is_some_and(|l| !l.ok))
    {
        Health::Failed
    } else {
        Health::Ok
    }
}

pub async fn run(path: &Path, args: Args) -> CliResult {
    let config = load_config_offline(path)?;
    let root = &config.daemon.state_dir;
    if let Some(reason) = unreadable_state(root) {
        let error = format!(
            "cannot read the state directory {}: {reason}",
            root.display()
        );
        if args.json {
            output::json(&serde_json::json!({
                "status": "unknown", "state_dir": root, "error": error,
            }));
        } else {
            outln!("UNKNOWN: {error}");
        }
        return Ok(Exit::Status(Health::Unknown));
    }
    let jobs = statuses(&config, Utc::now()).await;
    let health = health(&jobs);
    if args.json {
        let list: Vec<_> = jobs
            .iter()
            .map(|j| {
                json!({
                    "job": j.job.to_string(), "policy": j.job.policy.as_ref(),
                    "server": j.job.server,
                    "last_run": j.last_run.as_ref().map(RunJson::from),
                    "next_fire": TimeJson(j.next_fire), "overdue": j.overdue,
                })
            })
            .collect();
        output::json(&json!({ "status": health.word(), "jobs": list }));
    } else {
        let rows: Vec<Vec<String>> = jobs
            .iter()
            .map(|j| {
                let tz = config
                    .policy(&j.job.policy)
                    .map_or(chrono_tz::UTC, |p| p.timezone);
                let (last, outcome) = match &j.last_run {
                    Some(l) => (
                        output::when(l.finished_at, tz),
                        if l.ok { "ok" } else { "FAILED" },
                    ),
                    None => ("never".into(), "-"),
                };
                let next = j.next_fire.map_or("-".into(), |t| output::when(t, tz));
                let left = j.next_fire.map_or("-".into(), output::left);
                let outcome = if j.overdue {
                    format!("OVERDUE, last {outcome}")
                } else {
                    outcome.to_string()
                };
                vec![j.job.to_string(), last, next, left, outcome]
            })
            .collect();
        output::table(&["JOB", "LAST RUN", "NEXT FIRE", "LEFT", "OUTCOME"], &rows);
        let failures: Vec<(String, String)> = jobs
            .iter()
            .filter_map(|j| {
                let l = j.last_run.as_ref().filter(|l| !l.ok)?;
                Some((j.job.to_string(), l.message.clone()))
            })
            .collect();
        output::notes("Failed last runs", &failures);
    }
    Ok(Exit::Status(health))
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
            overdue,
        }
    }

    #[test]
    fn overdue_outranks_failed_which_outranks_ok() {
        assert_eq!(health(&[]), Health::Ok);
        assert_eq!(
            health(&[job(false, None), job(false, Some(true))]),
            Health::Ok
        );
        assert_eq!(
            health(&[job(false, Some(true)), job(false, Some(false))]),
            Health::Failed
        );
        assert_eq!(
            health(&[job(false, Some(false)), job(true, Some(true))]),
            Health::Overdue
        );
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
