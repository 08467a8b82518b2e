//! One rate budget for the whole process, which finds the provider's rate by itself.
//!
//! Requests are paced one by one (no bursts, so a provider with a small bucket is not
//! overrun). While requests wait for the budget, the pace grows — doubling each second
//! until the first 429 — up to `[api] max_requests_per_second` when
//! the operator set one. A 429 empties the bucket, drops the pace just below the rate
//! the provider actually answered over the last seconds, and pauses every request for
//! its `Retry-After`; after the pause the waiting requests go one by one again, and the
//! pace grows back quickly to just under that rate, then by a hundredth a second. Requests
//! that start a server snaprotd stopped go ahead of all others and through a pause.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::bucket::TokenBucket;

/// The pace before anything is known, when no ceiling is set.
const START_RATE: f64 = 10.0;
/// The slowest pace a run of 429s can bring it to.
const MIN_RATE: f64 = 0.05;
/// How far back answered requests count for the rate the provider allows: the last
/// second (when the pace was highest), or the last few requests at a slow pace.
const WINDOW: Duration = Duration::from_secs(1);
const WINDOW_REQUESTS: f64 = 5.0;
/// How often the pace may grow.
const RAISE_EVERY: Duration = Duration::from_secs(1);

/// Which requests go first when several wait for the budget. Within a class, the
/// request that first asked goes first, also when it is sent again after a 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Starting a server snaprotd stopped (and reading its status): ahead of all
    /// others, and through a 429's pause.
    Priority,
    /// Listings, which many jobs share (a job's first listing and the poll rounds):
    /// rounds are priced to a small share of the budget, and are never starved by a
    /// crowd of creates.
    Listing,
    /// What a rotation waits on: stops, creates, status reads.
    Normal,
    /// Deletes: nothing waits on them, so they go when nothing else waits (a fleet
    /// firing together makes every snapshot first, and prunes while they complete).
    Last,
}

/// A request's place in the budget's line, kept across its retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    class: Class,
    seq: u64,
}

pub struct RateBudget {
    bucket: Arc<Mutex<Bucket>>,
    /// Wakes the line's driver when a request joins it.
    joined: Arc<Notify>,
}

struct Bucket {
    /// The pace: requests a second now, at most one token held (no bursts).
    pace: TokenBucket,
    /// The operator's `max_requests_per_second`, if set.
    ceiling: Option<f64>,
    paused_until: Option<Instant>,
    /// The requests waiting for a token, in the order they go.
    line: BTreeMap<Place, oneshot::Sender<()>>,
    next_seq: u64,
    /// A task hands out tokens to the line while it is not empty.
    driving: bool,
    /// When answers (other than 429) came, over the last `WINDOW`.
    answered: VecDeque<Instant>,
    /// Doubling until the first 429.
    slow_start: bool,
    /// The rate the provider answered when it last said 429: the pace grows quickly
    /// back towards it, and slowly past it.
    known_limit: Option<f64>,
    /// When the pace last dropped for a 429.
    last_drop: Option<Instant>,
    /// A request had to wait for the pace since the last raise.
    held_back: bool,
    last_raise: Instant,
}

impl Bucket {
    fn rate(&self) -> f64 {
        self.pace.rate()
    }

    fn cap(&self, rate: f64) -> f64 {
        let rate = rate.max(MIN_RATE);
        self.ceiling.map_or(rate, |c| rate.min(c))
    }

    /// How long a request of `class` must wait before it may be sent (zero: now).
    fn wait(&mut self, class: Class, now: Instant) -> Duration {
        match self.paused_until {
            Some(until) if until > now && class != Class::Priority => until - now,
            _ => match self.pace.wait() {
                wait if wait.is_zero() => wait,
                wait => {
                    self.held_back = true;
                    wait.max(Duration::from_millis(1))
                }
            },
        }
    }
}

impl RateBudget {
    /// A budget capped at `ceiling` requests a second (starting there), or finding the
    /// provider's rate from a modest start when there is none.
    pub fn new(ceiling: Option<f64>) -> RateBudget {
        let now = Instant::now();
        RateBudget {
            bucket: Arc::new(Mutex::new(Bucket {
                pace: TokenBucket::new(ceiling.unwrap_or(START_RATE).max(MIN_RATE), 1.0),
                ceiling,
                paused_until: None,
                line: BTreeMap::new(),
                next_seq: 0,
                driving: false,
                answered: VecDeque::new(),
                slow_start: true,
                known_limit: None,
                last_drop: None,
                held_back: false,
                last_raise: now,
            })),
            joined: Arc::new(Notify::new()),
        }
    }

    /// A reload's new ceiling; what was learnt of the provider stays.
    pub fn set_ceiling(&self, ceiling: Option<f64>) {
        let mut b = self.lock();
        b.ceiling = ceiling;
        let rate = b.cap(b.rate());
        b.pace.set_rate(rate);
    }

    /// The pace now, in requests a second.
    pub fn rate(&self) -> f64 {
        self.lock().rate()
    }

    /// A place in the line for a new request of `class`, behind every request of its
    /// class that asked before.
    pub fn place(&self, class: Class) -> Place {
        let mut b = self.lock();
        b.next_seq += 1;
        Place {
            class,
            seq: b.next_seq,
        }
    }

    /// Waits until the request at `place` may be sent: requests go one by one at the
    /// pace, in the order of their places; only the line's first one is ever woken.
    pub async fn acquire(&self, place: Place) {
        let granted = {
            let mut b = self.lock();
            let now = Instant::now();
            let first = b.line.first_key_value().is_none_or(|(p, _)| place < *p);
            if first && b.wait(place.class, now).is_zero() && b.pace.try_take() {
                return;
            }
            let (tx, rx) = oneshot::channel();
            b.line.insert(place, tx);
            if !std::mem::replace(&mut b.driving, true) {
                tokio::spawn(drive(self.bucket.clone(), self.joined.clone()));
            }
            rx
        };
        self.joined.notify_one();
        /// Leaves the line when the request is given up before its turn.
        struct Leave<'a>(&'a RateBudget, Place);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.lock().line.remove(&self.1);
            }
        }
        let _leave = Leave(self, place);
        // The sender is dropped without a token only when the runtime shuts down.
        let _ = granted.await;
    }

    /// An answer other than 429 came: the pace may grow if requests are held back by it.
    pub fn answered(&self) {
        let mut b = self.lock();
        let now = Instant::now();
        b.answered.push_back(now);
        let window = WINDOW.max(Duration::from_secs_f64(WINDOW_REQUESTS / b.rate()));
        while b
            .answered
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            b.answered.pop_front();
        }
        let paused = b.paused_until.is_some_and(|u| u > now);
        if b.held_back && !paused && now.duration_since(b.last_raise) >= RAISE_EVERY {
            let raised = match b.known_limit {
                _ if b.slow_start => b.rate() * 2.0,
                Some(limit) if b.rate() < limit * 0.95 => (b.rate() * 1.2).min(limit * 0.95),
                _ => b.rate() * 1.01,
            };
            let raised = b.cap(raised);
            b.pace.set_rate(raised);
            b.held_back = false;
            b.last_raise = now;
        }
    }

    /// A 429 to a request sent at `sent`: every request waits `wait` (its
    /// `Retry-After`), the bucket is emptied, and the pace drops to the rate the
    /// provider answered lately — once for a crowd of 429s: those to requests sent
    /// before the last drop answer a pace that is gone, and only extend the pause.
    pub fn rate_limited(&self, wait: Duration, sent: Instant) {
        let mut b = self.lock();
        let now = Instant::now();
        let until = now + wait;
        if b.paused_until.is_none_or(|u| u < until) {
            b.paused_until = Some(until);
        }
        if b.last_drop.is_some_and(|drop| sent <= drop) {
            return;
        }
        b.last_drop = Some(now);
        let answered_rate = match b.answered.front() {
            Some(first) => {
                let span = now.duration_since(*first).as_secs_f64().max(0.5);
                b.answered.len() as f64 / span
            }
            None => b.rate() / 2.0,
        };
        let limit = answered_rate.min(b.rate());
        b.known_limit = Some(limit);
        let dropped = b.cap(limit * 0.9);
        tracing::warn!(
            "the provider answered 429 (too many requests): every request waits {:.1}s, then they go at {dropped:.1} a second",
            wait.as_secs_f64()
        );
        let until = chrono::Local::now() + wait;
        tracing::info!(
            target: crate::PROGRESS,
            key = "provider",
            "provider: too many requests (429), paused until {}",
            until.format("%H:%M:%S")
        );
        b.pace.set_rate(dropped);
        b.pace.empty();
        b.slow_start = false;
        b.held_back = false;
        b.last_raise = now;
        b.answered.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        lock(&self.bucket)
    }
}

fn lock(bucket: &Mutex<Bucket>) -> std::sync::MutexGuard<'_, Bucket> {
    bucket.lock().unwrap_or_else(|p| p.into_inner())
}

/// Hands out tokens to the line, first place first, until the line is empty.
async fn drive(bucket: Arc<Mutex<Bucket>>, joined: Arc<Notify>) {
    loop {
        let wait = {
            let mut b = lock(&bucket);
            let now = Instant::now();
            let Some(first) = b.line.first_key_value().map(|(p, _)| *p) else {
                b.driving = false;
                return;
            };
            let wait = b.wait(first.class, now);
            if wait.is_zero() {
                let waiter = b.line.remove(&first);
                // A request given up since it joined takes no token.
                if waiter.is_some_and(|tx| tx.send(()).is_ok()) {
                    b.pace.try_take();
                }
                continue;
            }
            wait
        };
        // A request that joins may go before the one waited for (a priority one
        // through a pause): look again when one does.
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = joined.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_paced_one_by_one_at_the_ceiling() {
        let budget = RateBudget::new(Some(20.0));
        let started = Instant::now();
        for _ in 0..21 {
            budget.acquire(budget.place(Class::Normal)).await;
        }
        // The first at once, then one every 50 ms: no burst.
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_pace_grows_while_held_back_and_drops_to_what_was_answered() {
        let budget = RateBudget::new(None);
        assert_eq!(budget.rate(), START_RATE);
        // A provider that answers everything: the pace doubles each second.
        for _ in 0..40 {
            budget.acquire(budget.place(Class::Normal)).await;
            budget.answered();
        }
        assert!(budget.rate() >= 2.0 * START_RATE, "{}", budget.rate());
        // Then a 429 after about 25 answered a second: the pace drops to that.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(40)).await;
            budget.answered();
        }
        budget.rate_limited(Duration::from_secs(3), Instant::now());
        let rate = budget.rate();
        assert!((18.0..=24.0).contains(&rate), "{rate}");
        // Every request waits the Retry-After, and then they go one by one.
        let paused = Instant::now();
        budget.acquire(budget.place(Class::Normal)).await;
        let first = paused.elapsed();
        budget.acquire(budget.place(Class::Normal)).await;
        assert!(first >= Duration::from_secs(3), "{first:?}");
        assert!(
            paused.elapsed()
                >= first + Duration::from_secs_f64(1.0 / rate) - Duration::from_millis(1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_budget_does_not_grow() {
        let budget = RateBudget::new(None);
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            budget.acquire(budget.place(Class::Normal)).await;
            budget.answered();
        }
        assert_eq!(budget.rate(), START_RATE);
    }

    #[tokio::test(start_paused = true)]
    async fn the_ceiling_bounds_the_pace() {
        let budget = RateBudget::new(Some(12.0));
        for _ in 0..60 {
            budget.acquire(budget.place(Class::Normal)).await;
            budget.answered();
        }
        assert_eq!(budget.rate(), 12.0);
        budget.set_ceiling(Some(3.0));
        assert_eq!(budget.rate(), 3.0);
    }

    #[tokio::test(start_paused = true)]
    async fn priority_requests_pass_a_pause_and_the_queue_but_keep_the_pace() {
        let budget = std::sync::Arc::new(RateBudget::new(Some(2.0)));
        budget.acquire(budget.place(Class::Normal)).await;
        budget.rate_limited(Duration::from_secs(300), Instant::now());
        let normal = {
            let b = budget.clone();
            tokio::spawn(async move {
                b.acquire(b.place(Class::Normal)).await;
                Instant::now()
            })
        };
        let started = Instant::now();
        for _ in 0..4 {
            budget.acquire(budget.place(Class::Priority)).await;
        }
        // Four at the pace (halved by the 429) from an empty bucket, not after 300 s.
        let took = started.elapsed();
        let pace = Duration::from_secs_f64(4.0 / budget.rate());
        assert!(
            took.abs_diff(pace) < Duration::from_millis(10),
            "{took:?} vs {pace:?}"
        );
        assert!(!normal.is_finished(), "a normal request passed the pause");
        // A priority request given up does not hold the others back for good.
        let dropped = tokio::time::timeout(
            Duration::from_millis(1),
            budget.acquire(budget.place(Class::Priority)),
        )
        .await;
        assert!(dropped.is_err());
        assert!(
            budget.lock().line.len() <= 1,
            "a given-up request stays in line"
        );
        let at = normal.await.unwrap();
        assert!(at >= started + Duration::from_secs(300));
    }

    #[tokio::test(start_paused = true)]
    async fn the_line_goes_by_class_then_by_first_ask() {
        let budget = std::sync::Arc::new(RateBudget::new(Some(10.0)));
        budget.acquire(budget.place(Class::Normal)).await;
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Asked in this order while the bucket is empty.
        for (name, class) in [
            ("delete", Class::Last),
            ("create 1", Class::Normal),
            ("create 2", Class::Normal),
            ("poll round", Class::Listing),
            ("start", Class::Priority),
        ] {
            let place = budget.place(class);
            let (b, order) = (budget.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                b.acquire(place).await;
                order.lock().unwrap().push((name, Instant::now()));
            }));
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        let names: Vec<_> = order.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            ["start", "poll round", "create 1", "create 2", "delete"]
        );
        // Still one by one at the pace.
        for pair in order.windows(2) {
            assert!(
                pair[1].1 - pair[0].1 >= Duration::from_millis(99),
                "{order:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_sent_again_after_a_429_keeps_its_place() {
        let budget = std::sync::Arc::new(RateBudget::new(Some(10.0)));
        let retried = budget.place(Class::Normal);
        budget.acquire(retried).await;
        // Its 429: the others asked meanwhile; the retry still goes first.
        budget.rate_limited(Duration::from_secs(2), Instant::now());
        let later = budget.place(Class::Normal);
        let b = budget.clone();
        let other = tokio::spawn(async move {
            b.acquire(later).await;
            Instant::now()
        });
        tokio::task::yield_now().await;
        budget.acquire(retried).await;
        let retried_at = Instant::now();
        assert!(other.await.unwrap() > retried_at);
    }

    #[tokio::test(start_paused = true)]
    async fn a_crowd_of_429s_drops_the_pace_once() {
        let budget = RateBudget::new(None);
        let start = Instant::now();
        // Answered at 50 a second for two seconds (more than the pace), 30 in flight.
        while start.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            budget.answered();
        }
        let in_flight = Instant::now() - Duration::from_millis(10);
        budget.rate_limited(Duration::from_secs(1), in_flight);
        let dropped = budget.rate();
        // The other 29 answer requests sent before the drop: the pace stays.
        for _ in 0..29 {
            budget.rate_limited(Duration::from_secs(1), in_flight);
        }
        assert_eq!(budget.rate(), dropped);
        // Just under the pace the provider answered (here: our own, 10 a second).
        assert!((dropped - 0.9 * START_RATE).abs() < 1e-9, "{dropped}");
        // A request sent after the drop that meets a 429 drops it again.
        tokio::time::sleep(Duration::from_secs(1)).await;
        budget.rate_limited(Duration::from_secs(1), Instant::now());
        assert!(budget.rate() < dropped);
    }
}
