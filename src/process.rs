//! A program snaprotd runs for the operator — a policy's hooks (`rotation/hooks.rs`),
//! the `[notify]` command (`notify/`) — started one way: by absolute path with its
//! arguments (no shell), a clean environment (`PATH` and what the caller adds: nothing
//! of snaprotd's own, where a token may be), `/` as its directory, in a process group
//! of its own. Its stdin is the bytes given (or `/dev/null`); its output goes to the
//! log line by line, bounded. The whole group is killed at its time limit, when the
//! caller's `cut_short` ends, and when the run is dropped.

use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tracing::{info, warn};

use crate::config::HookCommand;

/// The longest line of a program's output logged, in bytes; the rest of it is cut.
pub const MAX_LINE: usize = 500;
/// Lines of each of a program's streams logged per run; later ones are counted only.
pub const MAX_LINES: usize = 100;
/// Once the program has exited, how long what is left in its pipes is still read (a
/// process it left in the background may hold them open).
const DRAIN: Duration = Duration::from_millis(200);
/// How long reaping a killed program may take (a process stuck in the kernel cannot die).
const REAP: Duration = Duration::from_secs(2);
/// The search path of a program (it runs with a clean environment).
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run, and how.
pub struct Program<'a> {
    pub command: &'a HookCommand,
    /// Added to the clean environment (`PATH` is always there).
    pub env: Vec<(&'static str, String)>,
    /// Written to its stdin, which is then closed; `None`: stdin is `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// Its time limit; then its process group is killed.
    pub timeout: Duration,
    /// Names it in its log lines (the `hook` field, and each line's start).
    pub label: &'static str,
}

/// How a program that did not succeed ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    NotStarted(String),
    Exited(i32),
    Killed(String),
    /// Killed at its time limit.
    TimedOut(Duration),
    /// Killed when the caller's `cut_short` ended.
    Interrupted,
}

/// A program that did not succeed: how it ended, and the last line of its stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub end: End,
    pub last_stderr: Option<String>,
}

/// Runs `program` to its end (or its kill), its output in the log.
pub async fn run(program: Program<'_>, cut_short: impl Future<Output = ()>) -> Result<(), Failed> {
    let fail = |end, last_stderr| Failed { end, last_stderr };
    let mut cmd = Command::new(program.command.program());
    cmd.args(program.command.args())
        .env_clear()
        .env("PATH", PATH)
        .envs(program.env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir("/")
        .stdin(if program.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| fail(End::NotStarted(e.to_string()), None))?;
    let mut group = Group::of(child);
    let mut out = Stream::new(program.label, Kind::Out);
    let mut err = Stream::new(program.label, Kind::Err);
    let stdout = group.child.stdout.take();
    let stderr = group.child.stderr.take();
    let stdin = group.child.stdin.take();
    let input = program.stdin;
    let feed = async move {
        if let (Some(mut pipe), Some(bytes)) = (stdin, input) {
            // A program that does not read it all closes the pipe: not a failure here.
            let _ = pipe.write_all(&bytes).await;
        }
    };
    let timeout = program.timeout;
    let status = {
        let mut reading = std::pin::pin!(async {
            tokio::join!(out.pump(stdout), err.pump(stderr), feed);
        });
        let mut read_all = false;
        let ended = tokio::select! {
            status = async {
                tokio::select! {
                    status = group.child.wait() => status,
                    () = &mut reading => {
                        read_all = true;
                        group.child.wait().await
                    }
                }
            } => Ok(status),
            () = tokio::time::sleep(timeout) => Err(End::TimedOut(timeout)),
            () = cut_short => Err(End::Interrupted),
        };
        if ended.is_err() {
            group.kill();
        } else {
            group.exited = true;
        }
        if !read_all {
            // What it wrote before it ended; a process left behind may hold the pipes
            // open.
            let _ = tokio::time::timeout(DRAIN, &mut reading).await;
        }
        ended
    };
    out.finish();
    err.finish();
    let status = match status {
        Ok(status) => status,
        Err(end) => {
            let _ = tokio::time::timeout(REAP, group.child.wait()).await;
            return Err(fail(end, err.last));
        }
    };
    let status = status.map_err(|e| fail(End::NotStarted(e.to_string()), None))?;
    match ended_as(status) {
        None => Ok(()),
        Some(end) => Err(fail(end, err.last)),
    }
}

/// How a process that ended did not succeed, if it did not.
fn ended_as(status: ExitStatus) -> Option<End> {
    if status.success() {
        return None;
    }
    Some(match (status.code(), status.signal()) {
        (Some(code), _) => End::Exited(code),
        (None, Some(signal)) => End::Killed(
            Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |s| s.to_string()),
        ),
        (None, None) => End::Exited(-1),
    })
}

/// A program's process group: killed whole (SIGKILL) at its time-out, when cut short,
/// and when dropped before the program ended (its caller's task cancelled).
struct Group {
    child: Child,
    /// The group's id: the program's pid (it leads a group of its own).
    pgid: Option<Pid>,
    /// The program ended by itself: what it left in the background is left alone.
    exited: bool,
}

impl Group {
    fn of(child: Child) -> Group {
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        Group {
            child,
            pgid,
            exited: false,
        }
    }

    /// Kills every process of the group. The program itself is not yet reaped, so its
    /// pid, the group's id, cannot have been taken by another process.
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.exited {
            self.kill();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Out,
    Err,
}

/// One of a program's output streams, logged line by line: at most [`MAX_LINES`]
/// lines of at most [`MAX_LINE`] bytes; the last line of stderr is kept.
struct Stream {
    label: &'static str,
    kind: Kind,
    logged: usize,
    unlogged: usize,
    last: Option<String>,
}

impl Stream {
    fn new(label: &'static str, kind: Kind) -> Stream {
        Stream {
            label,
            kind,
            logged: 0,
            unlogged: 0,
            last: None,
        }
    }

    /// Reads `stream` to its end, a line at a time, holding at most [`MAX_LINE`] bytes.
    async fn pump(&mut self, stream: Option<impl AsyncRead + Unpin>) {
        let Some(stream) = stream else { return };
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        let mut cut = false;
        // A read error ends the stream as its end would.
        while let Ok(buf) = reader.fill_buf().await {
            if buf.is_empty() {
                break;
            }
            let (chunk, end) = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            let room = MAX_LINE.saturating_sub(line.len());
            cut |= chunk.len() > room;
            line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            let used = end.unwrap_or(buf.len());
            reader.consume(used);
            if end.is_some() {
                self.line(&line, cut);
                line.clear();
                cut = false;
            }
        }
        if !line.is_empty() || cut {
            self.line(&line, cut);
        }
    }

    fn line(&mut self, bytes: &[u8], cut: bool) {
        let text: String = String::from_utf8_lossy(bytes)
            .trim_end_matches('\r')
            .chars()
            .map(|c| {
                if c.is_control() && c != '\t' {
                    '\u{fffd}'
                } else {
                    c
                }
            })
            .collect();
        let text = if cut {
            format!("{text}… (cut)")
        } else {
            text
        };
        if self.kind == Kind::Err && !text.trim().is_empty() {
            self.last = Some(text.clone());
        }
        if self.logged >= MAX_LINES {
            self.unlogged += 1;
            return;
        }
        self.logged += 1;
        let key = self.label;
        match self.kind {
            Kind::Out => info!(hook = key, "{key}: {text}"),
            Kind::Err => warn!(hook = key, "{key} (stderr): {text}"),
        }
    }

    fn finish(&self) {
        if self.unlogged > 0 {
            let key = self.label;
            let stream = match self.kind {
                Kind::Out => "stdout",
                Kind::Err => "stderr",
            };
            warn!(
                hook = key,
                "{key}: {} more line(s) on {stream} not logged (at most {MAX_LINES} are)",
                self.unlogged
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_status_becomes_how_it_ended() {
        assert_eq!(ended_as(ExitStatus::from_raw(0)), None);
        assert_eq!(ended_as(ExitStatus::from_raw(3 << 8)), Some(End::Exited(3)));
        assert_eq!(
            ended_as(ExitStatus::from_raw(9)),
            Some(End::Killed("SIGKILL".into()))
        );
    }

    #[tokio::test]
    async fn output_is_read_in_bounded_lines_and_the_last_stderr_line_kept() {
        let long = "x".repeat(MAX_LINE * 3);
        let text = format!("first\r\n{long}\n\n\u{1b}[31mred\n");
        let mut s = Stream::new("pre_snapshot", Kind::Err);
        s.pump(Some(text.as_bytes())).await;
        assert_eq!(s.logged, 4);
        assert_eq!(s.last.as_deref(), Some("\u{fffd}[31mred"));
        let mut s = Stream::new("pre_snapshot", Kind::Err);
        s.pump(Some(format!("ok\n{long}").as_bytes())).await;
        assert_eq!(
            s.last,
            Some(format!("{}… (cut)", "x".repeat(MAX_LINE))),
            "a last line without a newline is read too, cut"
        );
        let many = "line\n".repeat(MAX_LINES + 7);
        let mut s = Stream::new("post_snapshot", Kind::Out);
        s.pump(Some(many.as_bytes())).await;
        assert_eq!((s.logged, s.unlogged), (MAX_LINES, 7));
    }

    #[tokio::test]
    async fn stdin_is_given_and_the_environment_is_clean() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got");
        let command = HookCommand::new(
            "/bin/sh".into(),
            vec![
                "-c".into(),
                format!("{{ cat; env | sort; }} > '{}'", out.display()),
            ],
        );
        let program = Program {
            command: &command,
            env: vec![("SNAPROTD_X", "1".into())],
            stdin: Some(b"{\"a\":1}\n".to_vec()),
            timeout: Duration::from_secs(5),
            label: "test",
        };
        run(program, std::future::pending()).await.unwrap();
        let got = std::fs::read_to_string(&out).unwrap();
        assert!(got.starts_with("{\"a\":1}\n"), "{got}");
        assert!(
            got.contains("SNAPROTD_X=1") && got.contains("PATH="),
            "{got}"
        );
        assert!(!got.contains("HOME="), "{got}");
    }

    #[tokio::test]
    async fn a_program_past_its_time_limit_is_killed() {
        let command = HookCommand::new("/bin/sleep".into(), vec!["10".into()]);
        let program = Program {
            command: &command,
            env: vec![],
            stdin: Some(Vec::new()),
            timeout: Duration::from_millis(100),
            label: "test",
        };
        let started = std::time::Instant::now();
        let e = run(program, std::future::pending()).await.unwrap_err();
        assert_eq!(e.end, End::TimedOut(Duration::from_millis(100)));
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
