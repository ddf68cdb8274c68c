//! `oscarbox check-config [FILE]`: the effective configuration, or every error with exit 64.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use oscarbox_common::EX_USAGE;
use oscarbox_config::{ConfigErrors, DEV_TOML, DEV_TOML_NAME};

/// Parses, validates and prints. The effective configuration is the raw stage with every
/// default filled in, so an operator sees the values the box will really use.
pub fn run(file: Option<&Path>) -> ExitCode {
    let (name, text) = match file {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => (p.display().to_string(), t),
            Err(_) => {
                // Let the loader produce its standard message for an unreadable file.
                let errors = oscarbox_config::load(p).err();
                return report(errors.as_ref());
            }
        },
        None => (DEV_TOML_NAME.to_owned(), DEV_TOML.to_owned()),
    };
    let raw = match oscarbox_config::parse_raw(&name, &text) {
        Ok(r) => r,
        Err(e) => return report(Some(&e)),
    };
    if let Err(e) = raw.clone().validate_in(&name, &text) {
        return report(Some(&e));
    }
    let effective = match toml::to_string(&raw) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "failed to print the effective configuration: {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "# {name}: valid. Effective configuration, defaults filled in:"
    );
    let _ = write!(out, "{effective}");
    ExitCode::SUCCESS
}

fn report(errors: Option<&ConfigErrors>) -> ExitCode {
    if let Some(errors) = errors {
        let _ = writeln!(std::io::stderr(), "{errors}");
    }
    ExitCode::from(EX_USAGE)
}
