//! An interrupt: SIGTERM to the daemon, Ctrl-C or SIGTERM to `once`. Jobs start nothing
//! new once it is set, and what they wait for gets a grace period from that moment.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
pub struct Interrupt {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    set: CancellationToken,
    deadline: OnceLock<Instant>,
}

impl Interrupt {
    /// Sets the interrupt; waits end at most `grace` from now. Setting it again changes
    /// nothing.
    pub fn set(&self, grace: Duration) {
        let _ = self.inner.deadline.set(Instant::now() + grace);
        self.inner.set.cancel();
    }

    pub fn is_set(&self) -> bool {
        self.inner.set.is_cancelled()
    }

    /// When the grace period ends, once the interrupt is set.
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.deadline.get().copied()
    }

    /// `until`, or the end of the grace period if that comes first.
    pub fn cap(&self, until: Instant) -> Instant {
        self.deadline().map_or(until, |d| d.min(until))
    }

    /// Completes when the interrupt is set.
    pub async fn wait_set(&self) {
        self.inner.set.cancelled().await;
    }

    /// Completes when the grace period has ended (never while the interrupt is not set).
    pub async fn grace_over(&self) {
        self.inner.set.cancelled().await;
        if let Some(d) = self.deadline() {
            tokio::time::sleep_until(d).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_grace_period_counts_from_the_interrupt() {
        let i = Interrupt::default();
        assert!(!i.is_set());
        let far = Instant::now() + Duration::from_secs(3600);
        assert_eq!(i.cap(far), far);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let at = Instant::now();
        i.set(Duration::from_secs(5));
        i.set(Duration::from_secs(500));
        assert!(i.is_set());
        assert_eq!(i.cap(far), at + Duration::from_secs(5));
        i.grace_over().await;
        assert_eq!(Instant::now(), at + Duration::from_secs(5));
    }
}
