//! Fleet behaviour: shared listings, one rate budget, the metrics file.

mod common;

use common::{Env, eventually};
use snaprotd::sim::Fault;

fn fleet_policy(n: u64) -> String {
    let ids: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    format!(
        "[[policy]]\nname = \"fleet\"\nservers = [{}]\nschedule = \"@yearly\"\nkeep = 2\n",
        ids.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn many_servers_firing_together_share_their_listings() {
    let env = Env::new().await;
    let n = 120;
    for id in 1..=n {
        env.sim.add_server(id, "s");
    }
    let config = format!("{}\n{}", env.header(), fleet_policy(n))
        .replace("[daemon]", "[daemon]\nmax_concurrent_jobs = 1000");
    std::fs::write(&env.config, config).unwrap();
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let st = env.sim.state();
    assert_eq!(st.snapshots.len(), n as usize);
    let per_rotation = st.requests.len() as f64 / n as f64;
    assert!(per_rotation <= 4.0, "{per_rotation} requests per rotation");
    assert!(
        st.requests
            .iter()
            .any(|r| r.path.starts_with("/snapshots/") && !r.path.contains("server_id")),
        "no account-wide listing was used"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_pauses_every_request_not_only_its_own() {
    let env = Env::new().await;
    for id in 1..=3 {
        env.sim.add_server(id, "s");
    }
    env.sim
        .inject(Fault::status("GET", "/snapshots/", 429, Some(1)));
    let config = format!("{}\n{}", env.header(), fleet_policy(3))
        .replace("[daemon]", "[daemon]\nmax_concurrent_jobs = 10");
    std::fs::write(&env.config, config).unwrap();
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let st = env.sim.state();
    let limited = st
        .requests
        .iter()
        .find(|r| r.status == 429)
        .expect("a 429")
        .at;
    let too_early: Vec<_> = st
        .requests
        .iter()
        .filter(|r| {
            r.at > limited + chrono::Duration::milliseconds(100)
                && r.at < limited + chrono::Duration::milliseconds(950)
        })
        .map(|r| format!("{} {} at {}", r.method, r.path, r.at))
        .collect();
    assert!(
        too_early.is_empty(),
        "requests during the pause: {too_early:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_file_is_written_after_jobs() {
    let env = Env::new().await;
    env.sim.add_server(5, "s");
    let metrics = env.dir.path().join("snaprotd.prom");
    let config = format!(
        "{}\n{}",
        env.header(),
        fleet_policy(0).replace("servers = []", "servers = [5]")
    )
    .replace(
        "[daemon]",
        &format!("[daemon]\nmetrics_file = \"{}\"", metrics.display()),
    );
    std::fs::write(&env.config, config).unwrap();
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let text = std::fs::read_to_string(&metrics).expect("the metrics file");
    for line in [
        "snaprotd_job_last_run_success{job_id=\"fleet@5\",policy=\"fleet\",server=\"5\"} 1",
        "snaprotd_owned_snapshots{job_id=\"fleet@5\",policy=\"fleet\",server=\"5\"} 1",
        "snaprotd_api_requests_total{method=\"POST\"} 1",
        "# TYPE snaprotd_job_last_run_duration_seconds gauge",
        "# TYPE snaprotd_api_errors_total counter",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(text.contains("snaprotd_job_last_run_timestamp_seconds{job_id=\"fleet@5\""));

    // The daemon rewrites it after each job.
    env.sim.state().requests.clear();
    std::fs::remove_file(&metrics).unwrap();
    let every_2s = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("@yearly", "*/2 * * * * *")
        .replace(
            "keep = 2",
            "keep = 2\nsnapshot_name = \"{policy}-%Y%m%d-%H%M%S\"",
        );
    std::fs::write(&env.config, every_2s).unwrap();
    let mut d = env.start_daemon(&["run"], &[]).await;
    assert!(eventually(15, || metrics.exists()).await, "{}", d.log());
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
}
