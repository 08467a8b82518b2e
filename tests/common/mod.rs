//! Test harness: a real simulator on a loopback port in this process, a temporary
//! directory with a configuration, and the real `snaprotd` binary as a child process.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use snaprotd::sim::{SimHandle, SimOptions};

pub const TOKEN: &str = "tok-7f3a9c2e5b1d4e8f";

/// A policy on server 1 that fires every 2 seconds; names carry seconds.
pub const EVERY_2S: &str = r#"
[[policy]]
name = "fast"
servers = [1]
schedule = "*/2 * * * * *"
keep = 2
snapshot_name = "{policy}-%Y%m%d-%H%M%S"
"#;

pub struct Env {
    pub sim: SimHandle,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

pub fn fast_options() -> SimOptions {
    SimOptions {
        token: TOKEN.into(),
        create_time: Duration::from_millis(300),
        transition_time: Duration::from_millis(100),
        restore_time: Duration::from_millis(300),
        ..SimOptions::default()
    }
}

impl Env {
    pub async fn new() -> Env {
        Env::with_options(fast_options()).await
    }

    /// The fast simulator, with snapshots taking `create_time` to complete.
    pub async fn with_create_time(create_time: Duration) -> Env {
        Env::with_options(SimOptions {
            create_time,
            ..fast_options()
        })
        .await
    }

    pub async fn with_options(options: SimOptions) -> Env {
        let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
        let sim = SimHandle::start(listen, options)
            .await
            .expect("simulator starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("snaprotd.toml");
        let token = dir.path().join("token");
        std::fs::write(&token, TOKEN).expect("token file");
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        Env { sim, dir, config }
    }

    /// The `[api]` and `[daemon]` tables pointing at the simulator, with fast timings.
    pub fn header(&self) -> String {
        format!(
            r#"[api]
base_url = "{}"
token_file = "{}"
request_timeout = "2s"
max_attempts = 3
retry_backoff = "50ms"
max_requests_per_second = 1000

[daemon]
state_dir = "{}"

[defaults]
poll_interval = "50ms"
wait_timeout = "5s"
stop_timeout = "5s"
"#,
            self.sim.base_url(),
            self.dir.path().join("token").display(),
            self.dir.path().join("state").display()
        )
    }

    /// Writes the header followed by `policies`.
    pub fn write_config(&self, policies: &str) {
        std::fs::write(&self.config, format!("{}\n{policies}", self.header())).expect("config");
    }

    /// `snaprotd -c CONFIG args…` as a child process, run as the harness runs it (no
    /// token, configuration, credentials, state directory or notify socket from the
    /// environment), its output piped, killed when dropped.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_snaprotd"));
        c.arg("-c")
            .arg(&self.config)
            .args(args)
            .env_remove("SNAPROTD_API_TOKEN")
            .env_remove("SNAPROTD_CONFIG")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("STATE_DIRECTORY")
            .env_remove("NOTIFY_SOCKET")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        c
    }

    pub async fn snaprotd(&self, args: &[&str]) -> Output {
        self.snaprotd_within(args, 120).await
    }

    /// Runs `snaprotd args…` to its end, killed if it outlives `secs`; it must not panic
    /// or show the token.
    pub async fn snaprotd_within(&self, args: &[&str], secs: u64) -> Output {
        let child = self.command(args).spawn().expect("snaprotd runs");
        let out = tokio::time::timeout(Duration::from_secs(secs), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("snaprotd {args:?} did not exit within {secs}s"))
            .expect("wait");
        let o = Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(
            !o.all().contains("panicked"),
            "snaprotd panicked:\n{}",
            o.all()
        );
        assert!(
            !o.all().contains(TOKEN),
            "the token appeared in the output:\n{}",
            o.all()
        );
        o
    }

    pub fn names(&self, server: u64) -> Vec<String> {
        let mut n = self.sim.state().snapshot_names(server);
        n.sort();
        n
    }

    pub fn changes(&self) -> Vec<String> {
        self.sim.state().changes()
    }
}

/// Every request the simulator saw, one a line: time, method, path, status.
pub fn request_log(st: &snaprotd::sim::SimState) -> String {
    st.requests
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r.at.format("%H:%M:%S%.3f"),
                r.method,
                r.path,
                r.status
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A time `days` days ago.
pub fn days_ago(days: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::Duration::days(days)
}

/// Polls `cond` every 20 ms until it holds or `secs` pass; returns whether it held.
pub async fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The real daemon as a child process, its standard error collected, and (optionally)
/// a real `NOTIFY_SOCKET` datagram socket collecting what it tells systemd.
pub struct Daemon {
    pub child: tokio::process::Child,
    pub pid: u32,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    /// Reads standard error until its end: awaited once the process has exited, so
    /// the log holds all it wrote.
    log_reader: Option<tokio::task::JoinHandle<()>>,
    notes: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Env {
    pub async fn start_daemon(&self, args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        use tokio::io::AsyncReadExt;
        let socket_path = self
            .dir
            .path()
            .join(format!("notify-{}.sock", rand_suffix()));
        let socket = tokio::net::UnixDatagram::bind(&socket_path).expect("notify socket");
        let notes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        {
            let notes = notes.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = socket.recv(&mut buf).await {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    notes.lock().unwrap().push(text);
                }
            });
        }
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_snaprotd"))
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env_remove("SNAPROTD_API_TOKEN")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("STATE_DIRECTORY")
            .env_remove("WATCHDOG_USEC")
            .env_remove("JOURNAL_STREAM")
            .env("NOTIFY_SOCKET", &socket_path)
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("daemon starts");
        let pid = child.id().expect("pid");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("stderr");
        let log_reader = {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = stderr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    log.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            })
        };
        Daemon {
            child,
            pid,
            log,
            log_reader: Some(log_reader),
            notes,
        }
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

impl Daemon {
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Every notify message so far, as sent (one datagram each).
    pub fn messages(&self) -> Vec<String> {
        self.notes.lock().unwrap().clone()
    }

    /// Every notify message so far, one entry per `KEY=value` line.
    pub fn notes(&self) -> Vec<String> {
        self.notes
            .lock()
            .unwrap()
            .iter()
            .flat_map(|m| m.lines().map(str::to_string).collect::<Vec<_>>())
            .collect()
    }

    pub async fn wait_log(&self, needle: &str, secs: u64) {
        let found = eventually(secs, || self.log().contains(needle)).await;
        assert!(
            found,
            "waited {secs}s for {needle:?} in the log:\n{}",
            self.log()
        );
    }

    pub async fn wait_note(&self, note: &str, count: usize, secs: u64) {
        let found = eventually(secs, || {
            self.notes().iter().filter(|n| *n == note).count() >= count
        })
        .await;
        assert!(
            found,
            "waited {secs}s for {count}× {note:?}; got {:?}\nlog:\n{}",
            self.notes(),
            self.log()
        );
    }

    /// Sends a real signal (`kill -s NAME`).
    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .args(["-s", name, &self.pid.to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -s {name} failed");
    }

    /// Waits for the process to end; returns its exit code (None when killed).
    pub async fn wait_exit(&mut self, secs: u64) -> Option<i32> {
        let status = tokio::time::timeout(Duration::from_secs(secs), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the daemon did not exit within {secs}s:\n{}", self.log()))
            .expect("wait");
        // The log is whole once standard error has ended (a child it left running may
        // still hold it: then what came within a few seconds).
        if let Some(reader) = self.log_reader.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
        assert!(!self.log().contains(TOKEN), "the token appeared in the log");
        assert!(
            !self.log().contains("panicked"),
            "the daemon panicked:\n{}",
            self.log()
        );
        status.code()
    }
}
