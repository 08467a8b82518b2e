//! `snaprotd assets DIR` (hidden): writes the man page and shell completions generated
//! from the command-line definition, for the Debian package.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;

use super::{Cli, CliError, CliResult, Exit};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to write into
    out: PathBuf,
}

pub fn run(args: Args) -> CliResult {
    let failed = |what: &str, source: std::io::Error| CliError::Io {
        what: format!("cannot write {what}"),
        source,
    };
    std::fs::create_dir_all(&args.out).map_err(|e| failed("the directory", e))?;
    let cmd = Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .map_err(|e| failed("the man page", e))?;
    std::fs::write(args.out.join("snaprotd.1"), page).map_err(|e| failed("the man page", e))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = cmd.clone();
        clap_complete::generate_to(shell, &mut cmd, "snaprotd", &args.out)
            .map_err(|e| failed("completions", e))?;
    }
    Ok(Exit::Success)
}
