//! Counts that only grow, kept for every process that writes in the state directory:
//! `counters.json`, by group and kind (`{"api_requests": {"GET": 98}}`). The daemon and
//! `once` each add what they counted since their last add, under `counters.lock`, so
//! what one writes never undoes what another wrote and no count ever falls.

use std::collections::BTreeMap;
use std::path::Path;

use super::StateError;
use super::files::{encode, read, write};

/// Counts by group, then by kind.
pub type Counts = BTreeMap<String, BTreeMap<String, u64>>;

const FILE: &str = "counters.json";
const LOCK: &str = "counters.lock";

/// Adds `deltas` to the counts on disk; returns the counts after the add. Waits for
/// another process's add to end (each is a read and an atomic write).
pub(super) fn add(root: &Path, deltas: &Counts) -> Result<Counts, StateError> {
    let lock_path = root.join(LOCK);
    let lock = super::locks::open_lock_file(&lock_path)?;
    lock.lock().map_err(StateError::io(&lock_path))?;
    let mut counts = counts(root);
    if deltas.values().all(|kinds| kinds.values().all(|n| *n == 0)) {
        return Ok(counts);
    }
    merge(&mut counts, deltas);
    let bytes = encode(&root.join(FILE), &counts)?;
    write(root, "", FILE, &bytes)?;
    Ok(counts)
}

/// Adds `deltas` to `counts`.
pub fn merge(counts: &mut Counts, deltas: &Counts) {
    for (group, kinds) in deltas {
        let into = counts.entry(group.clone()).or_default();
        for (kind, n) in kinds {
            let c = into.entry(kind.clone()).or_default();
            *c = c.saturating_add(*n);
        }
    }
}

/// The counts on disk (none when there are none, or when they cannot be read: an
/// unreadable file is set aside, and the counts start again from zero).
pub(super) fn counts(root: &Path) -> Counts {
    read(&root.join(FILE)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts_of(pairs: &[(&str, &str, u64)]) -> Counts {
        let mut c = Counts::new();
        for (g, k, n) in pairs {
            c.entry(g.to_string())
                .or_default()
                .insert(k.to_string(), *n);
        }
        c
    }

    #[test]
    fn adds_never_undo_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert!(counts(root).is_empty());
        add(root, &counts_of(&[("api_requests", "GET", 98)])).unwrap();
        let after = add(
            root,
            &counts_of(&[("api_requests", "GET", 5), ("api_errors", "http_429", 1)]),
        )
        .unwrap();
        assert_eq!(
            after,
            counts_of(&[("api_requests", "GET", 103), ("api_errors", "http_429", 1)])
        );
        assert_eq!(counts(root), after);
        // Adding nothing writes nothing.
        assert_eq!(add(root, &Counts::new()).unwrap(), after);
    }

    #[test]
    fn adds_from_many_threads_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let root = root.clone();
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        add(&root, &counts_of(&[("fires_skipped", "", 1)])).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counts(&root), counts_of(&[("fires_skipped", "", 80)]));
    }
}
