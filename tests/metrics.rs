//! The metrics file as Prometheus reads it: written by the real daemon and by `once`,
//! checked by the real `promtool check metrics` and scraped through a real
//! node_exporter textfile collector. Every writer writes the whole picture from the
//! state directory: no job's series goes away and no counter falls when `once` follows
//! the daemon.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Env, eventually};
use snaprotd::sim::{Fault, FaultAction};

/// Two jobs every 2 seconds: `fast@1` on a server that exists, `fast@2` on one that
/// does not (its runs fail).
const TWO_JOBS: &str = r#"
[[policy]]
name = "fast"
servers = [1, 2]
schedule = "*/2 * * * * *"
keep = 2
snapshot_name = "{policy}-%Y%m%d-%H%M%S"
"#;

/// The configuration with `[daemon] metrics_file` set; returns the file's path.
fn with_metrics(env: &Env, policies: &str) -> PathBuf {
    let file = env.dir.path().join("textfile/snaprotd.prom");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let config = format!("{}\n{policies}", env.header()).replace(
        "[daemon]",
        &format!("[daemon]\nmetrics_file = \"{}\"", file.display()),
    );
    std::fs::write(&env.config, config).unwrap();
    file
}

/// The samples of a metrics text: series (name and labels, as written) → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("series value");
            (series.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

fn read_samples(file: &Path) -> BTreeMap<String, f64> {
    samples(&std::fs::read_to_string(file).expect("the metrics file"))
}

/// The value of the one series whose name and labels start with `prefix`.
fn value(samples: &BTreeMap<String, f64>, prefix: &str) -> Option<f64> {
    samples
        .iter()
        .find(|(s, _)| s.starts_with(prefix))
        .map(|(_, v)| *v)
}

fn job_series(job: &str) -> String {
    let (policy, server) = job.split_once('@').unwrap();
    format!("{{job_id=\"{job}\",policy=\"{policy}\",server=\"{server}\"}}")
}

/// `promtool check metrics` over the file: no error, no lint problem.
async fn promtool_accepts(file: &Path) {
    let text = std::fs::read(file).unwrap();
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("promtool runs (Debian package prometheus)");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&text).await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\nover:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&text)
    );
}

/// A real node_exporter with only the textfile collector, over `dir`; returns what it
/// serves at /metrics.
async fn node_exporter_scrape(dir: &Path) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _exporter = tokio::process::Command::new("prometheus-node-exporter")
        .arg("--collector.disable-defaults")
        .arg("--collector.textfile")
        .arg(format!("--collector.textfile.directory={}", dir.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node_exporter runs (Debian package prometheus-node-exporter)");
    let url = format!("http://127.0.0.1:{port}/metrics");
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(r) = client.get(&url).send().await
            && r.status().is_success()
        {
            return r.text().await.unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node_exporter did not answer on {url}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every series of the first map is in the second, and no counter fell.
fn nothing_fell(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) {
    for (series, was) in before {
        let Some(now) = after.get(series) else {
            panic!("{series} went away:\nbefore {before:#?}\nafter {after:#?}");
        };
        if series.contains("_total") {
            assert!(now >= was, "{series} fell from {was} to {now}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn once_after_the_daemon_keeps_every_job_and_no_counter_falls() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    let file = with_metrics(&env, TWO_JOBS);
    let mut d = env.start_daemon(&["run"], &[]).await;
    let ran = |s: &BTreeMap<String, f64>| {
        value(s, "snaprotd_api_requests_total{method=\"POST\"}").is_some_and(|n| n >= 2.0)
            && value(
                s,
                &format!("snaprotd_job_last_run_success{}", job_series("fast@2")),
            )
            .is_some()
    };
    assert!(
        eventually(20, || file.exists() && ran(&read_samples(&file))).await,
        "{}",
        d.log()
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
    let by_daemon = read_samples(&file);
    assert_eq!(
        value(
            &by_daemon,
            &format!("snaprotd_job_last_run_success{}", job_series("fast@1"))
        ),
        Some(1.0),
        "{by_daemon:#?}"
    );
    assert_eq!(
        value(
            &by_daemon,
            &format!("snaprotd_job_last_run_success{}", job_series("fast@2"))
        ),
        Some(0.0),
        "{by_daemon:#?}"
    );
    promtool_accepts(&file).await;

    // `once` for server 1 only: the failing job's series stays, and the counters go on
    // from the daemon's.
    let out = env.snaprotd(&["once", "--server", "1"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let by_once = read_samples(&file);
    nothing_fell(&by_daemon, &by_once);
    // Exactly the requests `once` sent were added to the daemon's.
    let requests = |s: &BTreeMap<String, f64>| -> f64 {
        s.iter()
            .filter(|(k, _)| k.starts_with("snaprotd_api_requests_total{"))
            .map(|(_, v)| v)
            .sum()
    };
    let sent: f64 = out
        .stdout
        .lines()
        .find_map(|l| l.strip_suffix(" provider request(s)"))
        .and_then(|n| n.parse().ok())
        .expect("once says how many requests it sent");
    assert_eq!(
        requests(&by_once),
        requests(&by_daemon) + sent,
        "{by_daemon:#?}\n{by_once:#?}"
    );
    promtool_accepts(&file).await;

    // The daemon again, after `once`: still nothing falls.
    let mut d = env.start_daemon(&["run"], &[]).await;
    assert!(
        eventually(20, || requests(&read_samples(&file)) > requests(&by_once)).await,
        "{}",
        d.log()
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
    nothing_fell(&by_once, &read_samples(&file));

    // As node_exporter serves it: our series, with `job_id` (a `job` label would be
    // renamed `exported_job` by Prometheus), and no parse error.
    let scraped = node_exporter_scrape(file.parent().unwrap()).await;
    for series in [
        format!("snaprotd_job_last_run_success{}", job_series("fast@1")),
        format!("snaprotd_job_last_run_success{}", job_series("fast@2")),
        "snaprotd_api_requests_total{method=\"POST\"}".to_string(),
    ] {
        assert!(scraped.contains(&series), "{series} not served:\n{scraped}");
    }
    assert!(
        scraped.contains("node_textfile_scrape_error 0"),
        "node_exporter could not read the file:\n{scraped}"
    );
    assert!(
        !scraped
            .lines()
            .any(|l| l.starts_with("snaprotd_") && l.contains("{job=")),
        "{scraped}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_success_outlives_a_failure_and_servers_left_stopped_are_counted() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.sim.add_server(3, "db");
    let file = with_metrics(
        &env,
        r#"
[[policy]]
name = "nightly"
servers = [1, 3]
schedule = "0 3 * * *"
keep = 2
snapshot_name = "{policy}-%Y%m%d-%H%M%S"
"#,
    );
    let out = env.snaprotd(&["once", "--server", "1"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let first = read_samples(&file);
    let series = job_series("nightly@1");
    let ok_at = value(
        &first,
        &format!("snaprotd_job_last_run_timestamp_seconds{series}"),
    )
    .expect("a last run");
    assert_eq!(
        value(
            &first,
            &format!("snaprotd_job_last_success_timestamp_seconds{series}")
        ),
        Some(ok_at),
        "{first:#?}"
    );
    assert_eq!(value(&first, "snaprotd_servers_stopped"), Some(0.0));
    assert_eq!(value(&first, "snaprotd_fires_skipped_total"), Some(0.0));

    // A failed run: the last success stays where it was. Server 3 is left stopped (a
    // record nobody holds: its job is not running).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.sim.inject(Fault::new(
        "POST",
        "/snapshots/",
        FaultAction::SnapshotFails,
    ));
    let stopped = env.dir.path().join("state/stopped");
    std::fs::create_dir_all(&stopped).unwrap();
    std::fs::write(
        stopped.join("3.json"),
        serde_json::json!({
            "job": "nightly@3", "policy": "nightly", "server": 3,
            "snapshot_name": "nightly-20261124-030000", "snapshot_id": null,
            "scheduled_for": "2026-11-24T03:00:00Z", "stopped_at": "2026-11-24T03:00:01Z",
        })
        .to_string(),
    )
    .unwrap();
    let out = env.snaprotd(&["once", "--server", "1"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    let second = read_samples(&file);
    assert_eq!(
        value(&second, &format!("snaprotd_job_last_run_success{series}")),
        Some(0.0),
        "{second:#?}"
    );
    assert!(
        value(
            &second,
            &format!("snaprotd_job_last_run_timestamp_seconds{series}")
        )
        .is_some_and(|t| t > ok_at),
        "{second:#?}"
    );
    assert_eq!(
        value(
            &second,
            &format!("snaprotd_job_last_success_timestamp_seconds{series}")
        ),
        Some(ok_at),
        "{second:#?}"
    );
    assert_eq!(value(&second, "snaprotd_servers_stopped"), Some(1.0));
    promtool_accepts(&file).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn skipped_fires_and_the_last_reload_are_counted_by_the_daemon_and_kept_by_once() {
    // Snapshots take 3 s and the job fires every second: fires are skipped.
    let env = Env::with_create_time(Duration::from_secs(3)).await;
    env.sim.add_server(1, "web");
    let file = with_metrics(
        &env,
        r#"
[[policy]]
name = "slow"
servers = [1]
schedule = "* * * * * *"
keep = 2
snapshot_name = "{policy}-%Y%m%d-%H%M%S"
"#,
    );
    let good = std::fs::read_to_string(&env.config).unwrap();
    let mut d = env.start_daemon(&["run"], &[]).await;
    d.wait_note("READY=1", 1, 10).await;
    assert!(
        eventually(15, || file.exists()
            && value(&read_samples(&file), "snaprotd_fires_skipped_total")
                .is_some_and(|n| n >= 1.0))
        .await,
        "{}",
        d.log()
    );
    assert_eq!(
        value(&read_samples(&file), "snaprotd_last_reload_success"),
        Some(1.0)
    );

    std::fs::write(&env.config, format!("{good}\nkeep = 9\n")).unwrap();
    d.signal("HUP");
    d.wait_note("READY=1", 2, 10).await;
    assert!(
        eventually(10, || value(
            &read_samples(&file),
            "snaprotd_last_reload_success"
        ) == Some(0.0))
        .await,
        "{}",
        std::fs::read_to_string(&file).unwrap()
    );
    std::fs::write(&env.config, &good).unwrap();
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
    let by_daemon = read_samples(&file);
    assert!(
        value(&by_daemon, "snaprotd_last_reload_timestamp_seconds").is_some(),
        "{by_daemon:#?}"
    );

    // `once` keeps what the daemon counted and what its last reload came to.
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let by_once = read_samples(&file);
    nothing_fell(&by_daemon, &by_once);
    assert_eq!(
        value(&by_once, "snaprotd_last_reload_success"),
        Some(0.0),
        "{by_once:#?}"
    );
    promtool_accepts(&file).await;
}
