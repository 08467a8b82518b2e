//! restic's retention rule, written on its own for the tests to check snaprotd's
//! (`rotation/retention.rs`) against: a different path to the same answer.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// restic's `forget --keep-*` as restic 0.14–0.16 apply it, written from its
/// description: each tier on its own walks the snapshots newest first (a stable sort)
/// and takes one whose period, as a label in `zone`, differs from the last one it took,
/// while it has count left; what any tier takes is kept. Returns the kept indices.
pub fn restic(keep: &[(&str, usize)], zone: Tz, times: &[DateTime<Utc>]) -> BTreeSet<usize> {
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by(|a, b| times[*b].cmp(&times[*a]));
    let mut kept = BTreeSet::new();
    for (tier, count) in keep {
        let format = match *tier {
            "last" => None,
            "hourly" => Some("%Y-%m-%d %H"),
            "daily" => Some("%Y-%m-%d"),
            "weekly" => Some("%G-%V"),
            "monthly" => Some("%Y-%m"),
            "yearly" => Some("%Y"),
            other => panic!("no tier {other}"),
        };
        let mut left = *count;
        let mut previous: Option<String> = None;
        for &i in &order {
            if left == 0 {
                break;
            }
            let label = match format {
                Some(f) => times[i].with_timezone(&zone).format(f).to_string(),
                None => format!("snapshot {i}"),
            };
            if previous.as_ref() != Some(&label) {
                kept.insert(i);
                left -= 1;
                previous = Some(label);
            }
        }
    }
    kept
}
