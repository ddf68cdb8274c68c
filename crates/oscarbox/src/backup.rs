//! `oscarbox backup status|now|verify|drill|recovery-key` and `oscarbox restore
//! list|documents|db` (into a directory; `restore.rs` has the restores that replace live data): the
//! technician's commands. They work on the backup disk directly (the repository takes
//! concurrent writers), so they serve on a box whose watchdog is down, and on a fresh machine
//! given the box's configuration and recovery key.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use oscarbox_backup::repo::{Repo, Snapshot, DOCUMENTS};
use oscarbox_backup::state::State;
use oscarbox_backup::{documents, pitr};
use oscarbox_config::Config;

/// Exit status when the backup disk or repository refuses the work (`EX_UNAVAILABLE`).
const EX_UNAVAILABLE: u8 = 69;

/// Loads the config and runs `work` on a runtime; its `Err` is printed as the one line a
/// person reads, with exit 69.
pub(crate) fn with_config<F, Fut>(config: Option<&Path>, work: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = Result<ExitCode, String>>,
{
    let config = match oscarbox_common::load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = match oscarbox_common::start_runtime("warn") {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(work(config)) {
        Ok(code) => code,
        Err(why) => {
            let _ = writeln!(std::io::stderr(), "{why}");
            ExitCode::from(EX_UNAVAILABLE)
        }
    }
}

/// The repository, after the disk guard allowed it (reading it is allowed on a full disk).
async fn repo(config: &Config) -> Result<Repo, String> {
    documents::guard_for_upkeep(config).await?;
    documents::open(config).await.map(|r| Repo::clone(&r))
}

pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, oscarbox_backup::repo::RepoError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("the repository failed mid-way (it may be damaged; run `oscarbox backup verify`): {e}"))?
        .map_err(|e| e.to_string())
}

fn when(unix: i64) -> String {
    u64::try_from(unix)
        .map(|s| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
            )
            .to_string()
        })
        .unwrap_or_else(|_| "unknown".into())
}

pub(crate) fn mib(bytes: u64) -> String {
    #[expect(clippy::cast_precision_loss, reason = "a size for people")]
    let m = bytes as f64 / 1_048_576.0;
    format!("{m:.1} MiB")
}

/// `oscarbox backup status`: the disk, the newest snapshot, the last check.
pub fn status(config: Option<&Path>) -> ExitCode {
    with_config(config, |config| async move {
        let mut out = String::new();
        let disk = documents::guard(&config).await;
        out.push_str(&match &disk {
            Ok(None) => format!(
                "backup disk: {} (this box's)\n",
                config.backup.disk.display()
            ),
            Ok(Some(full)) => format!("backup disk: {full}\n"),
            Err(why) => format!("backup disk: REFUSED: {why}\n"),
        });
        let state = State::read(&State::path(&config.box_.state_dir));
        out.push_str(&match (state.documents_last, &state.documents_last_id) {
            (Some(t), Some(id)) => format!("newest documents snapshot: {id} at {}\n", when(t)),
            _ => "newest documents snapshot: none yet\n".to_owned(),
        });
        out.push_str(&match state.database_last {
            Some(t) => format!("binlog archive: current at {}\n", when(t)),
            None => {
                "binlog archive: nothing archived yet (it runs with the database pair)\n".to_owned()
            }
        });
        out.push_str(&match (state.check_last, &state.check_problem) {
            (Some(t), None) => format!("last repository check: sound, at {}\n", when(t)),
            (Some(t), Some(p)) => {
                format!("last repository check: DAMAGE found at {}: {p}\n", when(t))
            }
            (None, _) => "last repository check: none yet\n".to_owned(),
        });
        let _ = write!(std::io::stdout(), "{out}");
        Ok(if disk.is_err() || state.check_problem.is_some() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// `oscarbox backup now`: one documents snapshot and, with the pair, a base backup, at once.
pub fn now(config: Option<&Path>) -> ExitCode {
    with_config(config, |config| async move {
        let documents::Saved {
            snapshot: s,
            nearly_full,
        } = documents::snapshot_now(&config).await?;
        let database = if matches!(
            crate::database::layout(&config),
            Ok(crate::database::Layout::Pair(..))
        ) {
            Some(oscarbox_backup::base::now(&config).await)
        } else {
            None
        };
        if let Some(why) = nearly_full {
            let _ = writeln!(std::io::stderr(), "warning: {why}");
        }
        let _ = writeln!(
            std::io::stdout(),
            "snapshot {} saved: {} files ({} new, {} changed), {} added, database at {}",
            s.short_id,
            s.total_files,
            s.files_new,
            s.files_changed,
            mib(s.bytes_added),
            s.gtid()
                .unwrap_or("an unknown position (the database did not answer)")
        );
        match database {
            None => Ok(ExitCode::SUCCESS),
            Some(Ok(b)) => {
                let _ = writeln!(
                    std::io::stdout(),
                    "database base backup {} saved: {} added, at {}",
                    b.short_id,
                    mib(b.bytes_added),
                    b.gtid().unwrap_or("an unknown position")
                );
                Ok(ExitCode::SUCCESS)
            }
            Some(Err(why)) => Err(format!(
                "the documents were saved, but the database base backup failed: {why}"
            )),
        }
    })
}

/// `oscarbox backup verify [--read-data]`: the repository check; exit 2 on damage.
pub fn verify(config: Option<&Path>, read_data: bool) -> ExitCode {
    with_config(config, |config| async move {
        documents::guard_for_upkeep(&config).await?;
        match documents::verify(&config, read_data).await {
            Ok(()) => {
                let _ = writeln!(
                    std::io::stdout(),
                    "the backup repository is sound{}",
                    if read_data {
                        " (every pack read back and its hashes checked)"
                    } else {
                        " (structure and index; add --read-data to read every pack back)"
                    }
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(problems) => {
                let _ = writeln!(
                    std::io::stdout(),
                    "the backup repository is DAMAGED: {problems}\nThe snapshots that do not use the damaged packs still restore; take a new snapshot (`oscarbox backup now`) and keep this disk for inspection."
                );
                Ok(ExitCode::from(2))
            }
        }
    })
}

/// `oscarbox backup claim-disk`: writes this box's marker on a backup disk that holds files
/// but lost its marker (a disk carrying another box's marker is still refused).
pub fn claim_disk(config: Option<&Path>) -> ExitCode {
    with_config(config, |config| async move {
        let id = documents::box_id(&config).map_err(|e| format!("the box's identity: {e}"))?;
        let disk = config.backup.disk.clone();
        let facts = oscarbox_backup::disk::look(&disk, Vec::new());
        if !facts.exists || (config.backup.require_mount && !facts.mounted) {
            return Err(format!(
                "{} is not a mounted disk: mount the backup disk there first",
                disk.display()
            ));
        }
        if let Some(m) = facts.marker.filter(|m| m.box_id != id) {
            return Err(format!(
                "{} is the backup disk of another box (\"{}\", id {}): it is not claimed",
                disk.display(),
                m.box_name,
                m.box_id
            ));
        }
        oscarbox_backup::disk::claim(&disk, &id, &config.box_.name)
            .map_err(|e| format!("cannot write the marker on {}: {e}", disk.display()))?;
        let _ = writeln!(
            std::io::stdout(),
            "{} is now this box's backup disk",
            disk.display()
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// `oscarbox backup recovery-key`: what a technician needs to open the repository elsewhere.
pub fn recovery_key(config: Option<&Path>) -> ExitCode {
    with_config(config, |config| async move {
        let repo = repo(&config).await?;
        let _ = write!(std::io::stdout(), "{}", repo.recovery_key());
        Ok(ExitCode::SUCCESS)
    })
}

/// `oscarbox restore list`: the restore points, oldest first.
pub fn list(config: Option<&Path>) -> ExitCode {
    with_config(config, |config| async move {
        let repo = repo(&config).await?;
        let snaps: Vec<Snapshot> = blocking(move || repo.snapshots(None)).await?;
        let mut out = String::new();
        if snaps.is_empty() {
            out.push_str("no restore points yet\n");
        }
        for s in &snaps {
            out.push_str(&format!(
                "{}  {}  {}  {} files, {}  database at {}\n",
                s.short_id,
                s.time,
                s.tags
                    .iter()
                    .filter(|t| !t.starts_with("gtid="))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(","),
                s.total_files,
                mib(s.total_bytes),
                s.gtid().unwrap_or("unknown"),
            ));
        }
        let _ = write!(std::io::stdout(), "{out}");
        Ok(ExitCode::SUCCESS)
    })
}

/// Which documents a restore brings back.
pub enum Which {
    All,
    /// One file or folder, relative to the documents directory.
    Path(String),
    /// One patient's, by demographic number.
    Patient(u32),
}

/// `oscarbox restore documents --to DIR [--snapshot ID|--at TIME] [--path P|--patient N]
/// [--dry-run]`.
pub fn documents(
    config: Option<&Path>,
    to: PathBuf,
    snapshot: String,
    at: Option<String>,
    which: Which,
    dry_run: bool,
) -> ExitCode {
    oscarbox_backup::progress::on_terminal();
    with_config(config, |config| async move {
        // `--at`: the newest documents snapshot taken by then.
        let snapshot = match at.as_deref().map(pitr::parse_target).transpose()? {
            None => snapshot,
            Some(pitr::Target::Gtid(_)) => {
                return Err("--at takes a time, not a GTID".into());
            }
            Some(target) => {
                let repo = repo(&config).await?;
                let snaps = blocking(move || repo.snapshots(Some("documents"))).await?;
                pitr::documents_for(&snaps, &target)
                    .map(|s| s.id.clone())
                    .ok_or_else(|| format!("no documents snapshot was taken by {target}; `oscarbox restore list` shows them"))?
            }
        };
        if std::fs::read_dir(&to).is_ok_and(|mut d| d.next().is_some()) {
            return Err(format!(
                "{} is not empty: restore into a new or empty directory, then move what is needed into place",
                to.display()
            ));
        }
        let (inside, patient) = match which {
            Which::Path(p) if p.split('/').any(|c| c == "..") => {
                return Err("--path cannot contain \"..\"".into());
            }
            Which::Path(p) if !p.trim_matches('/').is_empty() => {
                (format!("{DOCUMENTS}/{}", p.trim_matches('/')), None)
            }
            Which::Path(_) | Which::All => (DOCUMENTS.to_owned(), None),
            Which::Patient(n) => {
                // Stored names are plain file names in one flat directory (OSCAR's layout).
                let names: Vec<String> = documents::patient_documents(&config, n)
                    .await?
                    .into_iter()
                    .filter(|f| !f.is_empty() && !f.contains('/') && f != "." && f != "..")
                    .collect();
                if names.is_empty() {
                    return Err(format!(
                        "the box's database links no documents to patient {n}"
                    ));
                }
                (
                    format!("the {} document(s) of patient {n}", names.len()),
                    Some(names),
                )
            }
        };
        let repo = repo(&config).await?;
        if dry_run {
            let snaps = blocking(move || repo.snapshots(Some("documents"))).await?;
            let chosen = if snapshot == "latest" {
                snaps.last()
            } else {
                snaps.iter().find(|s| s.id.starts_with(&snapshot))
            };
            let Some(s) = chosen else {
                return Err(format!("no documents snapshot matches {snapshot:?}; `oscarbox restore list` shows them"));
            };
            let _ = writeln!(
                std::io::stdout(),
                "would restore {inside} of snapshot {} ({}, {} files, {}) into {}",
                s.short_id,
                s.time,
                s.total_files,
                mib(s.total_bytes),
                to.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let dest = to.clone();
        let Some(names) = patient else {
            let (files, bytes) = blocking(move || repo.restore(&snapshot, &inside, &dest)).await?;
            let _ = writeln!(
                std::io::stdout(),
                "restored {files} files ({}) into {}",
                mib(bytes),
                to.display()
            );
            return Ok(ExitCode::SUCCESS);
        };
        let (restored, missing) =
            blocking(move || repo.restore_documents(&snapshot, &names, &dest)).await?;
        let mut out = format!(
            "restored {} of {inside} into {}\n",
            restored.len(),
            to.display()
        );
        for m in &missing {
            out.push_str(&format!(
                "not in this snapshot (written after it, or never saved): {m}\n"
            ));
        }
        let _ = write!(std::io::stdout(), "{out}");
        Ok(ExitCode::SUCCESS)
    })
}

/// Reads `--to`; a bad one is a usage error (exit 64), said on standard error.
pub fn target(to: &str) -> Result<pitr::Target, ExitCode> {
    pitr::parse_target(to).map_err(|why| {
        let _ = writeln!(std::io::stderr(), "{why}");
        ExitCode::from(64)
    })
}

/// `oscarbox restore db --to TIME|GTID --into DIR [--dry-run]`.
pub fn database(
    config: Option<&Path>,
    target: pitr::Target,
    into: PathBuf,
    dry_run: bool,
) -> ExitCode {
    oscarbox_backup::progress::on_terminal();
    with_config(config, |config| async move {
        documents::guard_for_upkeep(&config).await?;
        let plan = pitr::plan_for(&config, &target).await?;
        let mut out = format!("{}\n", plan_text(&target, &plan));
        if let (pitr::Target::Time { unix, .. }, Some(newest)) = (&target, plan.archive_newest) {
            if i64::from(newest) < *unix {
                out.push_str(&format!(
                    "note: the newest archived transaction was written at {}; nothing later is known to the archive\n",
                    when(i64::from(newest))
                ));
            }
        }
        let _ = write!(std::io::stdout(), "{out}");
        if dry_run {
            return Ok(ExitCode::SUCCESS);
        }
        let say = |step: &str| {
            let _ = writeln!(std::io::stdout(), "{step}");
        };
        pitr::restore(&config, &plan, &into, &say).await?;
        let _ = writeln!(
            std::io::stdout(),
            "restored: {} is a MariaDB data directory as of {target}; start mariadbd with --datadir there to read it",
            into.display()
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// What a restore of the database will do, in a line.
pub(crate) fn plan_text(target: &pitr::Target, plan: &pitr::Plan) -> String {
    format!(
        "to {target}: base backup {} ({}, database at {}), then {} archived transaction(s) from {} binlog file(s){}",
        plan.base.short_id,
        plan.base.time,
        plan.base.gtid().unwrap_or("unknown"),
        plan.replayed,
        plan.files.len(),
        plan.last.map_or(String::new(), |g| format!(", up to {g}")),
    )
}

/// `oscarbox backup drill`: a test restore now; exit 2 when it fails.
pub fn drill(config: Option<&Path>) -> ExitCode {
    with_config(config, |config| async move {
        let report = oscarbox_backup::drill::run(&config).await?;
        let _ = write!(std::io::stdout(), "{}", report.text);
        Ok(if report.passed {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        })
    })
}
