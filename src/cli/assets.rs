//! `snaprotd assets DIR` (hidden): writes the man page and shell completions generated
//! from the command-line definition, for the Debian package.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::env::{self, EnvCompleter};

use super::{Cli, CliError, CliResult, Exit};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to write into
    out: PathBuf,
    /// The program the completion scripts ask
    #[arg(long, default_value = "/usr/bin/snaprotd")]
    completer: String,
}

pub fn run(args: Args) -> CliResult {
    let failed = |what: &str, source: std::io::Error| CliError::Io {
        what: format!("cannot write {what}"),
        source,
    };
    std::fs::create_dir_all(&args.out).map_err(|e| failed("the directory", e))?;
    let cmd = Cli::command();
    let page = super::manpage::render(&cmd).map_err(|e| failed("the man page", e))?;
    std::fs::write(args.out.join("snaprotd.1"), page).map_err(|e| failed("the man page", e))?;
    // The shells' registration scripts: each asks /usr/bin/snaprotd for completions
    // (`complete.rs`).
    let shells: [(&dyn EnvCompleter, &str); 3] = [
        (&env::Bash, "snaprotd.bash"),
        (&env::Zsh, "_snaprotd"),
        (&env::Fish, "snaprotd.fish"),
    ];
    for (shell, file) in shells {
        let mut script = Vec::new();
        shell
            .write_registration(
                super::complete::VAR,
                "snaprotd",
                "snaprotd",
                &args.completer,
                &mut script,
            )
            .map_err(|e| failed("completions", e))?;
        std::fs::write(args.out.join(file), script).map_err(|e| failed("completions", e))?;
    }
    Ok(Exit::Success)
}
