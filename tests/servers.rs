//! Servers named by name, glob or "all": the real binary against the simulator, whose
//! `GET /servers/` lists the account's servers.

mod common;

use common::{Env, eventually};
use snaprotd::sim::{Fault, FaultAction};

/// Two policies naming their servers, firing together every 2 seconds.
const BY_NAME: &str = r#"
[[policy]]
name = "web"
servers = ["web-*"]
schedule = "*/2 * * * * *"
keep = 2
snapshot_name = "{policy}-%Y%m%d-%H%M%S"

[[policy]]
name = "every"
servers = "all"
schedule = "*/2 * * * * *"
keep = 2
snapshot_name = "{policy}-%Y%m%d-%H%M%S"
"#;

fn snapshots_of(env: &Env, server: u64, policy: &str) -> usize {
    env.names(server)
        .iter()
        .filter(|n| n.starts_with(&format!("{policy}-")))
        .count()
}

fn server_listings(env: &Env) -> usize {
    env.sim
        .state()
        .requests
        .iter()
        .filter(|r| {
            r.method == "GET"
                && (r.path == "/api/v1/servers/" || r.path.starts_with("/api/v1/servers/?"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_added_while_the_daemon_runs_is_picked_up_and_one_deleted_is_dropped() {
    let env = Env::new().await;
    env.sim.add_server(11, "web-1");
    env.sim.add_server(12, "db-1");
    env.write_config(BY_NAME);
    let mut d = env.start_daemon(&[], &[]).await;
    assert!(
        eventually(15, || snapshots_of(&env, 11, "web") >= 1
            && snapshots_of(&env, 12, "every") >= 1)
        .await,
        "{}",
        d.log()
    );
    assert_eq!(snapshots_of(&env, 12, "web"), 0, "db-1 is not web-*");

    env.sim.add_server(13, "web-2");
    assert!(
        eventually(15, || snapshots_of(&env, 13, "web") >= 1).await,
        "a server added while the daemon runs is not picked up:\n{}",
        d.log()
    );
    d.wait_log(
        "server 13 (web-2) matches the servers of policy web (web-*); job web@13 added",
        5,
    )
    .await;

    // Status shows the jobs found, without asking the provider.
    let status = env.snaprotd(&["status", "--json"]).await;
    assert!(
        status.stdout.contains("\"job\": \"web@13\""),
        "{}",
        status.all()
    );

    env.sim.state().servers.remove(&11);
    d.wait_log(
        "server 11 no longer matches the servers of policy web (web-*); job web@11 dropped",
        10,
    )
    .await;
    let status = env.snaprotd(&["status", "--json"]).await;
    assert!(
        !status.stdout.contains("\"job\": \"web@11\""),
        "{}",
        status.all()
    );

    // One listing of the servers per fire for both policies and all their servers,
    // not one per job: count the fires by the names they gave.
    let fires = {
        let st = env.sim.state();
        let mut stamps: Vec<String> = st
            .snapshots
            .values()
            .filter_map(|s| s.name.rsplit_once('-').map(|(_, t)| t.to_string()))
            .collect();
        stamps.sort();
        stamps.dedup();
        stamps.len()
    };
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
    let listings = server_listings(&env);
    assert!(
        listings <= fires + 3,
        "{listings} server listings for {fires} fires (deletes prune old snapshots, so a fire may have left no name: allow a few)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn once_runs_what_names_and_globs_match_and_says_what_matched_nothing() {
    let env = Env::new().await;
    env.sim.add_server(1, "mail");
    env.sim.add_server(11, "web-1");
    env.sim.add_server(12, "web-2");
    env.sim.add_server(21, "db-01");
    env.sim.add_server(22, "db-02");
    env.write_config(
        r#"
[[policy]]
name = "mixed"
servers = [1, "db-01", "web-*", "cache-*"]
schedule = "@daily"
keep = 2
"#,
    );
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    for job in ["mixed@1", "mixed@11", "mixed@12", "mixed@21"] {
        assert!(out.stdout.contains(job), "{job} missing:\n{}", out.all());
    }
    assert!(!out.stdout.contains("mixed@22"), "{}", out.all());
    assert!(
        out.stderr.contains(
            "\"cache-*\" in the servers of policy mixed matches no server of the account"
        ),
        "{}",
        out.all()
    );
    // --server picks one of the servers a glob matched.
    let out = env.snaprotd(&["once", "--server", "12", "--dry-run"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("mixed@12") && !out.stdout.contains("mixed@11"),
        "{}",
        out.all()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_shows_what_each_pattern_matches_and_refuses_a_server_two_policies_overfill() {
    let env = Env::new().await;
    env.sim.add_server(11, "web-1");
    env.sim.add_server(12, "web-2");
    env.sim.add_server(30, "mail");
    let fine = r#"
[[policy]]
name = "web"
servers = ["web-*", 30, "mail", "cache-*"]
schedule = "@daily"
keep = 2
"#;
    env.write_config(fine);
    let out = env.snaprotd(&["check"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .contains("servers       30, web-*, mail, cache-*"),
        "{}",
        out.all()
    );
    // A server listed by id that a name matches too is shown.
    assert!(
        out.stdout
            .contains("matching now  web-1 (11), web-2 (12), mail (30)"),
        "{}",
        out.all()
    );
    assert!(
        out.stderr.contains(
            "snaprotd.toml:20:11: key `policy[web].servers`: \"cache-*\" matches no server of the account now"
        ),
        "{}",
        out.all()
    );
    let json = env.snaprotd(&["check", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect(&json.stdout);
    assert_eq!(
        v["policies"][0]["server_patterns"],
        serde_json::json!(["web-*", "mail", "cache-*"])
    );
    assert_eq!(
        v["policies"][0]["matched_servers"],
        serde_json::json!([
            {"id": 11, "name": "web-1"},
            {"id": 12, "name": "web-2"},
            {"id": 30, "name": "mail"}
        ])
    );
    assert_eq!(v["warnings"][0]["key"], "policy[web].servers", "{v}");

    // Two policies whose patterns cover one server past the cap: refused as ids are.
    env.write_config(
        r#"
[[policy]]
name = "web"
servers = ["web-*"]
schedule = "@daily"
keep = 3

[[policy]]
name = "mail"
servers = ["mail", "web-2"]
schedule = "@daily"
keep = 3
"#,
    );
    let out = env.snaprotd(&["check"]).await;
    assert_eq!(out.code, 78, "{}", out.all());
    assert!(
        out.stderr.contains(
            "snaprotd.toml:20:11: key `policy[web].servers`: server 12 (web-2) matches the servers of policy web but gets no job of it: server 12 would need 6 snapshots"
        ),
        "{}",
        out.all()
    );
    // The daemon and once give that server no job of either policy.
    let run = env.snaprotd(&["once"]).await;
    assert!(!run.stdout.contains("@12"), "{}", run.all());
    assert!(
        run.stdout.contains("web@11") && run.stdout.contains("mail@30"),
        "{}",
        run.all()
    );
    assert!(
        run.stderr
            .contains("server 12 (web-2) matches the servers of policy mail but gets no job of it"),
        "{}",
        run.all()
    );

    env.write_config(fine);
    // A provider that cannot be asked: the file is still fine, and check says so.
    env.sim.inject(Fault {
        times: 100,
        ..Fault::status("GET", "/servers/", 401, None)
    });
    let out = env.snaprotd(&["check"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .contains("matching      not known: cannot list the servers"),
        "{}",
        out.all()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_listing_that_does_not_add_up_is_refused_and_nothing_runs_on_its_word() {
    let env = Env::new().await;
    env.sim.add_server(1, "mail");
    env.sim.add_server(11, "web-1");
    env.write_config(
        r#"
[[policy]]
name = "p"
servers = [1, "web-*"]
schedule = "@daily"
keep = 2
"#,
    );
    env.sim.inject(Fault::new(
        "GET",
        "/servers/",
        FaultAction::ConflictingEntry,
    ));
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    // The server listed by id still runs, as in the daemon.
    assert_eq!(env.names(1).len(), 1, "{}", out.all());
    assert!(
        out.stderr
            .contains("server 11 is listed twice, as \"web-1\" and as \"web-1-renamed\""),
        "{}",
        out.all()
    );
    assert!(env.names(11).is_empty(), "{:?}", env.names(11));

    // A server shown twice the same way (a page that shifted) counts once.
    env.sim
        .inject(Fault::new("GET", "/servers/", FaultAction::RepeatEntry));
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(env.names(11).len(), 1, "{}", out.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_written_wrong_are_refused_with_what_to_write() {
    let env = Env::new().await;
    for (servers, says) in [
        ("\"web-*\"", "write servers = [\"web-*\"]"),
        ("[\"all\"]", "\"all\" stands alone: write servers = \"all\""),
        ("[\"web-[\"]", "\"web-[\" is not a glob"),
        ("[1, \"a\", \"a\"]", "\"a\" is listed twice"),
        (
            "[1, true]",
            "expected server ids (whole numbers) or names in quotes",
        ),
    ] {
        env.write_config(&format!(
            "[[policy]]\nname = \"p\"\nservers = {servers}\nschedule = \"@daily\"\n"
        ));
        let out = env.snaprotd(&["check"]).await;
        assert_eq!(out.code, 78, "{servers}: {}", out.all());
        assert!(
            out.stderr.contains("key `policy[p].servers`"),
            "{servers}: {}",
            out.all()
        );
        assert!(out.stderr.contains(says), "{servers}: {}", out.all());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn in_the_daemon_a_failing_server_listing_holds_up_no_server_listed_by_id() {
    let env = Env::new().await;
    env.sim.add_server(1, "mail");
    env.sim.add_server(11, "web-1");
    env.write_config(
        r#"
[[policy]]
name = "p"
servers = [1, "web-*"]
schedule = "*/2 * * * * *"
keep = 2
snapshot_name = "{policy}-%Y%m%d-%H%M%S"
"#,
    );
    env.sim.inject(Fault {
        times: 1000,
        ..Fault::status("GET", "/servers/", 503, None)
    });
    let mut d = env.start_daemon(&[], &[]).await;
    assert!(
        eventually(15, || snapshots_of(&env, 1, "p") >= 2).await,
        "{}",
        d.log()
    );
    d.wait_log("cannot list the account's servers for policy p", 5)
        .await;
    assert!(env.names(11).is_empty(), "{:?}", env.names(11));
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_listing_of_many_servers_is_said_in_one_line() {
    let env = Env::new().await;
    for id in 1..=8 {
        env.sim.add_server(id, &format!("node-{id}"));
    }
    env.write_config(
        "[[policy]]\nname = \"all\"\nservers = \"all\"\nschedule = \"@daily\"\nkeep = 2\n",
    );
    let mut d = env.start_daemon(&[], &[]).await;
    d.wait_log(
        "8 servers match the servers of policy all (all): 1 (node-1), 2 (node-2), 3 (node-3), 4 (node-4), 5 (node-5) and 3 more; their jobs are added",
        10,
    )
    .await;
    let status = env.snaprotd(&["status", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&status.stdout).expect(&status.stdout);
    assert_eq!(v["jobs"].as_array().map(Vec::len), Some(8), "{v}");
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn catch_up_runs_a_missed_fire_of_a_server_found_by_name_but_not_of_a_new_one() {
    let env = Env::new().await;
    env.sim.add_server(11, "web-1");
    env.sim.add_server(12, "web-2");
    env.write_config(
        "[[policy]]\nname = \"nightly\"\nservers = [\"web-*\"]\nschedule = \"0 0 * * *\"\nkeep = 1\n",
    );
    // web@11 was found two days ago; web-2 is new to the daemon.
    let state = env.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let two_days_ago = chrono::Utc::now() - chrono::Duration::days(2);
    std::fs::write(
        state.join("known-jobs.json"),
        format!("{{\"nightly@11\": \"{}\"}}", two_days_ago.to_rfc3339()),
    )
    .unwrap();
    let mut d = env.start_daemon(&["run"], &[]).await;
    d.wait_log("catch-up: the fire at", 10).await;
    d.wait_log("rotation done", 10).await;
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
    assert_eq!(env.names(11).len(), 1, "{}", d.log());
    assert!(
        env.names(12).is_empty(),
        "a server new to the daemon missed nothing:\n{}",
        d.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listing_read_before_a_reload_runs_no_server_the_new_patterns_leave_out() {
    let env = Env::new().await;
    env.sim.add_server(11, "web-1");
    env.sim.add_server(12, "web-legacy");
    let policy = |servers: &str| {
        format!(
            "[[policy]]\nname = \"web\"\nservers = {servers}\nschedule = \"*/2 * * * * *\"\n\
             keep = 2\nsnapshot_name = \"{{policy}}-%Y%m%d-%H%M%S\"\n"
        )
    };
    env.write_config(&policy("[\"web-*\"]"));
    let mut d = env.start_daemon(&["run"], &[]).await;
    assert!(
        eventually(15, || snapshots_of(&env, 12, "web") >= 1).await,
        "{}",
        d.log()
    );
    // The next fire's listing is slow; the configuration narrows meanwhile.
    env.sim.inject(Fault::new(
        "GET",
        "/servers/",
        FaultAction::Latency { ms: 2500 },
    ));
    assert!(
        eventually(10, || env.sim.state().faults.is_empty()).await,
        "{}",
        d.log()
    );
    env.write_config(&policy("[\"web-1\"]"));
    let reloaded = chrono::Utc::now();
    d.signal("HUP");
    d.wait_log("configuration reloaded", 5).await;
    d.wait_log(
        "the configuration was reloaded while the servers were listed",
        10,
    )
    .await;
    let later = snapshots_of(&env, 11, "web");
    assert!(
        eventually(10, || snapshots_of(&env, 11, "web") > later).await,
        "{}",
        d.log()
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
    let st = env.sim.state();
    let after: Vec<&str> = st
        .snapshots
        .values()
        .filter(|s| s.server_id == 12 && s.created_at > reloaded)
        .map(|s| s.name.as_str())
        .collect();
    assert!(
        after.is_empty(),
        "web-legacy was snapshotted after the reload: {after:?}\n{}",
        d.log()
    );
}
