//! `snaprotd status`: last run, outcome and next fire of every job, from the state
//! directory; usable as a monitoring check.

use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{CliResult, load_config, output};
use crate::config::{Config, Policy};
use crate::rotation::job_id;
use crate::state::{LastRun, StateDir};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct JobStatus {
    job: String,
    policy: String,
    server: u64,
    last_run: Option<LastRun>,
    next_fire: Option<DateTime<Utc>>,
    /// A fire passed (with time to finish) and no run answered it.
    overdue: bool,
}

/// How long after a fire its run may take before the job counts as overdue: a stop,
/// the snapshot, a start, plus a minute.
fn grace(p: &Policy) -> chrono::Duration {
    let d = p.stop_timeout * 2 + p.wait_timeout + std::time::Duration::from_secs(60);
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::hours(1))
}

fn statuses(config: &Config, now: DateTime<Utc>) -> Vec<JobStatus> {
    let state = StateDir::new(&config.daemon.state_dir);
    let known = state.known_jobs();
    let mut out = Vec::new();
    for p in &config.policies {
        // The last fire whose run should have ended by now.
        let due = p.schedule.previous_fire(p.timezone, now - grace(p));
        for s in &p.servers {
            let job = job_id(&p.name, *s);
            let last_run = state.last_run(&job);
            let answered = |fire: DateTime<Utc>| match &last_run {
                Some(l) => l.scheduled_for >= fire,
                None => known.get(&job).is_none_or(|since| *since >= fire),
            };
            let overdue = due.is_some_and(|fire| !answered(fire));
            out.push(JobStatus {
                job,
                policy: p.name.clone(),
                server: *s,
                last_run,
                next_fire: p.schedule.next_fire(p.timezone, now),
                overdue,
            });
        }
    }
    out
}

pub fn run(path: &Path, args: Args) -> CliResult {
    let config = load_config(path)?;
    let jobs = statuses(&config, Utc::now());
    if args.json {
        output::json(&jobs);
    } else {
        let rows: Vec<Vec<String>> = jobs
            .iter()
            .map(|j| {
                let tz = config
                    .policy(&j.policy)
                    .map_or(chrono_tz::UTC, |p| p.timezone);
                let (last, outcome) = match &j.last_run {
                    Some(l) => (
                        l.finished_at.with_timezone(&tz).to_rfc3339(),
                        if l.ok {
                            "ok".to_string()
                        } else {
                            format!("FAILED: {}", l.message)
                        },
                    ),
                    None => ("never".into(), "-".into()),
                };
                let next = j
                    .next_fire
                    .map_or("-".into(), |t| t.with_timezone(&tz).to_rfc3339());
                let outcome = if j.overdue {
                    format!("OVERDUE; last {outcome}")
                } else {
                    outcome
                };
                vec![j.job.clone(), last, next, outcome]
            })
            .collect();
        output::table(&["JOB", "LAST RUN", "NEXT FIRE", "OUTCOME"], &rows);
    }
    let code = if jobs.iter().any(|j| j.overdue) {
        2
    } else if jobs
        .iter()
        .any(|j| j.last_run.as_ref().is_some_and(|l| !l.ok))
    {
        1
    } else {
        0
    };
    Ok(ExitCode::from(code))
}
