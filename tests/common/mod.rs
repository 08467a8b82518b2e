//! Test harness: a real simulator on a loopback port in this process, a temporary
//! directory with a configuration, and the real `snaprotd` binary as a child process.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use snaprotd::sim::{SimHandle, SimOptions};

pub const TOKEN: &str = "tok-7f3a9c2e5b1d4e8f";

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

    pub async fn snaprotd(&self, args: &[&str]) -> Output {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_snaprotd"))
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env_remove("SNAPROTD_API_TOKEN")
            .env_remove("SNAPROTD_CONFIG")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("STATE_DIRECTORY")
            .output()
            .await
            .expect("snaprotd runs");
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

/// A time `days` days ago.
pub fn days_ago(days: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::Duration::days(days)
}
