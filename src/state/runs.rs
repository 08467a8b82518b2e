//! The last run of every job (`runs/<policy@server>.json`) and when each job was first
//! scheduled (`known-jobs.json`). The state directory keeps a run's record without
//! knowing its fields: its shape is the runner's `RunReport`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::StateError;
use super::files::{existing_subdir, read, write};
use crate::job::JobId;

pub(super) fn file_name(job: &JobId) -> String {
    format!("{job}.json")
}

/// Where the last run of `job` is written.
pub(super) fn path(root: &Path, job: &JobId) -> PathBuf {
    root.join("runs").join(file_name(job))
}

pub(super) fn record(root: &Path, job: &JobId, bytes: &[u8]) -> Result<(), StateError> {
    write(root, "runs", &file_name(job), bytes)
}

pub(super) fn last<T: DeserializeOwned>(root: &Path, job: &JobId) -> Option<T> {
    read(&existing_subdir(root, "runs")?.join(file_name(job)))
}

/// The last runs of `jobs` that were recorded and can be read, in one pass.
pub(super) fn last_of<T: DeserializeOwned>(root: &Path, jobs: &[JobId]) -> Vec<(JobId, T)> {
    let Some(dir) = existing_subdir(root, "runs") else {
        return Vec::new();
    };
    jobs.iter()
        .filter_map(|job| Some((job.clone(), read(&dir.join(file_name(job)))?)))
        .collect()
}

pub(super) fn known_jobs(root: &Path) -> BTreeMap<JobId, DateTime<Utc>> {
    read::<BTreeMap<String, DateTime<Utc>>>(&root.join("known-jobs.json"))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(job, since)| Some((JobId::parse(&job)?, since)))
        .collect()
}

pub(super) fn known_jobs_bytes(
    root: &Path,
    jobs: &BTreeMap<JobId, DateTime<Utc>>,
) -> Result<Vec<u8>, StateError> {
    let by_name: BTreeMap<String, DateTime<Utc>> =
        jobs.iter().map(|(j, t)| (j.to_string(), *t)).collect();
    super::files::encode(&root.join("known-jobs.json"), &by_name)
}

pub(super) fn record_known_jobs(root: &Path, bytes: &[u8]) -> Result<(), StateError> {
    write(root, "", "known-jobs.json", bytes)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

    use super::*;
    use crate::state::check::check;
    use crate::state::tests::{VICTIM, state_and_victim};

    fn run() -> serde_json::Value {
        serde_json::json!({"job": "p@1", "ok": true})
    }

    fn job() -> JobId {
        JobId::new("p", 1)
    }

    fn record_run(root: &Path) -> Result<(), StateError> {
        record(root, &job(), &serde_json::to_vec(&run()).unwrap())
    }

    #[test]
    fn records_are_never_written_through_a_link() {
        let (_dir, root, victim) = state_and_victim();
        let runs = root.join("runs");
        fs::create_dir(&runs).unwrap();
        // At the temp name an earlier release used, and at the record itself.
        std::os::unix::fs::symlink(&victim, runs.join("p@1.json.tmp")).unwrap();
        std::os::unix::fs::symlink(&victim, runs.join("p@1.json")).unwrap();
        record_run(&root).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), VICTIM);
        let file = runs.join("p@1.json");
        assert!(fs::symlink_metadata(&file).unwrap().is_file());
        assert_eq!(last::<serde_json::Value>(&root, &job()), Some(run()));
        // No temp file left behind.
        let names: Vec<String> = fs::read_dir(&runs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with('.')),
            "temp files left: {names:?}"
        );
    }

    #[test]
    fn a_last_run_that_is_a_link_is_moved_aside_and_its_target_untouched() {
        let (_dir, root, victim) = state_and_victim();
        let runs = root.join("runs");
        fs::create_dir(&runs).unwrap();
        std::os::unix::fs::symlink(&victim, runs.join("p@1.json")).unwrap();
        assert_eq!(last::<serde_json::Value>(&root, &job()), None);
        assert!(fs::symlink_metadata(runs.join("p@1.json")).is_err());
        assert_eq!(fs::read(&victim).unwrap(), VICTIM);
    }

    #[test]
    fn known_jobs_are_kept_by_name_as_the_first_release_wrote_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(
            root.join("known-jobs.json"),
            r#"{"nightly@1": "2026-11-24T10:15:00Z", "not a job": "2026-11-24T10:15:00Z"}"#,
        )
        .unwrap();
        let known = known_jobs(root);
        let since: DateTime<Utc> = "2026-11-24T10:15:00Z".parse().unwrap();
        assert_eq!(known, BTreeMap::from([(JobId::new("nightly", 1), since)]));
        record_known_jobs(root, &known_jobs_bytes(root, &known).unwrap()).unwrap();
        let text = fs::read_to_string(root.join("known-jobs.json")).unwrap();
        assert!(text.contains("\"nightly@1\""), "{text}");
    }

    #[test]
    fn check_refuses_a_state_dir_others_can_write_in() {
        let (dir, root, _) = state_and_victim();
        check(&root).expect("0700 and ours");
        // Missing: created, never writable by others.
        let fresh = dir.path().join("new/state");
        check(&fresh).expect("created");
        let mode = fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o022, 0, "created with {mode:o}");
        for mode in [0o770, 0o702, 0o1777] {
            fs::set_permissions(&root, fs::Permissions::from_mode(mode)).unwrap();
            let e = check(&root).expect_err("refused").to_string();
            assert!(
                e.contains(&root.display().to_string())
                    && e.contains(&format!("{mode:04o}"))
                    && e.contains("chmod 700"),
                "{e}"
            );
        }
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        check(&root).expect("0755 is not writable by others");

        // A subdirectory: writable by others, or a link.
        let runs = root.join("runs");
        fs::DirBuilder::new().mode(0o700).create(&runs).unwrap();
        fs::set_permissions(&runs, fs::Permissions::from_mode(0o777)).unwrap();
        let e = check(&root).expect_err("refused").to_string();
        assert!(e.contains("runs") && e.contains("0777"), "{e}");
        fs::remove_dir(&runs).unwrap();
        std::os::unix::fs::symlink(dir.path(), &runs).unwrap();
        let beyond = dir.path().join("p@1.json");
        fs::write(&beyond, serde_json::to_vec(&run()).unwrap()).unwrap();
        let e = check(&root).expect_err("refused").to_string();
        assert!(e.contains("runs") && e.contains("symbolic link"), "{e}");
        assert!(record_run(&root).is_err(), "written through it");
        assert_eq!(
            last::<serde_json::Value>(&root, &job()),
            None,
            "read through it"
        );
        fs::remove_file(&runs).unwrap();

        // Owned by another user (only root can make one).
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&root, Some(65534), None).unwrap();
            let e = check(&root).expect_err("refused").to_string();
            assert!(e.contains("uid 65534") && e.contains("chown 0"), "{e}");
        }
    }

    #[test]
    fn check_follows_a_linked_state_dir_to_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("private/snaprotd");
        let link = dir.path().join("snaprotd");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = check(&link).expect_err("a dangling link").to_string();
        assert!(e.contains(&real.display().to_string()), "{e}");
        fs::create_dir(real.parent().unwrap()).unwrap();
        fs::DirBuilder::new().mode(0o700).create(&real).unwrap();
        check(&link).expect("a link to a good directory");
        record_run(&link).unwrap();
        assert!(real.join("runs/p@1.json").is_file());
        fs::set_permissions(&real, fs::Permissions::from_mode(0o777)).unwrap();
        let e = check(&link).expect_err("refused").to_string();
        assert!(
            e.contains(&link.display().to_string())
                && e.contains(&format!("a link to {}", real.display()))
                && e.contains(&format!("chmod 700 {}", real.display())),
            "{e}"
        );
    }
}
