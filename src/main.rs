//! The edge: parse the command line, run the command, turn its result into an exit code.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    snaprotd::cli::main()
}
