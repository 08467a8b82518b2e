//! One small table per rule of `checks.rs`: what passes, what is refused, and the
//! words the operator reads.

use std::collections::HashSet;
use std::time::Duration;

use super::*;
use crate::config::keep::{Keep, Tier};
use crate::config::raw::RawKeep;

fn at<T>(value: T) -> At<T> {
    At {
        value,
        span: 3..5,
        key: "k".into(),
    }
}

fn text(s: &str) -> At<String> {
    at(s.to_string())
}

/// The message of a refused value (its span and key checked on the way).
fn refused<T: fmt::Debug>(checked: Result<T, Problem>) -> String {
    let p = checked.unwrap_err();
    assert_eq!((p.span.clone(), p.key.as_str()), (Some(3..5), "k"));
    p.message
}

fn policy(name: &str, keep: usize, template: &str) -> Policy {
    Policy {
        name: name.into(),
        servers: vec![1],
        patterns: Vec::new(),
        schedule: Schedule::parse("@daily").unwrap(),
        timezone: Tz::UTC,
        keep: Keep::newest(keep),
        stop_server: false,
        snapshot_name: NameTemplate::parse(template).unwrap(),
        description: None,
        poll_interval: Duration::from_secs(1),
        wait_timeout: Duration::from_secs(1),
        stop_timeout: Duration::from_secs(1),
        catch_up: true,
        hooks: Default::default(),
    }
}

#[test]
fn durations_are_humantime_and_longer_than_zero() {
    assert_eq!(duration(&text("90s")), Ok(Duration::from_secs(90)));
    assert_eq!(duration(&text("1h 30m")), Ok(Duration::from_secs(5400)));
    assert_eq!(refused(duration(&text("0s"))), "must be longer than zero");
    assert!(refused(duration(&text("soon"))).starts_with("\"soon\" is not a duration ("));
    assert!(refused(duration(&text("30"))).ends_with("write e.g. \"30s\", \"10m\", \"1h\""));
}

#[test]
fn numbers_stay_within_their_range() {
    assert_eq!(int_in(&at(20), MAX_ATTEMPTS), Ok(20));
    assert_eq!(int_in(&at(1), MAX_ATTEMPTS), Ok(1));
    assert_eq!(
        refused(int_in(&at(21), MAX_ATTEMPTS)),
        "21 is out of range: must be 1 to 20"
    );
    assert_eq!(
        refused(int_in(&at(-1), MAX_CONCURRENT_JOBS)),
        "-1 is out of range: must be 1 to 100000"
    );
}

#[test]
fn the_base_url_is_https_or_loopback_http_without_credentials() {
    let ok = |s: &str| base_url(&text(s)).unwrap().to_string();
    assert_eq!(ok("https://api.example/v1/"), "https://api.example/v1");
    assert_eq!(ok("http://127.0.0.1:8080/api"), "http://127.0.0.1:8080/api");
    assert_eq!(ok("http://[::1]/api"), "http://[::1]/api");
    assert_eq!(ok("http://localhost/api"), "http://localhost/api");
    assert!(
        refused(base_url(&text("http://example.org")))
            .starts_with("http:// is allowed only for loopback")
    );
    assert_eq!(
        refused(base_url(&text("ftp://example.org"))),
        "scheme ftp:// is not supported; use https://"
    );
    assert_eq!(
        refused(base_url(&text("https://u:p@example.org"))),
        "must not carry credentials; the token goes in token_file"
    );
    assert!(refused(base_url(&text("not a url"))).starts_with("\"not a url\" is not a URL: "));
}

#[test]
fn a_policy_name_is_plain() {
    assert_eq!(plain_policy_name(&text("night-ly_2")), Ok(()));
    assert_eq!(
        refused(plain_policy_name(&text("night ly"))),
        "\"night ly\": use letters, digits, - and _ only"
    );
    assert!(refused(plain_policy_name(&text(""))).ends_with("use letters, digits, - and _ only"));
}

#[test]
fn a_policy_name_is_used_once() {
    let taken: HashSet<String> = ["a".to_string()].into();
    assert_eq!(unique_policy_name(&text("b"), &taken), Ok(()));
    assert_eq!(
        refused(unique_policy_name(&text("a"), &taken)),
        "a policy named \"a\" is already defined"
    );
}

#[test]
fn servers_are_listed_once_each_by_a_positive_id_or_a_name() {
    use super::super::raw::{RawServer, RawServers};
    let list = |items: &[RawServer]| {
        let spanned = items
            .iter()
            .enumerate()
            .map(|(i, s)| Spanned::new(10 + i..11 + i, s.clone()))
            .collect();
        servers(&at(RawServers::List(spanned)))
    };
    let id = RawServer::Id;
    let name = |n: &str| RawServer::Name(n.into());
    let written = |r: Result<(Vec<u64>, Vec<ServerPattern>), Vec<Problem>>| {
        let (ids, patterns) = r.unwrap();
        (
            ids,
            patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        written(list(&[id(3), id(1), id(2)])),
        (vec![3, 1, 2], vec![])
    );
    assert_eq!(
        written(list(&[id(3), name("web-*"), name("db-01")])),
        (vec![3], vec!["web-*".to_string(), "db-01".to_string()])
    );
    assert_eq!(
        written(servers(&at(RawServers::Text("all".into())))),
        (vec![], vec!["all".to_string()])
    );
    let messages = |r: Result<(Vec<u64>, Vec<ServerPattern>), Vec<Problem>>| {
        r.unwrap_err()
            .into_iter()
            .map(|p| (p.span.unwrap().start, p.message))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        messages(list(&[])),
        vec![(3, "lists no server".to_string())]
    );
    assert_eq!(
        messages(list(&[id(1), id(0), id(-4), id(1)])),
        vec![
            (11, "0 is not a server id".to_string()),
            (12, "-4 is not a server id".to_string()),
            (13, "server 1 is listed twice".to_string()),
        ]
    );
    let refused = messages(list(&[
        name("web-*"),
        name("web-*"),
        name("all"),
        name("x["),
    ]));
    assert_eq!(refused[0], (11, "\"web-*\" is listed twice".to_string()));
    assert!(
        refused[1].1.contains("write servers = \"all\""),
        "{refused:?}"
    );
    assert!(refused[2].1.contains("is not a glob"), "{refused:?}");
    let quoted = messages(list(&[name("12")]));
    assert!(
        quoted[0]
            .1
            .contains("for the server with id 12 write 12 without quotes"),
        "{quoted:?}"
    );
    let upper = messages(servers(&at(RawServers::Text("ALL".into()))));
    assert!(
        upper[0]
            .1
            .contains("write servers = \"all\" (in lower case)"),
        "{upper:?}"
    );
    let one = messages(servers(&at(RawServers::Text("web-*".into()))));
    assert!(one[0].1.contains("write servers = [\"web-*\"]"), "{one:?}");
}

#[test]
fn a_schedule_is_a_cron_expression_that_fires() {
    assert_eq!(schedule(&text("30 2 * * *")).unwrap().expr(), "30 2 * * *");
    assert_eq!(
        refused(schedule(&text("0 0 30 2 *"))),
        "cron expression \"0 0 30 2 *\" never fires"
    );
}

#[test]
fn a_time_zone_is_an_iana_name() {
    assert_eq!(
        timezone(&text("Europe/Berlin")),
        Ok(chrono_tz::Europe::Berlin)
    );
    assert_eq!(
        refused(timezone(&text("CEST+2"))),
        "\"CEST+2\" is not an IANA time zone (e.g. \"Europe/Berlin\")"
    );
}

#[test]
fn keep_is_at_least_one_and_at_most_the_cap() {
    let newest = |n| at(RawKeep::Newest(n));
    assert_eq!(keep(&newest(4), 4), Ok(Keep::newest(4)));
    assert_eq!(
        refused(keep(&newest(5), 4)),
        "5 is out of range: must be 1 to 4"
    );
    assert_eq!(
        refused(keep(&newest(0), 4)),
        "0 is out of range: must be 1 to 4"
    );
}

fn tiers(list: &[(&str, i64)]) -> At<RawKeep> {
    at(RawKeep::Tiers(
        list.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
    ))
}

#[test]
fn tiers_each_keep_one_or_more_and_add_up_to_at_most_the_cap() {
    assert_eq!(
        keep(&tiers(&[("daily", 2), ("weekly", 2), ("monthly", 1)]), 5),
        Ok(Keep::tiers([(Tier::Daily, 2), (Tier::Weekly, 2), (Tier::Monthly, 1)]).unwrap())
    );
    assert_eq!(
        refused(keep(
            &tiers(&[("daily", 3), ("weekly", 2), ("yearly", 1)]),
            5
        )),
        "keeps up to 6 snapshots (daily 3 + weekly 2 + yearly 1 = 6) but the provider allows 5 per server; lower a tier"
    );
    assert_eq!(
        refused(keep(&tiers(&[("daily", 2), ("weekly", 0)]), 5)),
        "weekly = 0 keeps nothing: each tier keeps 1 or more; leave weekly out instead"
    );
    assert!(refused(keep(&tiers(&[]), 5)).starts_with("names no tier: write keep = 3"));
}

#[test]
fn a_snapshot_name_template_parses() {
    assert_eq!(
        snapshot_name(&text("{policy}-%Y")).unwrap().source(),
        "{policy}-%Y"
    );
    assert_eq!(
        refused(snapshot_name(&text("a-%F"))),
        "unsupported field %F (use %Y %m %d %H %M %S %j)"
    );
}

/// The name check for `template` on `cron` in `zone`, on 2026-11-24.
fn fine_in(zone: &str, template: &str, cron: &str) -> Result<(), Problem> {
    let t = NameTemplate::parse(template).unwrap();
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z").unwrap();
    let zone = zone.parse().unwrap();
    name_fine_enough(&at(t), &Schedule::parse(cron).unwrap(), zone, now.into())
}

/// The name check for `template` on `cron` in UTC.
fn fine(template: &str, cron: &str) -> Result<(), Problem> {
    fine_in("UTC", template, cron)
}

#[test]
fn a_monthly_schedule_needs_no_day_in_its_names() {
    assert_eq!(fine("{policy}-%Y%m", "0 0 1 * *"), Ok(()));
    assert_eq!(fine("{policy}-%Y%m", "@monthly"), Ok(()));
}

#[test]
fn an_hourly_schedule_with_the_date_in_its_names_is_told_to_add_the_hour_only() {
    let says = refused(fine("a-%Y%m%d", "@hourly"));
    assert!(says.ends_with("; add %H"), "{says}");
}

#[test]
fn a_ten_minute_schedule_with_the_hour_in_its_names_is_told_to_add_the_minute_only() {
    let says = refused(fine("a-%Y%m%d-%H", "*/10 * * * *"));
    assert!(says.ends_with("; add %M"), "{says}");
}

#[test]
fn a_name_tells_apart_every_two_fires_of_its_schedule() {
    let accepted = [
        ("a-%Y%m%d", "@daily"),
        ("a-%Y%j-%H", "0 */6 * * *"),
        ("a-%Y", "@yearly"),
        ("a-%Y", "0 0 29 2 *"),
        ("a-%Y%m", "0 0 * * 1#1"),
        ("a-%Y%d", "0 0 1,15 1 *"),
        ("a-%Y%m%d-%M", "0,30 2 * * *"),
        ("a-%Y%m%d%H%M%S", "* * * * * *"),
    ];
    for (template, cron) in accepted {
        assert_eq!(fine(template, cron), Ok(()), "{template} on {cron}");
    }
    assert_eq!(
        refused(fine("a-%m%d", "@daily")),
        "\"a-%m%d\" has no %Y: names would repeat every year"
    );
    assert_eq!(
        refused(fine("a-%Y%m%d", "0 */6 * * *")),
        "\"a-%Y%m%d\" is too coarse for schedule \"0 */6 * * *\": the fires at 2026-11-25 00:00:00 +00:00 and 2026-11-25 06:00:00 +00:00 would get the same name; add %H"
    );
    let advice = [
        ("a-%Y%m%d%H%M", "*/10 * * * * *", "%S"),
        ("a-%Y%m%d-%M", "@hourly", "%H"),
        ("a-%Y%m", "@weekly", "%d"),
        ("a-%Y", "@monthly", "%m"),
        ("a-%Y%d", "@monthly", "%m"),
        ("a-%Y", "@daily", "%m%d"),
        ("a-%Y", "0 0 1,15 1,7 *", "%m%d"),
        ("a-%Y", "*/10 * * * *", "%m%d %H%M"),
    ];
    for (template, cron, add) in advice {
        let says = refused(fine(template, cron));
        assert!(
            says.ends_with(&format!("; add {add}")),
            "{template} on {cron}: {says}"
        );
    }
}

#[test]
fn a_fire_moved_by_spring_forward_must_not_take_another_fires_name() {
    // Berlin skips 02:00-03:00 on 2027-03-28: 02:30 fires at 03:00, the hour of 03:30.
    assert_eq!(fine("a-%Y%m%d%H", "30 2,3 * * *"), Ok(()));
    assert_eq!(
        refused(fine_in("Europe/Berlin", "a-%Y%m%d%H", "30 2,3 * * *")),
        "\"a-%Y%m%d%H\" is too coarse for schedule \"30 2,3 * * *\": the fires at 2027-03-28 03:00:00 +02:00 (for 02:30:00, skipped by the clock change) and 2027-03-28 03:30:00 +02:00 would get the same name; add %M"
    );
    // Havana skips midnight to 01:00 on 2027-03-14: 00:45:15 fires at 01:00:00, the hour
    // of 01:45:15; %M or %S would tell them apart, and the coarser is named.
    let says = refused(fine_in("America/Havana", "a-%Y%m%d%H", "15 45 0,1 * * *"));
    assert!(says.ends_with("; add %M"), "{says}");
    // A fire moved onto a time the schedule fires at anyway is that one fire.
    assert_eq!(fine_in("Europe/Berlin", "a-%Y%m%d%H", "@hourly"), Ok(()));
    assert_eq!(fine_in("Europe/Berlin", "a-%Y%m%d", "30 2 * * *"), Ok(()));
    assert_eq!(
        fine_in("Europe/Berlin", "a-%Y%m%d%H%M", "*/15 2 * * *"),
        Ok(())
    );
    // A repeated hour fires once.
    assert_eq!(fine_in("Europe/Berlin", "a-%Y%m%d%H", "0 * * * *"), Ok(()));
    // Lord Howe moves its clock by half an hour: 02:00-02:30 is skipped on 2027-10-03,
    // and 02:20:30 fires at 02:30:00, the minute of 02:30:30.
    let cron = "30 20,30 2 * * *";
    assert_eq!(
        fine_in("Australia/Lord_Howe", "a-%Y%m%d%H%M%S", cron),
        Ok(())
    );
    assert_eq!(
        refused(fine_in("Australia/Lord_Howe", "a-%Y%m%d%H%M", cron)),
        "\"a-%Y%m%d%H%M\" is too coarse for schedule \"30 20,30 2 * * *\": the fires at 2027-10-03 02:30:00 +11:00 (for 02:20:30, skipped by the clock change) and 2027-10-03 02:30:30 +11:00 would get the same name; add %S"
    );
}

#[test]
fn a_name_is_short_enough_on_every_server() {
    // "{policy}-" is 2 characters for "p", "%Y%m%d" 8, "{server}" the id's digits.
    let t =
        NameTemplate::parse(&format!("{{policy}}-{}-%Y%m%d{{server}}", "x".repeat(49))).unwrap();
    assert_eq!(name_short_enough(&at(t.clone()), "p", &[1234]), Ok(()));
    assert_eq!(
        refused(name_short_enough(&at(t.clone()), "p", &[1, 12345])),
        "renders names of 65 characters; at most 64 are allowed"
    );
}

#[test]
fn a_description_is_at_most_200_characters() {
    let long = "é".repeat(200);
    assert_eq!(description(&at(long.clone())), Ok(long.clone()));
    assert_eq!(
        refused(description(&at(format!("{long}x")))),
        "is longer than 200 characters"
    );
}

#[test]
fn the_policies_of_a_server_keep_no_more_than_the_cap() {
    let (a, b) = (policy("a", 2, "a-%Y%m%d"), policy("b", 3, "b-%Y%m%d"));
    assert_eq!(
        keep_within_cap(7, &[&a, &b], 6, (9..10, "policy[b].keep".into())),
        Ok(None)
    );
    let warning = keep_within_cap(7, &[&a, &b], 5, (9..10, "policy[b].keep".into()))
        .unwrap()
        .unwrap();
    assert_eq!(warning.key, "policy[b].keep");
    assert!(
        warning
            .message
            .starts_with("server 7: keep adds up to the cap of 5 (a keeps 2, b keeps 3)")
    );
    let error = keep_within_cap(7, &[&a, &b], 4, (9..10, "policy[b].keep".into())).unwrap_err();
    assert_eq!(error.span, Some(9..10));
    assert_eq!(
        error.message,
        "server 7 would need 5 snapshots (a keeps 2, b keeps 3) but the provider allows 4; lower keep"
    );
}

#[test]
fn a_tiered_policy_counts_the_sum_of_its_tiers_against_the_cap() {
    let a = policy("a", 2, "a-%Y%m%d");
    let b = Policy {
        keep: Keep::tiers([(Tier::Daily, 2), (Tier::Weekly, 1)]).unwrap(),
        ..policy("b", 1, "b-%Y%m%d")
    };
    let error = keep_within_cap(7, &[&a, &b], 4, (9..10, "policy[b].keep".into())).unwrap_err();
    assert_eq!(
        error.message,
        "server 7 would need 5 snapshots (a keeps 2, b keeps daily 2 + weekly 1 = 3) but the provider allows 4; lower keep"
    );
    assert!(
        keep_within_cap(7, &[&a, &b], 6, (9..10, "policy[b].keep".into()))
            .unwrap()
            .is_none()
    );
}

#[test]
fn two_policies_on_a_server_never_claim_the_same_name() {
    let (a, b) = (policy("a", 1, "snap-%Y%m%d"), policy("b", 1, "snap-%Y%m%d"));
    let error = names_apart(7, &a, &b, 9..10).unwrap_err();
    assert_eq!(error.key, "policy[b].snapshot_name");
    assert_eq!(
        error.message,
        "on server 7, names of policy a and policy b can look the same; put {policy} in snapshot_name"
    );
    let (a, b) = (
        policy("a", 1, "{policy}-%Y%m%d"),
        policy("b", 1, "{policy}-%Y%m%d"),
    );
    assert_eq!(names_apart(7, &a, &b, 9..10), Ok(()));
}

mod names_apart_property {
    use chrono::{DateTime, Duration, Utc};
    use proptest::prelude::*;

    use super::*;

    /// Zones whose clocks move at 02:00 (by an hour, and by half an hour) and at
    /// midnight, and one whose clock never moves.
    const ZONES: [&str; 5] = [
        "UTC",
        "Europe/Berlin",
        "Australia/Lord_Howe",
        "America/Havana",
        "America/Santiago",
    ];

    /// Where the windows of fires start: the day of the check, the turn of a year, and
    /// just before spring-forward in each zone with a clock change.
    const STARTS: [&str; 6] = [
        "2026-11-24T12:00:00Z",
        "2027-12-30T00:00:00Z",
        "2027-03-27T00:00:00Z",
        "2027-03-13T00:00:00Z",
        "2027-09-03T00:00:00Z",
        "2027-10-02T00:00:00Z",
    ];

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(STARTS[0]).unwrap().into()
    }

    fn cron() -> impl Strategy<Value = String> {
        let pick = |items: &'static [&'static str]| proptest::sample::select(items);
        (
            pick(&["", "", "", "0 ", "30 ", "*/20 ", "5,45 ", "* "]),
            pick(&["0", "30", "*/10", "*/30", "15,45", "0-2", "*"]),
            pick(&["0", "2", "*/6", "2,3", "0,1", "1-3", "*"]),
            pick(&["*", "*", "1,15", "L", "29", "*/10"]),
            pick(&["*", "1", "1,7", "*/3", "2"]),
            pick(&["*", "1", "1-5", "0", "1#1"]),
        )
            .prop_map(|(s, m, h, dom, mon, dow)| format!("{s}{m} {h} {dom} {mon} {dow}"))
    }

    fn template() -> impl Strategy<Value = String> {
        proptest::sample::subsequence(vec!["%m", "%d", "%j", "%H", "%M", "%S"], 0..=6)
            .prop_map(|fields| format!("{{policy}}-%Y{}", fields.concat()))
    }

    /// The fires of up to two years from each start, at most 300 from each.
    fn fires(schedule: &Schedule, zone: Tz) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        for start in STARTS {
            let start: DateTime<Utc> = DateTime::parse_from_rfc3339(start).unwrap().into();
            let end = start + Duration::days(731);
            let mut at = start;
            for _ in 0..300 {
                match schedule.next_fire(zone, at) {
                    Some(next) if next < end => {
                        out.push(next);
                        at = next;
                    }
                    _ => break,
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    fn name(template: &NameTemplate, zone: Tz, at: DateTime<Utc>) -> String {
        template.render("p", 1, &at.with_timezone(&zone))
    }

    fn is_fire(schedule: &Schedule, zone: Tz, at: DateTime<Utc>) -> bool {
        schedule.next_fire(zone, at - Duration::seconds(1)) == Some(at)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// A template the check accepts gives every fire of its schedule its own name;
        /// one it refuses gets two real fires that share a name as the example, and
        /// every field of the advice is needed and enough.
        #[test]
        fn accepted_templates_never_repeat_a_name_and_refusals_are_real(
            cron in cron(),
            source in template(),
            zone in proptest::sample::select(&ZONES[..]),
        ) {
            let schedule = Schedule::parse(&cron).unwrap();
            let zone: Tz = zone.parse().unwrap();
            let template = NameTemplate::parse(&source).unwrap();
            match template.tells_apart(&schedule, zone, now()) {
                Ok(()) => {
                    let mut seen = std::collections::HashMap::new();
                    for at in fires(&schedule, zone) {
                        if let Some(earlier) = seen.insert(name(&template, zone, at), at) {
                            prop_assert!(false, "{} and {} share a name", earlier, at);
                        }
                    }
                }
                Err(Clash::NoYear) => prop_assert!(false, "{} has a year", source),
                Err(Clash::Coarse(c)) => {
                    let (a, b) = (c.first.to_utc(), c.second.to_utc());
                    prop_assert!(a != b && a > now() && b > now());
                    prop_assert!(is_fire(&schedule, zone, a), "{} is no fire", c.first);
                    prop_assert!(is_fire(&schedule, zone, b), "{} is no fire", c.second);
                    prop_assert_eq!(name(&template, zone, a), name(&template, zone, b));
                    let add = c.add.to_string().replace(' ', "");
                    let fields: Vec<&str> = add.split_inclusive(|ch: char| ch.is_alphabetic()).collect();
                    prop_assert!(!fields.is_empty());
                    let with = |fields: &[&str]| {
                        let t = NameTemplate::parse(&format!("{source}{}", fields.concat())).unwrap();
                        t.tells_apart(&schedule, zone, now())
                    };
                    prop_assert_eq!(with(&fields), Ok(()), "adding {} is not enough", add);
                    for i in 0..fields.len() {
                        let mut fewer = fields.clone();
                        fewer.remove(i);
                        prop_assert!(with(&fewer).is_err(), "{} of {} is not needed", fields[i], add);
                    }
                }
            }
        }
    }
}

#[test]
fn a_hook_is_a_program_by_absolute_path_then_its_arguments() {
    let words = |ws: &[&str]| {
        let mut start = 10;
        at(ws
            .iter()
            .map(|w| {
                start += 10;
                Spanned::new(start..start + w.len(), w.to_string())
            })
            .collect::<Vec<_>>())
    };
    let ok = hook_command(&words(&["/usr/local/bin/freeze", "--db", "two words"])).unwrap();
    assert_eq!(ok.program(), std::path::Path::new("/usr/local/bin/freeze"));
    assert_eq!(ok.args(), ["--db", "two words"]);
    assert_eq!(ok.to_string(), "/usr/local/bin/freeze --db \"two words\"");
    let keyed = |key: &str, ws: &[&str]| At {
        key: key.into(),
        ..words(ws)
    };
    assert_eq!(
        hook_command(&keyed("policy[p].pre_snapshot", &[]))
            .unwrap_err()
            .message,
        "is empty: give the program's absolute path first, then its arguments; write it \
         like [\"/usr/local/bin/freeze\", \"--db\"]; or leave the key out"
    );
    // Each key says how to write itself.
    assert_eq!(
        hook_command(&keyed("notify.command", &["alert"]))
            .unwrap_err()
            .message,
        "\"alert\" is not the absolute path of a program: snaprotd starts it without a \
         shell and without a search path; write it like [\"/usr/local/bin/alert\"]"
    );
    assert!(
        hook_command(&keyed("defaults.post_snapshot", &["thaw"]))
            .unwrap_err()
            .message
            .ends_with("write it like [\"/usr/local/bin/thaw\"]")
    );
    // Reported at the word itself.
    for bad in [
        &["freeze", "--db"][..],
        &["./bin/freeze"],
        &["/usr/local/bin/"],
        &[""],
    ] {
        let p = hook_command(&words(bad)).unwrap_err();
        assert_eq!((p.span, p.key.as_str()), (Some(20..20 + bad[0].len()), "k"));
        assert!(
            p.message.ends_with(
                "is not the absolute path of a program: snaprotd starts it without a shell \
                 and without a search path"
            ),
            "{bad:?}: {}",
            p.message
        );
    }
    let p = hook_command(&words(&["/bin/x", "a\0b"])).unwrap_err();
    assert_eq!(
        (p.span, p.message.as_str()),
        (Some(30..33), "\"a\\0b\" holds a NUL byte")
    );
}

#[test]
fn a_notify_url_is_checked_as_base_url_and_never_repeated() {
    let secret = "6f1c0a3e-secret";
    let ok = |s: &str| notify_url(&text(s)).unwrap().to_string();
    assert_eq!(
        ok(&format!("https://hc-ping.com/{secret}/")),
        format!("https://hc-ping.com/{secret}")
    );
    assert_eq!(
        ok("http://127.0.0.1:8080/hook"),
        "http://127.0.0.1:8080/hook"
    );
    for (url, says) in [
        (
            format!("http://hooks.example.org/{secret}"),
            "only for loopback",
        ),
        (format!("ftp://hooks.example.org/{secret}"), "scheme ftp://"),
        (
            format!("https://user:{secret}@hc-ping.com/x"),
            "credentials",
        ),
        (format!("hc-ping.com/{secret}"), "is not a URL"),
    ] {
        let message = refused(notify_url(&text(&url)));
        assert!(message.contains(says), "{url}: {message}");
        assert!(!message.contains(secret), "{url}: {message}");
    }
    // Each key's own example.
    for (key, like) in [
        ("notify.webhook_url", "https://hooks.example.org/snaprotd"),
        ("policy[p].ping_url", "https://hc-ping.com/<uuid>"),
        ("defaults.ping_url", "https://hc-ping.com/<uuid>"),
    ] {
        let v = At {
            key: key.into(),
            ..text("")
        };
        let message = notify_url(&v).unwrap_err().message;
        assert!(
            message.ends_with(&format!("; write it like \"{like}\"")),
            "{key}: {message}"
        );
    }
}
