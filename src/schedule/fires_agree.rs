//! Previous and next fires checked against each other, and against every fire listed
//! wall minute by wall minute, over zones with odd transitions: Lord Howe's 30-minute
//! shift, Chatham's +12:45/+13:45, Santiago's midnight changes, Havana's midnight gap,
//! Troll's two-hour shift, Dublin's negative DST, Casablanca's Ramadan reversals,
//! Samoa's skipped day, and zones without DST.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use proptest::prelude::*;

use chrono::{DateTime, Duration, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::dst::wall_to_instant;
use super::{Resolution, Schedule};

const ZONES: &[&str] = &[
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Santiago",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Sydney",
    "America/St_Johns",
    "America/Havana",
    "Antarctica/Troll",
    "Europe/Dublin",
    "Africa/Casablanca",
    "Pacific/Apia",
    "Asia/Tehran",
    "UTC",
];

const SCHEDULES: &[&str] = &[
    "30 2 * * *",
    "0 * * * *",
    "*/15 * * * *",
    "0 0 * * *",
    "30 0 * * *",
    "15 1,2,3 * * *",
    "45 23 * * *",
    "0 2 * * sun",
    "59 1 * * 1-5",
    "0 0 1 * *",
    "*/20 * * * * *",
    "30 */2 * * *",
    "0 0 29 2 *",
    "@hourly",
    "@weekly",
];

/// The hours (as instants) around which each zone changed its offset, 2005–2032.
fn transitions(tz: Tz) -> &'static [i64] {
    static ALL: OnceLock<Vec<(Tz, Vec<i64>)>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        ZONES
            .iter()
            .map(|z| {
                let tz: Tz = z.parse().unwrap();
                let offset = |ts: i64| {
                    let t = DateTime::from_timestamp(ts, 0).unwrap();
                    t.with_timezone(&tz).naive_local() - t.naive_utc()
                };
                let start = Utc
                    .with_ymd_and_hms(2005, 1, 1, 0, 0, 0)
                    .unwrap()
                    .timestamp();
                let end = Utc
                    .with_ymd_and_hms(2032, 1, 1, 0, 0, 0)
                    .unwrap()
                    .timestamp();
                // Day by day, then the hour within the day.
                let mut found = Vec::new();
                let mut day = start;
                while day < end {
                    if offset(day) != offset(day + 86400) {
                        found.extend(
                            (0..24)
                                .map(|h| day + h * 3600)
                                .filter(|ts| offset(*ts) != offset(ts + 3600)),
                        );
                    }
                    day += 86400;
                }
                (tz, found)
            })
            .collect()
    });
    all.iter()
        .find(|(z, _)| *z == tz)
        .map(|(_, t)| t.as_slice())
        .unwrap_or(&[])
}

/// An instant in whole seconds: mostly within six hours of one of the zone's
/// transitions, sometimes anywhere in 2005–2032.
fn instant(tz: Tz, pick: usize, near: bool, shift: i64) -> DateTime<Utc> {
    let t = transitions(tz);
    let ts = if near && !t.is_empty() {
        t[pick % t.len()] + shift % (6 * 3600)
    } else {
        Utc.with_ymd_and_hms(2018, 6, 1, 0, 0, 0)
            .unwrap()
            .timestamp()
            + shift
    };
    DateTime::from_timestamp(ts, 0).unwrap()
}

/// Every fire whose wall time lies within 30 hours of `at`'s, listed wall minute by
/// wall minute (for schedules firing on whole minutes).
fn listed_fires(s: &Schedule, tz: Tz, at: DateTime<Utc>) -> BTreeSet<DateTime<Utc>> {
    let wall = at.with_timezone(&tz).naive_local().with_second(0).unwrap();
    let mut fires = BTreeSet::new();
    for m in -30 * 60..=30 * 60 {
        let w = wall + Duration::minutes(m);
        if s.cron.is_time_matching(&Utc.from_utc_datetime(&w)).unwrap() {
            fires.insert(wall_to_instant(tz, w).unwrap());
        }
    }
    fires
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn previous_and_next_fire_agree_around_transitions(
        zone in 0..ZONES.len(),
        schedule in 0..SCHEDULES.len(),
        pick in 0usize..1000,
        near in proptest::bool::weighted(0.85),
        shift in -(10i64 * 365 * 86400)..(10 * 365 * 86400),
    ) {
        let tz: Tz = ZONES[zone].parse().unwrap();
        let s = Schedule::parse(SCHEDULES[schedule]).unwrap();
        let t = instant(tz, pick, near, shift);
        let second = Duration::seconds(1);

        let p = s.previous_fire(tz, t).expect("a previous fire");
        let n = s.next_fire(tz, t).expect("a next fire");
        prop_assert!(p <= t && t < n, "{p} <= {t} < {n}");
        // No fire lies strictly between the previous fire and t, nor between t and
        // the next fire; both are fires.
        prop_assert_eq!(s.next_fire(tz, p), Some(n), "a fire between {} and {}", p, n);
        prop_assert_eq!(s.next_fire(tz, p - second), Some(p), "{} is not a fire", p);
        prop_assert_eq!(s.previous_fire(tz, n), Some(n), "{} is not a fire", n);
        prop_assert_eq!(s.previous_fire(tz, n - second), Some(p), "a fire between {} and {}", p, n);
        prop_assert_eq!(s.previous_fire(tz, t + Duration::milliseconds(999)), Some(p));

        // Against the fires listed minute by minute, where the schedule fires on
        // whole minutes and the list reaches far enough.
        if s.resolution() != Resolution::Second {
            let fires = listed_fires(&s, tz, t);
            let window = |f: &DateTime<Utc>| (*f - t).num_hours().abs() < 26;
            if let Some(listed) = fires.range(..=t).next_back().filter(|f| window(f)) {
                prop_assert_eq!(p, *listed, "previous fire at {}", t);
            }
            if let Some(listed) = fires.range(t + second..).next().filter(|f| window(f)) {
                prop_assert_eq!(n, *listed, "next fire at {}", t);
            }
        }
    }
}
