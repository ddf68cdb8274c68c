//! The backup commands in tests: `oscarbox` run on a box's config, what it said, and the
//! documents snapshots the backup state file records.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::EmrConfig;

/// `oscarbox ARGS --config CONFIG`, run to its end.
pub async fn oscarbox(binary: &Path, config: &EmrConfig, args: &[&str]) -> anyhow::Result<Output> {
    Ok(tokio::process::Command::new(binary)
        .args(args)
        .arg("--config")
        .arg(&config.path)
        .output()
        .await?)
}

/// What a command printed, standard output then standard error.
pub fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The newest documents snapshot's id, as the backup state file records it.
pub fn newest_documents(config: &EmrConfig) -> Option<String> {
    std::fs::read_to_string(config.state_dir.join("backup/state"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("documents-last-id: ").map(str::to_owned))
}

/// Waits until the state records a documents snapshot other than `previous`; its id.
pub async fn documents_saved_after(
    config: &EmrConfig,
    previous: Option<&str>,
    within: Duration,
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(now) = newest_documents(config).filter(|n| Some(n.as_str()) != previous) {
            return Ok(now);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no new documents snapshot within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
