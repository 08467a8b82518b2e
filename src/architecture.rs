//! ARCHITECTURE.md's rules about who uses whom, checked on the source itself: no cycle
//! between the top-level modules of `src/`, and the few rules stated there by name.
//!
//! A module's uses are the `crate::name` paths in its files (comment lines left out),
//! `use crate::{a, b}` groups included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).expect("src/ reads") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level module a file belongs to (`None` for `lib.rs`, `main.rs` and this
/// file, whose text names what it looks for).
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!["lib", "main", "architecture"].contains(&name)).then(|| name.to_string())
}

/// The file's text without comment lines.
fn code(file: &Path) -> String {
    std::fs::read_to_string(file)
        .expect("source reads")
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The top-level modules named by `crate::` paths in `code`.
fn uses(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The group's top-level items: `a`, `b::c`, `d::{e, f}`.
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        out.insert(ident(&group[j..]));
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.remove("");
    out
}

/// module → (module it uses → the files that use it).
fn graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut g: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in sources(&src()) {
        let Some(from) = module_of(&file) else {
            continue;
        };
        let edges = g.entry(from.clone()).or_default();
        for to in uses(&code(&file)) {
            if to != from {
                let shown = file.strip_prefix(src()).unwrap_or(&file).display();
                edges.entry(to).or_default().insert(format!("src/{shown}"));
            }
        }
    }
    g
}

/// A cycle through `start`, if there is one: the modules in order.
fn cycle_from(
    g: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    start: &str,
) -> Option<Vec<String>> {
    // Depth-first, remembering the path taken.
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in g.get(&at).into_iter().flat_map(|e| e.keys()) {
            if next == start {
                return Some(path.clone());
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

#[test]
fn no_cycle_between_top_level_modules() {
    let g = graph();
    assert!(g.contains_key("daemon") && g.contains_key("cli"), "{g:?}");
    let mut cycles = Vec::new();
    for start in g.keys() {
        if let Some(cycle) = cycle_from(&g, start)
            && cycle.iter().min() == Some(start)
        {
            let mut shown = Vec::new();
            for (i, from) in cycle.iter().enumerate() {
                let to = &cycle[(i + 1) % cycle.len()];
                let files: Vec<&String> = g[from][to].iter().collect();
                shown.push(format!("{from} → {to} ({files:?})"));
            }
            cycles.push(shown.join(", "));
        }
    }
    assert!(
        cycles.is_empty(),
        "cycles between top-level modules:\n{}",
        cycles.join("\n")
    );
}

/// The files of `module` whose code contains `needle`.
fn files_with(module: &str, needle: &str) -> Vec<String> {
    sources(&src())
        .into_iter()
        .filter(|f| module_of(f).as_deref() == Some(module) && code(f).contains(needle))
        .map(|f| f.display().to_string())
        .collect()
}

#[test]
fn only_cli_knows_exit_codes() {
    for module in graph().keys().filter(|m| *m != "cli") {
        for needle in ["ExitCode", "process::exit"] {
            let found = files_with(module, needle);
            assert!(found.is_empty(), "{needle} outside cli: {found:?}");
        }
    }
    // Inside cli, `exit.rs` decides them; `mod.rs` hands its answer to the process.
    let found: Vec<String> = files_with("cli", "ExitCode")
        .into_iter()
        .filter(|f| !f.ends_with("cli/exit.rs") && !f.ends_with("cli/mod.rs"))
        .collect();
    assert!(
        found.is_empty(),
        "exit codes outside cli/exit.rs: {found:?}"
    );
}

#[test]
fn the_daemon_installs_no_signal_handler() {
    for needle in ["tokio::signal", "SignalKind", "CliError"] {
        let found = files_with("daemon", needle);
        assert!(found.is_empty(), "{needle} in the daemon: {found:?}");
    }
}

#[test]
fn provider_knows_nothing_of_policies() {
    let used: BTreeSet<String> = sources(&src().join("provider"))
        .iter()
        .flat_map(|f| {
            let code = code(f);
            code.match_indices("crate::config::")
                .map(|(i, _)| ident(&code[i + "crate::config::".len()..]))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        used.iter().all(|u| u == "ApiConfig"),
        "the provider uses more of the configuration than [api]: {used:?}"
    );
    for forbidden in ["rotation", "runner", "daemon", "state", "cli", "schedule"] {
        assert!(
            !graph()["provider"].contains_key(forbidden),
            "provider uses {forbidden}"
        );
    }
}
