//! Nothing from outside is trusted before anything is deleted: a listing that repeats
//! an entry, mixes in other servers or leaves the awaited snapshot out once; a create
//! answer about another snapshot; a body that carries the token or never ends.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::{Env, TOKEN, days_ago, eventually, request_log};
use snaprotd::sim::{Fault, FaultAction, SimState};

fn owned_name(days: i64) -> String {
    days_ago(days).format("daily-%Y%m%d-%H%M%S").to_string()
}

fn policy(servers: &str, keep: u32, stop: bool) -> String {
    format!(
        r#"
[[policy]]
name = "daily"
servers = [{servers}]
schedule = "0 3 * * *"
keep = {keep}
stop_server = {stop}
snapshot_name = "{{policy}}-%Y%m%d-%H%M%S"
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_listing_entry_does_not_make_room_with_a_kept_snapshot() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    let (old2, old1) = {
        let mut st = env.sim.state();
        st.add_snapshot(1, "manual-a", "completed", days_ago(30));
        st.add_snapshot(1, "manual-b", "completed", days_ago(20));
        st.add_snapshot(1, &owned_name(3), "completed", days_ago(3));
        let old2 = st.add_snapshot(1, &owned_name(2), "completed", days_ago(2));
        let old1 = st.add_snapshot(1, &owned_name(1), "completed", days_ago(1));
        (old2, old1)
    };
    // Every listing shows its newest entry twice; its count stays true.
    env.sim
        .inject(Fault::new("GET", "/snapshots/", FaultAction::RepeatEntry).times(1000));
    env.write_config(&policy("1", 3, false));
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let st = env.sim.state();
    assert!(
        st.snapshots.contains_key(&old2) && st.snapshots.contains_key(&old1),
        "a snapshot keep = 3 protects was deleted:\n{}\n{}",
        request_log(&st),
        out.all()
    );
    assert_eq!(st.snapshots_of(1).len(), 5, "{}", request_log(&st));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listing_shown_two_ways_deletes_nothing() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    {
        let mut st = env.sim.state();
        for days in [4, 3, 2, 1] {
            st.add_snapshot(1, &owned_name(days), "completed", days_ago(days));
        }
    }
    env.sim
        .inject(Fault::new("GET", "/snapshots/", FaultAction::ConflictingEntry).times(1000));
    env.write_config(&policy("1", 2, false));
    let out = env.snaprotd(&["once"]).await;
    let st = env.sim.state();
    let deletes = st.requests.iter().filter(|r| r.method == "DELETE").count();
    assert_eq!(deletes, 0, "{}\n{}", request_log(&st), out.all());
    assert!(out.all().contains("does not add up"), "{}", out.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listing_with_other_servers_snapshots_touches_only_its_own() {
    let env = Env::new().await;
    env.sim.add_server(1, "web");
    env.sim.add_server(2, "db");
    let theirs: Vec<u64> = {
        let mut st = env.sim.state();
        [3, 2, 1]
            .iter()
            .map(|d| st.add_snapshot(2, &owned_name(*d), "completed", days_ago(*d)))
            .collect()
    };
    // The provider ignores ?server_id= and lists the whole account.
    env.sim
        .inject(Fault::new("GET", "/snapshots/", FaultAction::IgnoreServerFilter).times(1000));
    env.write_config(&policy("1, 2", 2, false));
    let out = env.snaprotd(&["once", "--server", "1"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let st = env.sim.state();
    for id in theirs {
        assert!(
            st.snapshots.contains_key(&id),
            "server 1's job deleted server 2's snapshot {id}:\n{}\n{}",
            request_log(&st),
            out.all()
        );
    }
    assert!(out.all().contains("other servers"), "{}", out.all());
}

/// The first `POST /servers/1/start/`, and when the new snapshot completed.
fn start_and_completion(
    st: &SimState,
    name: &str,
) -> (Option<chrono::DateTime<Utc>>, Option<chrono::DateTime<Utc>>) {
    let start = st
        .requests
        .iter()
        .find(|r| r.method == "POST" && r.path == "/servers/1/start/")
        .map(|r| r.at);
    let done = st
        .snapshots
        .values()
        .find(|s| s.name == name)
        .and_then(|s| s.finishes_at);
    (start, done)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_missing_from_one_listing_is_still_waited_for() {
    let env = Env::with_create_time(Duration::from_millis(1500)).await;
    env.sim.add_server(1, "db");
    env.write_config(&policy("1", 2, true));
    let mut command = env.command(&["once"]);
    let once = tokio::spawn(async move { command.output().await.expect("once runs") });
    // Once the snapshot is being made, the next listing leaves it out.
    assert!(
        eventually(10, || env
            .sim
            .state()
            .snapshots_of(1)
            .iter()
            .any(|s| s.status == "in_progress"))
        .await
    );
    env.sim.inject(Fault::new(
        "GET",
        "/snapshots/",
        FaultAction::OmitInProgress,
    ));
    let out = once.await.expect("once");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    let st = env.sim.state();
    let name = st.snapshots_of(1)[0].name.clone();
    let (start, done) = start_and_completion(&st, &name);
    assert!(
        start.is_some() && start >= done,
        "the server was started at {start:?}, before its snapshot completed at {done:?}:\n{}\n{text}",
        request_log(&st)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_answer_about_another_snapshot_is_not_trusted() {
    let env = Env::with_create_time(Duration::from_millis(1500)).await;
    env.sim.add_server(1, "db");
    env.sim
        .state()
        .add_snapshot(1, "before-upgrade", "completed", days_ago(5));
    env.sim.inject(Fault::new(
        "POST",
        "/snapshots/",
        FaultAction::AnswerOtherSnapshot,
    ));
    env.write_config(&policy("1", 2, true));
    let out = env.snaprotd(&["once", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let st = env.sim.state();
    let new = st
        .snapshots_of(1)
        .into_iter()
        .find(|s| s.name.starts_with("daily-"))
        .cloned()
        .expect("the new snapshot");
    let (start, done) = start_and_completion(&st, &new.name);
    assert!(
        start.is_some() && start >= done,
        "the server was started at {start:?}, before its snapshot completed at {done:?}:\n{}\n{}",
        request_log(&st),
        out.all()
    );
    assert!(
        out.stdout.contains(&format!("\"name\": \"{}\"", new.name)),
        "the run ended on another snapshot:\n{}",
        out.all()
    );
}

/// Every prefix of the token of `min` characters or more.
fn token_parts(min: usize) -> Vec<&'static str> {
    (min..=TOKEN.len()).map(|n| &TOKEN[..n]).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_in_a_body_never_shows_whatever_its_offset() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    env.write_config(&policy("1", 2, false));
    // Around the 60-character excerpt of an unreadable body, and past it.
    for offset in (40..75).step_by(3) {
        let body = format!("{}{{token}} and more text after it", "x".repeat(offset));
        env.sim.inject(
            Fault::new(
                "GET",
                "/snapshots/",
                FaultAction::Body { status: 200, body },
            )
            .times(3),
        );
        let out = env.snaprotd(&["once"]).await;
        assert_eq!(out.code, 1, "{}", out.all());
        let record = std::fs::read_to_string(env.dir.path().join("state/runs/daily@1.json"))
            .unwrap_or_default();
        for part in token_parts(6) {
            assert!(
                !out.all().contains(part) && !record.contains(part),
                "offset {offset}: {part:?} of the token shows:\n{}\n{record}",
                out.all()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_body_is_cut_off() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    env.write_config(&policy("1", 2, false));
    env.sim
        .inject(Fault::new("GET", "/snapshots/", FaultAction::EndlessBody).times(10));
    let started = std::time::Instant::now();
    let out = env.snaprotd(&["list"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.all().contains("larger than 16 MiB"), "{}", out.all());
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// A provider whose bucket is smaller than our ceiling (20 requests a second, 5 at
/// once, against our 50): the budget learns its rate, and no rotation fails on 429s.
#[tokio::test(flavor = "multi_thread")]
async fn a_provider_with_a_small_bucket_fails_no_rotation() {
    const SERVERS: u64 = 60;
    let env = Env::with_options(snaprotd::sim::SimOptions {
        create_time: Duration::from_secs(1),
        rate_limit: Some(20.0),
        rate_burst: Some(5.0),
        ..common::fast_options()
    })
    .await;
    for id in 1..=SERVERS {
        env.sim.add_server(id, "s");
        env.sim
            .state()
            .add_snapshot(id, &owned_name(1), "completed", days_ago(1));
    }
    let servers: Vec<String> = (1..=SERVERS).map(|i| i.to_string()).collect();
    let header = env
        .header()
        .replace(
            "max_requests_per_second = 1000",
            "max_requests_per_second = 50",
        )
        .replace("[daemon]\n", "[daemon]\nmax_concurrent_jobs = 100\n")
        .replace("wait_timeout = \"5s\"", "wait_timeout = \"60s\"");
    std::fs::write(
        &env.config,
        format!("{header}\n{}", policy(&servers.join(", "), 1, false)),
    )
    .unwrap();
    let out = env.snaprotd(&["once", "--json"]).await;
    let st = env.sim.state();
    let total = st.requests.len();
    let limited = st.requests.iter().filter(|r| r.status == 429).count();
    assert_eq!(
        out.code,
        0,
        "{limited} of {total} answered 429:\n{}",
        out.all()
    );
    for id in 1..=SERVERS {
        let names = st.snapshot_names(id);
        assert!(
            names.len() == 1 && names[0] != owned_name(1),
            "server {id}: {names:?}"
        );
    }
    assert!(
        limited * 5 <= total,
        "{limited} of {total} requests were answered 429"
    );
}
