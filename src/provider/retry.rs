//! How long a job's requests are sent again through 429s, and the jitter of backoff.

use super::assumptions;

tokio::task_local! {
    /// Until when a job's requests are retried through 429s (see [`with_deadline`]).
    static DEADLINE: tokio::time::Instant;
}

/// Runs `f` with `deadline` as the time until which its requests are sent again after
/// a 429: while the provider's rate is what holds a job back, the job does not fail.
pub async fn with_deadline<F: std::future::Future>(
    deadline: tokio::time::Instant,
    f: F,
) -> F::Output {
    DEADLINE.scope(deadline, f).await
}

/// The deadline for 429s of the calling job, or a default from now for a request made
/// outside one (a command, a shared listing).
pub(super) fn rate_limit_deadline() -> tokio::time::Instant {
    DEADLINE
        .try_with(|d| *d)
        .unwrap_or_else(|_| tokio::time::Instant::now() + assumptions::RATE_LIMITED_FOR)
}

pub(super) fn past(deadline: tokio::time::Instant) -> bool {
    tokio::time::Instant::now() >= deadline
}

/// A number in [0, 1) that differs between calls and processes, for backoff jitter.
pub(super) fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}
