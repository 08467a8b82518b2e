//! One rate budget for the whole process: a token bucket that every request draws
//! from, and a pause that a 429's `Retry-After` puts on all requests, not only the one
//! that got it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RateBudget {
    bucket: Mutex<Bucket>,
}

struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
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
                let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let elapsed = now.duration_since(b.last).as_secs_f64();
                b.tokens = (b.tokens + elapsed * b.rate).min(b.rate.max(1.0));
                b.last = now;
                match b.paused_until {
                    Some(until) if until > now => until - now,
                    _ if b.tokens >= 1.0 => {
                        b.tokens -= 1.0;
                        return;
                    }
                    _ => Duration::from_secs_f64((1.0 - b.tokens) / b.rate),
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes a request's place at once, ahead of every waiting request and through a
    /// 429's pause: for starting a server that snaprotd stopped (and reading its status),
    /// which must never wait behind other work. Its cost is still counted, so the
    /// requests behind it wait correspondingly longer.
    pub fn acquire_priority(&self) {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let elapsed = now.duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * b.rate).min(b.rate.max(1.0)) - 1.0;
        b.last = now;
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

    #[tokio::test]
    async fn priority_requests_pass_a_pause_and_the_queue() {
        let budget = RateBudget::new(1.0);
        budget.acquire().await;
        budget.pause_for(Duration::from_secs(300));
        let started = Instant::now();
        budget.acquire_priority();
        budget.acquire_priority();
        assert!(started.elapsed() < Duration::from_millis(50));
        let waiting = tokio::time::timeout(Duration::from_millis(100), budget.acquire()).await;
        assert!(waiting.is_err(), "a normal request passed the pause");
    }
}
