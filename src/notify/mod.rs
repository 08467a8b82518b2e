//! Telling the operator: a [`Notice`] of a failed run (and of the first success after
//! one) POSTed to `[notify] webhook_url` and given to `[notify] command` on its stdin,
//! and healthchecks.io-style pings of a policy's `ping_url` (`/start`, success,
//! `/fail`), a fire of the policy being one run of that check (`fires.rs`).
//!
//! Sending never delays or fails a rotation: [`Notifier::send`] only queues (a bounded
//! queue: past [`CAPACITY`] waiting, a new message is dropped with a warning), and a
//! task per target (`deliver.rs`) delivers in order, retrying with backoff a bounded
//! number of times, each attempt within `[notify] timeout`. [`Notifier::finish`] gives
//! what is queued a bounded time at the end of `once` and of the daemon.
//!
//! A URL is a secret, like the API token: it is shown by scheme and host only
//! ([`shown`]), and no error carries it.

mod deliver;
mod fires;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;
use url::Url;

use crate::config::{HookCommand, NotifyConfig};
use crate::job::JobId;

/// Messages waiting at most, over all targets; past it a new one is dropped.
pub const CAPACITY: usize = 256;
/// The longest wait for delivery at the end of `once` or of the daemon.
pub const MAX_FINISH: Duration = Duration::from_secs(60);
/// The shape of [`Notice`] (`version`): it changes only when a field changes meaning
/// or goes away.
pub const VERSION: u32 = 1;

/// What a run came to, as a notice tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The run failed.
    Failed,
    /// The run succeeded, and the job's run before it had failed.
    Recovered,
}

/// The snapshot a run made or adopted (or was making).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotRef {
    /// `null` when the provider gave none (the create failed or was not answered).
    pub id: Option<u64>,
    pub name: String,
}

/// The JSON a webhook receives and the command reads on stdin; documented in the man
/// page (NOTIFICATIONS) and the README.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    pub version: u32,
    /// `policy@server`.
    pub job: String,
    pub policy: String,
    pub server: u64,
    pub snapshot: Option<SnapshotRef>,
    pub outcome: Outcome,
    /// What went wrong; `null` unless `failed`.
    pub error: Option<String>,
    /// How long the run took, in seconds.
    pub duration: f64,
    /// When the run ended: RFC 3339 in UTC, to the second (as every `--json` time).
    pub time: String,
    /// `true` for the sample of `snaprotd notify --test` (no run happened), shaped as
    /// a `recovered` notice; `false` for every real one.
    pub test: bool,
}

impl Notice {
    pub fn new(
        job: &JobId,
        outcome: Outcome,
        snapshot: Option<SnapshotRef>,
        error: Option<String>,
        duration: f64,
        ended: DateTime<Utc>,
    ) -> Notice {
        Notice {
            version: VERSION,
            job: job.to_string(),
            policy: job.policy.to_string(),
            server: job.server,
            snapshot,
            outcome,
            error,
            duration: (duration * 1000.0).round() / 1000.0,
            time: ended.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            test: false,
        }
    }

    /// The sample `snaprotd notify --test` sends for `job`: a success after a failure
    /// (`error` null, as a real one), marked `test`.
    pub fn sample(job: &JobId, snapshot: Option<SnapshotRef>, now: DateTime<Utc>) -> Notice {
        Notice {
            test: true,
            ..Notice::new(job, Outcome::Recovered, snapshot, None, 0.0, now)
        }
    }

    fn json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// Which ping of a policy's `ping_url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    /// `<ping_url>/start`: the fire's first job starts.
    Start,
    /// `<ping_url>`: a job of the fire succeeded, and none of it failed.
    Success,
    /// `<ping_url>/fail`, the job and its error as body: a job of the fire failed.
    Fail,
}

/// One thing to deliver, and where.
#[derive(Debug, Clone)]
pub enum Message {
    Webhook {
        url: Url,
        notice: Notice,
    },
    Command {
        command: HookCommand,
        notice: Notice,
    },
    Ping {
        url: Url,
        ping: Ping,
        body: String,
    },
}

impl Message {
    /// The notice for every target of `[notify]` (the webhook, the command).
    pub fn all(config: &NotifyConfig, notice: &Notice) -> Vec<Message> {
        let mut out = Vec::new();
        if let Some(url) = &config.webhook_url {
            out.push(Message::Webhook {
                url: url.clone(),
                notice: notice.clone(),
            });
        }
        if let Some(command) = &config.command {
            out.push(Message::Command {
                command: command.clone(),
                notice: notice.clone(),
            });
        }
        out
    }

    /// The ping of `policy`, when it has a `ping_url`.
    pub fn ping(config: &NotifyConfig, policy: &str, ping: Ping, body: &str) -> Option<Message> {
        let url = config.pings.get(policy)?;
        Some(Message::Ping {
            url: url.clone(),
            ping,
            body: cut(body, 10_000),
        })
    }

    /// Where it goes, for people: scheme and host of a URL (never the rest), or the
    /// command.
    pub fn target(&self) -> String {
        match self {
            Message::Webhook { url, .. } => format!("webhook {}", shown(url)),
            Message::Command { command, .. } => format!("command {}", command.program().display()),
            Message::Ping { url, ping, .. } => {
                let which = match ping {
                    Ping::Start => "start",
                    Ping::Success => "success",
                    Ping::Fail => "fail",
                };
                format!("ping ({which}) {}", shown(url))
            }
        }
    }

    /// Messages to one target go out in order (a ping's start before its end).
    fn lane(&self) -> String {
        match self {
            Message::Webhook { url, .. } => format!("webhook {url}"),
            Message::Command { command, .. } => format!("command {command}"),
            Message::Ping { url, .. } => format!("ping {url}"),
        }
    }
}

/// A URL as it may be shown: its scheme and host, the rest (where the secret is) left
/// out: `https://hc-ping.com/…`.
pub fn shown(url: &Url) -> String {
    let host = match url.host() {
        Some(h) => h.to_string(),
        None => "?".into(),
    };
    match url.port() {
        Some(port) => format!("{}://{host}:{port}/…", url.scheme()),
        None => format!("{}://{host}/…", url.scheme()),
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// How a message is tried: each attempt within `timeout`, at most `max_attempts`, the
/// wait between them from `retry_backoff`, doubling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub timeout: Duration,
    pub max_attempts: u32,
    pub retry_backoff: Duration,
}

impl Retry {
    pub fn of(config: &NotifyConfig) -> Retry {
        Retry {
            timeout: config.timeout,
            max_attempts: config.max_attempts,
            retry_backoff: config.retry_backoff,
        }
    }

    /// The wait after attempt `n` (from 1) failed: `retry_backoff` doubled each time,
    /// at most a minute.
    fn backoff(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1).min(16));
        self.retry_backoff
            .saturating_mul(factor)
            .min(Duration::from_secs(60))
    }

    /// How long one message may take, all its attempts and waits.
    pub fn whole(&self) -> Duration {
        (1..=self.max_attempts)
            .map(|n| {
                self.timeout
                    + if n < self.max_attempts {
                        self.backoff(n)
                    } else {
                        Duration::ZERO
                    }
            })
            .sum()
    }
}

/// The queue of messages and the tasks that deliver them. Cloned, it is the same
/// queue; the daemon keeps it across reloads.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

/// The queue of one target's messages.
type Lane = mpsc::UnboundedSender<(Message, Retry)>;

struct Inner {
    http: Result<reqwest::Client, String>,
    /// Messages queued or being delivered.
    pending: AtomicUsize,
    dropped: AtomicU64,
    /// One queue per target; `None` once closed.
    lanes: Mutex<Option<HashMap<String, Lane>>>,
    /// Where each policy's latest fire is, for its pings.
    fires: Mutex<fires::Fires>,
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Default for Notifier {
    fn default() -> Notifier {
        Notifier::new()
    }
}

/// What [`Notifier::finish`] left: messages not delivered in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsent(pub usize);

impl Notifier {
    pub fn new() -> Notifier {
        let http = reqwest::Client::builder()
            .user_agent(concat!("snaprotd/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // A redirect could take the secret path elsewhere: an answer is final.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot set up the HTTP client ({})", e.without_url()));
        Notifier {
            inner: Arc::new(Inner {
                http,
                pending: AtomicUsize::new(0),
                dropped: AtomicU64::new(0),
                lanes: Mutex::new(Some(HashMap::new())),
                fires: Mutex::default(),
                tracker: TaskTracker::new(),
                stop: CancellationToken::new(),
            }),
        }
    }

    /// Queues `message` and returns at once: it is delivered by a task of its target.
    /// When [`CAPACITY`] messages wait already, or the notifier has finished, it is
    /// dropped with a warning.
    pub fn send(&self, message: Message, retry: Retry) {
        let inner = &self.inner;
        let queued = inner.pending.fetch_add(1, Ordering::SeqCst);
        if queued >= CAPACITY {
            inner.pending.fetch_sub(1, Ordering::SeqCst);
            let dropped = inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            warn!(
                "the notification queue is full ({CAPACITY} waiting): the {} is dropped \
                 ({dropped} dropped since snaprotd started)",
                message.target()
            );
            return;
        }
        let Ok(mut lanes) = inner.lanes.lock() else {
            inner.pending.fetch_sub(1, Ordering::SeqCst);
            return;
        };
        let Some(lanes) = lanes.as_mut() else {
            inner.pending.fetch_sub(1, Ordering::SeqCst);
            warn!(
                "the {} is dropped: snaprotd is stopping and no longer sends notifications",
                message.target()
            );
            return;
        };
        let lane = message.lane();
        let tx = lanes.entry(lane).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            inner.tracker.spawn(deliver::lane(self.clone(), rx));
            tx
        });
        if let Err(mpsc::error::SendError((message, _))) = tx.send((message, retry)) {
            inner.pending.fetch_sub(1, Ordering::SeqCst);
            warn!("the {} is dropped: its queue has ended", message.target());
        }
    }

    /// Queues the ping of `policy`'s `ping_url` (if it has one) that tells a job of
    /// the fire at `fire` started, succeeded or failed (`step`): the fire's first start,
    /// every failure, a success while none of the fire failed (`fires.rs`). `body` goes
    /// with a failure.
    pub fn ping_fire(
        &self,
        config: &NotifyConfig,
        policy: &str,
        fire: DateTime<Utc>,
        step: Ping,
        body: &str,
    ) {
        if !config.pings.contains_key(policy) {
            return;
        }
        let Ok(mut fires) = self.inner.fires.lock() else {
            return;
        };
        fires.retain(|p| config.pings.contains_key(p));
        // Queued while the lock is held: a fire's start goes before any of its ends.
        if let Some(ping) = fires.step(policy, fire, step)
            && let Some(message) = Message::ping(config, policy, ping, body)
        {
            self.send(message, Retry::of(config));
        }
    }

    /// Messages queued or being delivered.
    pub fn pending(&self) -> usize {
        self.inner.pending.load(Ordering::SeqCst)
    }

    /// Delivers what is queued, for at most `limit`, and stops: later messages are
    /// dropped. Returns how many were not delivered in time (given up).
    pub async fn finish(&self, limit: Duration) -> Unsent {
        if let Ok(mut lanes) = self.inner.lanes.lock() {
            // The lanes end once their queues are empty.
            *lanes = None;
        }
        self.inner.tracker.close();
        if tokio::time::timeout(limit, self.inner.tracker.wait())
            .await
            .is_err()
        {
            self.inner.stop.cancel();
            self.inner.tracker.wait().await;
        }
        Unsent(self.pending())
    }

    fn done(&self) {
        self.inner.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How long to give what is queued at the end, all of it together: one message's whole
/// retry schedule (`max_attempts` times `timeout` plus the waits between attempts), at
/// most [`MAX_FINISH`] — the bound the README and the man page state.
pub fn finish_limit(config: &NotifyConfig) -> Duration {
    Retry::of(config).whole().min(MAX_FINISH)
}

/// Tries `message` once, within its timeout: for `notify --test`.
pub async fn try_once(
    notifier: &Notifier,
    message: &Message,
    timeout: Duration,
) -> Result<(), String> {
    deliver::attempt(notifier, message, timeout)
        .await
        .map_err(|f| f.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_by_scheme_and_host_only() {
        let url = Url::parse("https://hc-ping.com/6f1c0a3e-secret").unwrap();
        assert_eq!(shown(&url), "https://hc-ping.com/…");
        let url = Url::parse("http://127.0.0.1:8080/hook/secret?key=x").unwrap();
        assert_eq!(shown(&url), "http://127.0.0.1:8080/…");
    }

    #[test]
    fn the_notice_has_its_documented_fields() {
        let at = "2026-11-24T02:31:10.400Z".parse().unwrap();
        let n = Notice::new(
            &JobId::new("nightly", 12345),
            Outcome::Failed,
            Some(SnapshotRef {
                id: None,
                name: "nightly-20261124-0230".into(),
            }),
            Some("no".into()),
            70.12345,
            at,
        );
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "version": 1, "job": "nightly@12345", "policy": "nightly", "server": 12345,
                "snapshot": {"id": null, "name": "nightly-20261124-0230"},
                "outcome": "failed", "error": "no", "duration": 70.123,
                "time": "2026-11-24T02:31:10Z", "test": false,
            })
        );
        let sample = serde_json::to_value(Notice::sample(&JobId::new("p", 1), None, at)).unwrap();
        assert_eq!(
            (&sample["outcome"], &sample["error"], &sample["test"]),
            (&"recovered".into(), &serde_json::Value::Null, &true.into())
        );
    }

    #[test]
    fn retries_back_off_doubling_within_a_bound() {
        let r = Retry {
            timeout: Duration::from_secs(10),
            max_attempts: 5,
            retry_backoff: Duration::from_secs(1),
        };
        let waits: Vec<u64> = (1..5).map(|n| r.backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8]);
        assert_eq!(r.whole(), Duration::from_secs(50 + 15));
        let many = Retry {
            max_attempts: 20,
            ..r
        };
        assert_eq!(many.backoff(19), Duration::from_secs(60));
    }

    #[test]
    fn the_end_waits_one_schedule_at_most_a_minute_and_a_minute_by_default() {
        let config = NotifyConfig {
            timeout: Duration::from_millis(300),
            max_attempts: 2,
            retry_backoff: Duration::from_millis(100),
            ..NotifyConfig::default()
        };
        assert_eq!(finish_limit(&config), Duration::from_millis(700));
        // 5 × 10s + 1 + 2 + 4 + 8s, cut to a minute: "60s with the defaults".
        assert_eq!(finish_limit(&NotifyConfig::default()), MAX_FINISH);
        assert_eq!(MAX_FINISH, Duration::from_secs(60));
    }

    #[tokio::test]
    async fn a_full_queue_drops_what_comes_and_never_waits() {
        let n = Notifier::new();
        // A port nothing listens on: each delivery fails, slowly retried.
        let url = Url::parse("http://127.0.0.1:9/hook").unwrap();
        let retry = Retry {
            timeout: Duration::from_millis(100),
            max_attempts: 20,
            retry_backoff: Duration::from_secs(30),
        };
        for _ in 0..CAPACITY + 10 {
            n.send(
                Message::Ping {
                    url: url.clone(),
                    ping: Ping::Start,
                    body: String::new(),
                },
                retry,
            );
        }
        assert_eq!(n.pending(), CAPACITY);
        assert_eq!(n.inner.dropped.load(Ordering::Relaxed), 10);
        let unsent = n.finish(Duration::from_millis(200)).await;
        assert_eq!(unsent, Unsent(CAPACITY));
    }
}
