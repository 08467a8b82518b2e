//! Shared listings: when many jobs want a server's snapshot list at about the same
//! time (many servers firing together, many snapshots being waited for), their asks
//! are gathered for a moment and answered by one round of requests — one account-wide
//! `GET /snapshots/` (all pages) when that takes fewer requests than one listing per
//! server, otherwise one listing per server. An account-wide listing also keeps the
//! snapshots of the servers whose jobs wait to start ([`Listings::prefetch`]): their
//! first listing, read after they were submitted, with no request of their own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use super::{ApiError, Client, Listing};

/// How long first-listing asks are gathered before a round answers them: jobs that
/// fire together ask within a few milliseconds of each other, so the round waits until
/// no ask has come for `GATHER`, and at most `MAX_GATHER`.
const GATHER: Duration = Duration::from_millis(5);
const MAX_GATHER: Duration = Duration::from_millis(200);
/// Servers asked for at once before an account-wide listing is tried blind.
const UNKNOWN_ACCOUNT_MIN_ASKS: usize = 50;
/// The share of the rate budget that poll rounds may take.
const POLL_SHARE: f64 = 0.07;
/// The page size assumed until the provider shows its own.
const ASSUMED_PAGE_SIZE: usize = 100;

type Answer = Result<Listing, ApiError>;

#[derive(Clone)]
pub struct Listings {
    client: Client,
    shared: Arc<Mutex<Shared>>,
    /// Every job expected to ask for a first listing has asked.
    all_asked: Arc<Notify>,
}

tokio::task_local! {
    /// Whether the job running in this task has asked for its first listing yet.
    static ASKED: Arc<AtomicBool>;
}

/// A job expected to ask for a first listing (see [`Listings::expecting`]).
struct Coming {
    listings: Listings,
    asked: Arc<AtomicBool>,
}

impl Drop for Coming {
    fn drop(&mut self) {
        self.listings.asked(&self.asked);
    }
}

/// The two kinds of asks, each answered by its own rounds.
#[derive(Clone, Copy)]
enum Queue {
    First,
    Poll,
}

type Asks = Vec<(u64, oneshot::Sender<Answer>)>;

#[derive(Default)]
struct Shared {
    /// Asks for a listing now (a job's first step).
    asks: Asks,
    /// A task runs rounds of first listings.
    rounds_running: bool,
    /// Asks from jobs waiting for a snapshot: answered by poll rounds, one per poll
    /// interval, shared by every waiting job.
    poll_asks: Asks,
    poll_rounds_running: bool,
    /// When the last ask of each queue came.
    last_ask: [Option<Instant>; 2],
    /// When the last poll round ended, and the requests it took.
    last_poll_round: Option<(Instant, usize)>,
    /// Jobs that will ask for a first listing and have not yet.
    expected: usize,
    /// The shortest delay the asks waiting in each queue asked for.
    delay: [Option<Duration>; 2],
    /// What account-wide listings showed: total snapshots, and the page size.
    account_count: Option<u64>,
    page_size: Option<usize>,
    /// Snapshots per server seen in per-server listings (to estimate the account).
    seen_servers: u64,
    seen_snapshots: u64,
    /// Servers whose job waits to start, and what was read for its first listing.
    prefetched: HashMap<u64, Prefetch>,
    /// Rounds begun so far: a prefetch takes the first round begun after it was asked.
    rounds_begun: u64,
}

/// The first listing of a job waiting to start, read by a round for other jobs.
struct Prefetch {
    /// The rounds begun when the job was submitted.
    after: u64,
    /// The job has not started: a round may still read for it.
    waiting: bool,
    listing: Option<Listing>,
}

impl Shared {
    fn queue(&mut self, queue: Queue) -> (&mut Asks, &mut bool) {
        match queue {
            Queue::First => (&mut self.asks, &mut self.rounds_running),
            Queue::Poll => (&mut self.poll_asks, &mut self.poll_rounds_running),
        }
    }

    /// How long a round planned at `planned` should still wait for more asks: until
    /// the queue has been quiet for `quiet`, at most `at_most` from `planned`.
    fn still_gathering(
        &self,
        queue: Queue,
        planned: Instant,
        quiet: Duration,
        at_most: Duration,
    ) -> Option<Duration> {
        let now = Instant::now();
        let last = self.last_ask[queue as usize]?;
        let until = (last + quiet).min(planned + at_most);
        (until > now).then(|| until - now)
    }
}

impl Listings {
    pub fn new(client: Client) -> Listings {
        Listings {
            client,
            shared: Arc::new(Mutex::new(Shared::default())),
            all_asked: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The snapshots of `server`, read after this call began — or, for the first
    /// listing of a job that waited to start, read since it was submitted (what it
    /// would have held while waiting had it started at once).
    pub async fn server(&self, server: u64) -> Answer {
        let _ = ASKED.try_with(|asked| self.asked(asked));
        let read = {
            let mut s = self.lock();
            match s.prefetched.get(&server) {
                Some(p) if !p.waiting => s.prefetched.remove(&server).and_then(|p| p.listing),
                _ => None,
            }
        };
        match read {
            Some(listing) => Ok(listing),
            None => self.ask(Queue::First, server, GATHER).await,
        }
    }

    /// The job of `server` waits to start: an account-wide listing begun from now on
    /// keeps the server's snapshots for the job's first listing.
    pub fn prefetch(&self, server: u64) {
        let mut s = self.lock();
        let after = s.rounds_begun;
        let p = Prefetch {
            after,
            waiting: true,
            listing: None,
        };
        s.prefetched.insert(server, p);
    }

    /// The job of `server` started (what was read for it waits for its first listing)
    /// or will not start; what an earlier job left unread is dropped.
    pub fn no_prefetch(&self, server: u64, started: bool) {
        let mut s = self.lock();
        match s.prefetched.get_mut(&server) {
            Some(p) if started && p.waiting && p.listing.is_some() => p.waiting = false,
            Some(_) => {
                s.prefetched.remove(&server);
            }
            None => {}
        }
    }

    /// Runs `job`, a job that is about to ask for its first listing: until it asks (or
    /// ends without asking), a round of first listings knows one more ask is coming. A
    /// round goes as soon as every such job has asked — at once for a lone job — and
    /// otherwise waits for asks to stop coming.
    pub fn expecting<F: std::future::Future>(
        &self,
        job: F,
    ) -> impl std::future::Future<Output = F::Output> + use<F> {
        self.lock().expected += 1;
        let asked = Arc::new(AtomicBool::new(false));
        let coming = Coming {
            listings: self.clone(),
            asked: asked.clone(),
        };
        // A combinator, not an `async` block: a block would hold `job` twice (as the
        // value it captured and as the future it awaits), doubling each job's memory.
        ASKED.scope(asked, job).map(move |out| {
            drop(coming);
            out
        })
    }

    /// The job whose flag is `asked` asked (or ended): one ask fewer is coming.
    fn asked(&self, asked: &AtomicBool) {
        if !asked.swap(true, AtomicOrdering::Relaxed) {
            let mut s = self.lock();
            s.expected = s.expected.saturating_sub(1);
            if s.expected == 0 {
                self.all_asked.notify_one();
            }
        }
    }

    /// The snapshots of `server` from the next poll round: rounds come at most once per
    /// `interval` (a waiting job asks again right after its last answer, so one interval
    /// from its ask is one interval after the last round), and one round answers every
    /// job waiting at the time.
    /// The job waits for the provider meanwhile: it does not count as at work
    /// (`admission.rs`).
    pub async fn poll(&self, server: u64, interval: Duration) -> Answer {
        let _away = crate::admission::away();
        self.ask(Queue::Poll, server, interval).await
    }

    /// Joins the next round of `queue`, starting a task that runs its rounds when none
    /// runs. Rounds of a queue run one after the other, never side by side: asks that
    /// come while a round is under way are answered by the next one, `delay` after it
    /// (for first listings: once asks stop coming; for polls: the poll interval, or
    /// longer when the round is costly), which then knows the account's size.
    async fn ask(&self, queue: Queue, server: u64, delay: Duration) -> Answer {
        let (tx, rx) = oneshot::channel();
        let start_rounds = {
            let mut s = self.lock();
            s.last_ask[queue as usize] = Some(Instant::now());
            let wanted = &mut s.delay[queue as usize];
            *wanted = Some(wanted.map_or(delay, |d| d.min(delay)));
            let (asks, running) = s.queue(queue);
            asks.push((server, tx));
            !std::mem::replace(running, true)
        };
        if start_rounds {
            let me = self.clone();
            tokio::spawn(async move { me.rounds(queue).await });
        }
        Self::answer(rx).await
    }

    /// Runs rounds of `queue` until no ask is left.
    async fn rounds(&self, queue: Queue) {
        loop {
            let started = Instant::now();
            let (delay, priced_until) = {
                let s = self.lock();
                let delay = s.delay[queue as usize].unwrap_or(GATHER);
                // The last poll round's price holds also across a pause of asks.
                let priced = s
                    .last_poll_round
                    .map(|(ended, cost)| ended + self.priced_interval(cost));
                (delay, priced)
            };
            match queue {
                Queue::Poll => {
                    let until = (started + delay).max(priced_until.unwrap_or(started));
                    tokio::time::sleep_until(until).await
                }
                // Until every job expected has asked, or asks stop coming.
                Queue::First => loop {
                    let more = {
                        let s = self.lock();
                        if s.expected == 0 {
                            break;
                        }
                        s.still_gathering(queue, started, delay, MAX_GATHER)
                    };
                    let Some(more) = more else { break };
                    tokio::select! {
                        _ = tokio::time::sleep(more) => {}
                        _ = self.all_asked.notified() => {}
                    }
                },
            }
            let asks = {
                let mut s = self.lock();
                s.delay[queue as usize] = None;
                std::mem::take(s.queue(queue).0)
            };
            let cost = self.round(asks).await;
            let mut s = self.lock();
            if let Queue::Poll = queue {
                s.last_poll_round = Some((Instant::now(), cost));
            }
            let (asks, running) = s.queue(queue);
            if asks.is_empty() {
                *running = false;
                return;
            }
        }
    }

    /// The shortest interval after a poll round that took `cost` requests which keeps
    /// poll rounds within [`POLL_SHARE`] of the rate budget, so creates and deletes are
    /// not starved by listings: a round of many pages is followed by a longer wait.
    fn priced_interval(&self, cost: usize) -> Duration {
        Duration::from_secs_f64(cost as f64 / (POLL_SHARE * self.client.pace().max(0.01)))
    }

    async fn answer(rx: oneshot::Receiver<Answer>) -> Answer {
        rx.await.unwrap_or_else(|_| {
            Err(ApiError::Protocol {
                call: "GET /snapshots/".into(),
                message: "the shared listing was abandoned".into(),
            })
        })
    }

    /// Requests an account-wide listing would take, if known or guessable.
    fn account_pages(s: &Shared, servers_in_fleet: usize) -> usize {
        let page = s.page_size.unwrap_or(ASSUMED_PAGE_SIZE).max(1) as u64;
        let total = s.account_count.unwrap_or_else(|| {
            let per_server = if s.seen_servers == 0 {
                5
            } else {
                s.seen_snapshots.div_ceil(s.seen_servers)
            };
            per_server * servers_in_fleet as u64
        });
        total.div_ceil(page).max(1) as usize
    }

    /// Answers `asks` with one round of listings; returns the requests it took. An
    /// account-wide round also reads for the jobs waiting to start.
    async fn round(&self, asks: Asks) -> usize {
        let mut cost = 0;
        let servers: BTreeSet<u64> = asks.iter().map(|(id, _)| *id).collect();
        let (round, waiting, account_wide) = {
            let mut s = self.lock();
            s.rounds_begun += 1;
            let round = s.rounds_begun;
            let waiting: Vec<u64> = s
                .prefetched
                .iter()
                .filter(|(id, p)| {
                    p.waiting && p.listing.is_none() && p.after < round && !servers.contains(id)
                })
                .map(|(id, _)| *id)
                .collect();
            let wanted = servers.len() + waiting.len();
            let pages = Self::account_pages(&s, wanted.max(1));
            // Until an account-wide listing has shown the account's size, only a large
            // crowd of asks risks one.
            let enough = s.account_count.is_some() || wanted >= UNKNOWN_ACCOUNT_MIN_ASKS;
            (round, waiting, enough && wanted > 1 && pages < wanted)
        };
        let mut answers: BTreeMap<u64, Answer> = BTreeMap::new();
        if account_wide {
            // Only the snapshots of the servers asked for or waiting are kept.
            let wanted: std::collections::HashSet<u64> =
                servers.iter().chain(&waiting).copied().collect();
            let keep = move |id| wanted.contains(&id);
            match self.client.list_snapshots_of(None, keep).await {
                Ok((all, info)) => {
                    cost += info.pages;
                    {
                        let mut s = self.lock();
                        s.account_count = info.count.or(Some(info.distinct as u64));
                        s.page_size = info.page_size.or(s.page_size);
                    }
                    // One account-wide listing: its doubt, if any, is every server's.
                    for id in &servers {
                        answers.insert(*id, Ok(Listing::empty(all.doubt.clone())));
                    }
                    let mut read: HashMap<u64, Listing> = waiting
                        .into_iter()
                        .map(|id| (id, Listing::empty(all.doubt.clone())))
                        .collect();
                    for snapshot in all.snapshots {
                        let id = snapshot.server.id;
                        if let Some(Ok(list)) = answers.get_mut(&id) {
                            list.snapshots.push(snapshot);
                        } else if let Some(list) = read.get_mut(&id) {
                            list.snapshots.push(snapshot);
                        }
                    }
                    let mut s = self.lock();
                    for (id, mut listing) in read {
                        if let Some(p) = s.prefetched.get_mut(&id)
                            && p.waiting
                            && p.after < round
                        {
                            // Kept a while by thousands of jobs: no room to spare.
                            listing.snapshots.shrink_to_fit();
                            p.listing = Some(listing);
                        }
                    }
                }
                Err(e) => {
                    cost += 1;
                    for id in &servers {
                        answers.insert(*id, Err(e.clone()));
                    }
                }
            }
        } else {
            let lists = servers.iter().map(|id| {
                let client = self.client.clone();
                let id = *id;
                async move { (id, client.list_snapshots_with_info(Some(id)).await) }
            });
            for (id, result) in futures_join_all(lists).await {
                cost += usize::from(result.is_err());
                answers.insert(
                    id,
                    result.map(|(list, info)| {
                        cost += info.pages;
                        let mut s = self.lock();
                        s.seen_servers += 1;
                        s.seen_snapshots += list.len() as u64;
                        s.page_size = info.page_size.or(s.page_size);
                        list
                    }),
                );
            }
        }
        for (id, tx) in asks {
            if let Some(answer) = answers.get(&id) {
                let _ = tx.send(answer.clone());
            }
        }
        cost
    }
}

/// Runs the futures concurrently and collects their outputs.
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for f in futures {
        set.spawn(f);
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(v) = r {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use futures_util::future::join_all;

    use super::*;
    use crate::config::ApiConfig;
    use crate::sim::{SimHandle, SimOptions};
    use crate::token::ApiToken;

    /// A simulator of `servers` servers with one snapshot each, and listings of it.
    async fn listings_of(servers: u64) -> (SimHandle, Listings) {
        let options = SimOptions {
            token: "t".into(),
            ..SimOptions::default()
        };
        let sim = SimHandle::start(([127, 0, 0, 1], 0).into(), options)
            .await
            .expect("the simulator starts");
        for id in 1..=servers {
            sim.add_server(id, &format!("s{id}"));
            sim.state().add_snapshot(id, "old", "completed", Utc::now());
        }
        let api = ApiConfig {
            base_url: sim.base_url().parse().expect("a URL"),
            token: Some(ApiToken::parse("t").expect("a token")),
            token_source: "test".into(),
            request_timeout: Duration::from_secs(5),
            max_attempts: 3,
            retry_backoff: Duration::from_millis(50),
            snapshot_cap: 5,
            max_requests_per_second: Some(1000.0),
        };
        let client = Client::new(&api).expect("a client");
        (sim, Listings::new(client))
    }

    fn requests(sim: &SimHandle) -> usize {
        sim.state().requests.len()
    }

    #[tokio::test]
    async fn a_job_waiting_to_start_gets_its_first_listing_from_a_round_for_others() {
        let (sim, listings) = listings_of(61).await;
        for id in 51..=60 {
            listings.prefetch(id);
        }
        let asked = join_all((1..=50).map(|id| listings.server(id))).await;
        assert!(asked.iter().all(|l| l.as_ref().is_ok_and(|l| l.len() == 1)));
        let read = requests(&sim);
        assert!(
            sim.state()
                .requests
                .iter()
                .all(|r| !r.path.contains("server_id")),
            "one account-wide round"
        );
        // A job that waited while that round was read starts and takes its share.
        listings.prefetch(61);
        for id in 51..=61 {
            listings.no_prefetch(id, true);
        }
        for id in 51..=60 {
            let l = listings.server(id).await.expect("a listing");
            assert_eq!(l.iter().map(|s| s.server.id).collect::<Vec<_>>(), [id]);
        }
        assert_eq!(requests(&sim), read, "no request of their own");
        // The share is read once; a job that came after the round asks for itself.
        listings.server(51).await.expect("a listing");
        assert!(requests(&sim) > read);
        let now = requests(&sim);
        listings.server(61).await.expect("a listing");
        assert!(requests(&sim) > now);
    }

    #[tokio::test]
    async fn a_job_that_does_not_start_leaves_nothing_for_the_next() {
        let (sim, listings) = listings_of(60).await;
        listings.prefetch(60);
        join_all((1..=59).map(|id| listings.server(id))).await;
        let read = requests(&sim);
        // Dropped at shutdown: what was read for it goes.
        listings.no_prefetch(60, false);
        listings.no_prefetch(60, true);
        listings.server(60).await.expect("a listing");
        assert!(requests(&sim) > read);
    }
}
