//! The man page and the shell completions, as the package installs them: made by
//! `snaprotd assets`, read by the real `man` and `bash`.

use std::path::Path;
use std::process::Command;

fn assets(dir: &Path) {
    let ok = Command::new(env!("CARGO_BIN_EXE_snaprotd"))
        .arg("assets")
        .arg(dir)
        .args(["--completer", env!("CARGO_BIN_EXE_snaprotd")])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// The page as `man` shows it, and what groff warned about.
fn man(page: &Path) -> (String, String) {
    let out = Command::new("man")
        .args(["--warnings=w", "-l"])
        .arg(page)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("man runs (package man-db)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_man_page_has_the_sections_an_operator_looks_for_and_every_key() {
    let dir = tempfile::tempdir().unwrap();
    assets(dir.path());
    let (text, warnings) = man(&dir.path().join("snaprotd.1"));
    assert_eq!(warnings, "", "groff warned");
    for section in [
        "\nSYNOPSIS",
        "\nCOMMANDS",
        "\nEXIT STATUS",
        "\nENVIRONMENT",
        "\nFILES",
        "\nSIGNALS",
        "\nJSON OUTPUT",
        "\nNOTIFICATIONS",
        "\nCONFIGURATION",
        "\nSEE ALSO",
    ] {
        assert!(text.contains(section), "no {section:?} in:\n{text}");
    }
    for code in ["78", "130, 143"] {
        assert!(
            text.contains(&format!("\n       {code}")),
            "exit {code}:\n{text}"
        );
    }
    // Every key of the example configuration, with its default or "unset".
    let config = &text[text.find("\nCONFIGURATION").unwrap()..];
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/snaprotd.toml"))
            .unwrap();
    for line in example.lines() {
        let line = line.trim_start_matches("# ");
        if let Some((key, _)) = line.split_once(" = ")
            && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            assert!(
                config.contains(&format!("\n       {key} = ")),
                "{key}:\n{config}"
            );
        }
    }
    // Every visible command, and no page that is not installed.
    for command in [
        "run", "status", "check", "once", "next", "coverage", "list", "restore", "notify", "sim",
        "demo",
    ] {
        assert!(text.contains(&format!("snaprotd {command}\n")), "{command}");
    }
    assert!(
        !text.contains("snaprotd-"),
        "a reference to a page not installed:\n{text}"
    );
    assert!(!text.contains("assets"), "{text}");
    let see_also = &text[text.find("\nSEE ALSO").unwrap()..];
    assert!(
        see_also.contains("systemctl(1), journalctl(1)\n"),
        "{see_also}"
    );
}

/// Completes `words` (the last one being completed) through the bash script.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let line = format!(
        "source {}; COMP_WORDS=({}); COMP_CWORD={}; _clap_complete_snaprotd snaprotd '{}' '{}'; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let out = Command::new("bash").args(["-c", &line]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn completions_leave_out_hidden_commands_and_offer_configured_policies() {
    let dir = tempfile::tempdir().unwrap();
    assets(dir.path());
    let script = dir.path().join("snaprotd.bash");
    let commands = bash_complete(&script, &["snaprotd", ""]);
    assert!(commands.contains(&"status".to_string()), "{commands:?}");
    assert!(!commands.iter().any(|c| c == "assets"), "{commands:?}");

    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[[policy]]\nname = \"nightly\"\nservers = [12, 13]\nschedule = \"@daily\"\nkeep = 1\n\
         [[policy]]\nname = \"weekly\"\nservers = [12]\nschedule = \"@weekly\"\nkeep = 1\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    assert_eq!(
        bash_complete(&script, &["snaprotd", "-c", c, "once", "--policy", ""]),
        ["nightly", "weekly"]
    );
    assert_eq!(
        bash_complete(&script, &["snaprotd", "-c", c, "once", "--policy", "w"]),
        ["weekly"]
    );
    assert_eq!(
        bash_complete(&script, &["snaprotd", "-c", c, "notify", "--policy", "n"]),
        ["nightly"]
    );
    assert_eq!(
        bash_complete(&script, &["snaprotd", "-c", c, "once", "--server", "1"]),
        ["12", "13"]
    );
    // No configuration to read: nothing offered, nothing printed.
    assert_eq!(
        bash_complete(
            &script,
            &["snaprotd", "-c", "/nonexistent", "once", "--policy", ""]
        ),
        Vec::<String>::new()
    );
}
