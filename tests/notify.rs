//! Notifications: a real HTTP server on loopback in the test receives the webhook's
//! notices and a policy's pings from the real binary; a script receives the command's
//! notice on stdin. A failing or slow receiver never holds a rotation up, is retried,
//! and a URL is never shown whole.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Method, StatusCode, Uri};
use common::{Env, eventually};
use snaprotd::sim::Fault;

/// What the receiver saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    body: String,
    /// The status it answered; 0 while it has not.
    answered: u16,
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Ok,
    Status(u16),
    /// Answers 503 after this long.
    Slow(Duration),
    /// Answers 503 to the next this many requests, then 200.
    FailNext(u32),
}

/// An HTTP server on loopback that records every request.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    mode: Arc<Mutex<Mode>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            mode: Arc::new(Mutex::new(Mode::Ok)),
        };
        let me = r.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, body: String| {
            let me = me.clone();
            async move {
                let i = {
                    let mut seen = me.seen.lock().unwrap();
                    seen.push(Seen {
                        method: method.to_string(),
                        path: uri.path().to_string(),
                        body,
                        answered: 0,
                    });
                    seen.len() - 1
                };
                let mode = {
                    let mut mode = me.mode.lock().unwrap();
                    let now = *mode;
                    if let Mode::FailNext(n) = now {
                        *mode = if n > 1 {
                            Mode::FailNext(n - 1)
                        } else {
                            Mode::Ok
                        };
                    }
                    now
                };
                let status = match mode {
                    Mode::Ok => 200,
                    Mode::FailNext(_) => 503,
                    Mode::Status(s) => s,
                    Mode::Slow(d) => {
                        tokio::time::sleep(d).await;
                        503
                    }
                };
                me.seen.lock().unwrap()[i].answered = status;
                StatusCode::from_u16(status).unwrap()
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests it answered 200, as "METHOD path".
    fn delivered(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|s| s.answered == 200)
            .map(|s| format!("{} {}", s.method, s.path))
            .collect()
    }

    /// The JSON bodies it answered 200 at `path`.
    fn notices(&self, path: &str) -> Vec<serde_json::Value> {
        self.seen()
            .into_iter()
            .filter(|s| s.answered == 200 && s.path == path)
            .map(|s| serde_json::from_str(&s.body).expect("a notice is JSON"))
            .collect()
    }
}

/// The secret part of every URL of these tests: it must never be shown.
const SECRET: &str = "s3cr3t-6f1c0a3e";

fn hook_path() -> String {
    format!("/hook/{SECRET}")
}

fn ping_path() -> String {
    format!("/ping/{SECRET}")
}

/// A policy "p" on server 1, with `extra` keys.
fn policy(extra: &str) -> String {
    format!(
        "[[policy]]\nname = \"p\"\nservers = [1]\nschedule = \"@daily\"\nkeep = 2\n\
         snapshot_name = \"{{policy}}-%Y%m%d-%H%M%S\"\n{extra}\n"
    )
}

/// `[notify]` with a webhook at the receiver and quick retries.
fn webhook(r: &Receiver) -> String {
    format!(
        "[notify]\nwebhook_url = \"{}\"\ntimeout = \"1s\"\nmax_attempts = 3\nretry_backoff = \"100ms\"\n",
        r.url(&hook_path())
    )
}

/// The simulator with server 1.
async fn env() -> Env {
    let env = Env::new().await;
    env.sim.add_server(1, "web-1");
    env
}

fn refuse_next_create(env: &Env) {
    env.sim
        .inject(Fault::status("POST", "/snapshots/", 400, None));
}

/// Waits for the wall clock's next second: snapshot names are to the second, and a
/// second run within one adopts the first one's snapshot.
async fn next_second() {
    let next = chrono::Utc::now().timestamp() + 1;
    while chrono::Utc::now().timestamp() < next {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits a little for anything late to arrive (used only where nothing must).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_and_the_first_success_after_it_are_posted_and_a_plain_success_is_not() {
    let env = env().await;
    let r = Receiver::start().await;
    env.write_config(&format!("{}\n{}", webhook(&r), policy("")));

    next_second().await;
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    settle().await;
    assert!(r.seen().is_empty(), "a success notified: {:?}", r.seen());

    refuse_next_create(&env);
    r.set(Mode::FailNext(1));
    next_second().await;
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    // `once` delivered before it exited, trying again after a 503.
    let notices = r.notices(&hook_path());
    assert_eq!(notices.len(), 1, "{:?}", r.seen());
    assert_eq!(r.seen().len(), 2, "{:?}", r.seen());
    let n = &notices[0];
    assert_eq!(
        (
            &n["version"],
            &n["job"],
            &n["policy"],
            &n["server"],
            &n["outcome"]
        ),
        (
            &1.into(),
            &"p@1".into(),
            &"p".into(),
            &1.into(),
            &"failed".into()
        ),
        "{n}"
    );
    assert!(n["error"].as_str().unwrap().contains("400"), "{n}");
    assert!(
        n["duration"].is_number() && n["time"].as_str().unwrap().ends_with('Z'),
        "{n}"
    );
    assert!(
        n["snapshot"]["name"].as_str().unwrap().starts_with("p-"),
        "{n}"
    );
    assert!(n["snapshot"]["id"].is_null(), "{n}");
    assert_eq!(r.seen()[1].method, "POST");

    next_second().await;
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let notices = r.notices(&hook_path());
    assert_eq!(notices.len(), 2, "{:?}", r.seen());
    let n = &notices[1];
    assert_eq!(n["outcome"], "recovered", "{n}");
    assert!(n["error"].is_null(), "{n}");
    assert!(n["snapshot"]["id"].is_u64(), "{n}");

    next_second().await;
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    settle().await;
    assert_eq!(
        r.seen().len(),
        3,
        "a second success notified: {:?}",
        r.seen()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_is_pinged_at_its_start_and_end_and_its_failure_carries_the_error() {
    let env = env().await;
    let r = Receiver::start().await;
    env.write_config(&policy(&format!("ping_url = \"{}\"", r.url(&ping_path()))));

    next_second().await;
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let ping = ping_path();
    assert_eq!(
        r.delivered(),
        [format!("POST {ping}/start"), format!("POST {ping}")]
    );

    refuse_next_create(&env);
    next_second().await;
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(
        r.delivered()[2..],
        [format!("POST {ping}/start"), format!("POST {ping}/fail")]
    );
    let fail = r.seen().pop().unwrap();
    assert!(
        fail.body.contains("400") && fail.body.contains("creating the snapshot"),
        "the error is the body: {fail:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ping_url_in_defaults_applies_to_every_policy() {
    let env = env().await;
    let r = Receiver::start().await;
    let header = env.header().replacen(
        "[defaults]\n",
        &format!("[defaults]\nping_url = \"{}\"\n", r.url(&ping_path())),
        1,
    );
    std::fs::write(&env.config, format!("{header}\n{}", policy(""))).unwrap();
    next_second().await;
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(r.delivered().len(), 2, "{:?}", r.seen());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_reads_the_notice_on_stdin() {
    let env = env().await;
    let got = env.dir.path().join("got.json");
    let script = env.dir.path().join("alert");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat >> '{}'\nenv | grep -c . >> '{}.env'\n",
            got.display(),
            got.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    env.write_config(&format!(
        "[notify]\ncommand = [\"{}\"]\n\n{}",
        script.display(),
        policy("")
    ));
    refuse_next_create(&env);
    next_second().await;
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    let text = std::fs::read_to_string(&got).expect("the command ran before once exited");
    let n: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(
        (&n["job"], &n["outcome"]),
        (&"p@1".into(), &"failed".into())
    );
    // A clean environment: PATH (and what sh adds itself), nothing of snaprotd's.
    let vars: u32 = std::fs::read_to_string(format!("{}.env", got.display()))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(vars <= 4, "{vars} variables");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_or_failing_webhook_holds_no_run_up_and_is_retried_until_it_answers() {
    let env = env().await;
    let r = Receiver::start().await;
    r.set(Mode::Slow(Duration::from_secs(3)));
    env.write_config(&format!(
        "[notify]\nwebhook_url = \"{}\"\ntimeout = \"500ms\"\nmax_attempts = 20\nretry_backoff = \"200ms\"\n\n{}",
        r.url(&hook_path()),
        policy("")
    )
    .replace("@daily", "*/2 * * * * *"));
    refuse_next_create(&env);
    let daemon = env.start_daemon(&[], &[]).await;
    let record = env.dir.path().join("state/runs/p@1.json");
    // The failed run is recorded while the webhook has not answered.
    assert!(
        eventually(10, || std::fs::read_to_string(&record).is_ok_and(|t| t
            .contains("\"ok\": false")
            || t.contains("\"ok\":false")))
        .await,
        "no failed run recorded:\n{}",
        daemon.log()
    );
    assert!(r.delivered().is_empty(), "{:?}", r.seen());
    // Later runs go on meanwhile: the next fire succeeds and is recorded.
    assert!(
        eventually(10, || std::fs::read_to_string(&record).is_ok_and(|t| t
            .contains("\"ok\": true")
            || t.contains("\"ok\":true")))
        .await,
        "{}",
        daemon.log()
    );
    r.set(Mode::Status(503));
    assert!(r.delivered().is_empty());
    r.set(Mode::Ok);
    assert!(
        eventually(10, || {
            let n = r.notices(&hook_path());
            n.iter().any(|n| n["outcome"] == "failed")
                && n.iter().any(|n| n["outcome"] == "recovered")
        })
        .await,
        "not delivered once it came back: {:?}\n{}",
        r.seen(),
        daemon.log()
    );
    let log = daemon.log();
    assert!(log.contains("trying again"), "{log}");
    assert!(!log.contains(SECRET), "the URL was logged whole:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn once_gives_up_on_an_unreachable_webhook_within_a_bound_and_says_so() {
    let env = env().await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook/{SECRET}", closed.local_addr().unwrap());
    drop(closed);
    env.write_config(&format!(
        "[notify]\nwebhook_url = \"{url}\"\ntimeout = \"500ms\"\nmax_attempts = 2\nretry_backoff = \"100ms\"\n\n{}",
        policy("")
    ));
    refuse_next_create(&env);
    let started = std::time::Instant::now();
    let out = env.snaprotd_within(&["once", "-v"], 20).await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(started.elapsed() < Duration::from_secs(10));
    let all = out.all();
    assert!(all.contains("not delivered after 2 attempt(s)"), "{all}");
    assert!(
        all.contains(&format!("http://{}/…", url.split('/').nth(2).unwrap())),
        "{all}"
    );
    assert!(!all.contains(SECRET), "the URL was shown whole:\n{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_url_is_never_shown_whole() {
    let env = env().await;
    let r = Receiver::start().await;
    r.set(Mode::Status(500));
    env.write_config(&format!(
        "{}\n{}",
        webhook(&r),
        policy(&format!("ping_url = \"{}\"", r.url(&ping_path())))
    ));
    refuse_next_create(&env);
    for args in [
        vec!["once", "-vv"],
        vec!["once", "--json"],
        vec!["check"],
        vec!["check", "--json"],
        vec!["notify", "--test"],
        vec!["notify", "--test", "--json"],
        vec!["status", "--json"],
    ] {
        let out = env.snaprotd_within(&args, 30).await;
        assert!(
            !out.all().contains(SECRET),
            "{args:?} showed a URL:\n{}",
            out.all()
        );
        if args == ["check"] {
            let host = format!("http://{}/…", r.addr);
            assert!(
                out.stdout.contains(&format!("notify     webhook {host}"))
                    && out.stdout.contains(&format!("ping_url      {host}")),
                "{}",
                out.stdout
            );
        }
    }
    // A URL refused by check is not shown whole either.
    env.write_config(&format!(
        "[notify]\nwebhook_url = \"http://hooks.example.org/{SECRET}\"\n\n{}",
        policy(&format!(
            "ping_url = \"https://user:{SECRET}@hc-ping.com/x\""
        ))
    ));
    let out = env.snaprotd(&["check"]).await;
    assert_eq!(out.code, 78, "{}", out.all());
    let all = out.all();
    assert!(
        all.contains("notify.webhook_url") && all.contains("http:// is allowed only for loopback"),
        "{all}"
    );
    assert!(
        all.contains("policy[p].ping_url") && all.contains("credentials"),
        "{all}"
    );
    assert!(!all.contains(SECRET), "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn notify_test_reaches_every_target_and_fails_on_an_unreachable_one() {
    let env = env().await;
    let r = Receiver::start().await;
    let got = env.dir.path().join("got.json");
    let script = env.dir.path().join("alert");
    std::fs::write(&script, format!("#!/bin/sh\ncat > '{}'\n", got.display())).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = |webhook: &str| {
        format!(
            "[notify]\nwebhook_url = \"{webhook}\"\ncommand = [\"{}\"]\ntimeout = \"1s\"\n\n{}",
            script.display(),
            policy(&format!("ping_url = \"{}\"", r.url(&ping_path())))
        )
    };
    env.write_config(&config(&r.url(&hook_path())));
    let out = env.snaprotd(&["notify", "--test"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("3 target(s): 3 ok, 0 failed"),
        "{}",
        out.stdout
    );
    let notices = r.notices(&hook_path());
    assert_eq!(notices.len(), 1, "{:?}", r.seen());
    assert_eq!(
        (&notices[0]["outcome"], &notices[0]["test"]),
        (&"recovered".into(), &true.into())
    );
    assert!(r.delivered().contains(&format!("POST {}", ping_path())));
    let n: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&got).expect("the command ran")).unwrap();
    assert_eq!(
        (&n["outcome"], &n["test"]),
        (&"recovered".into(), &true.into())
    );

    // The webhook cannot be reached: that target fails, the others do not.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}/hook/{SECRET}", closed.local_addr().unwrap());
    drop(closed);
    env.write_config(&config(&down));
    let out = env.snaprotd(&["notify", "--test", "--json"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let results: Vec<(String, bool)> = doc["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["target"].as_str().unwrap().to_string(),
                t["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(results.len(), 3, "{doc}");
    assert!(
        results[0].0.starts_with("webhook http://127.0.0.1:") && !results[0].1,
        "{doc}"
    );
    assert!(
        results[1].0.starts_with("command ") && results[1].1,
        "{doc}"
    );
    assert!(
        results[2].0.starts_with("ping (success) ") && results[2].1,
        "{doc}"
    );
    assert!(
        doc["targets"][0]["error"]
            .as_str()
            .unwrap()
            .contains("connect"),
        "{doc}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_delivers_what_is_queued_when_it_stops() {
    let env = env().await;
    let r = Receiver::start().await;
    r.set(Mode::Status(503));
    env.write_config(
        &format!(
            "[notify]\nwebhook_url = \"{}\"\ntimeout = \"500ms\"\nmax_attempts = 20\nretry_backoff = \"300ms\"\n\n{}",
            r.url(&hook_path()),
            policy("")
        )
        .replace("@daily", "*/2 * * * * *"),
    );
    refuse_next_create(&env);
    let mut daemon = env.start_daemon(&[], &[]).await;
    daemon.wait_log("trying again", 10).await;
    daemon.signal("TERM");
    daemon.wait_log("delivering", 10).await;
    r.set(Mode::Ok);
    assert_eq!(daemon.wait_exit(20).await, Some(0), "{}", daemon.log());
    let notices = r.notices(&hook_path());
    assert!(
        notices.iter().any(|n| n["outcome"] == "failed"),
        "{:?}\n{}",
        r.seen(),
        daemon.log()
    );
    assert!(!daemon.log().contains("not delivered"), "{}", daemon.log());
}

/// Policy "p" on servers 1 and 2 pinging the receiver, one job at a time: server 1's
/// job runs first, then server 2's, both for the same fire.
async fn two_servers(r: &Receiver) -> Env {
    let env = env().await;
    env.sim.add_server(2, "web-2");
    let header = env
        .header()
        .replacen("[daemon]\n", "[daemon]\nmax_concurrent_jobs = 1\n", 1);
    let policy = policy(&format!("ping_url = \"{}\"", r.url(&ping_path())))
        .replace("servers = [1]", "servers = [1, 2]");
    std::fs::write(&env.config, format!("{header}\n{policy}")).unwrap();
    env
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fire_of_a_policy_is_one_run_for_its_ping_target_and_a_failure_is_the_last_word() {
    let r = Receiver::start().await;
    let ping = ping_path();
    let (start, success, fail) = (
        format!("POST {ping}/start"),
        format!("POST {ping}"),
        format!("POST {ping}/fail"),
    );

    // Server 1's create is refused; server 2's job succeeds after it.
    let env = two_servers(&r).await;
    refuse_next_create(&env);
    next_second().await;
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(
        r.delivered(),
        [start.clone(), fail.clone()],
        "{}",
        out.all()
    );
    let body = r.seen().pop().unwrap().body;
    assert!(
        body.contains("p@1") && body.contains("400") && body.contains("snapshot p-"),
        "the failure names its job, snapshot and error: {body}"
    );

    // Server 1's job succeeds, then server 2's create is refused.
    let r = Receiver::start().await;
    let env = two_servers(&r).await;
    env.sim.inject(Fault::new(
        "POST",
        "/snapshots/",
        snaprotd::sim::FaultAction::Latency { ms: 0 },
    ));
    refuse_next_create(&env);
    next_second().await;
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(r.delivered(), [start, success, fail], "{}", out.all());
    let body = r.seen().pop().unwrap().body;
    assert!(body.contains("p@2"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn notify_test_sends_a_recovered_notice_marked_as_a_test_and_says_what_it_left_out() {
    let env = env().await;
    let r = Receiver::start().await;
    env.write_config(&format!("{}\n{}", webhook(&r), policy("")));
    let out = env.snaprotd(&["notify", "--test"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let notices = r.notices(&hook_path());
    assert_eq!(notices.len(), 1, "{:?}", r.seen());
    let n = &notices[0];
    assert_eq!(
        (&n["outcome"], &n["error"], &n["test"], &n["job"]),
        (
            &"recovered".into(),
            &serde_json::Value::Null,
            &true.into(),
            &"p@1".into()
        ),
        "{n}"
    );
    assert!(
        n["snapshot"]["name"].as_str().unwrap().starts_with("p-"),
        "{n}"
    );
    let out = env.snaprotd(&["notify", "--test", "--policy", "p"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr
            .contains("policy p has no ping_url: only the [notify] webhook_url was tried"),
        "{}",
        out.all()
    );
}

/// Text as an operator reads it, whatever the format: without Markdown's backticks,
/// roff's font changes and escapes, and comment marks; white space collapsed.
fn prose(text: &str) -> String {
    let text = text
        .replace(['`'], "")
        .replace("\\fI", "")
        .replace("\\fB", "")
        .replace("\\fR", "")
        .replace("\\-", "-");
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_start().trim_start_matches('#').trim())
        .collect();
    lines
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wait_at_the_end_of_once_is_one_bound_stated_alike_everywhere() {
    let env = env().await;
    // A host that takes the connection and never answers: each attempt lasts its
    // whole timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    env.write_config(&format!(
        "[notify]\ntimeout = \"300ms\"\nmax_attempts = 2\nretry_backoff = \"100ms\"\n\n{}",
        policy(&format!(
            "ping_url = \"http://{}/ping/{SECRET}\"",
            silent.local_addr().unwrap()
        ))
    ));
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    // 2 × 300ms + 100ms: the start ping and the success ping do not both fit.
    let all = out.all();
    assert!(all.contains("for at most 700ms"), "{all}");
    assert!(all.contains("not delivered within 700ms"), "{all}");
    drop(silent);

    let bound = "at most max_attempts times timeout plus the waits between attempts \
                 (at most 60s; 60s with the defaults)";
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_snaprotd"))
        .arg("assets")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(made.success());
    for file in [
        root.join("README.md"),
        root.join("config/snaprotd.toml"),
        dir.path().join("snaprotd.1"),
    ] {
        let text = prose(&std::fs::read_to_string(&file).unwrap());
        assert!(
            text.contains(bound),
            "{} does not state the bound as {bound:?}",
            file.display()
        );
        assert!(!text.contains("one notice's retries"), "{}", file.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_refused_notify_key_shows_its_own_example() {
    let env = env().await;
    env.write_config(&format!(
        "[notify]\nwebhook_url = \"\"\ncommand = [\"alert\"]\n\n{}",
        policy("ping_url = \"nope\"\npre_snapshot = [\"freeze\"]")
    ));
    let out = env.snaprotd(&["check"]).await;
    assert_eq!(out.code, 78, "{}", out.all());
    let all = out.all();
    let line = |key: &str| {
        all.lines()
            .filter(|l| l.contains(key))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let webhook = line("notify.webhook_url");
    assert!(
        webhook.contains("https://hooks.example.org/snaprotd") && !webhook.contains("hc-ping"),
        "{all}"
    );
    let command = line("notify.command");
    assert!(
        command.contains("[\"/usr/local/bin/alert\"]")
            && !command.contains("freeze")
            && !command.contains("hook"),
        "{all}"
    );
    assert!(
        line("ping_url").contains("https://hc-ping.com/<uuid>"),
        "{all}"
    );
    assert!(
        line("pre_snapshot").contains("/usr/local/bin/freeze"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn notify_without_test_shows_a_usage_that_asks_only_for_test() {
    let env = env().await;
    env.write_config(&policy(""));
    // --config (global) given after the command, as an operator writes it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_snaprotd"))
        .arg("notify")
        .arg("--config")
        .arg(&env.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let usage: Vec<&str> = stderr.lines().filter(|l| l.starts_with("Usage:")).collect();
    assert_eq!(
        usage,
        ["Usage: snaprotd notify --test [--policy <POLICY>] [--json]"],
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fire_whose_servers_cannot_be_listed_pings_fail_and_posts_a_failure() {
    let env = env().await;
    env.sim.add_server(11, "web-1");
    let r = Receiver::start().await;
    let ping = ping_path();
    let header = env.header().replacen(
        "[daemon]\n",
        &format!("[notify]\nwebhook_url = \"{}\"\n[daemon]\n", r.url("/hook")),
        1,
    );
    let policy = format!(
        "[[policy]]\nname = \"web\"\nservers = [\"web-*\"]\nschedule = \"*/2 * * * * *\"\n\
         keep = 2\nsnapshot_name = \"{{policy}}-%Y%m%d-%H%M%S\"\nping_url = \"{}\"\n",
        r.url(&ping)
    );
    std::fs::write(&env.config, format!("{header}{policy}")).unwrap();
    env.sim.inject(Fault {
        times: 1000,
        ..Fault::status("GET", "/servers/", 503, None)
    });
    let mut d = env.start_daemon(&["run"], &[]).await;
    let failed = eventually(15, || {
        r.delivered().contains(&format!("POST {ping}/fail"))
            && r.delivered().iter().any(|l| l == "POST /hook")
    })
    .await;
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
    assert!(failed, "{:?}\n{}", r.delivered(), d.log());
    let hook = r
        .seen()
        .into_iter()
        .find(|s| s.path == "/hook")
        .expect("a notice");
    assert!(
        hook.body.contains("\"outcome\":\"failed\"")
            && hook.body.contains("cannot list the account's servers"),
        "{hook:?}"
    );
}
