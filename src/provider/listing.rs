//! A listing is checked where it enters, before anything is decided on it: snapshots of
//! other servers are dropped (a provider that ignores `?server_id=`), a snapshot shown
//! twice the same way counts once (offset pagination shifting while a snapshot is
//! created), and a listing that does not add up — one snapshot shown two ways — carries
//! its doubt along: nothing is deleted on its word.
//!
//! A listing that misses entries (pages shifting back while a snapshot is deleted, an
//! index that lags) is not in doubt for deleting: pruning keeps the newest `keep` and
//! deletes the oldest of the rest, so with fewer entries seen it deletes a subset of
//! what it would delete with all of them, never a snapshot `keep` protects. Its
//! `count` differing from the entries is therefore only noted. Repeats are the danger
//! (they inflate what is seen), and they are merged.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::Snapshot;

/// The snapshots of one server (or of the account), as checked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Listing {
    pub snapshots: Vec<Snapshot>,
    /// Why the listing does not add up, when it does not.
    pub doubt: Option<String>,
}

impl std::ops::Deref for Listing {
    type Target = [Snapshot];

    fn deref(&self) -> &[Snapshot] {
        &self.snapshots
    }
}

impl Listing {
    /// A listing with no snapshot, in doubt when the listing it is part of is.
    pub fn empty(doubt: Option<String>) -> Listing {
        Listing {
            snapshots: Vec::new(),
            doubt,
        }
    }

    /// Checks the entries of a listing of `server` (`None`: the account) whose answer
    /// said it held `count` snapshots. Returns the listing and how many entries of
    /// other servers were dropped.
    pub fn check(
        entries: Vec<Snapshot>,
        server: Option<u64>,
        count: Option<u64>,
    ) -> (Listing, usize) {
        let mut check = Check::new(move |id| server.is_none_or(|s| s == id));
        check.page(entries);
        check.finish(count)
    }

    /// The part of an account-wide listing that is `server`'s (its doubt included).
    pub fn of_server(&self, server: u64) -> Listing {
        Listing {
            snapshots: self
                .snapshots
                .iter()
                .filter(|s| s.server.id == server)
                .cloned()
                .collect(),
            doubt: self.doubt.clone(),
        }
    }
}

/// The check of a listing, page by page as it is read: a snapshot shown twice the
/// same way counts once; one shown two ways puts the whole listing in doubt. Only the
/// entries of the servers `keep` accepts are kept whole; of the others, a fingerprint
/// is enough to see them repeat, so a listing of the account costs what its wanted
/// servers' snapshots do.
pub struct Check<F> {
    keep: F,
    kept: BTreeMap<u64, Snapshot>,
    /// Entries of other servers: id and fingerprint.
    others: HashMap<u64, u64>,
    doubt: Option<String>,
}

impl<F: Fn(u64) -> bool> Check<F> {
    pub fn new(keep: F) -> Check<F> {
        Check {
            keep,
            kept: BTreeMap::new(),
            others: HashMap::new(),
            doubt: None,
        }
    }

    /// Takes one page's entries.
    pub fn page(&mut self, entries: Vec<Snapshot>) {
        for s in entries {
            let seen_other = self.others.get(&s.id).copied();
            if let Some(seen) = self.kept.get(&s.id) {
                if *seen != s {
                    let why = format!(
                        "snapshot {} is listed twice, as {} {} and as {} {}",
                        s.id,
                        seen.name,
                        seen.status.as_str(),
                        s.name,
                        s.status.as_str()
                    );
                    self.doubt.get_or_insert(why);
                }
            } else if let Some(seen) = seen_other {
                if seen != fingerprint(&s) {
                    let why = format!("snapshot {} is listed twice, two ways", s.id);
                    self.doubt.get_or_insert(why);
                }
            } else if (self.keep)(s.server.id) {
                self.kept.insert(s.id, s);
            } else {
                self.others.insert(s.id, fingerprint(&s));
            }
        }
    }

    /// The listing of the kept servers, and how many snapshots of others it showed.
    pub fn finish(self, count: Option<u64>) -> (Listing, usize) {
        let distinct = self.kept.len() + self.others.len();
        if let Some(count) = count
            && count != distinct as u64
        {
            tracing::debug!(
                "the listing says it holds {count} snapshot(s), but {distinct} distinct ones \
                 came (its pages shifted while they were read)"
            );
        }
        let mut snapshots: Vec<Snapshot> = self.kept.into_values().collect();
        snapshots.sort_by_key(|s| (s.created_at, s.id));
        let listing = Listing {
            snapshots,
            doubt: self.doubt,
        };
        (listing, self.others.len())
    }
}

/// What tells two entries of one snapshot apart.
fn fingerprint(s: &Snapshot) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::SnapshotStatus;
    use crate::provider::types::ServerRef;

    fn snap(id: u64, server: u64, status: SnapshotStatus) -> Snapshot {
        Snapshot {
            id,
            server: ServerRef {
                id: server,
                name: None,
            },
            name: format!("s{id}"),
            status,
            size_mb: None,
            created_at: chrono::DateTime::from_timestamp(id as i64, 0).unwrap_or_default(),
            description: None,
        }
    }

    #[test]
    fn a_repeated_entry_counts_once() {
        let a = snap(1, 7, SnapshotStatus::Completed);
        let b = snap(2, 7, SnapshotStatus::Completed);
        let (l, foreign) = Listing::check(vec![a.clone(), b, a], Some(7), Some(2));
        assert_eq!(l.len(), 2);
        assert_eq!(foreign, 0);
        assert!(l.doubt.is_none());
    }

    #[test]
    fn an_entry_shown_two_ways_puts_the_listing_in_doubt() {
        let a = snap(1, 7, SnapshotStatus::Completed);
        let mut a2 = a.clone();
        a2.status = SnapshotStatus::InProgress;
        let (l, _) = Listing::check(vec![a, a2], Some(7), Some(1));
        assert!(l.doubt.unwrap().contains("listed twice"));
    }

    #[test]
    fn missing_entries_leave_the_listing_usable() {
        // Fewer entries than `count` only ever make pruning delete less.
        let one = vec![snap(1, 7, SnapshotStatus::Completed)];
        let (l, _) = Listing::check(one, Some(7), Some(2));
        assert!(l.doubt.is_none());
    }

    #[test]
    fn entries_of_other_servers_are_dropped() {
        let (l, foreign) = Listing::check(
            vec![
                snap(1, 7, SnapshotStatus::Completed),
                snap(2, 8, SnapshotStatus::Completed),
            ],
            Some(7),
            Some(2),
        );
        assert_eq!(foreign, 1);
        assert_eq!(l.iter().map(|s| s.id).collect::<Vec<_>>(), vec![1]);
        assert!(l.doubt.is_none());
        let (all, _) = Listing::check(
            vec![
                snap(1, 7, SnapshotStatus::Completed),
                snap(2, 8, SnapshotStatus::Completed),
            ],
            None,
            Some(2),
        );
        assert_eq!(all.of_server(8).len(), 1);
    }
}
