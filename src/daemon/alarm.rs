//! The one alarm of the daemon, set with tokio-cron-scheduler.
//!
//! snaprotd computes every fire itself (`Schedule::next_fire`) and gives the crate
//! only the instant of the earliest one, as a one-shot job, re-armed after each fire.
//! This avoids the crate's own cron parsing (6 fields, day-of-month AND day-of-week),
//! its time-zone handling (a job keeps the offset it had when made, so it runs an hour
//! off after a DST change) and repeated jobs that stop after a clock jump.
//!
//! The crate checks its jobs every 500 ms against the wall clock and stores times in
//! whole wall-clock seconds, so a one-shot job fires up to about 1.5 s away from its
//! instant. The alarm is therefore set one second early, and its callback sleeps the
//! last stretch to the exact instant by the wall clock before it reports the fire. A
//! stretch much longer than that means the wall clock was set back meanwhile: the
//! callback reports at once, and the daemon, comparing the wall clock with the
//! monotonic one, computes the timetable again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use uuid::Uuid;

/// How much earlier than the fire the crate's job is set.
const LEAD: Duration = Duration::from_secs(1);

/// The longest last stretch the callback sleeps: the lead plus the crate's lateness.
const LAST_STRETCH: Duration = Duration::from_secs(3);

/// Why the alarm could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AlarmError {
    #[error("cannot create the scheduler: {0}")]
    Create(#[source] JobSchedulerError),
    #[error("cannot start the scheduler: {0}")]
    Start(#[source] JobSchedulerError),
}

pub struct Alarm {
    scheduler: JobScheduler,
    current: Option<(Uuid, DateTime<Utc>)>,
    fired: mpsc::UnboundedSender<DateTime<Utc>>,
}

impl Alarm {
    /// An alarm that sends the fire time on `fired` when it goes off.
    pub async fn new(fired: mpsc::UnboundedSender<DateTime<Utc>>) -> Result<Alarm, AlarmError> {
        let scheduler = JobScheduler::new().await.map_err(AlarmError::Create)?;
        scheduler.start().await.map_err(AlarmError::Start)?;
        Ok(Alarm {
            scheduler,
            current: None,
            fired,
        })
    }

    /// Sets the alarm to `at`, replacing the one set before (if for another time).
    pub async fn set(&mut self, at: Option<DateTime<Utc>>) {
        if self.current.map(|(_, t)| t) == at {
            return;
        }
        if let Some((id, _)) = self.current.take()
            && let Err(e) = self.scheduler.remove(&id).await
        {
            tracing::warn!("cannot remove the previous alarm: {e}");
        }
        let Some(at) = at else { return };
        let until = (at - Utc::now()).to_std().unwrap_or_default();
        let instant = std::time::Instant::now() + until.saturating_sub(LEAD);
        let fired = self.fired.clone();
        let job = Job::new_one_shot_at_instant_async(instant, move |_, _| {
            let fired = fired.clone();
            Box::pin(async move {
                // The last stretch, by the wall clock, to the exact fire time.
                while let Ok(rest) = (at - Utc::now()).to_std() {
                    if rest.is_zero() || rest > LAST_STRETCH {
                        break;
                    }
                    tokio::time::sleep(rest).await;
                }
                let _ = fired.send(at);
            })
        });
        match job {
            Ok(job) => match self.scheduler.add(job).await {
                Ok(id) => self.current = Some((id, at)),
                Err(e) => tracing::error!("cannot set the alarm for {at}: {e}"),
            },
            Err(e) => tracing::error!("cannot make the alarm for {at}: {e}"),
        }
    }

    /// The time the alarm is set for.
    pub fn set_for(&self) -> Option<DateTime<Utc>> {
        self.current.map(|(_, t)| t)
    }

    /// Forgets the alarm that went off (the crate removes one-shot jobs itself).
    pub fn went_off(&mut self, at: DateTime<Utc>) {
        if self.current.map(|(_, t)| t) == Some(at) {
            self.current = None;
        }
    }

    pub async fn shutdown(mut self) {
        if let Err(e) = self.scheduler.shutdown().await {
            tracing::warn!("scheduler shutdown: {e}");
        }
    }
}
