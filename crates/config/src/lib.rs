//! The box's configuration: one schema for the appliance (`config/box.toml`) and a developer's
//! machine (`config/dev.toml`, also embedded as the default).
//!
//! Parsing happens in stages: TOML → [`RawConfig`] (every key optional, defaults filled) →
//! [`RawConfig::validate`] → [`Config`] (typed: ports, durations, paths). Every error names the
//! file, the line, the key and what was expected, so a technician can fix it without reading
//! code. Relative paths resolve against the working directory of the process that loads them.

mod error;
pub mod fleet;
mod raw;
mod typed;

pub use error::{ConfigError, ConfigErrors};
pub use raw::RawConfig;
pub use typed::{
    AlertsConfig, BackupConfig, BoxConfig, Config, DatabaseConfig, DbNode, EmrConfig,
    FaultInjection, HeartbeatConfig, HeartbeatStyle, Keep, Profile, ProxyConfig, StatusConfig,
    WatchdogConfig, WorkerKind,
};

use std::path::Path;

/// The embedded default: the developer box, everything under `var/`.
pub const DEV_TOML: &str = include_str!("../../../config/dev.toml");
/// The name the embedded default reports in errors and in `check-config`.
pub const DEV_TOML_NAME: &str = "<embedded config/dev.toml>";

/// Reads, parses and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::single(ConfigError {
            file: path.display().to_string(),
            line: None,
            key: None,
            message: format!(
                "cannot read the configuration file: {e}; check the path, or omit --config to use the embedded development default"
            ),
        })
    })?;
    parse(&path.display().to_string(), &text)
}

/// The file at `path`, or the embedded development default when there is none: what every
/// command's `--config` means.
pub fn load_or_default(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    match path {
        Some(p) => load(p),
        None => Ok(dev_default()),
    }
}

/// The embedded development default.
pub fn dev_default() -> Config {
    parse(DEV_TOML_NAME, DEV_TOML).expect("the embedded config/dev.toml is valid (tested)")
}

/// Parses and validates `text`, naming `file` in errors.
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigErrors> {
    parse_raw(file, text)?.validate_in(file, text)
}

/// Parses `text` into the raw stage only: defaults filled, nothing validated.
pub fn parse_raw(file: &str, text: &str) -> Result<RawConfig, ConfigErrors> {
    from_toml(file, text)
}

/// TOML into a raw stage `T`, a syntax or type error named by file, line and key.
fn from_toml<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Result<T, ConfigErrors> {
    toml::from_str::<T>(text).map_err(|e| {
        let key = e
            .span()
            .and_then(|s| text.get(s))
            .map(|k| k.trim_matches(['"', '[', ']', ' ']).to_owned())
            .filter(|k| !k.is_empty() && k.len() < 80 && !k.contains('\n'))
            .map(|k| match e.span().and_then(|s| section_at(text, s.start)) {
                Some(section) if !k.starts_with(&section) => format!("{section}.{k}"),
                _ => k,
            });
        ConfigErrors::single(ConfigError {
            file: file.to_owned(),
            line: e.span().map(|s| line_of(text, s.start)),
            key,
            message: e.message().trim().to_owned(),
        })
    })
}

/// The `[section]` or `[[section]]` header in force at byte offset `at`.
fn section_at(text: &str, at: usize) -> Option<String> {
    text.get(..at)?
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(['[', ']', ' ']).to_owned())
}

/// 1-based line number of byte offset `at` in `text`.
pub(crate) fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests;
