//! The HTTP client: bearer token, time-outs, retries with backoff, pagination, and
//! errors an operator can act on.
//!
//! Retry rules: 429, 5xx and network errors are retried with exponential backoff and
//! jitter up to `max_attempts`, waiting at least what `Retry-After` asks; 400, 401 and
//! 404 are final. A create is not idempotent, so when its answer is lost the client
//! lists the server's snapshots and adopts one of that name before trying again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::assumptions::{self, MAX_BODY, MAX_ERROR_TEXT};
use super::budget::{Class, Place, RateBudget};
use super::retry::{jitter, past, rate_limit_deadline};
use super::text::{network_text, parse_retry_after, redact};
use super::types::{RestoreAnswer, Server, Snapshot};
use super::{ApiError, ApiStats, ApiToken};
use crate::config::ApiConfig;

/// A snapshot that a create call stands for.
#[derive(Debug, Clone)]
pub struct Created {
    pub snapshot: Snapshot,
    /// True when the snapshot already existed (a lost answer, or an earlier run) and
    /// was taken over rather than created again.
    pub adopted: bool,
}

/// An HTTP answer, whatever its status.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
    retry_after: Option<Duration>,
}

/// What one attempt came to.
enum Attempt {
    Answer(Answer),
    /// Failed before the request left (refused connection, DNS): safe to retry.
    NotSent(String),
    /// Failed after the request may have been applied (time-out, reset).
    Lost(String),
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    pub(super) base: Url,
    token: ApiToken,
    max_attempts: u32,
    retry_backoff: Duration,
    requests: Arc<AtomicU64>,
    budget: Arc<RateBudget>,
    stats: Arc<ApiStats>,
    /// Requests go ahead of all others in the budget (see [`Client::priority`]).
    priority: bool,
}

impl Client {
    pub fn new(api: &ApiConfig) -> Result<Client, ApiError> {
        Client::build(
            api,
            Arc::new(RateBudget::new(api.max_requests_per_second)),
            Arc::default(),
        )
    }

    /// A client for a new configuration that keeps `previous`'s rate budget and counters
    /// (the daemon has one of each for the whole process, across reloads).
    pub fn reloaded(api: &ApiConfig, previous: &Client) -> Result<Client, ApiError> {
        previous.budget.set_ceiling(api.max_requests_per_second);
        Client::build(api, previous.budget.clone(), previous.stats.clone())
    }

    fn build(
        api: &ApiConfig,
        budget: Arc<RateBudget>,
        stats: Arc<ApiStats>,
    ) -> Result<Client, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(api.request_timeout)
            .connect_timeout(api.request_timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("snaprotd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Setup(e.to_string()))?;
        let mut base = api.base_url.clone();
        let trimmed = base.path().trim_end_matches('/').to_string();
        base.set_path(&format!("{trimmed}/"));
        Ok(Client {
            http,
            base,
            token: api.token.clone().ok_or_else(|| {
                ApiError::Setup("no API token was read for this command (a bug)".into())
            })?,
            max_attempts: api.max_attempts.max(1),
            retry_backoff: api.retry_backoff,
            requests: Arc::new(AtomicU64::new(0)),
            budget,
            stats,
            priority: false,
        })
    }

    /// The same client, whose requests go ahead of every other in the rate budget,
    /// through a 429's pause too: for starting the servers snaprotd stopped.
    pub fn priority(&self) -> Client {
        Client {
            priority: true,
            ..self.clone()
        }
    }

    /// A new request's place in the rate budget's line: a priority client's first,
    /// then by `class` in the order they ask.
    pub(super) fn place(&self, class: Class) -> Place {
        self.budget.place(if self.priority {
            Class::Priority
        } else {
            class
        })
    }

    /// The rate budget's pace now, in requests a second.
    pub fn pace(&self) -> f64 {
        self.budget.rate()
    }

    /// How many HTTP requests this client (and its clones) has sent.
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> &ApiStats {
        &self.stats
    }

    /// Creates snapshot `name` on `server` — exactly once. When the answer is lost, the
    /// server's listing is read and a snapshot of that name is adopted; only when there
    /// is none is the create sent again.
    pub async fn create_snapshot(
        &self,
        server: u64,
        name: &str,
        description: &str,
    ) -> Result<Created, ApiError> {
        // Boxed, as every call: a job holds the memory of a call only while it makes one.
        Box::pin(self.create_once(server, name, description)).await
    }

    async fn create_once(
        &self,
        server: u64,
        name: &str,
        description: &str,
    ) -> Result<Created, ApiError> {
        #[derive(Serialize)]
        struct Body<'a> {
            server_id: u64,
            name: &'a str,
            description: &'a str,
        }
        let url = self.url("snapshots/")?;
        let call = format!("POST /snapshots/ ({name})");
        let body = Body {
            server_id: server,
            name,
            description,
        };
        let deadline = rate_limit_deadline();
        let place = self.place(Class::Normal);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let lost = match self
                .attempt(place, Method::POST, url.clone(), Some(&body))
                .await
            {
                Attempt::Answer(a) if a.status.is_success() => {
                    match serde_json::from_slice::<Snapshot>(&a.body) {
                        Ok(snapshot) if snapshot.name == name && snapshot.server.id == server => {
                            return Ok(Created {
                                snapshot,
                                adopted: false,
                            });
                        }
                        // An answer about another snapshot is not trusted: find ours by name.
                        Ok(other) => format!(
                            "the answer shows snapshot {} (id {}) of server {}, not the one asked for",
                            other.name, other.id, other.server.id
                        ),
                        // Created, but the answer is unreadable: find it by name.
                        Err(e) => format!("unreadable answer to HTTP {}: {e}", a.status),
                    }
                }
                // A 429 was not applied: the budget's pause holds it, and it is sent
                // again without counting as an attempt, until the job's deadline.
                Attempt::Answer(a)
                    if a.status == StatusCode::TOO_MANY_REQUESTS && !past(deadline) =>
                {
                    attempt -= 1;
                    continue;
                }
                // A 5xx may or may not have been applied.
                Attempt::Answer(a) if a.status.is_server_error() => {
                    format!(
                        "HTTP {}: {}",
                        a.status,
                        self.clean(&assumptions::error_text(&a.body))
                    )
                }
                Attempt::Answer(a) => return Err(self.status_error(&call, &a, attempt)),
                Attempt::NotSent(message) => {
                    if attempt >= self.max_attempts {
                        return Err(ApiError::Network {
                            call,
                            message,
                            attempts: attempt,
                        });
                    }
                    let wait = self.backoff(attempt, None);
                    tracing::warn!(
                        "create of {name} not sent ({message}); retrying in {:.1}s",
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Attempt::Lost(message) => message,
            };
            tracing::warn!(
                snapshot_name = name,
                "create answer lost or wrong ({lost}); looking for the snapshot by name"
            );
            if let Some(existing) = self
                .list_snapshots(Some(server))
                .await?
                .snapshots
                .into_iter()
                .find(|s| s.name == name)
            {
                return Ok(Created {
                    snapshot: existing,
                    adopted: true,
                });
            }
            if attempt >= self.max_attempts {
                return Err(ApiError::Network {
                    call,
                    message: lost,
                    attempts: attempt,
                });
            }
            let wait = self.backoff(attempt, None);
            tracing::warn!(
                "snapshot {name} is not there yet; creating it again in {:.1}s",
                wait.as_secs_f64()
            );
            tokio::time::sleep(wait).await;
        }
    }

    pub async fn delete_snapshot(&self, id: u64) -> Result<(), ApiError> {
        self.without_body(Class::Last, Method::DELETE, &format!("snapshots/{id}/"))
            .await
            .map(|_| ())
    }

    pub async fn restore_snapshot(&self, id: u64) -> Result<RestoreAnswer, ApiError> {
        let url = self.url(&format!("snapshots/{id}/restore/"))?;
        let call = format!("POST /snapshots/{id}/restore/");
        // A restore overwrites the server: never sent twice on a lost answer.
        match self
            .attempt(self.place(Class::Normal), Method::POST, url, None::<&()>)
            .await
        {
            Attempt::Answer(a) if a.status.is_success() => {
                serde_json::from_slice(&a.body).map_err(|e| ApiError::Malformed {
                    call,
                    message: self.clean(&e.to_string()),
                })
            }
            Attempt::Answer(a) => Err(self.status_error(&call, &a, 1)),
            Attempt::NotSent(message) | Attempt::Lost(message) => Err(ApiError::Network {
                call,
                message,
                attempts: 1,
            }),
        }
    }

    pub async fn server(&self, id: u64) -> Result<Server, ApiError> {
        let path = format!("servers/{id}/");
        let bytes = self.without_body(Class::Normal, Method::GET, &path).await?;
        self.decode(&format!("GET /{path}"), &bytes)
    }

    /// Asks the provider to stop the server (repeating it is harmless).
    pub async fn stop_server(&self, id: u64) -> Result<(), ApiError> {
        self.without_body(Class::Normal, Method::POST, &format!("servers/{id}/stop/"))
            .await
            .map(|_| ())
    }

    /// Asks the provider to start the server (repeating it is harmless).
    pub async fn start_server(&self, id: u64) -> Result<(), ApiError> {
        self.without_body(Class::Normal, Method::POST, &format!("servers/{id}/start/"))
            .await
            .map(|_| ())
    }

    pub(super) fn url(&self, path: &str) -> Result<Url, ApiError> {
        self.base
            .join(path)
            .map_err(|e| ApiError::Setup(format!("bad URL for {path}: {e}")))
    }

    pub(super) async fn call_json<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        place: Place,
        method: Method,
        url: Url,
        body: Option<&B>,
        call: &str,
    ) -> Result<T, ApiError> {
        let bytes = self.call(place, method, url, body, call).await?;
        self.decode(call, &bytes)
    }

    /// The answer to `call` read as JSON.
    fn decode<T: DeserializeOwned>(&self, call: &str, bytes: &[u8]) -> Result<T, ApiError> {
        serde_json::from_slice(bytes).map_err(|e| {
            self.stats.add("error", "decode");
            ApiError::Malformed {
                call: call.to_string(),
                message: format!("{} (body starts {:?})", e, self.excerpt(bytes, 60)),
            }
        })
    }

    /// A request without a body to `path` (under the API's base), safe to repeat.
    async fn without_body(
        &self,
        class: Class,
        method: Method,
        path: &str,
    ) -> Result<Vec<u8>, ApiError> {
        let url = self.url(path)?;
        let call = format!("{method} /{path}");
        self.call(self.place(class), method, url, None::<&()>, &call)
            .await
    }

    /// A request that is safe to repeat: retried on 429, 5xx and network errors.
    /// Boxed: a job holds the memory of a call only while it makes one.
    async fn call<B: Serialize + ?Sized>(
        &self,
        place: Place,
        method: Method,
        url: Url,
        body: Option<&B>,
        call: &str,
    ) -> Result<Vec<u8>, ApiError> {
        Box::pin(self.call_with_retries(place, method, url, body, call)).await
    }

    async fn call_with_retries<B: Serialize + ?Sized>(
        &self,
        place: Place,
        method: Method,
        url: Url,
        body: Option<&B>,
        call: &str,
    ) -> Result<Vec<u8>, ApiError> {
        let deadline = rate_limit_deadline();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (retry_after, error) =
                match self.attempt(place, method.clone(), url.clone(), body).await {
                    Attempt::Answer(a) if a.status.is_success() => return Ok(a.body),
                    // Held back by the provider's rate, not failed: the budget's pause
                    // holds the next try, which does not count as an attempt.
                    Attempt::Answer(a)
                        if a.status == StatusCode::TOO_MANY_REQUESTS && !past(deadline) =>
                    {
                        attempt -= 1;
                        continue;
                    }
                    Attempt::Answer(a) => {
                        let error = self.status_error(call, &a, attempt);
                        if !assumptions::is_retryable(a.status.as_u16()) {
                            return Err(error);
                        }
                        (a.retry_after, error)
                    }
                    Attempt::NotSent(message) | Attempt::Lost(message) => (
                        None,
                        ApiError::Network {
                            call: call.to_string(),
                            message,
                            attempts: attempt,
                        },
                    ),
                };
            if attempt >= self.max_attempts {
                return Err(error);
            }
            let wait = self.backoff(attempt, retry_after);
            tracing::warn!(
                "{error}; retrying in {:.1}s (attempt {} of {})",
                wait.as_secs_f64(),
                attempt + 1,
                self.max_attempts
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One HTTP exchange, once the budget lets it go. The exchange's own state (the
    /// request, the answer being read) is allocated only then: a request waiting for
    /// the budget holds a few bytes, so thousands of waiting jobs cost little memory.
    async fn attempt<B: Serialize + ?Sized>(
        &self,
        place: Place,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Attempt {
        self.budget.acquire(place).await;
        let sent = tokio::time::Instant::now();
        // With -v: each request and its answer. Only the part of the address after the
        // base URL is shown (a base URL may hold a secret).
        let shown = tracing::enabled!(tracing::Level::DEBUG).then(|| {
            let path = url.path();
            let relative = path.strip_prefix(self.base.path()).unwrap_or(path);
            format!("{method} {relative}")
        });
        let attempt = Box::pin(self.exchange(method, url, body)).await;
        if let Some(request) = shown {
            let took = sent.elapsed().as_secs_f64();
            match &attempt {
                Attempt::Answer(a) => tracing::debug!(
                    "{request}: HTTP {} ({} bytes) in {took:.2}s",
                    a.status.as_u16(),
                    a.body.len()
                ),
                Attempt::NotSent(m) | Attempt::Lost(m) => {
                    tracing::debug!("{request}: {m} after {took:.2}s")
                }
            }
        }
        match &attempt {
            Attempt::Answer(a) if a.status == StatusCode::TOO_MANY_REQUESTS => {
                self.stats.add("error", "http_429");
                // Every request waits, not only this one, and the pace drops.
                self.budget
                    .rate_limited(a.retry_after.unwrap_or(self.retry_backoff), sent);
            }
            Attempt::Answer(a) => {
                self.budget.answered();
                if a.status.is_server_error() {
                    self.stats.add("error", "http_5xx");
                } else if !a.status.is_success() {
                    self.stats
                        .add("error", &format!("http_{}", a.status.as_u16()));
                }
            }
            Attempt::NotSent(_) | Attempt::Lost(_) => self.stats.add("error", "network"),
        }
        attempt
    }

    async fn exchange<B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Attempt {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.stats.add("request", method.as_str());
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(self.token.expose())
            .header("Content-Type", "application/json");
        if let Some(b) = body {
            request = request.json(b);
        }
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Attempt::NotSent(self.clean(&network_text(&e))),
            Err(e) => return Attempt::Lost(self.clean(&network_text(&e))),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if body.len() + chunk.len() > MAX_BODY => {
                    return Attempt::Lost(format!(
                        "HTTP {status}, then an answer larger than {} MiB; not read further",
                        MAX_BODY >> 20
                    ));
                }
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    return Attempt::Lost(
                        self.clean(&format!("HTTP {status}, then {}", network_text(&e))),
                    );
                }
            }
        }
        Attempt::Answer(Answer {
            status,
            body,
            retry_after,
        })
    }

    fn status_error(&self, call: &str, answer: &Answer, attempts: u32) -> ApiError {
        let message = self.clean(&assumptions::error_text(&answer.body));
        let call = call.to_string();
        match answer.status.as_u16() {
            401 => ApiError::Unauthorized { call, message },
            404 => ApiError::NotFound { call, message },
            400 => ApiError::Rejected { call, message },
            code => ApiError::Status {
                call,
                status: code,
                attempts,
                message,
            },
        }
    }

    /// Waits before attempt `attempt + 1`: exponential backoff with jitter, and never
    /// less than the provider's `Retry-After`.
    /// How long to wait before attempt `attempt + 1`: exponential from
    /// `retry_backoff`, capped, jittered, and never shorter than the provider's
    /// `Retry-After`.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .retry_backoff
            .saturating_mul(1 << (attempt - 1).min(16));
        let capped = exp.min(Duration::from_secs(60));
        let jittered = capped.mul_f64(0.5 + 0.5 * jitter());
        retry_after.map_or(jittered, |r| r.max(jittered.min(r + self.retry_backoff)))
    }

    /// Text made safe to show: the token blanked out, cut to a sane length.
    fn clean(&self, text: &str) -> String {
        redact(text, self.token.expose(), MAX_ERROR_TEXT)
    }

    /// The first `chars` characters of a body, the token blanked out of the whole body
    /// before it is cut (so no part of a token at the cut can show).
    fn excerpt(&self, body: &[u8], chars: usize) -> String {
        let head = &body[..body
            .len()
            .min(MAX_ERROR_TEXT * 4 + self.token.expose().len())];
        redact(&String::from_utf8_lossy(head), self.token.expose(), chars)
    }
}
