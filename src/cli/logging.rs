//! Where log lines go, and how much: the journal (with its fields) or readable text on
//! standard error; `-q` for warnings and errors only, `-v` for each request to the
//! provider and its answer, `-vv` for everything snaprotd says; colour only on a
//! terminal and never with `NO_COLOR`.
//!
//! Long waits (a snapshot being made, the provider's 429 pause) send progress events
//! (target [`crate::PROGRESS`]): on a terminal they make one status line, rewritten in
//! place and cleared before the next log line; anywhere else they are dropped, and the
//! periodic "still waiting" lines say the same in plain lines.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;

use super::LogTarget;
use super::output::errln;
use crate::PROGRESS;

/// How much to log: `-q` and `-v` (repeated for more).
#[derive(Debug, Clone, Copy, Default)]
pub struct Verbosity {
    pub quiet: bool,
    pub verbose: u8,
}

impl Verbosity {
    /// The filter when `SNAPROTD_LOG` does not set one.
    fn directives(self) -> &'static str {
        match (self.quiet, self.verbose) {
            (true, _) => "warn",
            (false, 0) => "info,tokio_cron_scheduler=warn",
            (false, 1) => "info,snaprotd=debug,tokio_cron_scheduler=warn",
            (false, _) => "info,snaprotd=trace,tokio_cron_scheduler=warn",
        }
    }
}

/// Whether colour may be used on standard error: a terminal, `NO_COLOR` unset or
/// empty (no-color.org), and not `TERM=dumb`.
pub fn colour(stderr_is_terminal: bool, env: impl Fn(&str) -> Option<String>) -> bool {
    stderr_is_terminal
        && env("NO_COLOR").is_none_or(|v| v.is_empty())
        && env("TERM").is_none_or(|t| t != "dumb")
}

/// Logs to the journal (with `SYSLOG_IDENTIFIER=snaprotd` and the fields `POLICY`,
/// `SERVER_ID`, `JOB_ID`, `SNAPSHOT_ID`, `SNAPSHOT_NAME` unprefixed) or as text on
/// standard error. Errors map to priority 3, so `journalctl -p err` shows failures only.
pub fn init(target: LogTarget, verbosity: Verbosity) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::prelude::*;
    let filter = || {
        EnvFilter::try_from_env("SNAPROTD_LOG")
            .unwrap_or_else(|_| EnvFilter::new(verbosity.directives()))
    };
    let not_progress = || filter_fn(|m| m.target() != PROGRESS);
    let journal = target == LogTarget::Journald
        || (target == LogTarget::Auto && crate::systemd::stderr_is_journal());
    if journal {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier("snaprotd".into())
                    .with_filter(not_progress());
                let _ = tracing_subscriber::registry()
                    .with(filter())
                    .with(layer)
                    .try_init();
                return;
            }
            Err(e) => {
                errln!("snaprotd: cannot log to the journal ({e}); logging to standard error")
            }
        }
    }
    let terminal = std::io::stderr().is_terminal();
    let lines = tracing_subscriber::fmt::layer()
        .fmt_fields(TextFields)
        .with_writer(StatusLineAware)
        .with_ansi(colour(terminal, |k| std::env::var(k).ok()))
        .with_target(false)
        .with_timer(tracing_subscriber::fmt::time::ChronoLocal::new(
            "%Y-%m-%dT%H:%M:%S%.3f%:z".into(),
        ))
        .with_filter(not_progress());
    let status = (terminal && !verbosity.quiet)
        .then_some(StatusLine.with_filter(filter_fn(|m| m.target() == PROGRESS)));
    let _ = tracing_subscriber::registry()
        .with(filter())
        .with(lines)
        .with(status)
        .try_init();
}

/// The fields an event carries for the journal only (`journalctl SNAPSHOT_ID=…`): its
/// text already says them, so text lines leave them out.
const JOURNAL_ONLY: [&str; 3] = ["snapshot_id", "snapshot_name", "hook"];

/// The fields of a text line: the message, then `name=value` for each other field but
/// the journal's own.
struct TextFields;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for TextFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visit = TextVisit {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visit);
        visit.result
    }
}

struct TextVisit<'w> {
    writer: tracing_subscriber::fmt::format::Writer<'w>,
    first: bool,
    result: std::fmt::Result,
}

impl Visit for TextVisit<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.result.is_err() || JOURNAL_ONLY.contains(&field.name()) {
            return;
        }
        let sep = if self.first { "" } else { " " };
        self.first = false;
        self.result = match field.name() {
            "message" => write!(self.writer, "{sep}{value:?}"),
            name => write!(self.writer, "{sep}{name}={value:?}"),
        };
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

/// Clears the status line, if one is shown (before the command's last output).
pub fn clear_status_line() {
    let mut line = lock();
    if line.shown {
        let _ = std::io::stderr().write_all(b"\r\x1b[K");
        line.shown = false;
    }
}

/// What the status line shows: one entry per waiting thing (a job, the provider).
#[derive(Default)]
struct Status {
    entries: BTreeMap<String, String>,
    shown: bool,
}

static STATUS: Mutex<Status> = Mutex::new(Status {
    entries: BTreeMap::new(),
    shown: false,
});

fn lock() -> std::sync::MutexGuard<'static, Status> {
    STATUS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The widest the status line gets: the terminal's `COLUMNS`, else 100.
fn width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|c| *c >= 20)
        .unwrap_or(100)
        - 1
}

/// The line for `entries`: each entry's text, joined, cut to `width` characters.
fn render(entries: &BTreeMap<String, String>, width: usize) -> String {
    let text = entries.values().cloned().collect::<Vec<_>>().join(" · ");
    if text.chars().count() <= width {
        return text;
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Renders progress events: an event's `key` names its entry, its message is the
/// entry's text, and an empty message removes the entry.
struct StatusLine;

impl<S: tracing::Subscriber> Layer<S> for StatusLine {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = ProgressFields::default();
        event.record(&mut fields);
        let mut status = lock();
        if fields.message.is_empty() {
            status.entries.remove(&fields.key);
        } else {
            status.entries.insert(fields.key, fields.message);
        }
        let line = render(&status.entries, width());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{line}");
        let _ = err.flush();
        status.shown = !line.is_empty();
    }
}

#[derive(Default)]
struct ProgressFields {
    key: String,
    message: String,
}

impl Visit for ProgressFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "key" => self.key = value.to_string(),
            "message" => self.message = value.to_string(),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "key" => self.key = format!("{value:?}"),
            "message" => self.message = format!("{value:?}"),
            _ => {}
        }
    }
}

/// Standard error for log lines, which first clears a status line that is shown.
struct StatusLineAware;

impl<'a> MakeWriter<'a> for StatusLineAware {
    type Writer = std::io::Stderr;
    fn make_writer(&'a self) -> Self::Writer {
        clear_status_line();
        std::io::stderr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(colour(true, env(&[])));
        assert!(!colour(false, env(&[])));
        assert!(!colour(true, env(&[("NO_COLOR", "1")])));
        assert!(colour(true, env(&[("NO_COLOR", "")])));
        assert!(!colour(true, env(&[("TERM", "dumb")])));
    }

    #[test]
    fn the_status_line_joins_its_entries_and_fits_the_width() {
        let mut entries = BTreeMap::new();
        entries.insert("a@1".to_string(), "a@1: in_progress for 12s".to_string());
        entries.insert("b@2".to_string(), "b@2: in_progress for 3s".to_string());
        assert_eq!(
            render(&entries, 100),
            "a@1: in_progress for 12s · b@2: in_progress for 3s"
        );
        let cut = render(&entries, 20);
        assert_eq!(cut.chars().count(), 20);
        assert!(cut.ends_with('…'));
    }
}
