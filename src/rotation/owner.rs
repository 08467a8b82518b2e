//! Who made a snapshot: the one reading of it, used by `list`, `prune --orphans`, the
//! cap-full error and the demo.
//!
//! A configured policy owns a snapshot on a server it covers when the name matches its
//! template exactly (`Policy::owns`): that is what its rotation prunes. A snapshot no
//! configured policy owns, but whose description says snaprotd made it for policy `X`
//! (`Policy::snapshot_description` writes `snaprotd policy X`, or `TEXT (snaprotd
//! policy X)`), is an orphan of `X`: its policy was removed, renamed, no longer lists
//! that server, or names its snapshots differently now — no run will ever delete it.
//! Anything else was made by someone else: manual, never touched.

use std::fmt;

use crate::config::Policy;
use crate::provider::Snapshot;

/// Who made a snapshot, as far as snaprotd can tell.
#[derive(Debug, Clone)]
pub enum Owner<'a> {
    /// A configured policy on the snapshot's server, whose template matches its name.
    Policy(&'a Policy),
    /// Made by snaprotd for this policy, which no longer owns it.
    Orphan(String),
    /// Made by someone else.
    Manual,
}

impl<'a> Owner<'a> {
    /// Who made `s`, given the configured `policies`.
    pub fn of(policies: &'a [Policy], s: &Snapshot) -> Owner<'a> {
        let server = s.server.id;
        if let Some(p) = policies
            .iter()
            .find(|p| p.may_cover(server) && p.owns(server, &s.name))
        {
            return Owner::Policy(p);
        }
        match s.description.as_deref().and_then(described_policy) {
            Some(name) => Owner::Orphan(name.to_string()),
            None => Owner::Manual,
        }
    }

    /// The policy a description names, for an orphan.
    pub fn orphan_of(&self) -> Option<&str> {
        match self {
            Owner::Orphan(name) => Some(name),
            _ => None,
        }
    }

    pub fn is_orphan(&self) -> bool {
        matches!(self, Owner::Orphan(_))
    }

    /// The configured policy that owns it, if one does.
    pub fn policy(&self) -> Option<&'a Policy> {
        match self {
            Owner::Policy(p) => Some(p),
            _ => None,
        }
    }
}

/// `nightly`, `orphan:old` or `manual`: the OWNER column of `list`. A policy name holds
/// no `:`, so an orphan's label never reads as a policy's.
impl fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Policy(p) => f.write_str(&p.name),
            Owner::Orphan(name) => write!(f, "orphan:{name}"),
            Owner::Manual => f.write_str("manual"),
        }
    }
}

/// The marker `Policy::snapshot_description` puts before the policy's name.
const MARK: &str = "snaprotd policy ";

/// The policy named by a description as `Policy::snapshot_description` writes it:
/// `snaprotd policy NAME` alone, or at the end as `(snaprotd policy NAME)`. The name
/// must be one a policy can have. Anything else (a description cut short by the
/// provider, one an operator wrote) names none.
pub fn described_policy(description: &str) -> Option<&str> {
    let d = description.trim();
    let name = match d
        .strip_suffix(')')
        .and_then(|inner| Some((inner, inner.rfind(&format!("({MARK}"))?)))
    {
        Some((inner, at)) => &inner[at + 1 + MARK.len()..],
        None => d.strip_prefix(MARK)?,
    };
    crate::names::is_plain_name(name).then_some(name)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::NameTemplate;
    use crate::provider::{ServerRef, SnapshotStatus};
    use crate::schedule::Schedule;

    fn policy(name: &str, servers: &[u64], description: Option<&str>) -> Policy {
        Policy {
            name: name.into(),
            servers: servers.to_vec(),
            patterns: Vec::new(),
            schedule: Schedule::parse("30 2 * * *").unwrap(),
            timezone: chrono_tz::UTC,
            keep: crate::config::Keep::newest(2),
            stop_server: false,
            snapshot_name: NameTemplate::parse("{policy}-%Y%m%d-%H%M").unwrap(),
            description: description.map(str::to_string),
            poll_interval: Duration::from_secs(10),
            wait_timeout: Duration::from_secs(600),
            stop_timeout: Duration::from_secs(300),
            catch_up: false,
            hooks: Default::default(),
        }
    }

    fn snapshot(server: u64, name: &str, description: Option<&str>) -> Snapshot {
        Snapshot {
            id: 1,
            server: ServerRef {
                id: server,
                name: None,
            },
            name: name.into(),
            status: SnapshotStatus::Completed,
            size_mb: None,
            created_at: chrono::DateTime::UNIX_EPOCH,
            description: description.map(str::to_string),
        }
    }

    #[test]
    fn every_description_a_policy_writes_names_that_policy() {
        for description in [
            None,
            Some("Nightly rotation"),
            Some("a (b) c"),
            Some(""),
            Some("snaprotd policy other"),
        ] {
            let p = policy("night_ly-2", &[1], description);
            let written = p.snapshot_description();
            assert_eq!(described_policy(&written), Some("night_ly-2"), "{written}");
        }
    }

    #[test]
    fn other_descriptions_name_no_policy() {
        for d in [
            "",
            "made by hand",
            "snaprotd policy ",
            "snaprotd policy two words",
            "before (snaprotd policy nightly",
            "Nightly (snaprotd policy nightly) and more",
            "(snaprotd policy ni/ghtly)",
            "my snaprotd policy nightly",
        ] {
            assert_eq!(described_policy(d), None, "{d:?}");
        }
        assert_eq!(
            described_policy("x (snaprotd policy a) (snaprotd policy b)"),
            Some("b")
        );
    }

    #[test]
    fn a_configured_policy_on_the_server_owns_by_name_else_the_description_tells() {
        let nightly = policy("nightly", &[1], None);
        let weekly = policy("weekly", &[2], None);
        let policies = [nightly, weekly];
        let of = |s: &Snapshot| Owner::of(&policies, s).to_string();
        // Owned by name, whatever the description says.
        assert_eq!(of(&snapshot(1, "nightly-20260101-0230", None)), "nightly");
        assert_eq!(
            of(&snapshot(
                1,
                "nightly-20260101-0230",
                Some("snaprotd policy old")
            )),
            "nightly"
        );
        // A policy that no longer lists the server.
        let moved = snapshot(1, "weekly-20260101-0230", Some("snaprotd policy weekly"));
        assert_eq!(of(&moved), "orphan:weekly");
        assert_eq!(Owner::of(&policies, &moved).orphan_of(), Some("weekly"));
        // A policy that is gone, or that names its snapshots differently now.
        assert_eq!(
            of(&snapshot(1, "old-1", Some("Old (snaprotd policy old)"))),
            "orphan:old"
        );
        assert_eq!(
            of(&snapshot(1, "nightly-1", Some("snaprotd policy nightly"))),
            "orphan:nightly"
        );
        // Made by someone else.
        assert_eq!(
            of(&snapshot(1, "before-upgrade", Some("by hand"))),
            "manual"
        );
        assert_eq!(of(&snapshot(1, "weekly-20260101-0230", None)), "manual");
    }
}
