//! Tiered retention (`keep = { daily = 2, weekly = 2, … }`): the rule checked against an
//! implementation of restic's `forget --keep-*` written here on its own over generated
//! histories, and a run against the simulator that prunes what that rule prunes.

mod common;
#[path = "common/restic.rs"]
mod restic;

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::*;
use restic::restic;
use snaprotd::config::{Keep, Tier};
use snaprotd::rotation::retention;

fn keep_of(tiers: &[(&str, usize)]) -> Keep {
    Keep::tiers(tiers.iter().map(|(t, n)| (Tier::from_key(t).unwrap(), *n))).unwrap()
}

/// splitmix64: a small deterministic generator, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[test]
fn the_rule_is_restics_over_generated_histories() {
    let zones = [
        chrono_tz::UTC,
        chrono_tz::Europe::Berlin,
        chrono_tz::America::New_York,
        chrono_tz::Australia::Lord_Howe, // a half-hour daylight saving shift
        chrono_tz::Asia::Kolkata,
        chrono_tz::Pacific::Chatham,
        chrono_tz::Pacific::Kiritimati, // +14:00
    ];
    let at = |y, m, d, h| Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap();
    // Around clock changes, ISO week 53 (2020, 2026) and turns of the year.
    let anchors = [
        at(2026, 3, 29, 1),  // Europe springs forward
        at(2026, 10, 25, 1), // Europe falls back
        at(2026, 3, 8, 7),   // New York springs forward
        at(2026, 11, 1, 6),  // New York falls back
        at(2026, 4, 4, 15),  // Lord Howe falls back half an hour
        at(2026, 12, 31, 12),
        at(2020, 12, 31, 12),
        at(2027, 1, 1, 0),
        at(2026, 11, 24, 2),
    ];
    let spreads = [6 * 3600, 4 * 86_400, 60 * 86_400, 3 * 365 * 86_400];
    let names = ["last", "hourly", "daily", "weekly", "monthly", "yearly"];
    let mut rng = Rng(14);
    for case in 0..4000 {
        let zone = *rng.pick(&zones);
        let anchor = *rng.pick(&anchors);
        let spread = *rng.pick(&spreads) as i64;
        let mut times: Vec<DateTime<Utc>> = (0..rng.below(30))
            .map(|_| {
                let offset = rng.below(2 * spread as u64) as i64 - spread;
                // Often on the minute, as fires are; sometimes anywhere.
                let offset = if rng.below(2) == 0 {
                    offset - offset.rem_euclid(60)
                } else {
                    offset
                };
                anchor + Duration::seconds(offset)
            })
            .collect();
        let mut tiers: Vec<(&str, usize)> = Vec::new();
        for t in names {
            if rng.below(3) == 0 {
                tiers.push((t, 1 + rng.below(6) as usize));
            }
        }
        if tiers.is_empty() {
            tiers.push((*rng.pick(&names), 1 + rng.below(6) as usize));
        }
        // Newest first, as the rule takes them.
        times.sort_by(|a, b| b.cmp(a));
        let verdicts = retention::apply(&keep_of(&tiers), zone, &times);
        let ours: BTreeSet<usize> = verdicts
            .iter()
            .enumerate()
            .filter(|(_, held)| !held.is_empty())
            .map(|(i, _)| i)
            .collect();
        let theirs = restic(&tiers, zone, &times);
        assert_eq!(
            ours,
            theirs,
            "case {case}: keep {tiers:?} in {zone} over {:?}",
            times
                .iter()
                .map(|t| t.with_timezone(&zone).to_rfc3339())
                .collect::<Vec<_>>()
        );
        let total: usize = tiers.iter().map(|(_, n)| n).sum();
        assert!(
            ours.len() <= total,
            "case {case}: more kept than the tiers add up to"
        );
    }
}

const TIERED: &str = r#"
[[policy]]
name = "tiered"
servers = [1]
schedule = "30 2 * * *"
timezone = "Europe/Berlin"
keep = { daily = 1, weekly = 2, monthly = 2 }
"#;

const TIERS: &[(&str, usize)] = &[("daily", 1), ("weekly", 2), ("monthly", 2)];

/// Snapshots of policy `tiered` made over the last seven weeks at odd hours, and a
/// manual one; their creation times, oldest first.
fn seed(env: &Env) -> Vec<DateTime<Utc>> {
    env.sim.add_server(1, "web");
    let mut rng = Rng(7);
    let now = Utc::now();
    let mut times: Vec<DateTime<Utc>> = (1..=14)
        .map(|i| now - Duration::hours(i * 80 + rng.below(20) as i64))
        .collect();
    times.sort();
    let mut st = env.sim.state();
    for t in &times {
        st.add_snapshot(
            1,
            &format!("tiered-{}", t.format("%Y%m%d-%H%M")),
            "completed",
            *t,
        );
    }
    st.add_snapshot(1, "by-hand", "completed", now - Duration::days(3));
    times
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tiered_policy_prunes_what_restics_rules_prune() {
    let env = Env::new().await;
    let seeded = seed(&env);
    env.write_config(TIERED);

    // The plan says which tier keeps each one, and why each other one goes.
    let out = env.snaprotd(&["once", "--dry-run"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    for line in [
        "  kept by      daily ",
        "  would keep   tiered-",
        "before creating: making room under the cap (retention would delete it anyway: \
         beyond keep: not the newest in any of the 1 most recent day, 2 most recent weeks \
         or 2 most recent months)",
    ] {
        assert!(out.stdout.contains(line), "no {line:?} in:\n{}", out.stdout);
    }
    let out = env.snaprotd(&["once", "--dry-run", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let plan = &v["plans"][0];
    assert_eq!(plan["kept_by"][0]["tier"], "daily", "{plan}");
    assert_eq!(plan["make_room"][0]["reason"], "make_room", "{plan}");
    assert!(
        plan["keep"][0]["kept_by"][0]["period"].is_string(),
        "{plan}"
    );
    assert_eq!(env.names(1).len(), 15, "a dry run deleted");

    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr.contains("keeping snapshot tiered-"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("beyond keep: not the newest in any of the 1 most recent day, 2 most"),
        "{}",
        out.stderr
    );

    // What is left is what restic's rules keep of every snapshot, the new one included.
    let st = env.sim.state();
    let left: BTreeSet<String> = st
        .snapshots_of(1)
        .iter()
        .filter(|s| s.name.starts_with("tiered-"))
        .map(|s| s.name.clone())
        .collect();
    let new = st
        .snapshots_of(1)
        .into_iter()
        .filter(|s| s.name.starts_with("tiered-"))
        .max_by_key(|s| s.created_at)
        .unwrap()
        .clone();
    drop(st);
    let mut all: Vec<(DateTime<Utc>, String)> = seeded
        .iter()
        .map(|t| (*t, format!("tiered-{}", t.format("%Y%m%d-%H%M"))))
        .collect();
    all.push((new.created_at, new.name.clone()));
    let times: Vec<DateTime<Utc>> = all.iter().map(|(t, _)| *t).collect();
    let expected: BTreeSet<String> = restic(TIERS, chrono_tz::Europe::Berlin, &times)
        .into_iter()
        .map(|i| all[i].1.clone())
        .collect();
    assert_eq!(left, expected);
    assert!(left.contains(&new.name));
    // Last week's and last month's newest besides the new one (one snapshot, when they
    // are the same).
    assert!(left.len() >= 2, "{left:?}");
    assert!(env.names(1).contains(&"by-hand".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sum_of_a_policys_tiers_counts_against_the_cap() {
    let env = Env::new().await;
    env.write_config(&format!(
        "{TIERED}\n[[policy]]\nname = \"plain\"\nservers = [1]\nschedule = \"@daily\"\nkeep = 2\n"
    ));
    let out = env.snaprotd(&["check"]).await;
    assert_eq!(out.code, 78, "{}", out.all());
    assert!(
        out.stderr.contains(
            "server 1 would need 7 snapshots (tiered keeps daily 1 + weekly 2 + monthly 2 = 5, \
             plain keeps 2) but the provider allows 5; lower keep"
        ),
        "{}",
        out.stderr
    );
}
