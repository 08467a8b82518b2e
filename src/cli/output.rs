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

/// Prints `value` as pretty JSON.
pub fn json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => outln!("{text}"),
        Err(e) => errln!("error: cannot write JSON: {e}"),
    }
}

/// "3d 4h", "12m", "40s".
pub fn age(since: chrono::DateTime<chrono::Utc>) -> String {
    let secs = (chrono::Utc::now() - since).num_seconds().max(0);
    match secs {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
