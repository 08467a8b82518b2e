//! One line of progress for a long wait of a command (a restore): on a terminal, an
//! entry of the status line that log lines and the rotation's waits share
//! (`logging.rs`, target [`crate::PROGRESS`]), so a log line never lands inside it; on
//! anything else (a log, a pipe) plain lines, at most one every [`PLAIN_EVERY`], so a
//! wait of hours leaves a readable trace rather than thousands of lines. The wait's
//! end is always written as a line of its own.
//!
//! ```ignore
//! let mut progress = Progress::new("restoring server 5");
//! progress.update("restoring");          // restoring server 5: restoring (12s)
//! progress.finish("runs again");         // restoring server 5: runs again (4m 12s)
//! ```

use std::io::{IsTerminal, Write};
use std::time::Duration;

use tokio::time::Instant;

use super::output;

/// How often a non-terminal gets a line while the wait goes on.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// A progress line; see the module's comment.
pub struct Progress {
    what: String,
    /// Where plain lines and the last line go.
    sink: Box<dyn Write + Send>,
    /// On a terminal: updates go to the status line.
    terminal: bool,
    started: Instant,
    /// When the last plain line was written (not on a terminal).
    last_plain: Option<Instant>,
}

impl Progress {
    /// Progress of `what` on standard error.
    pub fn new(what: impl Into<String>) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        Progress::to(what, Box::new(std::io::stderr()), terminal)
    }

    /// Progress whose plain lines go to `sink`, as on a terminal or not.
    pub fn to(what: impl Into<String>, sink: Box<dyn Write + Send>, terminal: bool) -> Progress {
        Progress {
            what: what.into(),
            sink,
            terminal,
            started: Instant::now(),
            last_plain: None,
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
            tracing::info!(target: crate::PROGRESS, key = %self.what, "{line}");
        } else if self
            .last_plain
            .is_none_or(|last| last.elapsed() >= PLAIN_EVERY)
        {
            self.last_plain = Some(Instant::now());
            self.plain(&line);
        }
    }

    /// How the wait ended: always written, as a line of its own.
    pub fn finish(mut self, text: &str) {
        let line = self.line(text);
        self.end();
        self.plain(&line);
    }

    fn line(&self, text: &str) -> String {
        format!(
            "{}: {text} ({})",
            self.what,
            output::span(self.elapsed().as_secs() as i64)
        )
    }

    /// Ends this wait's entry of the status line.
    fn end(&mut self) {
        if self.terminal {
            tracing::info!(target: crate::PROGRESS, key = %self.what, "");
            self.terminal = false;
        }
    }

    fn plain(&mut self, line: &str) {
        let _ = writeln!(self.sink, "{line}");
        let _ = self.sink.flush();
    }
}

impl Drop for Progress {
    /// A wait that ends otherwise (an error) ends its entry too.
    fn drop(&mut self) {
        self.end();
    }
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
    async fn on_a_terminal_only_the_end_is_a_line_of_its_own() {
        let seen = Seen::default();
        let mut p = Progress::to("restoring server 5", Box::new(seen.clone()), true);
        p.update("restoring for a while");
        tokio::time::sleep(Duration::from_secs(61)).await;
        p.update("starting");
        p.finish("runs again");
        assert_eq!(seen.text(), "restoring server 5: runs again (1m 1s)\n");
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
}
