//! A token bucket: `rate` tokens a second, at most `capacity` held. The client's rate
//! budget paces its requests with one (capacity 1: no bursts); the simulator limits
//! the requests it answers with one (a provider's bucket).

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, capacity: f64) -> TokenBucket {
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
            last: Instant::now(),
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// A new rate from now on (the tokens earned so far at the old one are kept).
    pub fn set_rate(&mut self, rate: f64) {
        self.refill();
        self.rate = rate;
    }

    /// Adds the tokens earned since the last look; returns now.
    pub fn refill(&mut self) -> Instant {
        let now = Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.capacity);
        self.last = now;
        now
    }

    /// Takes a token if one is there.
    pub fn try_take(&mut self) -> bool {
        self.refill();
        let there = self.tokens >= 1.0;
        if there {
            self.tokens -= 1.0;
        }
        there
    }

    /// How long until a token is there (zero: now).
    pub fn wait(&mut self) -> Duration {
        self.refill();
        Duration::from_secs_f64((1.0 - self.tokens).max(0.0) / self.rate)
    }

    /// Throws the tokens away (after a 429).
    pub fn empty(&mut self) {
        self.refill();
        self.tokens = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_gives_its_capacity_then_the_rate() {
        let mut bucket = TokenBucket::new(10.0, 3.0);
        assert!((0..3).all(|_| bucket.try_take()));
        assert!(!bucket.try_take());
        assert_eq!(bucket.wait(), Duration::from_millis(100));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(bucket.try_take());
        // Never more than the capacity, however long it waited.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!((0..3).all(|_| bucket.try_take()));
        assert!(!bucket.try_take());
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_rate_counts_from_now() {
        let mut bucket = TokenBucket::new(1.0, 1.0);
        bucket.empty();
        tokio::time::sleep(Duration::from_millis(500)).await;
        bucket.set_rate(10.0);
        // Half a token at the old rate; the other half takes 50 ms at the new one.
        assert_eq!(bucket.wait(), Duration::from_millis(50));
    }
}
