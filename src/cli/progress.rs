//! One line of progress for a long wait (a restore, a snapshot being made): rewritten
//! in place on standard error when that is a terminal, and on anything else (a log, a
//! pipe, the journal) plain lines, at most one every [`PLAIN_EVERY`], so a wait of
//! hours leaves a readable trace rather than thousands of lines.
//!
//! ```ignore
//! let mut progress = Progress::new("restoring server 5");
//! progress.update("restoring");          // restoring server 5: restoring (12s)
//! progress.finish("runs again");         // restoring server 5: runs again (4m 12s)
//! ```
//!
//! The line is written with a carriage return and spaces only (no escape sequences),
//! so it works on any terminal and never shows colour.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use tokio::time::Instant;

use super::output;

/// How often a non-terminal gets a line while the wait goes on.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// A progress line; see the module's comment.
pub struct Progress {
    what: String,
    sink: Box<dyn Write + Send>,
    terminal: bool,
    started: Instant,
    /// When the last plain line was written (not on a terminal).
    last_plain: Option<Instant>,
    /// How many characters of the line are on the terminal now.
    shown: usize,
    width: usize,
}

impl Progress {
    /// Progress of `what` on standard error.
    pub fn new(what: impl Into<String>) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        Progress::to(what, Box::new(std::io::stderr()), terminal)
    }

    /// Progress written to `sink`, as to a terminal or not.
    pub fn to(what: impl Into<String>, sink: Box<dyn Write + Send>, terminal: bool) -> Progress {
        Progress {
            what: what.into(),
            sink,
            terminal,
            started: Instant::now(),
            last_plain: None,
            shown: 0,
            width: terminal_width(),
        }
    }

    /// How long since the progress began.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Where the wait is now: `text`, with the time it has taken so far.
    pub fn update(&mut self, text: &str) {
        let line = self.line(text);
        if self.terminal {
            self.rewrite(&line, false);
        } else if self
            .last_plain
            .is_none_or(|last| last.elapsed() >= PLAIN_EVERY)
        {
            self.last_plain = Some(Instant::now());
            self.plain(&line);
        }
    }

    /// How the wait ended: always written, as the line's last state.
    pub fn finish(mut self, text: &str) {
        let line = self.line(text);
        if self.terminal {
            self.rewrite(&line, true);
        } else {
            self.plain(&line);
        }
    }

    fn line(&self, text: &str) -> String {
        format!(
            "{}: {text} ({})",
            self.what,
            output::span(self.elapsed().as_secs() as i64)
        )
    }

    /// Writes `line` over the one on the terminal: cut to the terminal's width (a
    /// line that wraps cannot be rewritten), padded to cover a longer one before.
    fn rewrite(&mut self, line: &str, last: bool) {
        let line: String = line.chars().take(self.width.saturating_sub(1)).collect();
        let len = line.chars().count();
        let pad = " ".repeat(self.shown.saturating_sub(len));
        let end = if last { "\n" } else { "" };
        let _ = write!(self.sink, "\r{line}{pad}{end}");
        let _ = self.sink.flush();
        self.shown = if last { 0 } else { len };
    }

    fn plain(&mut self, line: &str) {
        let _ = writeln!(self.sink, "{line}");
        let _ = self.sink.flush();
    }
}

impl Drop for Progress {
    /// A line left unfinished (an error ends the wait) is ended, so what comes next
    /// starts on a line of its own.
    fn drop(&mut self) {
        if self.terminal && self.shown > 0 {
            let _ = writeln!(self.sink);
            let _ = self.sink.flush();
        }
    }
}

/// The terminal's width as the shell says (`COLUMNS`), else 80.
fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|w| *w >= 20)
        .unwrap_or(80)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What a progress line wrote.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<u8>>>);

    impl Write for Seen {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Seen {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_terminal_sees_one_line_rewritten_in_place() {
        let seen = Seen::default();
        let mut p = Progress::to("restoring server 5", Box::new(seen.clone()), true);
        p.update("restoring for a while");
        tokio::time::sleep(Duration::from_secs(61)).await;
        p.update("starting");
        p.finish("runs again");
        assert_eq!(
            seen.text(),
            "\rrestoring server 5: restoring for a while (0s)\
             \rrestoring server 5: starting (1m 1s)          \
             \rrestoring server 5: runs again (1m 1s)\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn elsewhere_plain_lines_at_most_every_few_seconds() {
        let seen = Seen::default();
        let mut p = Progress::to("restoring server 5", Box::new(seen.clone()), false);
        for _ in 0..12 {
            p.update("restoring");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        p.finish("runs again");
        let text = seen.text();
        assert!(!text.contains('\r'), "{text:?}");
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                "restoring server 5: restoring (0s)",
                "restoring server 5: restoring (5s)",
                "restoring server 5: restoring (10s)",
                "restoring server 5: runs again (12s)",
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_line_left_unfinished_is_ended_and_a_long_one_cut() {
        let seen = Seen::default();
        let mut p = Progress::to("waiting", Box::new(seen.clone()), true);
        p.width = 20;
        p.update("for a very long time indeed");
        drop(p);
        assert_eq!(seen.text(), "\rwaiting: for a very\n");
    }
}
