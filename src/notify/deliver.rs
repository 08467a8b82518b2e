//! Delivering messages: a task per target takes its queue in order, and tries each
//! message up to `max_attempts` times, each attempt within `timeout` (an HTTP request
//! and its answer's body, read at most [`MAX_BODY`]; the command to its end), waiting
//! `retry_backoff`, doubling, between them. No error names the URL.

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};
use url::Url;

use super::{Message, Notice, Notifier, Ping, Retry};
use crate::config::HookCommand;
use crate::process::{self, End, Program};

/// The most of an answer's body read (and then dropped): a receiver cannot make
/// snaprotd read without end.
const MAX_BODY: usize = 16 * 1024;

/// Delivers the messages of one target, in order, until its queue is closed and empty
/// or the notifier stops.
pub(super) async fn lane(notifier: Notifier, mut queue: mpsc::UnboundedReceiver<(Message, Retry)>) {
    let stop = notifier.inner.stop.clone();
    loop {
        let next = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            next = queue.recv() => next,
        };
        let Some((message, retry)) = next else {
            return;
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = deliver(&notifier, &message, retry) => {}
        }
        notifier.done();
    }
}

/// Tries `message` until it is delivered, its attempts are used up, or it is refused
/// for good.
async fn deliver(notifier: &Notifier, message: &Message, retry: Retry) {
    let target = message.target();
    let mut n = 1;
    loop {
        match attempt(notifier, message, retry.timeout).await {
            Ok(()) => {
                match message {
                    Message::Ping { .. } => debug!("notification: {target} delivered"),
                    _ => info!("notification: {target} delivered"),
                }
                return;
            }
            Err(Failure { text, again: false }) => {
                error!("notification: the {target} was refused ({text}); it is not sent again");
                return;
            }
            Err(Failure { text, .. }) if n >= retry.max_attempts => {
                error!("notification: the {target} was not delivered after {n} attempt(s): {text}");
                return;
            }
            Err(Failure { text, .. }) => {
                let wait = retry.backoff(n);
                warn!(
                    "notification: the {target} failed (attempt {n} of {}): {text}; trying again in {}",
                    retry.max_attempts,
                    humantime::format_duration(wait)
                );
                tokio::time::sleep(wait).await;
                n += 1;
            }
        }
    }
}

/// Why an attempt failed, and whether another may succeed.
pub(super) struct Failure {
    pub text: String,
    pub again: bool,
}

impl From<String> for Failure {
    fn from(text: String) -> Failure {
        Failure { text, again: true }
    }
}

/// One attempt at `message`, within `timeout`.
pub(super) async fn attempt(
    notifier: &Notifier,
    message: &Message,
    timeout: std::time::Duration,
) -> Result<(), Failure> {
    let (url, body, content_type) = match message {
        Message::Command { command, notice } => {
            return run_command(command, notice, timeout)
                .await
                .map_err(Failure::from);
        }
        Message::Webhook { url, notice } => (url.clone(), notice.json(), "application/json"),
        Message::Ping { url, ping, body } => (
            ping_url(url, *ping),
            body.clone().into_bytes(),
            "text/plain; charset=utf-8",
        ),
    };
    let http = notifier.inner.http.as_ref().map_err(|e| e.clone())?;
    let answer = async {
        let mut answer = http
            .post(url)
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await?;
        let mut read = 0;
        while read < MAX_BODY {
            match answer.chunk().await? {
                Some(chunk) => read += chunk.len(),
                None => break,
            }
        }
        Ok::<StatusCode, reqwest::Error>(answer.status())
    };
    let status = match tokio::time::timeout(timeout, answer).await {
        Err(_) => {
            return Err(format!(
                "no answer within {} ([notify] timeout)",
                humantime::format_duration(timeout)
            )
            .into());
        }
        Ok(Err(e)) => return Err(without_url(&e).into()),
        Ok(Ok(status)) => status,
    };
    if status.is_success() {
        return Ok(());
    }
    let again = status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT;
    Err(Failure {
        text: format!("answered {status}"),
        again,
    })
}

/// `<ping_url>`, `<ping_url>/start` or `<ping_url>/fail`.
fn ping_url(url: &Url, ping: Ping) -> Url {
    let mut url = url.clone();
    let last = match ping {
        Ping::Start => "start",
        Ping::Fail => "fail",
        Ping::Success => return url,
    };
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().push(last);
    }
    url
}

/// A request's error and its causes, without the URL.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "the request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Runs the `[notify]` command with the notice on its stdin.
async fn run_command(
    command: &HookCommand,
    notice: &Notice,
    timeout: std::time::Duration,
) -> Result<(), String> {
    let program = Program {
        command,
        env: vec![],
        stdin: Some(notice.json()),
        timeout,
        label: "notify.command",
    };
    process::run(program, std::future::pending())
        .await
        .map_err(|f| {
            let how = match f.end {
                End::NotStarted(e) => format!("could not be started: {e}"),
                End::Exited(code) => format!("exited with status {code}"),
                End::Killed(signal) => format!("was killed by {signal}"),
                End::TimedOut(after) => format!(
                    "did not finish within {} ([notify] timeout): it was killed with every process it started",
                    humantime::format_duration(after)
                ),
                End::Interrupted => "was stopped".to_string(),
            };
            match f.last_stderr {
                Some(line) => format!("{how}, last said on stderr: {line:?}"),
                None => how,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_go_to_the_url_and_its_start_and_fail() {
        let url = Url::parse("https://hc-ping.com/abc").unwrap();
        assert_eq!(
            ping_url(&url, Ping::Start).as_str(),
            "https://hc-ping.com/abc/start"
        );
        assert_eq!(
            ping_url(&url, Ping::Fail).as_str(),
            "https://hc-ping.com/abc/fail"
        );
        assert_eq!(
            ping_url(&url, Ping::Success).as_str(),
            "https://hc-ping.com/abc"
        );
        let url = Url::parse("https://hc-ping.com/abc/").unwrap();
        assert_eq!(
            ping_url(&url, Ping::Start).as_str(),
            "https://hc-ping.com/abc/start"
        );
    }
}
