//! The documents' continuous backup, as the watchdog runs it: a `notify` watcher over the
//! documents directory feeds the [`Schedule`] (debounced changes, a full scan at least every
//! `documents-rescan` and whenever the watcher lost events); each snapshot goes to the
//! repository on the backup disk, after the disk guard allowed it, tagged with the database's
//! GTID position read as it starts. Every hour the retention plan is logged, then applied;
//! every day the repository is checked with its data read back. What happened is kept in a
//! small state file for the box's status and `oscarbox backup status`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher as _;
use oscarbox_config::Config;
use tokio_util::sync::CancellationToken;

use crate::disk::{self, DiskVerdict};
use crate::repo::Repo;
use crate::schedule::Schedule;
use crate::state::State;

/// How often the retention plan is made and applied.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// How often the repository is checked with its data read back.
const CHECK_EVERY: Duration = Duration::from_secs(24 * 3600);
/// How long the disk may take to answer `stat` before it counts as missing.
const DISK_TIMEOUT: Duration = Duration::from_secs(10);

/// What the watcher reports.
enum Seen {
    Change,
    Lost,
}

/// The box's identity (generated once), which the backup disk's marker must carry.
pub fn box_id(config: &Config) -> std::io::Result<String> {
    oscarbox_mariadb::secrets::ensure(&config.box_.state_dir.join("secrets").join("box-id"))
}

/// Whether the backup disk may be written now (claiming a fresh one), or why not; `Ok` carries
/// the nearly-full warning. Blocking work runs on the blocking pool, within [`DISK_TIMEOUT`].
pub async fn guard(config: &Config) -> Result<Option<String>, String> {
    match inspect(config).await? {
        DiskVerdict::Ready { nearly_full } => Ok(nearly_full),
        DiskVerdict::Claim => Ok(None),
        DiskVerdict::Full(why) | DiskVerdict::Refuse(why) => Err(why),
    }
}

/// Whether the repository on the backup disk may be pruned or checked now: it is this box's
/// disk, even if full (pruning is what frees it).
pub async fn guard_for_upkeep(config: &Config) -> Result<(), String> {
    match inspect(config).await? {
        DiskVerdict::Ready { .. } | DiskVerdict::Claim | DiskVerdict::Full(_) => Ok(()),
        DiskVerdict::Refuse(why) => Err(why),
    }
}

/// The disk's verdict, a fresh disk claimed first (so never [`DiskVerdict::Claim`]). One at a
/// time: the documents loop, the binlog archive and the base backups all ask at the start,
/// and two claims at once would each see the other's marker half-written.
async fn inspect(config: &Config) -> Result<DiskVerdict, String> {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = ONE_AT_A_TIME.lock().await;
    let id = box_id(config).map_err(|e| format!("the box's identity: {e}"))?;
    let (path, name) = (config.backup.disk.clone(), config.box_.name.clone());
    let (require, high) = (
        config.backup.require_mount,
        config.backup.high_water_percent,
    );
    let ours = replica_dirs(config);
    let look = tokio::task::spawn_blocking(move || {
        let facts = disk::look(&path, ours);
        match disk::judge(&facts, &id, require, high) {
            DiskVerdict::Claim => disk::claim(&path, &id, &name)
                .map(|_| {
                    tracing::info!(disk = %path.display(), "claimed a fresh backup disk for this box");
                    DiskVerdict::Ready { nearly_full: None }
                })
                .map_err(|e| format!("cannot write the backup disk marker on {}: {e}", path.display())),
            verdict => Ok(verdict),
        }
    });
    match tokio::time::timeout(DISK_TIMEOUT, look).await {
        Ok(Ok(verdict)) => verdict,
        Ok(Err(e)) => Err(format!("the backup disk check failed: {e}")),
        Err(_) => Err(format!(
            "the backup disk {} did not answer within {}s: it may be failing",
            config.backup.disk.display(),
            DISK_TIMEOUT.as_secs()
        )),
    }
}

/// The top-level names on the backup disk that the database pair keeps there: a node's data
/// directory (or the directory holding it) and its temporary directory beside it.
fn replica_dirs(config: &Config) -> Vec<String> {
    let disk =
        std::path::absolute(&config.backup.disk).unwrap_or_else(|_| config.backup.disk.clone());
    let mut ours = Vec::new();
    for node in &config.database.nodes {
        let Ok(data) = std::path::absolute(&node.data_dir) else {
            continue;
        };
        let name = data
            .file_name()
            .map(|n| format!("{}.tmp", n.to_string_lossy()));
        let tmp = name.map(|n| data.with_file_name(n));
        for dir in std::iter::once(data).chain(tmp) {
            if let Some(first) = dir
                .strip_prefix(&disk)
                .ok()
                .and_then(|r| r.components().next())
            {
                ours.push(first.as_os_str().to_string_lossy().into_owned());
            }
        }
    }
    ours
}

/// Opens (or makes) the repository with the box's repository password (generated once).
pub async fn open(config: &Config) -> Result<Arc<Repo>, String> {
    let password =
        oscarbox_mariadb::secrets::ensure(&config.backup.password_file).map_err(|e| {
            format!(
                "the backup repository's password {}: {e}",
                config.backup.password_file.display()
            )
        })?;
    let path = config.backup.repository();
    tokio::task::spawn_blocking(move || Repo::open_or_init(&path, &password))
        .await
        .map_err(|e| e.to_string())?
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// The database's position now, through the endpoint with the EMR's account; `None` when the
/// database does not answer in time (the snapshot is taken anyway, untagged).
pub async fn gtid_now(config: &Config) -> Option<String> {
    use mysql_async::prelude::Queryable as _;
    let opts = app_opts(config).ok()?;
    let ask = async {
        let mut conn = mysql_async::Conn::new(opts).await.ok()?;
        let pos: Option<String> = conn
            .query_first("SELECT @@global.gtid_binlog_pos")
            .await
            .ok()?;
        let _ = conn.disconnect().await;
        pos
    };
    // A server without a binlog has no position (an empty list): nothing to tag with.
    tokio::time::timeout(Duration::from_secs(5), ask)
        .await
        .ok()
        .flatten()
        .filter(|pos| !pos.trim().is_empty())
}

/// The EMR's account through the database endpoint.
fn app_opts(config: &Config) -> Result<mysql_async::OptsBuilder, String> {
    let db = &config.database;
    let password = std::fs::read_to_string(&db.app_password_file).map_err(|e| {
        format!(
            "the EMR's database password {}: {e}",
            db.app_password_file.display()
        )
    })?;
    Ok(mysql_async::OptsBuilder::default()
        .ip_or_hostname(db.endpoint.ip().to_string())
        .tcp_port(db.endpoint.port())
        .user(Some(db.app_user.clone()))
        .pass(Some(password.trim().to_owned()))
        .db_name(Some(db.name.clone()))
        .prefer_socket(false))
}

/// The stored file names of patient `demographic_no`'s documents, as the database links them
/// (OSCAR's `ctl_document` rows with `module = 'demographic'`), every status included: a
/// document marked deleted is still the patient's. Asked of the running box's database.
pub async fn patient_documents(
    config: &Config,
    demographic_no: u32,
) -> Result<Vec<String>, String> {
    use mysql_async::prelude::Queryable as _;
    let opts = app_opts(config)?;
    let ask = async {
        let mut conn = mysql_async::Conn::new(opts).await?;
        let names: Vec<String> = conn
            .exec(
                "SELECT d.docfilename FROM document d JOIN ctl_document c ON c.document_no = d.document_no WHERE c.module = 'demographic' AND c.module_id = ? ORDER BY d.document_no",
                (demographic_no,),
            )
            .await?;
        conn.disconnect().await?;
        Ok::<_, mysql_async::Error>(names)
    };
    match tokio::time::timeout(Duration::from_secs(30), ask).await {
        Ok(Ok(names)) => Ok(names),
        Ok(Err(e)) => Err(format!("the box's database did not say which documents are the patient's ({e}): is the box running?")),
        Err(_) => Err("the box's database did not answer within 30s: is the box running?".into()),
    }
}

/// A snapshot taken, and whether the disk is above its high-water mark.
#[derive(Debug)]
pub struct Saved {
    pub snapshot: crate::repo::Snapshot,
    pub nearly_full: Option<String>,
}

/// Takes one documents snapshot now (after the disk guard), recording it in the state file.
pub async fn snapshot_now(config: &Config) -> Result<Saved, String> {
    let nearly_full = guard(config).await?;
    let repo = open(config).await?;
    let gtid = gtid_now(config).await;
    let (dir, host) = (config.emr.documents_dir.clone(), config.box_.name.clone());
    // The EMR makes it on its first start; until then there is nothing to save but its place.
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("the documents directory {}: {e}", dir.display()))?;
    let repo2 = Arc::clone(&repo);
    let saved =
        tokio::task::spawn_blocking(move || repo2.backup_documents(&dir, &host, gtid.as_deref()))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    let state = State::path(&config.box_.state_dir);
    State::update(&state, |s| {
        s.documents_last = Some(saved.unix_seconds);
        s.documents_last_id = Some(saved.short_id.clone());
    });
    Ok(Saved {
        snapshot: saved,
        nearly_full,
    })
}

/// Runs until `shutdown`: watches the documents directory and keeps its snapshots, their
/// retention and the repository's checks going.
pub async fn run(config: Arc<Config>, shutdown: CancellationToken) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Seen>(1024);
    let dir = config.emr.documents_dir.clone();
    // Made now if the EMR has not made it yet: a watcher cannot watch a directory that is not
    // there, and would leave new documents to the daily scan.
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::warn!(dir = %dir.display(), "cannot make the documents directory: {e}");
    }
    let _watcher = watch(&dir, tx);
    let began = tokio::time::Instant::now();
    let now = || began.elapsed();
    // A failed snapshot is tried again after the longest a change may wait (6 × debounce; a
    // minute by default): a disk that filled up or went away is retried that often.
    let mut schedule = Schedule::new(
        config.backup.documents_debounce,
        config.backup.documents_rescan,
        config.backup.documents_debounce * 6,
    );
    let mut last_retention: Option<Duration> = None;
    let mut last_check: Option<Duration> = None;
    let mut alerted: Option<String> = None;
    let mut warned_full = false;
    loop {
        let wake = began + schedule.next_check(now());
        tokio::select! {
            () = shutdown.cancelled() => return,
            seen = rx.recv() => {
                match seen {
                    Some(Seen::Change) => schedule.changed(now()),
                    Some(Seen::Lost) | None => schedule.lost_events(),
                }
                continue;
            }
            () = tokio::time::sleep_until(wake) => {}
        }
        let Some(due) = schedule.due(now()) else {
            continue;
        };
        let started = now();
        let mut retention_due =
            last_retention.is_none_or(|t| now().saturating_sub(t) >= RETENTION_EVERY);
        match snapshot_now(&config).await {
            Ok(Saved {
                snapshot: s,
                nearly_full,
            }) => {
                schedule.saved(started, now());
                // Above the high-water mark retention runs at every snapshot, not hourly,
                // and the state is said once (the status assesses the disk's fill as well).
                match nearly_full {
                    Some(why) => {
                        retention_due = true;
                        if !std::mem::replace(&mut warned_full, true) {
                            tracing::warn!(alert = true, "{why}");
                        }
                    }
                    None => warned_full = false,
                }
                tracing::info!(
                    snapshot = %s.short_id,
                    why = ?due,
                    files_new = s.files_new,
                    files_changed = s.files_changed,
                    bytes_added = s.bytes_added,
                    gtid = s.gtid().unwrap_or("unknown"),
                    "documents snapshot saved"
                );
                if alerted.take().is_some() {
                    tracing::info!("documents backups work again");
                }
            }
            Err(why) => {
                schedule.failed(now());
                if alerted.as_deref() != Some(why.as_str()) {
                    tracing::error!(alert = true, "documents backup refused or failed: {why}");
                    alerted = Some(why);
                }
                // Retention still runs on schedule: on a full disk it is what frees space.
            }
        }
        // Upkeep only on this box's disk (a full one included: pruning is what frees it).
        if guard_for_upkeep(&config).await.is_err() {
            continue;
        }
        if retention_due {
            last_retention = Some(now());
            retention(&config).await;
        }
        if last_check.is_none_or(|t| now().saturating_sub(t) >= CHECK_EVERY) {
            last_check = Some(now());
            if let Err(why) = verify(&config, true).await {
                tracing::error!(alert = true, "the backup repository check failed: {why}");
            }
        }
    }
}

/// Plans the retention, logs the plan, then applies it.
pub async fn retention(config: &Config) {
    // Never opened (which would make a repository) on a path that is not this box's disk.
    if guard_for_upkeep(config).await.is_err() {
        return;
    }
    let Ok(repo) = open(config).await else {
        return;
    };
    let k = config.backup.keep;
    let keep = rustic_core::KeepOptions::default()
        .keep_last(1)
        .keep_hourly(i32::try_from(k.hourly).unwrap_or(i32::MAX))
        .keep_daily(i32::try_from(k.daily).unwrap_or(i32::MAX))
        .keep_weekly(i32::try_from(k.weekly).unwrap_or(i32::MAX))
        .keep_monthly(i32::try_from(k.monthly).unwrap_or(i32::MAX));
    let result = tokio::task::spawn_blocking(move || {
        let plan = repo.plan_forget(&keep)?;
        if !plan.forget.is_empty() {
            tracing::info!(
                forget = plan.forget.len(),
                keep = plan.keep,
                snapshots = %plan.forget.iter().map(|s| s.short_id.as_str()).collect::<Vec<_>>().join(" "),
                "backup retention: forgetting these snapshots, then pruning what only they used"
            );
            repo.apply_forget(&plan)?;
        }
        Ok::<_, crate::repo::RepoError>(())
    })
    .await;
    if let Ok(Err(e)) = result {
        tracing::error!(alert = true, "backup retention failed: {e}");
        return;
    }
    prune_archive(config).await;
}

/// Removes the archived binlog sessions that the oldest kept base backup covers: a restore
/// never needs them (it starts from a base). With no base, everything is kept.
async fn prune_archive(config: &Config) {
    let Ok(repo) = open(config).await else {
        return;
    };
    let dir = crate::archive::dir(config);
    let result = tokio::task::spawn_blocking(move || {
        let bases = repo.snapshots(Some(crate::repo::DATABASE_TAG))?;
        let Some(oldest) = bases
            .first()
            .and_then(|b| b.gtid()?.parse::<crate::binlog::GtidList>().ok())
        else {
            return Ok(Vec::new());
        };
        let gone = crate::archive::unneeded(&dir, &oldest);
        for s in &gone {
            std::fs::remove_dir_all(s).map_err(|e| crate::repo::RepoError::Other {
                what: "archive retention",
                cause: format!("{}: {e}", s.display()),
            })?;
        }
        Ok::<_, crate::repo::RepoError>(gone)
    })
    .await;
    match result {
        Ok(Ok(gone)) if !gone.is_empty() => tracing::info!(
            sessions = gone.len(),
            "binlog archive retention: removed the sessions the oldest kept base backup covers"
        ),
        Ok(Err(e)) => tracing::error!(alert = true, "binlog archive retention failed: {e}"),
        _ => {}
    }
}

/// Checks the repository (reading every pack back when `read_data`), recording the outcome in
/// the state file. `Err` lists the problems.
pub async fn verify(config: &Config, read_data: bool) -> Result<(), String> {
    guard_for_upkeep(config).await?;
    let repo = open(config).await?;
    let found = tokio::task::spawn_blocking(move || repo.check(read_data))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string());
    let outcome = match found {
        Ok(findings) => {
            let errors: Vec<String> = findings
                .into_iter()
                .filter(|f| f.starts_with("Error"))
                .collect();
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join("; "))
            }
        }
        Err(e) => Err(e),
    };
    let state = State::path(&config.box_.state_dir);
    let now = crate::state::unix_now();
    State::update(&state, |s| {
        s.check_last = Some(now);
        s.check_problem = outcome.as_ref().err().cloned();
    });
    outcome
}

/// A recursive watcher on `dir` that reports changes and lost events; `None` (logged) when it
/// cannot watch (the periodic scan still runs).
fn watch(dir: &Path, tx: tokio::sync::mpsc::Sender<Seen>) -> Option<notify::RecommendedWatcher> {
    let handler = move |event: notify::Result<notify::Event>| {
        let seen = match event {
            Ok(e) if e.need_rescan() => Seen::Lost,
            Ok(e) if e.kind.is_access() => return,
            Ok(_) => Seen::Change,
            Err(_) => Seen::Lost,
        };
        // A full queue means events are being lost: a rescan covers them.
        if tx.try_send(seen).is_err() {
            let _ = tx.try_send(Seen::Lost);
        }
    };
    let watched: PathBuf = dir.to_path_buf();
    let result = notify::recommended_watcher(handler).and_then(|mut w| {
        w.watch(&watched, notify::RecursiveMode::Recursive)?;
        Ok(w)
    });
    match result {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                dir = %dir.display(),
                "cannot watch the documents directory ({e}); only the periodic scan backs it up"
            );
            None
        }
    }
}
