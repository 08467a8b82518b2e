//! Standard output of the commands, and the one place they write to it: plain aligned
//! text for people ([`table`], [`outln!`]), JSON for scripts ([`json`]).
//!
//! A reader that goes away early (`snaprotd list --json | head -1`) is not an error:
//! the first write that finds the pipe closed stops all further output, quietly, and
//! the command ends with its own exit code. Any other failure to write (a full disk) is
//! reported once, at the end, and turns success into exit 1 ([`finish`]). Messages for
//! standard error go through [`errln!`], which never fails a command.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// `println!` for the commands' output: stops quietly when the reader went away.
macro_rules! outln {
    () => {
        $crate::cli::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// `eprintln!` that never panics: when standard error cannot be written, there is no
/// one left to tell.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
pub(crate) use errln;

/// What became of standard output so far.
enum Sink {
    Open,
    /// The reader went away: nothing more is written.
    Closed,
    /// Writing failed otherwise: nothing more is written, and [`finish`] says why.
    Failed(std::io::Error),
}

static STDOUT: Mutex<Sink> = Mutex::new(Sink::Open);

/// Writes `text` to standard output, unless output has stopped. Use [`outln!`].
pub fn write(text: fmt::Arguments<'_>) {
    with_stdout(|out| out.write_fmt(text));
}

/// Sends what is buffered (a prompt without a newline).
pub fn flush() {
    with_stdout(|out| out.flush());
}

fn with_stdout(f: impl FnOnce(&mut std::io::StdoutLock<'static>) -> std::io::Result<()>) {
    let mut sink = STDOUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !matches!(*sink, Sink::Open) {
        return;
    }
    match f(&mut std::io::stdout().lock()) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::BrokenPipe => *sink = Sink::Closed,
        Err(e) => *sink = Sink::Failed(e),
    }
}

/// Sends the last output; a write that failed for another reason than a closed pipe is
/// reported. Returns whether one did (a success then exits 1: see `exit.rs`).
pub fn finish() -> bool {
    flush();
    let sink = STDOUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match &*sink {
        Sink::Failed(e) => {
            errln!("error: cannot write to standard output: {e}");
            true
        }
        Sink::Open | Sink::Closed => false,
    }
}

/// Prints rows as columns separated by two spaces, each as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    outln!("{}", line(header.iter().map(|s| s.to_string()).collect()));
    for row in rows {
        outln!("{}", line(row.clone()));
    }
}

/// The version of the JSON documents `--json` prints. It changes only when a field
/// changes meaning or goes away; new fields may come without it.
pub const JSON_VERSION: u32 = 1;

/// Prints a `--json` document: `value` must serialize to an object (a struct or a
/// map), which is printed with `"version"` (the format's, [`JSON_VERSION`]) as its
/// first field. Every command's document is an object, so a field can be added without
/// breaking a reader. The document is written as it is serialized, never held whole
/// in memory (`once` of a large fleet prints a run per job).
pub fn json<T: serde::Serialize>(value: &T) {
    #[derive(serde::Serialize)]
    struct Document<'a, T> {
        version: u32,
        #[serde(flatten)]
        body: &'a T,
    }
    let doc = Document {
        version: JSON_VERSION,
        body: value,
    };
    let mut failed = None;
    with_stdout(|out| {
        let mut out = std::io::BufWriter::new(out);
        match serde_json::to_writer_pretty(&mut out, &doc) {
            Ok(()) => {}
            Err(e) if e.is_io() => return Err(e.into()),
            Err(e) => failed = Some(e),
        }
        out.write_all(b"\n")?;
        out.flush()
    });
    if let Some(e) = failed {
        errln!("error: cannot write JSON: {e}");
    }
}

/// The one time format of JSON documents: RFC 3339 in UTC, to the second
/// (`2026-11-24T02:30:00Z`).
pub fn json_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// [`json_time`] for `#[serde(serialize_with = "...")]`.
pub fn ser_time<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&json_time(*t))
}

/// [`json_time`] of an optional time, `null` when there is none.
pub fn ser_opt_time<S: serde::Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&json_time(*t)),
        None => s.serialize_none(),
    }
}

/// The one time format of tables: to the second, in `zone` with its offset
/// (`2026-11-24 02:30:00 +01:00`). Every command shows a job's times in its policy's
/// zone, and times that belong to no policy in UTC.
pub fn when(t: DateTime<Utc>, zone: chrono_tz::Tz) -> String {
    crate::schedule::shown(t, zone)
}

/// How long ago `since` was: "3d 4h", "12m", "40s".
pub fn age(since: DateTime<Utc>) -> String {
    span((Utc::now() - since).num_seconds())
}

/// How long until `at`, as `systemctl list-timers` shows it: "3h 2m", or "now" once due.
pub fn left(at: DateTime<Utc>) -> String {
    let secs = (at - Utc::now()).num_seconds();
    if secs <= 0 { "now".into() } else { span(secs) }
}

/// A span of seconds to the two largest units: "3d 4h", "2h 5m", "12m 3s", "40s".
pub fn span(secs: i64) -> String {
    match secs.max(0) {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// Prints the errors that belong to rows of a table below it, one per line, each
/// after the row's key (`nightly@12345: the snapshot did not complete …`), so the
/// table stays as wide as its data.
pub fn notes(title: &str, notes: &[(String, String)]) {
    if notes.is_empty() {
        return;
    }
    outln!();
    outln!("{title}:");
    for (key, text) in notes {
        outln!("  {key}: {text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_show_the_two_largest_units() {
        assert_eq!(span(-5), "0s");
        assert_eq!(span(40), "40s");
        assert_eq!(span(12 * 60 + 3), "12m 3s");
        assert_eq!(span(2 * 3600 + 5 * 60 + 9), "2h 5m");
        assert_eq!(span(3 * 86_400 + 4 * 3600 + 59), "3d 4h");
    }

    #[test]
    fn times_are_to_the_second_with_the_zone_offset() {
        let t = "2026-11-24T01:30:00.250Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            when(t, chrono_tz::Europe::Berlin),
            "2026-11-24 02:30:00 +01:00"
        );
        assert_eq!(when(t, chrono_tz::UTC), "2026-11-24 01:30:00 +00:00");
        assert_eq!(json_time(t), "2026-11-24T01:30:00Z");
    }
}
