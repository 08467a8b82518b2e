//! The README's walk-through, run as written: every command it shows works.

use std::process::Command;

#[test]
fn the_readme_walk_through_runs_as_written() {
    let readme = include_str!("../README.md");
    let start = readme
        .find("<!-- walk-through -->")
        .expect("the walk-through");
    let end = readme
        .find("<!-- end of walk-through -->")
        .expect("its end");
    let script = readme[start..end]
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(script, _)| script)
        .expect("a sh block");
    // Run where `target/release/snaprotd` is this build's binary.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("target/release")).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_snaprotd"),
        dir.path().join("target/release/snaprotd"),
    )
    .unwrap();
    let out = Command::new("timeout")
        .args(["120", "bash", "-euo", "pipefail", "-c", script])
        .current_dir(dir.path())
        .env_remove("SNAPROTD_API_TOKEN")
        .env_remove("SNAPROTD_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for shown in [
        ": ok",                     // check
        "would create nightly-",    // once --dry-run
        "2 job(s): 2 ok, 0 failed", // once
        "LAST RUN",                 // status
        "LEFT",                     // next
    ] {
        assert!(
            stdout.contains(shown),
            "{shown:?} not in:\n{stdout}\n{stderr}"
        );
    }
}
