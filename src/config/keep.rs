//! What a policy keeps: `keep = 3` (the newest three) or tiers in the manner of restic's
//! `forget --keep-*` (`keep = { daily = 2, weekly = 2, monthly = 1 }`). The rule that
//! applies them to snapshots is `rotation/retention.rs`; this is the value.

use std::fmt;

/// A retention tier, in restic's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// The newest N snapshots.
    Last,
    Hourly,
    Daily,
    /// ISO weeks, starting on Monday.
    Weekly,
    Monthly,
    Yearly,
}

impl Tier {
    pub const ALL: [Tier; 6] = [
        Tier::Last,
        Tier::Hourly,
        Tier::Daily,
        Tier::Weekly,
        Tier::Monthly,
        Tier::Yearly,
    ];

    /// The tier's key in `keep = { … }`.
    pub fn key(self) -> &'static str {
        match self {
            Tier::Last => "last",
            Tier::Hourly => "hourly",
            Tier::Daily => "daily",
            Tier::Weekly => "weekly",
            Tier::Monthly => "monthly",
            Tier::Yearly => "yearly",
        }
    }

    pub fn from_key(key: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.key() == key)
    }

    /// Its period, in words: "day" (for "the 2 most recent days").
    fn period(self) -> &'static str {
        match self {
            Tier::Last => "snapshot",
            Tier::Hourly => "hour",
            Tier::Daily => "day",
            Tier::Weekly => "week",
            Tier::Monthly => "month",
            Tier::Yearly => "year",
        }
    }
}

/// How many snapshots of each tier a policy keeps; at least one tier, each at least 1
/// (built only by `checks::keep`, or [`Keep::newest`]). `keep = N` is `{ last = N }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    counts: [usize; 6],
}

impl Keep {
    /// The newest `n` (`keep = n`).
    pub fn newest(n: usize) -> Keep {
        let mut counts = [0; 6];
        counts[0] = n.max(1);
        Keep { counts }
    }

    /// Keep with these tiers; `None` without a tier or with a count of 0.
    pub fn tiers(tiers: impl IntoIterator<Item = (Tier, usize)>) -> Option<Keep> {
        let mut counts = [0; 6];
        for (tier, n) in tiers {
            if n == 0 {
                return None;
            }
            counts[tier as usize] = n;
        }
        (counts.iter().any(|&n| n > 0)).then_some(Keep { counts })
    }

    /// How many snapshots `tier` keeps (0: the tier is not used).
    pub fn count(&self, tier: Tier) -> usize {
        self.counts[tier as usize]
    }

    /// The tiers used, in restic's order, with their counts.
    pub fn used(&self) -> impl Iterator<Item = (Tier, usize)> + '_ {
        Tier::ALL
            .into_iter()
            .map(|t| (t, self.count(t)))
            .filter(|(_, n)| *n > 0)
    }

    /// The most snapshots the policy holds on a server: the sum of its tiers (a
    /// snapshot kept by several tiers counts once, so this is an upper bound), its share
    /// of the provider's cap.
    pub fn total(&self) -> usize {
        self.counts.iter().sum()
    }

    /// Whether a tier other than `last` is used (`keep = N` is not tiered).
    pub fn is_tiered(&self) -> bool {
        self.used().any(|(t, _)| t != Tier::Last)
    }

    /// Why a snapshot no tier keeps goes: "not one of the 3 newest", "not the newest
    /// in any of the 2 most recent days, 2 most recent weeks or 1 most recent month".
    pub fn not_kept(&self) -> String {
        let last = self.count(Tier::Last);
        let periods: Vec<String> = self
            .used()
            .filter(|(t, _)| *t != Tier::Last)
            .map(|(t, n)| format!("{n} most recent {}{}", t.period(), plural(n)))
            .collect();
        let periods = match periods.split_last() {
            None => String::new(),
            Some((one, [])) => format!("the newest in any of the {one}"),
            Some((end, rest)) => format!("the newest in any of the {} or {end}", rest.join(", ")),
        };
        match (last, periods.is_empty()) {
            (0, _) => format!("not {periods}"),
            (n, true) => format!("not one of the {n} newest"),
            (n, false) => format!("not one of the {n} newest, nor {periods}"),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl fmt::Display for Keep {
    /// "3" for the newest three; "daily 2 + weekly 2 = 4" for tiers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_tiered() {
            return write!(f, "{}", self.total());
        }
        let parts: Vec<String> = self
            .used()
            .map(|(t, n)| format!("{} {n}", t.key()))
            .collect();
        write!(f, "{} = {}", parts.join(" + "), self.total())
    }
}

impl serde::Serialize for Keep {
    /// A number for the newest N, else an object of the tiers used.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if !self.is_tiered() {
            return s.serialize_u64(self.total() as u64);
        }
        let mut map = s.serialize_map(None)?;
        for (t, n) in self.used() {
            map.serialize_entry(t.key(), &n)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_reads_as_written_and_adds_up() {
        assert_eq!(Keep::newest(3).to_string(), "3");
        assert_eq!(Keep::newest(3).total(), 3);
        let k = Keep::tiers([(Tier::Weekly, 2), (Tier::Daily, 2), (Tier::Monthly, 1)]).unwrap();
        assert_eq!(k.to_string(), "daily 2 + weekly 2 + monthly 1 = 5");
        assert_eq!(k.total(), 5);
        assert!(k.is_tiered() && !Keep::newest(2).is_tiered());
        assert_eq!(Keep::tiers([(Tier::Last, 2)]), Some(Keep::newest(2)));
        assert_eq!(Keep::tiers([]), None);
        assert_eq!(Keep::tiers([(Tier::Daily, 0)]), None);
    }

    #[test]
    fn why_a_snapshot_goes_names_every_tier() {
        assert_eq!(Keep::newest(3).not_kept(), "not one of the 3 newest");
        let k = Keep::tiers([(Tier::Daily, 2), (Tier::Weekly, 2), (Tier::Monthly, 1)]).unwrap();
        assert_eq!(
            k.not_kept(),
            "not the newest in any of the 2 most recent days, 2 most recent weeks or 1 most recent month"
        );
        let k = Keep::tiers([(Tier::Last, 1), (Tier::Hourly, 4)]).unwrap();
        assert_eq!(
            k.not_kept(),
            "not one of the 1 newest, nor the newest in any of the 4 most recent hours"
        );
    }
}
