//! Text made from answers and errors: the token blanked out before any cut, paths
//! without the host, network errors with their causes, `Retry-After`.

use std::time::Duration;

use url::Url;

use super::assumptions::MAX_RETRY_AFTER;

/// `text` with `token` blanked out, then cut to `max` characters.
pub(super) fn redact(text: &str, token: &str, max: usize) -> String {
    let text = if token.is_empty() {
        text.to_string()
    } else {
        text.replace(token, "***")
    };
    let mut out: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        out.push('…');
    }
    if out.is_empty() {
        out.push_str("(no text)");
    }
    out
}

pub(super) fn display_path(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

pub(super) fn network_text(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut text = if e.is_timeout() {
        "no answer within request_timeout".to_string()
    } else {
        "network error".to_string()
    };
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub(super) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or_default()
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::assumptions::MAX_ERROR_TEXT;

    /// No part of the token shows, wherever it stands against the cut.
    #[test]
    fn a_token_is_blanked_before_the_text_is_cut_at_every_offset() {
        let token = "tok-7f3a9c2e5b1d4e8f";
        for max in [60, MAX_ERROR_TEXT] {
            for offset in 0..(max + token.len() + 2) {
                let body = format!("{}{token}{}", "x".repeat(offset), "y".repeat(30));
                let shown = redact(&body, token, max);
                for n in 4..=token.len() {
                    assert!(
                        !shown.contains(&token[..n]),
                        "max {max}, offset {offset}: {shown:?}"
                    );
                }
            }
        }
    }
}
