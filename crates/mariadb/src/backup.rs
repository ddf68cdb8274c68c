//! `mariabackup` as the box uses it: a prepared copy of a running server's data directory
//! (InnoDB's hot backup, consistent at one binlog position), and that position. The pair
//! rebuilds a node from one; the backups store one as a base backup.

use std::path::Path;

/// Copies the server reached as root on `socket` into `target` (`mariabackup --backup`), then
/// prepares the copy so that it is a data directory a `mariadbd` starts on. `Err` carries the
/// end of what the tool said.
pub async fn prepared_copy(socket: &Path, target: &Path) -> Result<(), String> {
    let target = format!("--target-dir={}", target.display());
    run(&[
        "--backup".into(),
        target.clone(),
        format!("--socket={}", socket.display()),
        "--user=root".into(),
    ])
    .await?;
    run(&["--prepare".into(), target]).await
}

/// The GTID position a prepared copy is consistent at, from the file `mariabackup` writes
/// (`file<TAB>position<TAB>gtid`); `None` when it recorded none.
pub fn copy_position(dir: &Path) -> Option<String> {
    ["mariadb_backup_binlog_info", "xtrabackup_binlog_info"]
        .iter()
        .find_map(|name| std::fs::read_to_string(dir.join(name)).ok())
        .and_then(|text| text.split_whitespace().nth(2).map(str::to_owned))
}

/// `mariabackup ARGS`, killed if the caller gives up on it.
async fn run(args: &[String]) -> Result<(), String> {
    let out = tokio::process::Command::new("mariabackup")
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("run mariabackup (install mariadb-backup): {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
    Err(format!(
        "mariabackup failed with {}: {}",
        out.status,
        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
    ))
}
