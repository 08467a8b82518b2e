//! Running submitted jobs: one at a time per server (the others queue behind it), a
//! fire skipped while the same job is still running or queued, and at most
//! `max_concurrent_jobs` running at once — a limit a reload can change. Jobs waiting
//! for a slot start in the order they came, and only as fast as the rate budget can
//! serve them: while the started jobs at work (not waiting for their snapshot) reach
//! [`Run::admission_window`], the others wait as small records (`admission.rs`).
//! Every job task is tracked for shutdown and can be cancelled (the last resort at
//! shutdown: a cancelled job's stopped server is settled afterwards).
//!
//! The dispatcher is the owner's (the daemon's loop, or `Runner::run_all`): it hands
//! each ended job's report to the `done` channel, and the owner calls
//! [`Dispatcher::finished`] with it, which starts what waited.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{RunReport, Work};
use crate::admission::Admission;
use crate::job::JobId;

/// What runs a job for the dispatcher (the [`super::Runner`]; a stand-in in tests).
pub trait Run: Send + Sync + 'static {
    /// Does `work` for `job`, for the fire at `fire_time`. The report names `job`.
    fn run(
        self: Arc<Self>,
        job: JobId,
        fire_time: DateTime<Utc>,
        work: Work,
    ) -> impl Future<Output = RunReport> + Send;

    /// How many started jobs may be at work (not waiting for the provider) before
    /// another starts.
    fn admission_window(&self) -> usize {
        usize::MAX
    }

    /// A job of `server` waits to start: what it will ask first may be read meanwhile.
    fn waiting(&self, _server: u64) {}

    /// The job of `server` that waited started, or will not start.
    fn not_waiting(&self, _server: u64, _started: bool) {}
}

/// What became of a submitted job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    Started,
    /// Its server is free; it starts when a slot is.
    WaitingForSlot,
    /// Behind the job running (or waiting) on its server.
    Queued,
    /// The same job is running or queued already.
    Skipped,
}

struct Pending<R> {
    job: JobId,
    fire_time: DateTime<Utc>,
    work: Work,
    runner: Arc<R>,
}

pub struct Dispatcher<R: Run> {
    /// Jobs running, waiting for a slot, or queued behind their server.
    active: HashSet<JobId>,
    /// Servers with a job running or waiting for a slot.
    busy_servers: HashSet<u64>,
    /// Jobs behind their server's job.
    queues: HashMap<u64, VecDeque<Pending<R>>>,
    /// Jobs whose server is theirs, waiting for a slot, in the order they came.
    waiting: VecDeque<Pending<R>>,
    running: usize,
    limit: usize,
    pub tracker: TaskTracker,
    pub cancel: CancellationToken,
    admission: Arc<Admission>,
    done: mpsc::UnboundedSender<RunReport>,
}

impl<R: Run> Dispatcher<R> {
    pub fn new(max_concurrent_jobs: usize, done: mpsc::UnboundedSender<RunReport>) -> Self {
        Dispatcher {
            active: HashSet::new(),
            busy_servers: HashSet::new(),
            queues: HashMap::new(),
            waiting: VecDeque::new(),
            running: 0,
            limit: max_concurrent_jobs.max(1),
            tracker: TaskTracker::new(),
            cancel: CancellationToken::new(),
            admission: Arc::default(),
            done,
        }
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.running
    }

    /// The count of started jobs at work: its [`Admission::room`] tells the owner to
    /// call [`Dispatcher::fill`].
    pub fn admission(&self) -> Arc<Admission> {
        self.admission.clone()
    }

    /// At most this many jobs run at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Does `work` for `job` (for the fire at `fire_time`), now or after the server's
    /// current job and a free slot.
    pub fn submit(
        &mut self,
        runner: Arc<R>,
        job: JobId,
        fire_time: DateTime<Utc>,
        work: Work,
    ) -> Submitted {
        if self.active.contains(&job) {
            if work == Work::Fire {
                tracing::warn!(
                    policy = %job.policy,
                    server_id = job.server,
                    job_id = %job,
                    "skipping the fire at {}: the previous run of {job} is still going",
                    crate::schedule::shown(fire_time, chrono_tz::UTC),
                );
            }
            return Submitted::Skipped;
        }
        self.active.insert(job.clone());
        let server = job.server;
        let pending = Pending {
            job,
            fire_time,
            work,
            runner,
        };
        if self.busy_servers.contains(&server) {
            self.queues.entry(server).or_default().push_back(pending);
            return Submitted::Queued;
        }
        self.busy_servers.insert(server);
        if self.waiting.is_empty() && self.may_start(&pending.runner) {
            self.start(pending);
            Submitted::Started
        } else {
            self.wait(pending);
            Submitted::WaitingForSlot
        }
    }

    /// Notes that `job` ended: its slot goes to the first job waiting, and the next job
    /// of its server joins the end of the wait.
    pub fn finished(&mut self, job: &JobId) {
        if !self.active.remove(job) {
            return;
        }
        self.running = self.running.saturating_sub(1);
        self.busy_servers.remove(&job.server);
        if let Some(queue) = self.queues.get_mut(&job.server) {
            let next = queue.pop_front();
            if queue.is_empty() {
                self.queues.remove(&job.server);
            }
            if let Some(next) = next {
                self.busy_servers.insert(job.server);
                self.wait(next);
            }
        }
        self.fill();
    }

    /// From now on at most `max_concurrent_jobs` run at once: more start at once, or
    /// the running ones end before others start.
    pub fn resize(&mut self, max_concurrent_jobs: usize) {
        self.limit = max_concurrent_jobs.max(1);
        self.fill();
    }

    /// Forgets every job that has not started (at shutdown); returns how many.
    pub fn drop_queued(&mut self) -> usize {
        let mut dropped = 0;
        for p in self.queues.drain().flat_map(|(_, q)| q) {
            self.active.remove(&p.job);
            dropped += 1;
        }
        for p in self.waiting.drain(..) {
            p.runner.not_waiting(p.job.server, false);
            self.active.remove(&p.job);
            self.busy_servers.remove(&p.job.server);
            dropped += 1;
        }
        dropped
    }

    /// Starts the jobs waiting for a slot that may start now; the owner calls it when
    /// [`Admission::room`] says a job went to wait for the provider.
    pub fn fill(&mut self) {
        while self
            .waiting
            .front()
            .is_some_and(|next| self.may_start(&next.runner))
            && let Some(next) = self.waiting.pop_front()
        {
            self.start(next);
        }
    }

    fn may_start(&self, runner: &R) -> bool {
        self.running < self.limit && self.admission.at_work() < runner.admission_window()
    }

    fn wait(&mut self, p: Pending<R>) {
        p.runner.waiting(p.job.server);
        self.waiting.push_back(p);
    }

    fn start(&mut self, p: Pending<R>) {
        self.running += 1;
        let Pending {
            job,
            fire_time,
            work,
            runner,
        } = p;
        runner.not_waiting(job.server, true);
        // Counted at work from now, before its task first runs.
        let run = self.admission.run(runner.run(job.clone(), fire_time, work));
        let cancel = self.cancel.clone();
        let done = self.done.clone();
        self.tracker.spawn(async move {
            let report = tokio::select! {
                r = run => r,
                _ = cancel.cancelled() => RunReport::failed(
                    job,
                    fire_time,
                    "cancelled: still running when the shutdown's time was up".into(),
                ),
            };
            let _ = done.send(report);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;

    /// Runs every job for `length`, noting when each started and how many ran at once.
    struct Stand {
        length: Duration,
        started: Mutex<Vec<(JobId, Instant)>>,
        now: Mutex<(usize, usize)>,
    }

    impl Stand {
        fn new(length: u64) -> Arc<Stand> {
            Arc::new(Stand {
                length: Duration::from_secs(length),
                started: Mutex::new(Vec::new()),
                now: Mutex::new((0, 0)),
            })
        }

        fn started(&self) -> Vec<(JobId, Duration)> {
            let t0 = T0.with(|t| t.get().expect("t0"));
            let s = self.started.lock().unwrap();
            s.iter().map(|(j, at)| (j.clone(), *at - t0)).collect()
        }

        /// The most jobs that ran at once.
        fn peak(&self) -> usize {
            self.now.lock().unwrap().1
        }
    }

    thread_local! {
        static T0: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
    }

    impl Run for Stand {
        async fn run(
            self: Arc<Self>,
            job: JobId,
            fire_time: DateTime<Utc>,
            _work: Work,
        ) -> RunReport {
            {
                let mut now = self.now.lock().unwrap();
                now.0 += 1;
                now.1 = now.1.max(now.0);
            }
            self.started
                .lock()
                .unwrap()
                .push((job.clone(), Instant::now()));
            tokio::time::sleep(self.length).await;
            self.now.lock().unwrap().0 -= 1;
            RunReport::new(job, fire_time)
        }
    }

    type Setup = (
        Dispatcher<Stand>,
        mpsc::UnboundedReceiver<RunReport>,
        Arc<Stand>,
    );

    fn setup(limit: usize, length: u64) -> Setup {
        T0.with(|t| t.set(Some(Instant::now())));
        let (tx, rx) = mpsc::unbounded_channel();
        (Dispatcher::new(limit, tx), rx, Stand::new(length))
    }

    fn job(policy: &str, server: u64) -> JobId {
        JobId::new(policy, server)
    }

    fn fire() -> DateTime<Utc> {
        "2026-11-24T02:30:00Z".parse().unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Takes `n` reports as the daemon does, returning each job with when it ended.
    async fn drain(
        d: &mut Dispatcher<Stand>,
        rx: &mut mpsc::UnboundedReceiver<RunReport>,
        n: usize,
    ) -> Vec<(JobId, Duration)> {
        let t0 = T0.with(|t| t.get().expect("t0"));
        let mut out = Vec::new();
        for _ in 0..n {
            let r = rx.recv().await.expect("a report");
            d.finished(&r.job);
            out.push((r.job, Instant::now() - t0));
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn jobs_of_one_server_run_one_after_another() {
        let (mut d, mut rx, stand) = setup(4, 10);
        for j in [job("a", 1), job("b", 1), job("a", 2)] {
            d.submit(stand.clone(), j, fire(), Work::Fire);
        }
        let ended = drain(&mut d, &mut rx, 3).await;
        assert_eq!(
            stand.started(),
            vec![
                (job("a", 1), secs(0)),
                (job("a", 2), secs(0)),
                (job("b", 1), secs(10))
            ]
        );
        assert_eq!(ended.last(), Some(&(job("b", 1), secs(20))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fire_of_a_job_running_or_queued_is_skipped() {
        let (mut d, mut rx, stand) = setup(4, 10);
        let submit = |d: &mut Dispatcher<Stand>, j| d.submit(stand.clone(), j, fire(), Work::Fire);
        assert_eq!(submit(&mut d, job("a", 1)), Submitted::Started);
        assert_eq!(submit(&mut d, job("b", 1)), Submitted::Queued);
        assert_eq!(submit(&mut d, job("a", 1)), Submitted::Skipped);
        assert_eq!(submit(&mut d, job("b", 1)), Submitted::Skipped);
        drain(&mut d, &mut rx, 2).await;
        assert_eq!(stand.started().len(), 2);
        // Once it ended, the job runs again.
        assert_eq!(submit(&mut d, job("a", 1)), Submitted::Started);
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_max_concurrent_jobs_run_at_once() {
        let (mut d, mut rx, stand) = setup(2, 10);
        for s in 1..=5 {
            d.submit(stand.clone(), job("a", s), fire(), Work::Fire);
        }
        assert_eq!(d.running(), 2);
        let ended = drain(&mut d, &mut rx, 5).await;
        assert_eq!(stand.peak(), 2);
        assert_eq!(ended.last().map(|(_, at)| *at), Some(secs(30)));
    }

    #[tokio::test(start_paused = true)]
    async fn jobs_waiting_for_a_slot_start_in_the_order_they_came() {
        let (mut d, mut rx, stand) = setup(1, 10);
        for s in [4, 2, 3, 1] {
            d.submit(stand.clone(), job("a", s), fire(), Work::Fire);
        }
        drain(&mut d, &mut rx, 4).await;
        let order: Vec<u64> = stand.started().iter().map(|(j, _)| j.server).collect();
        assert_eq!(order, [4, 2, 3, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_job_of_a_server_waits_behind_the_jobs_that_came_before_it() {
        let (mut d, mut rx, stand) = setup(1, 10);
        assert_eq!(
            d.submit(stand.clone(), job("a", 1), fire(), Work::Fire),
            Submitted::Started
        );
        assert_eq!(
            d.submit(stand.clone(), job("b", 1), fire(), Work::Fire),
            Submitted::Queued
        );
        assert_eq!(
            d.submit(stand.clone(), job("a", 2), fire(), Work::Fire),
            Submitted::WaitingForSlot
        );
        drain(&mut d, &mut rx, 3).await;
        let order: Vec<JobId> = stand.started().into_iter().map(|(j, _)| j).collect();
        assert_eq!(order, [job("a", 1), job("a", 2), job("b", 1)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_larger_limit_starts_waiting_jobs_at_once() {
        let (mut d, mut rx, stand) = setup(1, 10);
        for s in 1..=3 {
            d.submit(stand.clone(), job("a", s), fire(), Work::Fire);
        }
        tokio::time::sleep(secs(4)).await;
        d.resize(3);
        assert_eq!((d.limit(), d.running()), (3, 3));
        let ended = drain(&mut d, &mut rx, 3).await;
        let starts: Vec<Duration> = stand.started().iter().map(|(_, at)| *at).collect();
        assert_eq!(starts, [secs(0), secs(4), secs(4)]);
        assert_eq!(ended.last().map(|(_, at)| *at), Some(secs(14)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_smaller_limit_lets_running_jobs_end_and_holds_back_the_others() {
        let (mut d, mut rx, stand) = setup(3, 10);
        for s in 1..=5 {
            d.submit(stand.clone(), job("a", s), fire(), Work::Fire);
        }
        d.resize(1);
        assert_eq!(d.running(), 3, "running jobs are not stopped");
        let ended = drain(&mut d, &mut rx, 5).await;
        let starts: Vec<Duration> = stand.started().iter().map(|(_, at)| *at).collect();
        assert_eq!(starts, [secs(0), secs(0), secs(0), secs(10), secs(20)]);
        assert_eq!(ended.last().map(|(_, at)| *at), Some(secs(30)));
        d.resize(0);
        assert_eq!(d.limit(), 1, "at least one");
    }

    #[tokio::test(start_paused = true)]
    async fn at_shutdown_what_has_not_started_is_dropped_and_running_jobs_end() {
        let (mut d, mut rx, stand) = setup(1, 10);
        for j in [job("a", 1), job("b", 1), job("a", 2), job("a", 3)] {
            d.submit(stand.clone(), j, fire(), Work::Fire);
        }
        assert_eq!(d.drop_queued(), 3);
        d.tracker.close();
        d.tracker.wait().await;
        let ended = drain(&mut d, &mut rx, 1).await;
        assert_eq!(ended, [(job("a", 1), secs(10))]);
        assert!(rx.try_recv().is_err(), "nothing else ran");
        assert_eq!(stand.started().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_job_ends_at_once_with_a_failed_report() {
        let (mut d, mut rx, stand) = setup(2, 3600);
        d.submit(stand.clone(), job("a", 1), fire(), Work::Fire);
        tokio::time::sleep(secs(5)).await;
        d.cancel.cancel();
        let r = rx.recv().await.expect("a report");
        assert_eq!((r.job, r.ok, r.scheduled_for), (job("a", 1), false, fire()));
        assert!(r.message.contains("cancelled"), "{}", r.message);
        assert_eq!(Instant::now() - T0.with(|t| t.get().unwrap()), secs(5));
    }

    /// At work 2 s, away (waiting for the provider) 10 s, at work 2 s; at most
    /// `window` jobs at work before another starts.
    struct Tide {
        window: usize,
        started: Mutex<Vec<(u64, Duration)>>,
    }

    impl Run for Tide {
        async fn run(
            self: Arc<Self>,
            job: JobId,
            fire_time: DateTime<Utc>,
            _work: Work,
        ) -> RunReport {
            let t0 = T0.with(|t| t.get().expect("t0"));
            self.started
                .lock()
                .unwrap()
                .push((job.server, Instant::now() - t0));
            tokio::time::sleep(secs(2)).await;
            {
                let _away = crate::admission::away();
                tokio::time::sleep(secs(10)).await;
            }
            tokio::time::sleep(secs(2)).await;
            RunReport::new(job, fire_time)
        }

        fn admission_window(&self) -> usize {
            self.window
        }
    }

    #[tokio::test(start_paused = true)]
    async fn jobs_start_as_others_go_to_wait_for_the_provider() {
        T0.with(|t| t.set(Some(Instant::now())));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut d = Dispatcher::new(100, tx);
        let tide = Arc::new(Tide {
            window: 2,
            started: Mutex::new(Vec::new()),
        });
        for s in 1..=5 {
            d.submit(tide.clone(), job("a", s), fire(), Work::Fire);
        }
        assert_eq!(d.running(), 2, "two at work; the others wait as records");
        let admission = d.admission();
        let mut ended = 0;
        while ended < 5 {
            tokio::select! {
                r = rx.recv() => {
                    d.finished(&r.expect("a report").job);
                    ended += 1;
                }
                () = admission.room() => d.fill(),
            }
        }
        let starts = tide.started.lock().unwrap().clone();
        // Jobs back from their wait never wait to go on (three at work at 12 s).
        assert_eq!(
            starts,
            [
                (1, secs(0)),
                (2, secs(0)),
                (3, secs(2)),
                (4, secs(2)),
                (5, secs(4))
            ]
        );
    }
}
