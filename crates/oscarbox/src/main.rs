//! `oscarbox`: the box's command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use oscarbox_common::EX_USAGE;

mod check_config;
mod up;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "OSCAR Box: a self-healing OSCAR EMR server on one computer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a configuration file and print the effective configuration, or every error.
    CheckConfig {
        /// The file to check; without it, the embedded development default.
        file: Option<PathBuf>,
    },
    /// Run the whole box in the foreground (MariaDB and the EMR instances); Ctrl-C stops it.
    Up {
        /// The box configuration; without it, the embedded development default.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::CheckConfig { file } => check_config::run(file.as_deref()),
        Command::Up { config } => up::run(config.as_deref()),
    }
}
