//! The one alarm of the daemon, set with tokio-cron-scheduler.
//!
//! snaprotd computes every fire itself (`Schedule::next_fire`) and gives the crate
//! only the instant of the earliest one, as a one-shot job, re-armed after each fire.
//! This avoids the crate's own cron parsing (6 fields, day-of-month AND day-of-week),
//! its time-zone handling (a job keeps the offset it had when made, so it runs an hour
//! off after a DST change) and repeated jobs that stop after a clock jump.
//!
//! The crate checks its jobs every 500 ms against the wall clock, which would wake the
//! daemon twice a second while nothing is due. So the scheduler lives on a runtime of
//! its own, on a thread of its own, and that runtime runs only in the [`WINDOW`] before
//! a fire: between fires the thread sleeps on its command channel until the window
//! opens, and the crate's ticker, not polled, wakes nobody. One scheduler serves the
//! whole process (the crate's tasks never end, so making one per fire would leak).
//!
//! The crate stores times in whole wall-clock seconds, so a one-shot job fires up to
//! about 1.5 s away from its instant. The alarm is therefore set one second early, and
//! its callback sleeps the last stretch to the exact instant by the wall clock before
//! it reports the fire. A stretch much longer than that means the wall clock was set
//! back meanwhile: the callback reports at once, and the daemon, comparing the wall
//! clock with the monotonic one, computes the timetable again. A wall-clock jump
//! between fires is noticed by the daemon (`clock.rs`), which sets the alarm again.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc as async_mpsc, oneshot};
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

/// How much earlier than the fire the crate's job is set.
const LEAD: Duration = Duration::from_secs(1);

/// The longest last stretch the callback sleeps: the lead plus the crate's lateness.
const LAST_STRETCH: Duration = Duration::from_secs(3);

/// How long before a fire the scheduler's runtime runs: the lead, the crate's lateness
/// and a margin.
const WINDOW: Duration = Duration::from_secs(3);

/// Why the alarm could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AlarmError {
    #[error("cannot make the scheduler's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot create the scheduler: {0}")]
    Create(#[source] JobSchedulerError),
    #[error("cannot start the scheduler: {0}")]
    Start(#[source] JobSchedulerError),
}

enum Command {
    Set(Option<DateTime<Utc>>),
    Shutdown,
}

pub struct Alarm {
    commands: mpsc::Sender<Command>,
    /// Tells the scheduler's thread a command is waiting while its runtime runs.
    wake: Arc<Notify>,
    current: Option<DateTime<Utc>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Alarm {
    /// An alarm that sends the fire time on `fired` when it goes off.
    pub async fn new(
        fired: async_mpsc::UnboundedSender<DateTime<Utc>>,
    ) -> Result<Alarm, AlarmError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(AlarmError::Runtime)?;
        let (commands, receiver) = mpsc::channel();
        let wake = Arc::new(Notify::new());
        let (ready_tx, ready_rx) = oneshot::channel();
        let thread_wake = wake.clone();
        let thread = std::thread::Builder::new()
            .name("snaprotd-alarm".into())
            .spawn(move || {
                let scheduler = runtime.block_on(async {
                    let scheduler = JobScheduler::new().await.map_err(AlarmError::Create)?;
                    scheduler.start().await.map_err(AlarmError::Start)?;
                    Ok(scheduler)
                });
                match scheduler {
                    Ok(scheduler) => {
                        let _ = ready_tx.send(Ok(()));
                        Thread {
                            runtime,
                            scheduler,
                            commands: receiver,
                            wake: thread_wake,
                            fired,
                        }
                        .run();
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(AlarmError::Runtime)?;
        match ready_rx.await {
            Ok(Ok(())) => Ok(Alarm {
                commands,
                wake,
                current: None,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(AlarmError::Runtime(std::io::Error::other(
                "the scheduler's thread ended at start",
            ))),
        }
    }

    /// Sets the alarm to `at`, replacing the one set before (if for another time).
    pub async fn set(&mut self, at: Option<DateTime<Utc>>) {
        if self.current == at {
            return;
        }
        self.current = at;
        self.send(Command::Set(at));
    }

    fn send(&self, command: Command) {
        if self.commands.send(command).is_err() {
            tracing::error!("the alarm's thread has ended; no fire will come");
        }
        self.wake.notify_one();
    }

    /// The time the alarm is set for.
    pub fn set_for(&self) -> Option<DateTime<Utc>> {
        self.current
    }

    /// Forgets the alarm that went off.
    pub fn went_off(&mut self, at: DateTime<Utc>) {
        if self.current == Some(at) {
            self.current = None;
        }
    }

    pub async fn shutdown(mut self) {
        self.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// The scheduler's thread and what it owns.
struct Thread {
    runtime: tokio::runtime::Runtime,
    scheduler: JobScheduler,
    commands: mpsc::Receiver<Command>,
    wake: Arc<Notify>,
    fired: async_mpsc::UnboundedSender<DateTime<Utc>>,
}

impl Thread {
    fn run(mut self) {
        let mut at = None;
        loop {
            // Between fires: wait for a command until the next fire's window opens.
            let command = match at {
                None => self.commands.recv().ok(),
                Some(fire) => match self.commands.recv_timeout(until_window(fire)) {
                    Ok(command) => Some(command),
                    Err(RecvTimeoutError::Disconnected) => None,
                    Err(RecvTimeoutError::Timeout) => {
                        // The window: the scheduler's runtime runs until the fire, or
                        // until a command comes.
                        let command = self.runtime.block_on(self.window(fire));
                        if command.is_none() {
                            at = None;
                            continue;
                        }
                        command
                    }
                },
            };
            match command {
                Some(Command::Set(next)) => at = next,
                Some(Command::Shutdown) | None => break,
            }
        }
        if let Err(e) = self.runtime.block_on(self.scheduler.shutdown()) {
            tracing::warn!("scheduler shutdown: {e}");
        }
    }

    /// Sets the crate's one-shot job for `fire` and runs until it went off (`None`) or
    /// a command came (which then replaces it).
    async fn window(&self, fire: DateTime<Utc>) -> Option<Command> {
        let (done_tx, mut done) = oneshot::channel();
        let done_tx = Arc::new(Mutex::new(Some(done_tx)));
        let until = (fire - Utc::now()).to_std().unwrap_or_default();
        let instant = std::time::Instant::now() + until.saturating_sub(LEAD);
        let fired = self.fired.clone();
        let job = Job::new_one_shot_at_instant_async(instant, move |_, _| {
            let (fired, done_tx) = (fired.clone(), done_tx.clone());
            Box::pin(async move {
                // The last stretch, by the wall clock, to the exact fire time.
                while let Ok(rest) = (fire - Utc::now()).to_std() {
                    if rest.is_zero() || rest > LAST_STRETCH {
                        break;
                    }
                    tokio::time::sleep(rest).await;
                }
                let _ = fired.send(fire);
                if let Some(tx) = done_tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = tx.send(());
                }
            })
        });
        let id = match job {
            Ok(job) => match self.scheduler.add(job).await {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::error!("cannot set the alarm for {fire}: {e}");
                    None
                }
            },
            Err(e) => {
                tracing::error!("cannot make the alarm for {fire}: {e}");
                None
            }
        };
        let fallback = tokio::time::sleep(until);
        tokio::pin!(fallback);
        let command = loop {
            tokio::select! {
                _ = &mut done, if id.is_some() => break None,
                // Without the crate's job, the fire is not lost.
                _ = &mut fallback, if id.is_none() => {
                    let _ = self.fired.send(fire);
                    break None;
                }
                _ = self.wake.notified() => {
                    if let Ok(command) = self.commands.try_recv() {
                        break Some(command);
                    }
                }
            }
        };
        if let Some(id) = id
            && let Err(e) = self.scheduler.remove(&id).await
        {
            tracing::debug!("removing the alarm for {fire}: {e}");
        }
        command
    }
}

/// How long until the window before `fire` opens (zero: it is open).
fn until_window(fire: DateTime<Utc>) -> Duration {
    (fire - Utc::now())
        .to_std()
        .unwrap_or_default()
        .saturating_sub(WINDOW)
}
