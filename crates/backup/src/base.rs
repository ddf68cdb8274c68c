//! Base backups of the database: `mariabackup` copies the primary's data directory while it
//! serves (InnoDB's own hot backup, consistent at one binlog position), prepares it, and the
//! prepared directory goes into the repository as a snapshot under `/database`, tagged
//! `database` and `gtid=<position>`. A point-in-time restore starts from the newest base before
//! its target and replays the binlog archive from the base's position.
//!
//! Stored as a directory, not as a stream: a stream snapshot records no file size, and stock
//! restic (Debian 12's 0.14) restores such a file empty.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable as _;
use oscarbox_config::Config;
use tokio_util::sync::CancellationToken;

use crate::repo::{Snapshot, DATABASE, DATABASE_TAG};

/// How often a base backup is taken (the binlog archive covers the time between two).
pub const EVERY: Duration = Duration::from_secs(24 * 3600);
/// How long after a failed base backup the next is tried.
const RETRY: Duration = Duration::from_secs(15 * 60);

/// The socket of the node that is writable now (the primary), if one answers.
pub async fn primary_socket(config: &Config) -> Option<PathBuf> {
    for node in &config.database.nodes {
        let socket = oscarbox_mariadb::node_socket(&config.box_.state_dir, &node.name);
        let ask = async {
            let mut conn = mysql_async::Conn::new(oscarbox_mariadb::root_opts(&socket))
                .await
                .ok()?;
            let read_only: Option<i64> =
                conn.query_first("SELECT @@global.read_only").await.ok()?;
            let _ = conn.disconnect().await;
            read_only
        };
        if tokio::time::timeout(Duration::from_secs(5), ask)
            .await
            .ok()
            .flatten()
            == Some(0)
        {
            return Some(socket);
        }
    }
    None
}

/// Takes a base backup now: `mariabackup` from the primary into a scratch directory on the
/// backup disk, prepared, saved as a snapshot, the scratch directory removed.
pub async fn now(config: &Config) -> Result<Snapshot, String> {
    crate::documents::guard(config).await?;
    let socket = primary_socket(config).await.ok_or_else(|| {
        "no database node answers as writable on its socket: the box's database pair is not running (start the watchdog)".to_owned()
    })?;
    let scratch = config.backup.disk.join("scratch").join(format!(
        "base-{}-{}",
        crate::state::unix_now(),
        std::process::id()
    ));
    remove_stale(&config.backup.disk.join("scratch"));
    std::fs::create_dir_all(scratch.parent().unwrap_or(&scratch))
        .map_err(|e| format!("{}: {e}", scratch.display()))?;
    let result = async {
        oscarbox_mariadb::backup::prepared_copy(&socket, &scratch).await?;
        let gtid = oscarbox_mariadb::backup::copy_position(&scratch);
        // The tables' checksums at this position, from the prepared copy itself, go with it:
        // the restore drill compares a restore rebuilt from the archive against them.
        let work = scratch.with_extension("work");
        let sums = crate::pitr::with_scratch_server(&scratch, &work, |socket| async move {
            crate::drill::checksums(&socket).await
        })
        .await;
        let _ = std::fs::remove_dir_all(&work);
        let sums = sums??;
        std::fs::write(
            scratch.join(crate::drill::CHECKSUMS),
            crate::drill::to_text(&sums),
        )
        .map_err(|e| format!("recording the checksums: {e}"))?;
        let repo = crate::documents::open(config).await?;
        let (dir, host) = (scratch.clone(), config.box_.name.clone());
        tokio::task::spawn_blocking(move || {
            repo.backup_tree(&dir, DATABASE, DATABASE_TAG, &host, gtid.as_deref())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// A restore drill after a new base, when the last one is a day old (or there was none).
async fn drill_if_due(config: &Config, shutdown: &CancellationToken) {
    let state = crate::state::State::read(&crate::state::State::path(&config.box_.state_dir));
    let day = i64::try_from(EVERY.as_secs()).unwrap_or(i64::MAX);
    if state
        .drill_last
        .is_some_and(|t| crate::state::unix_now().saturating_sub(t) < day)
    {
        return;
    }
    let drilled = tokio::select! {
        () = shutdown.cancelled() => return,
        drilled = crate::drill::run(config) => drilled,
    };
    // The report names tables and documents: it stays in its private file, out of the log.
    let report = config.box_.state_dir.join("backup").join("drill-report");
    match drilled {
        Ok(r) if r.passed => tracing::info!(report = %report.display(), "restore drill passed"),
        Ok(_) => tracing::error!(alert = true, report = %report.display(), "restore drill FAILED"),
        Err(why) => tracing::error!(alert = true, "restore drill could not run: {why}"),
    }
}

/// Removes what interrupted attempts left (named `base-<unix seconds>-<pid>`, older than a day; a
/// younger one may be another process's backup under way).
fn remove_stale(scratch: &Path) {
    let now = crate::state::unix_now();
    for e in std::fs::read_dir(scratch).into_iter().flatten().flatten() {
        let started = e
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix("base-"))
            .and_then(|t| t.split('-').next()?.parse::<i64>().ok());
        if started.is_some_and(|t| now.saturating_sub(t) > 24 * 3600) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Runs until `shutdown`: a base backup when the newest is older than [`EVERY`] (at once on a
/// box that has none, or whose live database a restore replaced since), then every [`EVERY`].
pub async fn run(config: Arc<Config>, shutdown: CancellationToken) {
    // The pair, the archive and the EMR first: the base is only useful with the binlog after
    // it, and a box that just started has better things to do for a minute.
    tokio::select! {
        () = shutdown.cancelled() => return,
        () = tokio::time::sleep(Duration::from_secs(60)) => {}
    }
    let mut alerted = false;
    loop {
        let newest = match crate::documents::open(&config).await {
            Ok(repo) => tokio::task::spawn_blocking(move || repo.snapshots(Some(DATABASE_TAG)))
                .await
                .ok()
                .and_then(Result::ok)
                .and_then(|s| s.last().map(|s| s.unix_seconds)),
            Err(_) => None,
        };
        // A restore that replaced the live database began a new history: a restore to a
        // moment in it needs a base of its own, at once.
        let replaced = crate::pitr::replacements(&crate::archive::dir(&config))
            .ok()
            .and_then(|r| r.last().map(|r| r.unix));
        let newest = newest.filter(|t| replaced.is_none_or(|r| *t >= r));
        let age = newest.map(|t| crate::state::unix_now().saturating_sub(t));
        let due_in = age.map_or(Duration::ZERO, |a| {
            EVERY.saturating_sub(Duration::from_secs(u64::try_from(a).unwrap_or(0)))
        });
        let wait = if due_in.is_zero() {
            // Cancelled at shutdown: `mariabackup` is killed, its scratch directory left for
            // the next attempt to remove.
            let taken = tokio::select! {
                () = shutdown.cancelled() => return,
                taken = now(&config) => taken,
            };
            match taken {
                Ok(s) => {
                    tracing::info!(snapshot = %s.short_id, gtid = s.gtid().unwrap_or("unknown"), bytes_added = s.bytes_added, "database base backup saved");
                    if std::mem::take(&mut alerted) {
                        tracing::info!("database base backups work again");
                    }
                    drill_if_due(&config, &shutdown).await;
                    EVERY
                }
                Err(why) => {
                    if !alerted {
                        tracing::error!(alert = true, "the database base backup failed: {why}");
                        alerted = true;
                    }
                    RETRY
                }
            }
        } else {
            due_in
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
