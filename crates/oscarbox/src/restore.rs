//! The restores that put data back in service: `oscarbox restore db --replace-live` (the box's
//! own database, back to a point in time) and `oscarbox restore box` (a whole box rebuilt on a
//! fresh machine from the backup disk and the recovery key alone).
//!
//! Both need the box stopped: the database's files are swapped while no `mariadbd` has them
//! open. Nothing is deleted: the data directories they replace are moved aside beside
//! themselves (`<dir>.before-restore-<time>`) for the technician to remove once satisfied.
//! The restored primary's binlog begins at the archive's end, so its new transactions never
//! reuse an archived GTID and the binlog archive resumes unchanged; the replacement is
//! recorded in the archive, so that later restores never mix the two histories. The replica
//! gets a copy of the restored database, so that it follows the primary as soon as the box
//! starts; the watchdog then takes a base backup of the new history within a minute.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use oscarbox_backup::pitr::{self, with_suffix, Plan, Replaced, Target};
use oscarbox_backup::repo::{Repo, DOCUMENTS, DOCUMENTS_TAG};
use oscarbox_backup::{archive, disk, documents};
use oscarbox_config::Config;
use oscarbox_failover::NodeId;

use crate::backup::{blocking, plan_text, with_config};
use crate::database::{layout, Layout};

fn say(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// Refuses while any part of the box runs: the watchdog, the pair's control socket, or a
/// database node answering on its socket. A connection refused (or no socket) means stopped.
fn refuse_if_running(config: &Config) -> Result<(), String> {
    let mut sockets = vec![
        config.watchdog.control_socket.clone(),
        config.database.control_socket.clone(),
    ];
    sockets.extend(
        config
            .database
            .nodes
            .iter()
            .map(|n| oscarbox_mariadb::node_socket(&config.box_.state_dir, &n.name)),
    );
    if let Some(live) = sockets
        .iter()
        .find(|s| std::os::unix::net::UnixStream::connect(s).is_ok())
    {
        return Err(format!(
            "the box is running ({} answers): stop it first (`systemctl stop oscarbox-watchdog oscarbox-proxy`, or Ctrl-C on `oscarbox up`), then run this again",
            live.display()
        ));
    }
    Ok(())
}

/// The node the promotion ledger names as the primary (node A on a box that never ran), and
/// its server id.
fn primary(config: &Config) -> Result<(PathBuf, u32), String> {
    let Ok(Layout::Pair(a, b)) = layout(config) else {
        return Err("restoring the live database needs the database pair (two [[database.nodes]] and an endpoint of their own): only the pair keeps the binlog archive a restore replays".into());
    };
    let ledger = oscarbox_dbpair::executor::Paths::under(&config.box_.state_dir).ledger;
    let primary = oscarbox_dbpair::ledger::read(&ledger)
        .map_err(|e| e.to_string())?
        .map_or(NodeId::A, |l| l.primary);
    let (node, server_id) = match primary {
        NodeId::A => (a, 1),
        NodeId::B => (b, 2),
    };
    let dir = std::path::absolute(&node.data_dir)
        .map_err(|e| format!("{}: {e}", node.data_dir.display()))?;
    Ok((dir, server_id))
}

fn holds_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

/// Restores `plan` as the box's live database: into a directory beside the primary's, its
/// history continued from the archive's end, then swapped in; the old data directories are
/// moved aside, never deleted. Returns where they went.
async fn install(config: &Config, plan: &Plan) -> Result<Vec<PathBuf>, String> {
    let (primary_dir, server_id) = primary(config)?;
    let archive_dir = archive::dir(config);
    let dir = archive_dir.clone();
    let resume = tokio::task::spawn_blocking(move || archive::resume(&dir))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("the binlog archive {}: {e}", archive_dir.display()))?;
    let mut position = plan.base_position.clone();
    if let Some(last) = plan.last {
        position.insert(last);
    }
    if let Some(end) = &resume {
        position = position.advanced_to(end);
    }
    let restoring = with_suffix(&primary_dir, ".restoring");
    if std::fs::metadata(&restoring).is_ok() {
        say(&format!(
            "removing {}, left by an interrupted restore",
            restoring.display()
        ));
        std::fs::remove_dir_all(&restoring).map_err(|e| format!("{}: {e}", restoring.display()))?;
    }
    pitr::restore(config, plan, &restoring, &say).await?;
    say(&format!(
        "its new transactions will follow on from {position}, the binlog archive's end"
    ));
    let work = with_suffix(&primary_dir, ".restore-work");
    let continued = pitr::continue_history(&restoring, &work, server_id, &position).await;
    let _ = std::fs::remove_dir_all(&work);
    continued?;
    // The replica starts from a copy: the same data and position, so it simply follows the
    // primary when the box starts (a copy on disk costs what the pair's rebuild through
    // `mariabackup` would, without a running primary). Should the copy fail, the pair
    // rebuilds the replica itself.
    let mut replicas = Vec::new();
    for node in &config.database.nodes {
        let dir = std::path::absolute(&node.data_dir)
            .map_err(|e| format!("{}: {e}", node.data_dir.display()))?;
        if dir == primary_dir {
            continue;
        }
        let copy = with_suffix(&dir, ".restoring");
        let _ = std::fs::remove_dir_all(&copy);
        say(&format!(
            "copying the restored database for the replica into {}",
            copy.display()
        ));
        let copied = tokio::process::Command::new("cp")
            .arg("-a")
            .arg(&restoring)
            .arg(&copy)
            .output()
            .await;
        match copied {
            Ok(out) if out.status.success() => replicas.push((copy, dir)),
            Ok(out) => {
                let _ = std::fs::remove_dir_all(&copy);
                say(&format!(
                    "the replica's copy failed ({}); the pair rebuilds the replica from the primary when the box starts",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Err(e) => say(&format!(
                "cannot run cp ({e}); the pair rebuilds the replica from the primary when the box starts"
            )),
        }
    }
    // Recorded before the swap: should the swap fail, a record too many only makes later
    // restores wait for the base the watchdog takes at its next start; one too few could mix
    // the two histories.
    let replaced = Replaced {
        unix: oscarbox_backup::state::unix_now(),
        position,
    };
    pitr::record_replacement(&archive::dir(config), &replaced).map_err(|e| {
        format!(
            "recording the restore in the binlog archive failed ({e}); nothing live was changed"
        )
    })?;
    // The swap: every node's data directory aside, the restored ones in their places.
    let stamp: String = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let mut kept = Vec::new();
    for node in &config.database.nodes {
        let dir = std::path::absolute(&node.data_dir)
            .map_err(|e| format!("{}: {e}", node.data_dir.display()))?;
        if holds_files(&dir) {
            let aside = with_suffix(&dir, &format!(".before-restore-{stamp}"));
            std::fs::rename(&dir, &aside).map_err(|e| {
                format!(
                    "cannot move {} aside to {}: {e}",
                    dir.display(),
                    aside.display()
                )
            })?;
            kept.push(aside);
        }
    }
    for (from, to) in std::iter::once((restoring, primary_dir)).chain(replicas) {
        let _ = std::fs::remove_dir(&to);
        std::fs::rename(&from, &to).map_err(|e| {
            format!(
                "cannot move the restored database {} into place at {}: {e}; the old data directories are {}",
                from.display(),
                to.display(),
                kept.iter().map(|k| k.display().to_string()).collect::<Vec<_>>().join(", ")
            )
        })?;
        if let Some(parent) = to.parent() {
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| format!("{}: {e}", parent.display()))?;
        }
    }
    Ok(kept)
}

fn after_install(kept: &[PathBuf]) {
    for k in kept {
        say(&format!(
            "the data directory it replaced is kept at {} (remove it once the restore is confirmed)",
            k.display()
        ));
    }
    say("start the box: the replica follows the restored primary, and a base backup of the restored database is taken within a minute of the start");
}

/// `oscarbox restore db --to TIME|GTID --replace-live [--dry-run]`.
pub fn database_live(config: Option<&Path>, target: Target, dry_run: bool) -> ExitCode {
    oscarbox_backup::progress::on_terminal();
    with_config(config, |config| async move {
        documents::guard_for_upkeep(&config).await?;
        primary(&config)?;
        let plan = pitr::plan_for(&config, &target).await?;
        say(&plan_text(&target, &plan));
        if dry_run {
            say("(dry run: nothing was changed)");
            return Ok(ExitCode::SUCCESS);
        }
        refuse_if_running(&config)?;
        let kept = install(&config, &plan).await?;
        say(&format!("the live database is restored to {target}"));
        after_install(&kept);
        Ok(ExitCode::SUCCESS)
    })
}

/// The repository password in a recovery key (`oscarbox backup recovery-key`'s output), or a
/// file holding the password alone.
fn key_password(text: &str) -> Option<String> {
    let labelled = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("password:"))
        .map(str::trim);
    let alone = match text.trim().lines().collect::<Vec<_>>().as_slice() {
        [one] if !one.contains(' ') => Some(one.trim()),
        _ => None,
    };
    labelled
        .or(alone)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
}

/// `oscarbox restore box --key FILE [--to TIME|GTID] [--dry-run]`: a fresh machine becomes the
/// box whose backup disk is mounted at `backup.disk`.
pub fn whole_box(config: Option<&Path>, key: PathBuf, target: Target, dry_run: bool) -> ExitCode {
    oscarbox_backup::progress::on_terminal();
    with_config(config, |config| async move {
        let text = std::fs::read_to_string(&key)
            .map_err(|e| format!("the recovery key {}: {e}", key.display()))?;
        let password = key_password(&text).ok_or_else(|| {
            format!(
                "{} is not a recovery key: expected the output of `oscarbox backup recovery-key` (a line `password: …`)",
                key.display()
            )
        })?;
        let disk_path = config.backup.disk.clone();
        let facts = disk::look(&disk_path, Vec::new());
        if !facts.exists || (config.backup.require_mount && !facts.mounted) {
            return Err(format!(
                "no backup disk is mounted at {}: mount the box's backup disk there (backup.disk in the configuration)",
                disk_path.display()
            ));
        }
        let marker = facts.marker.ok_or_else(|| {
            format!(
                "{} carries no box's marker (OSCARBOX-BACKUP-DISK): it is not an OSCAR Box backup disk",
                disk_path.display()
            )
        })?;
        let repository = config.backup.repository();
        if std::fs::metadata(repository.join("config")).is_err() {
            return Err(format!(
                "there is no backup repository at {}: is this the right disk?",
                repository.display()
            ));
        }
        // A fresh machine only: nothing of a box's data here already. The replica's data
        // directory on the backup disk is the old box's, and is moved aside like any other.
        let documents_dir = config.emr.documents_dir.clone();
        let ledger = oscarbox_dbpair::executor::Paths::under(&config.box_.state_dir).ledger;
        let on_disk = |d: &Path| {
            let (d, disk) = (std::path::absolute(d), std::path::absolute(&disk_path));
            matches!((d, disk), (Ok(d), Ok(disk)) if d.starts_with(&disk))
        };
        let mut occupied: Vec<PathBuf> = config
            .database
            .nodes
            .iter()
            .map(|n| n.data_dir.clone())
            .filter(|d| holds_files(d) && !on_disk(d))
            .collect();
        if holds_files(&documents_dir) {
            occupied.push(documents_dir.clone());
        }
        if std::fs::metadata(&ledger).is_ok() {
            occupied.push(ledger);
        }
        if !occupied.is_empty() {
            return Err(format!(
                "this machine already holds a box's data ({}): `restore box` rebuilds a fresh machine; to put this box's database back in time, use `oscarbox restore db --to … --replace-live`",
                occupied.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ));
        }
        refuse_if_running(&config)?;
        say(&format!(
            "backup disk of box \"{}\" (id {}, claimed {})",
            marker.box_name, marker.box_id, marker.claimed
        ));
        let (r, p) = (repository.clone(), password.clone());
        let repo = blocking(move || Repo::open_or_init(&r, &p)).await?;
        let plan = pitr::plan_in(repo.clone(), archive::dir(&config), &target).await?;
        say(&format!("database {}", plan_text(&target, &plan)));
        let r = repo.clone();
        let snaps = blocking(move || r.snapshots(Some(DOCUMENTS_TAG))).await?;
        let docs = pitr::documents_for(&snaps, &target);
        match docs {
            Some(d) => say(&format!(
                "documents: snapshot {} ({}, {} files, {})",
                d.short_id,
                d.time,
                d.total_files,
                crate::backup::mib(d.total_bytes)
            )),
            None => say("documents: no snapshot on the disk; none restored"),
        }
        let secrets = config.box_.state_dir.join("secrets");
        if dry_run {
            say(&format!(
                "(dry run: nothing was changed; the box's identity would go to {} and its repository password to {})",
                secrets.join("box-id").display(),
                config.backup.password_file.display()
            ));
            return Ok(ExitCode::SUCCESS);
        }
        // Adopted first: the box's identity (which the disk guard checks) and the password.
        for (path, value) in [
            (secrets.join("box-id"), &marker.box_id),
            (config.backup.password_file.clone(), &password),
        ] {
            oscarbox_common::write_private(&path, format!("{value}\n").as_bytes())
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        say("adopted the box's identity and its backup repository's password");
        let kept = install(&config, &plan).await?;
        if let Some(d) = docs {
            say(&format!(
                "restoring documents snapshot {} into {}",
                d.short_id,
                documents_dir.display()
            ));
            let (r, id, dest) = (repo.clone(), d.id.clone(), documents_dir.clone());
            let (files, bytes) = blocking(move || r.restore(&id, DOCUMENTS, &dest)).await?;
            say(&format!(
                "restored {files} documents ({})",
                crate::backup::mib(bytes)
            ));
        }
        say(&format!(
            "this machine is now box \"{}\", its database restored to {target}",
            marker.box_name
        ));
        after_install(&kept);
        Ok(ExitCode::SUCCESS)
    })
}
