//! `snaprotd coverage`: the restore points a policy's keep holds over the coming days,
//! from the real binary, checked against restic's rules written on their own.

mod common;
#[path = "common/restic.rs"]
mod restic;

use chrono::{DateTime, NaiveDate, Utc};
use common::*;

const TIERED: &str = r#"
[[policy]]
name = "tiered"
servers = [1, 2]
schedule = "0 0 * * *"
keep = { daily = 2, weekly = 2 }

[[policy]]
name = "plain"
servers = [3]
schedule = "0 */6 * * *"
timezone = "Europe/Berlin"
keep = 2
"#;

fn json(out: &Output) -> serde_json::Value {
    assert_eq!(out.code, 0, "{}", out.all());
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[tokio::test(flavor = "multi_thread")]
async fn after_30_days_a_daily_policy_holds_what_restics_rules_keep() {
    let env = Env::new().await;
    env.write_config(TIERED);
    let v = json(
        &env.snaprotd(&["coverage", "--policy", "tiered", "--days", "30", "--json"])
            .await,
    );
    assert_eq!(v["version"], 1, "{v}");
    let jobs = v["jobs"].as_array().unwrap();
    let names: Vec<&str> = jobs.iter().map(|j| j["job"].as_str().unwrap()).collect();
    assert_eq!(names, ["tiered@1", "tiered@2"]);
    let days = jobs[0]["days"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    let date = |d: &serde_json::Value| d["date"].as_str().unwrap().parse::<NaiveDate>().unwrap();
    let first = date(&days[0]);
    for (i, d) in days.iter().enumerate() {
        assert_eq!(date(d), first + chrono::Duration::days(i as i64), "{d}");
    }
    // Fires at every midnight (UTC) after the first day's start, to the last day's end.
    let fires: Vec<DateTime<Utc>> = (1..=29)
        .map(|i| {
            (first + chrono::Duration::days(i))
                .and_time(chrono::NaiveTime::MIN)
                .and_utc()
        })
        .collect();
    let kept = restic::restic(&[("daily", 2), ("weekly", 2)], chrono_tz::UTC, &fires);
    let expected: Vec<String> = kept
        .into_iter()
        .map(|i| fires[i].to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .collect();
    let last: Vec<&str> = days[29]["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(last, expected);
    // Today has no fire yet (it is past midnight); no day holds more than the tiers.
    assert_eq!(days[0]["kept"], serde_json::json!([]));
    assert!(
        days.iter()
            .all(|d| d["kept"].as_array().unwrap().len() <= 4)
    );
    assert_eq!(
        jobs[0]["keep"],
        serde_json::json!({"daily": 2, "weekly": 2})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_timeline_shows_a_row_per_job_and_a_legend() {
    let env = Env::new().await;
    env.write_config(TIERED);
    let out = env.snaprotd(&["coverage", "--days", "10"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    for text in [
        "week of ",
        "tiered@1 ",
        "tiered@2 ",
        "plain@3 ",
        "h under a day",
        "· none",
    ] {
        assert!(out.stdout.contains(text), "no {text:?} in:\n{}", out.stdout);
    }
    // Sensible widths, whatever the number of days.
    let out = env.snaprotd(&["coverage", "--days", "120"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let widest = out.stdout.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(
        widest <= 100,
        "a line of {widest} characters:\n{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn coverage_filters_by_policy_and_server_and_names_an_unknown_policy() {
    let env = Env::new().await;
    env.write_config(TIERED);
    let v = json(
        &env.snaprotd(&["coverage", "--server", "2", "--json", "--days", "2"])
            .await,
    );
    let names: Vec<&str> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tiered@2"]);
    let v = json(
        &env.snaprotd(&["coverage", "--policy", "plain", "--json", "--days", "2"])
            .await,
    );
    assert_eq!(v["jobs"][0]["job"], "plain@3");
    assert_eq!(v["jobs"][0]["timezone"], "Europe/Berlin");
    assert_eq!(v["jobs"].as_array().unwrap().len(), 1);

    let out = env.snaprotd(&["coverage", "--policy", "nope"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr
            .contains("no policy named \"nope\" (configured: tiered, plain)"),
        "{}",
        out.stderr
    );
    let out = env.snaprotd(&["coverage", "--days", "0"]).await;
    assert_eq!(out.code, 2, "{}", out.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn coverage_needs_no_token_and_check_points_to_it_for_tiers() {
    let env = Env::new().await;
    std::fs::write(
        &env.config,
        format!(
            "[api]\ntoken_file = \"{}\"\n{TIERED}",
            env.dir.path().join("no-such-token").display()
        ),
    )
    .unwrap();
    let out = env.snaprotd(&["coverage", "--days", "3"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(env.sim.state().requests.is_empty());

    env.write_config(TIERED);
    let out = env.snaprotd(&["check"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains(
            "keep          daily 2 + weekly 2 = 4 (see the restore points it holds: \
             snaprotd coverage --policy tiered)"
        ),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("coverage --policy plain"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_firing_too_often_is_left_out_with_the_days_that_would_show_it() {
    let env = Env::new().await;
    env.write_config(&format!(
        "{TIERED}\n[[policy]]\nname = \"fast\"\nservers = [4]\nschedule = \"* * * * * *\"\n\
         keep = 2\nsnapshot_name = \"{{policy}}-%Y%m%d-%H%M%S\"\n"
    ));
    let out = env.snaprotd(&["coverage", "--days", "35"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("tiered@1") && out.stdout.contains("plain@3"),
        "{}",
        out.all()
    );
    assert!(
        out.stdout.contains(
            "fast@4: policy fast fires more than 200000 times in 35 days, the most coverage plays for a job; --days 2 shows it"
        ),
        "{}",
        out.all()
    );
    let v = json(&env.snaprotd(&["coverage", "--days", "35", "--json"]).await);
    assert_eq!(v["skipped"][0]["job"], "fast@4", "{v}");
    // Alone, it is an error that says the same.
    let out = env.snaprotd(&["coverage", "--policy", "fast"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("--days 2 shows it"), "{}", out.all());
    let out = env
        .snaprotd(&["coverage", "--policy", "fast", "--days", "1"])
        .await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("(1 day)"), "{}", out.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_naming_its_servers_shows_those_last_found_or_one_row_for_all() {
    let env = Env::new().await;
    env.sim.add_server(11, "web-1");
    env.sim.add_server(12, "web-2");
    env.write_config(
        "[[policy]]\nname = \"web\"\nservers = [\"web-*\"]\nschedule = \"@daily\"\nkeep = { daily = 2 }\n",
    );
    let v = json(&env.snaprotd(&["coverage", "--days", "3", "--json"]).await);
    assert_eq!(v["jobs"][0]["job"], "web@web-*", "{v}");
    assert!(v["jobs"][0]["server"].is_null(), "{v}");
    // Once a run found them, they are known.
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let v = json(&env.snaprotd(&["coverage", "--days", "3", "--json"]).await);
    let jobs: Vec<&str> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["web@11", "web@12"], "{v}");
    let v = json(
        &env.snaprotd(&["coverage", "--server", "12", "--json"])
            .await,
    );
    assert_eq!(v["jobs"][0]["job"], "web@12", "{v}");
    // And status shows them, from the run alone.
    let status = env.snaprotd(&["status", "--json"]).await;
    assert!(
        status.stdout.contains("\"job\": \"web@12\""),
        "{}",
        status.all()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_warns_of_tiers_that_never_all_count_on_the_schedule() {
    let env = Env::new().await;
    let header = env.header().replacen(
        "[defaults]\n",
        "[defaults]\nkeep = { weekly = 1, monthly = 1 }\n",
        1,
    );
    let policies = "[[policy]]\nname = \"nightly\"\nservers = [1]\nschedule = \"30 2 * * *\"\n\
         [[policy]]\nname = \"spread\"\nservers = [2]\nschedule = \"30 2 * * *\"\n\
         keep = { daily = 2, weekly = 2, monthly = 1 }\n";
    std::fs::write(&env.config, format!("{header}{policies}")).unwrap();
    let out = env.snaprotd(&["check"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr.contains(
            "key `defaults.keep`: weekly 1 and monthly 1 add(s) no restore point on the schedule 30 2 * * *"
        ),
        "{}",
        out.all()
    );
    // Of daily, weekly and monthly tiers over a nightly schedule, only the monthly one
    // adds nothing (this month's newest is today's).
    assert!(
        out.stderr
            .contains("key `policy[spread].keep`: monthly 1 add(s) no restore point"),
        "{}",
        out.all()
    );
}
