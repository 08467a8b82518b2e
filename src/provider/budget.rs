//! One rate budget for the whole process: a token bucket that every request draws
//! from, and a pause that a 429's `Retry-After` puts on all requests, not only the one
//! that got it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub struct RateBudget {
    bucket: Mutex<Bucket>,
}

struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
    /// Priority requests waiting for a token: the others wait behind them.
    priority_waiting: usize,
}

impl Bucket {
    /// Adds the tokens earned since the last look; returns now.
    fn refill(&mut self) -> Instant {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate.max(1.0));
        self.last = now;
        now
    }
}

impl RateBudget {
    /// At most `per_second` requests a second, with bursts of up to one second's worth.
    pub fn new(per_second: f64) -> RateBudget {
        RateBudget {
            bucket: Mutex::new(Bucket {
                rate: per_second.max(0.01),
                tokens: per_second.max(1.0),
                last: Instant::now(),
                paused_until: None,
                priority_waiting: 0,
            }),
        }
    }

    pub fn set_rate(&self, per_second: f64) {
        self.bucket.lock().unwrap_or_else(|p| p.into_inner()).rate = per_second.max(0.01);
    }

    /// Waits until a request may be sent.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut b = self.lock();
                let now = b.refill();
                match b.paused_until {
                    Some(until) if until > now => until - now,
                    _ if b.tokens >= 1.0 && b.priority_waiting == 0 => {
                        b.tokens -= 1.0;
                        return;
                    }
                    _ => Duration::from_secs_f64((1.0 - b.tokens).max(1.0) / b.rate),
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Waits for a token ahead of every other waiting request, and through a 429's
    /// pause: for starting a server that snaprotd stopped (and reading its status),
    /// which must never wait behind other work. It still keeps to the rate.
    pub async fn acquire_priority(&self) {
        /// Counts this request as waiting, also when its future is dropped early.
        struct Waiting<'a>(&'a RateBudget);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.lock().priority_waiting -= 1;
            }
        }
        self.lock().priority_waiting += 1;
        let _waiting = Waiting(self);
        loop {
            let wait = {
                let mut b = self.lock();
                b.refill();
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - b.tokens) / b.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds every request back for `wait` (a 429's `Retry-After`).
    pub fn pause_for(&self, wait: Duration) {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let until = Instant::now() + wait;
        if b.paused_until.is_none_or(|u| u < until) {
            b.paused_until = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_bucket_holds_requests_to_the_rate() {
        let budget = RateBudget::new(20.0);
        let started = Instant::now();
        for _ in 0..30 {
            budget.acquire().await;
        }
        // 20 from the burst, 10 more at 20/s.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(450), "{took:?}");
        budget.pause_for(Duration::from_millis(300));
        let paused = Instant::now();
        budget.acquire().await;
        assert!(paused.elapsed() >= Duration::from_millis(290));
    }

    #[tokio::test(start_paused = true)]
    async fn priority_requests_pass_a_pause_and_the_queue_but_keep_the_rate() {
        let budget = std::sync::Arc::new(RateBudget::new(2.0));
        budget.acquire().await;
        budget.acquire().await;
        budget.pause_for(Duration::from_secs(300));
        let normal = {
            let b = budget.clone();
            tokio::spawn(async move {
                b.acquire().await;
                tokio::time::Instant::now()
            })
        };
        let started = tokio::time::Instant::now();
        for _ in 0..4 {
            budget.acquire_priority().await;
        }
        // Four at 2/s from an empty bucket: two seconds, not 300.
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert!(!normal.is_finished(), "a normal request passed the pause");
        // A priority request given up does not hold the others back for good.
        let dropped =
            tokio::time::timeout(Duration::from_millis(1), budget.acquire_priority()).await;
        assert!(dropped.is_err());
        assert_eq!(budget.lock().priority_waiting, 0);
        let at = normal.await.unwrap();
        assert!(at >= started + Duration::from_secs(300));
    }
}
