//! Shared listings: when many jobs want a server's snapshot list at about the same
//! time (many servers firing together, many snapshots being waited for), their asks
//! are gathered for a moment and answered by one round of requests — one account-wide
//! `GET /snapshots/` (all pages) when that takes fewer requests than one listing per
//! server, otherwise one listing per server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::{ApiError, Client, Listing};

/// How long first-listing asks are gathered before a round answers them: jobs that
/// fire together ask within a few milliseconds of each other. While asks keep coming
/// (each job reads its state on a blocking thread first), the gathering goes on, up to
/// [`GATHER_MAX`].
const GATHER: Duration = Duration::from_millis(5);
const GATHER_MAX: Duration = Duration::from_millis(50);
/// Servers asked for at once before an account-wide listing is tried blind.
const UNKNOWN_ACCOUNT_MIN_ASKS: usize = 50;
/// The share of the rate budget that poll rounds may take.
const POLL_SHARE: f64 = 0.1;
/// The page size assumed until the provider shows its own.
const ASSUMED_PAGE_SIZE: usize = 100;

type Answer = Result<Listing, ApiError>;

#[derive(Clone)]
pub struct Listings {
    client: Client,
    shared: Arc<Mutex<Shared>>,
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
    round_planned: bool,
    /// Asks from jobs waiting for a snapshot: answered by poll rounds, one per poll
    /// interval, shared by every waiting job.
    poll_asks: Asks,
    poll_round_planned: bool,
    /// What account-wide listings showed: total snapshots, and the page size.
    account_count: Option<u64>,
    page_size: Option<usize>,
    /// Snapshots per server seen in per-server listings (to estimate the account).
    seen_servers: u64,
    seen_snapshots: u64,
}

impl Shared {
    fn queue(&mut self, queue: Queue) -> (&mut Asks, &mut bool) {
        match queue {
            Queue::First => (&mut self.asks, &mut self.round_planned),
            Queue::Poll => (&mut self.poll_asks, &mut self.poll_round_planned),
        }
    }
}

impl Listings {
    pub fn new(client: Client) -> Listings {
        Listings {
            client,
            shared: Arc::new(Mutex::new(Shared::default())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The snapshots of `server`, read after this call began.
    pub async fn server(&self, server: u64) -> Answer {
        self.ask(Queue::First, server, GATHER).await
    }

    /// The snapshots of `server` from the next poll round: rounds come at most once per
    /// `interval` (a waiting job asks again right after its last answer, so one interval
    /// from its ask is one interval after the last round), and one round answers every
    /// job waiting at the time.
    pub async fn poll(&self, server: u64, interval: Duration) -> Answer {
        self.ask(Queue::Poll, server, interval).await
    }

    /// Joins the planned round of `queue`, or plans one `delay` from now.
    async fn ask(&self, queue: Queue, server: u64, delay: Duration) -> Answer {
        let (tx, rx) = oneshot::channel();
        let (plan_round, delay, mut asked) = {
            let mut s = self.lock();
            let delay = match queue {
                Queue::First => delay,
                Queue::Poll => delay.max(self.priced_interval(&s)),
            };
            let (asks, planned) = s.queue(queue);
            asks.push((server, tx));
            (!std::mem::replace(planned, true), delay, asks.len())
        };
        if plan_round {
            let me = self.clone();
            tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                loop {
                    tokio::time::sleep(delay).await;
                    let now = me.lock().queue(queue).0.len();
                    if !matches!(queue, Queue::First)
                        || now == asked
                        || started.elapsed() >= GATHER_MAX
                    {
                        break;
                    }
                    asked = now;
                }
                let asks = {
                    let mut s = me.lock();
                    let (asks, planned) = s.queue(queue);
                    *planned = false;
                    std::mem::take(asks)
                };
                me.round(asks).await;
            });
        }
        Self::answer(rx).await
    }

    /// The shortest interval between poll rounds that keeps them within
    /// [`POLL_SHARE`] of the rate budget, so creates and deletes are not starved by
    /// listings: a round of many pages waits longer.
    fn priced_interval(&self, s: &Shared) -> Duration {
        let pages = Self::account_pages(s, s.poll_asks.len().max(1)).min(s.poll_asks.len().max(1));
        Duration::from_secs_f64(pages as f64 / (POLL_SHARE * self.client.pace().max(0.01)))
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

    async fn round(&self, asks: Asks) {
        let account_wide = {
            let s = self.lock();
            let servers: BTreeSet<u64> = asks.iter().map(|(id, _)| *id).collect();
            let pages = Self::account_pages(&s, servers.len().max(1));
            // Until an account-wide listing has shown the account's size, only a large
            // crowd of asks risks one.
            let enough = s.account_count.is_some() || servers.len() >= UNKNOWN_ACCOUNT_MIN_ASKS;
            enough && servers.len() > 1 && pages < servers.len()
        };
        let servers: BTreeSet<u64> = asks.iter().map(|(id, _)| *id).collect();
        let mut answers: BTreeMap<u64, Answer> = BTreeMap::new();
        if account_wide {
            match self.client.list_snapshots_with_info(None).await {
                Ok((all, info)) => {
                    {
                        let mut s = self.lock();
                        s.account_count = info.count.or(Some(all.len() as u64));
                        s.page_size = info.page_size.or(s.page_size);
                    }
                    // One account-wide listing: its doubt, if any, is every server's.
                    for id in &servers {
                        let empty = Listing {
                            snapshots: Vec::new(),
                            doubt: all.doubt.clone(),
                        };
                        answers.insert(*id, Ok(empty));
                    }
                    for snapshot in all.snapshots {
                        if let Some(Ok(list)) = answers.get_mut(&snapshot.server.id) {
                            list.snapshots.push(snapshot);
                        }
                    }
                }
                Err(e) => {
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
                answers.insert(
                    id,
                    result.map(|(list, info)| {
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
