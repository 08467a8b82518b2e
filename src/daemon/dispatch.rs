//! Running fired jobs: one at a time per server (the others queue), a fire skipped
//! while the same job is still running or queued, and at most `max_concurrent_jobs`
//! running at once. Every job task is tracked for shutdown and can be cancelled (the
//! last resort at shutdown: a cancelled job's stopped server is settled afterwards).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::timetable::JobKey;
use crate::runner::{Report, Runner, Work};

/// A job that ended: its report, or `None` when it was cancelled at shutdown.
pub struct Done {
    pub job: JobKey,
    pub report: Option<Report>,
}

struct Pending {
    job: JobKey,
    fire_time: DateTime<Utc>,
    work: Work,
    runner: Arc<Runner>,
}

pub struct Dispatcher {
    /// Jobs running or queued.
    active: HashSet<JobKey>,
    busy_servers: HashSet<u64>,
    queues: HashMap<u64, VecDeque<Pending>>,
    slots: Arc<Semaphore>,
    pub tracker: TaskTracker,
    pub cancel: CancellationToken,
    done: mpsc::UnboundedSender<Done>,
}

impl Dispatcher {
    pub fn new(max_concurrent_jobs: usize, done: mpsc::UnboundedSender<Done>) -> Dispatcher {
        Dispatcher {
            active: HashSet::new(),
            busy_servers: HashSet::new(),
            queues: HashMap::new(),
            slots: Arc::new(Semaphore::new(max_concurrent_jobs.max(1))),
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
            done,
        }
    }

    pub fn running(&self) -> usize {
        self.busy_servers.len()
    }

    /// Whether a job of `server` is running or queued.
    pub fn is_busy(&self, server: u64) -> bool {
        self.busy_servers.contains(&server)
    }

    /// Does `work` for `job` (for the fire at `fire_time`), now or after the server's
    /// current job.
    pub fn submit(
        &mut self,
        runner: Arc<Runner>,
        job: JobKey,
        fire_time: DateTime<Utc>,
        work: Work,
    ) {
        if self.active.contains(&job) {
            if work != Work::Fire {
                return;
            }
            tracing::warn!(
                policy = %job.policy,
                server_id = job.server,
                job_id = %job.id(),
                "skipping the fire at {}: the previous run of {} is still going",
                fire_time.to_rfc3339(),
                job.id()
            );
            return;
        }
        self.active.insert(job.clone());
        let pending = Pending {
            job,
            fire_time,
            work,
            runner,
        };
        if self.busy_servers.contains(&pending.job.server) {
            self.queues
                .entry(pending.job.server)
                .or_default()
                .push_back(pending);
        } else {
            self.start(pending);
        }
    }

    /// Notes that a job ended and starts the next one queued for its server.
    pub fn finished(&mut self, job: &JobKey) {
        self.active.remove(job);
        self.busy_servers.remove(&job.server);
        let next = self.queues.get_mut(&job.server).and_then(|q| q.pop_front());
        if self.queues.get(&job.server).is_some_and(|q| q.is_empty()) {
            self.queues.remove(&job.server);
        }
        if let Some(next) = next {
            self.start(next);
        }
    }

    /// Forgets every job that has not started (at shutdown).
    pub fn drop_queued(&mut self) -> usize {
        let n: usize = self.queues.values().map(|q| q.len()).sum();
        for q in self.queues.values() {
            for p in q {
                self.active.remove(&p.job);
            }
        }
        self.queues.clear();
        n
    }

    fn start(&mut self, p: Pending) {
        self.busy_servers.insert(p.job.server);
        let slots = self.slots.clone();
        let cancel = self.cancel.clone();
        let done = self.done.clone();
        self.tracker.spawn(async move {
            let report = tokio::select! {
                r = async {
                    let _slot = slots.acquire().await;
                    p.runner.run_caught(p.job.clone(), p.fire_time, p.work).await
                } => Some(r),
                _ = cancel.cancelled() => None,
            };
            let _ = done.send(Done { job: p.job, report });
        });
    }
}
