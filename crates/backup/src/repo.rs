//! The backup repository on the backup disk, in restic's format through `rustic_core`, so that
//! a stock `restic` opens it with the same password (the technician's escape hatch). Every call
//! here blocks (file I/O, hashing, compression): run them on the blocking pool.
//!
//! Snapshots are stored under stable paths (`/documents`, `/database`), whatever directory
//! they came from, with the box's name as the host and tags that say what they hold:
//! `documents` or `database` (a prepared base backup), and
//! `gtid=<position>` (the database position read when the snapshot started), so that a
//! restore to a point in time finds the documents that belong with the rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustic_backend::LocalBackend;
use rustic_core::repofile::SnapshotFile;
use rustic_core::{
    BackupOptions, CheckOptions, ConfigOptions, Credentials, ForgetGroups, Grouped, KeepOptions,
    KeyOptions, LocalDestination, LsOptions, OpenStatus, PathList, PruneOptions, Repository,
    RepositoryBackends, RepositoryOptions, RestoreOptions, SnapshotGroupCriterion, SnapshotOptions,
};

/// The path documents snapshots are stored under.
pub const DOCUMENTS: &str = "/documents";
/// The tag of documents snapshots.
pub const DOCUMENTS_TAG: &str = "documents";
/// The path and tag of the database's base backups (a prepared `mariabackup` directory).
pub const DATABASE: &str = "/database";
pub const DATABASE_TAG: &str = "database";
/// The label of every snapshot the box takes.
const LABEL: &str = "oscarbox";

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("the backup repository {path} cannot be opened with the box's password: {cause}. If the repository came from another box, open it with that box's recovery key")]
    Open { path: PathBuf, cause: String },
    #[error("backup repository {what}: {cause}")]
    Other { what: &'static str, cause: String },
    #[error("no snapshot matches {0:?}; `oscarbox restore list` shows them")]
    NoSnapshot(String),
}

fn other(what: &'static str) -> impl FnOnce(Box<rustic_core::RusticError>) -> RepoError {
    move |e| RepoError::Other {
        what,
        cause: describe(&e),
    }
}

/// rustic's error on one line, with its cause: its `Display` is a multi-line report whose
/// first line is generic ("an error related to input/output operations"), while the cause
/// is what a technician can act on ("No space left on device").
fn describe(e: &rustic_core::RusticError) -> String {
    e.display_log().trim_start_matches("Error: ").to_owned()
}

/// A restore point: one snapshot, as `oscarbox restore list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// restic's short id (the first 8 hex digits) and the full one.
    pub short_id: String,
    pub id: String,
    /// RFC 3339, the box's local time zone.
    pub time: String,
    pub unix_seconds: i64,
    pub tags: Vec<String>,
    pub paths: Vec<String>,
    /// Files new and changed against the previous snapshot, and bytes added to the repository.
    pub files_new: u64,
    pub files_changed: u64,
    pub bytes_added: u64,
    pub total_files: u64,
    pub total_bytes: u64,
}

impl Snapshot {
    /// The database position the snapshot was tagged with.
    pub fn gtid(&self) -> Option<&str> {
        self.tags.iter().find_map(|t| t.strip_prefix("gtid="))
    }

    fn from_file(s: &SnapshotFile) -> Snapshot {
        let id = s.id.to_string();
        let summary = s.summary.as_ref();
        Snapshot {
            short_id: id.chars().take(8).collect(),
            id,
            time: s.time.to_string(),
            unix_seconds: s.time.timestamp().as_second(),
            tags: s.tags.iter().cloned().collect(),
            paths: s.paths.iter().cloned().collect(),
            files_new: summary.map_or(0, |x| x.files_new),
            files_changed: summary.map_or(0, |x| x.files_changed),
            bytes_added: summary.map_or(0, |x| x.data_added),
            total_files: summary.map_or(0, |x| x.total_files_processed),
            total_bytes: summary.map_or(0, |x| x.total_bytes_processed),
        }
    }
}

/// What a prune would remove, shown before it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunePlan {
    pub forget: Vec<Snapshot>,
    pub keep: usize,
}

/// The repository: where it is and its password. Each operation opens it afresh, so that it
/// sees what other processes (a CLI command, the watchdog's loop) added meanwhile, and so that
/// every backup starts from the repository's current index.
#[derive(Debug, Clone)]
pub struct Repo {
    path: PathBuf,
    password: String,
}

fn backends(path: &Path) -> Result<RepositoryBackends, RepoError> {
    let text = path.to_str().ok_or_else(|| RepoError::Other {
        what: "path",
        cause: format!("{} is not UTF-8", path.display()),
    })?;
    // Built directly, not from a URL: a ':' in the path would be read as a scheme.
    let local = LocalBackend::new(text, BTreeMap::new()).map_err(|e| RepoError::Other {
        what: "backend",
        cause: e.to_string(),
    })?;
    Ok(RepositoryBackends::new(Arc::new(local), None))
}

impl Repo {
    /// Opens the repository at `path`, making it first if there is none (restic's repository
    /// version 2, zstd-compressed, which restic reads since 0.14).
    pub fn open_or_init(path: &Path, password: &str) -> Result<Repo, RepoError> {
        // Two processes making the repository at once (the watchdog's first snapshot and a
        // technician's `backup now`) would each write a key, and one's config would be sealed
        // with a master key the other's key does not open: one at a time, under a lock file
        // beside the repository.
        let lock_path = path.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .and_then(|f| f.lock().map(|()| f))
            .map_err(|e| RepoError::Other {
                what: "lock",
                cause: format!("{}: {e}", lock_path.display()),
            })?;
        let opened = Repo::open_or_init_locked(path, password);
        drop(lock);
        opened
    }

    fn open_or_init_locked(path: &Path, password: &str) -> Result<Repo, RepoError> {
        let options = RepositoryOptions::default().no_cache(true);
        let credentials = Credentials::password(password);
        let repo =
            Repository::new_with_progress(&options, &backends(path)?, crate::progress::bars())
                .map_err(other("setup"))?;
        let has_config = repo.config_id().map_err(other("read"))?.is_some();
        let open = if has_config {
            repo.open(&credentials)
        } else {
            std::fs::create_dir_all(path).map_err(|e| RepoError::Other {
                what: "create",
                cause: format!("{}: {e}", path.display()),
            })?;
            repo.init(
                &credentials,
                &KeyOptions::default(),
                &ConfigOptions::default(),
            )
        };
        open.map_err(|e| RepoError::Open {
            path: path.to_path_buf(),
            cause: describe(&e),
        })?;
        Ok(Repo {
            path: path.to_path_buf(),
            password: password.to_owned(),
        })
    }

    fn open(&self) -> Result<Repository<OpenStatus>, RepoError> {
        let options = RepositoryOptions::default().no_cache(true);
        Repository::new_with_progress(&options, &backends(&self.path)?, crate::progress::bars())
            .map_err(other("setup"))?
            .open(&Credentials::password(&self.password))
            .map_err(|e| RepoError::Open {
                path: self.path.clone(),
                cause: describe(&e),
            })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Backs `dir` up as a documents snapshot tagged with `gtid` (the database position when it
    /// started), stored under [`DOCUMENTS`]. Unchanged files cost a metadata comparison with
    /// the previous snapshot.
    pub fn backup_documents(
        &self,
        dir: &Path,
        host: &str,
        gtid: Option<&str>,
    ) -> Result<Snapshot, RepoError> {
        self.backup_tree(dir, DOCUMENTS, DOCUMENTS_TAG, host, gtid)
    }

    /// Backs `dir` up as a snapshot stored under `as_path`, tagged `tag` and `gtid=<gtid>`.
    pub fn backup_tree(
        &self,
        dir: &Path,
        as_path: &str,
        tag: &str,
        host: &str,
        gtid: Option<&str>,
    ) -> Result<Snapshot, RepoError> {
        let source = PathList::from_string(&dir.to_string_lossy())
            .map_err(other("source"))?
            .sanitize()
            .map_err(|e| RepoError::Other {
                what: "source",
                cause: e.to_string(),
            })?;
        let mut snapshot = SnapshotOptions::default()
            .add_tags(tag)
            .map_err(other("tags"))?
            .label(LABEL.to_owned())
            .host(host.to_owned());
        if let Some(g) = gtid {
            snapshot = snapshot
                .add_tags(&format!("gtid={g}"))
                .map_err(other("tags"))?;
        }
        let snapshot = snapshot.to_snapshot().map_err(other("snapshot"))?;
        let options = BackupOptions::default().as_path(PathBuf::from(as_path));
        let repo = self.open()?.to_indexed_ids().map_err(other("index"))?;
        let saved = repo
            .backup(&options, &source, snapshot)
            .map_err(other("backup"))?;
        Ok(Snapshot::from_file(&saved))
    }

    /// Every snapshot, oldest first, optionally only those with `tag`.
    pub fn snapshots(&self, tag: Option<&str>) -> Result<Vec<Snapshot>, RepoError> {
        let mut all = self
            .open()?
            .get_matching_snapshots(|s| tag.is_none_or(|t| s.tags.contains(t)))
            .map_err(other("list"))?;
        all.sort_unstable();
        Ok(all.iter().map(Snapshot::from_file).collect())
    }

    /// Restores `path` (a path inside the snapshot, such as `/documents` or one file under it)
    /// of the snapshot `id` (an id, a unique prefix, or `latest`) into `dest`. Returns the
    /// files and bytes restored.
    pub fn restore(&self, id: &str, path: &str, dest: &Path) -> Result<(u64, u64), RepoError> {
        let tag = if path == DATABASE || path.starts_with("/database/") {
            DATABASE_TAG
        } else {
            DOCUMENTS_TAG
        };
        let repo = self.open()?.to_indexed().map_err(other("index"))?;
        let snapshot = repo
            .get_snapshot_from_str(id, |s| s.tags.contains(tag))
            .map_err(|_| RepoError::NoSnapshot(id.to_owned()))?;
        let node = repo
            .node_from_snapshot_and_path(&snapshot, path)
            .map_err(|_| RepoError::NoSnapshot(format!("{id}:{path}")))?;
        let ls = repo
            .ls(&node, &LsOptions::default())
            .map_err(other("list files"))?;
        // A directory's contents go into `dest`; a single file goes into `dest` by its name.
        let dest = if node.is_dir() {
            dest.to_path_buf()
        } else {
            dest.join(path.rsplit('/').next().unwrap_or(path))
        };
        let dest_text = dest.to_string_lossy();
        let destination = LocalDestination::new(&dest_text, true, !node.is_dir())
            .map_err(other("destination"))?;
        let options = RestoreOptions::default();
        let plan = repo
            .prepare_restore(&options, ls.clone(), &destination, false)
            .map_err(other("plan the restore"))?;
        let (files, bytes) = (plan.stats.files.restore, plan.restore_size);
        repo.restore(plan, &options, ls, &destination)
            .map_err(other("restore"))?;
        Ok((files, bytes))
    }

    /// Restores the files `names` (directly under [`DOCUMENTS`]) of the documents snapshot `id`
    /// into `dest`, the repository opened once. Returns the names restored and those the
    /// snapshot does not hold.
    pub fn restore_documents(
        &self,
        id: &str,
        names: &[String],
        dest: &Path,
    ) -> Result<(Vec<String>, Vec<String>), RepoError> {
        let repo = self.open()?.to_indexed().map_err(other("index"))?;
        let snapshot = repo
            .get_snapshot_from_str(id, |s| s.tags.contains(DOCUMENTS_TAG))
            .map_err(|_| RepoError::NoSnapshot(id.to_owned()))?;
        let (mut restored, mut missing) = (Vec::new(), Vec::new());
        let options = RestoreOptions::default();
        for name in names {
            let Ok(node) =
                repo.node_from_snapshot_and_path(&snapshot, &format!("{DOCUMENTS}/{name}"))
            else {
                missing.push(name.clone());
                continue;
            };
            let ls = repo
                .ls(&node, &LsOptions::default())
                .map_err(other("list files"))?;
            let target = dest.join(name);
            let destination = LocalDestination::new(&target.to_string_lossy(), true, true)
                .map_err(other("destination"))?;
            let plan = repo
                .prepare_restore(&options, ls.clone(), &destination, false)
                .map_err(other("plan the restore"))?;
            repo.restore(plan, &options, ls, &destination)
                .map_err(other("restore"))?;
            restored.push(name.clone());
        }
        Ok((restored, missing))
    }

    /// Checks the repository's structure and, with `read_data`, reads every pack back and
    /// verifies its hashes. Returns the findings in words; an `Error:` finding means damage.
    pub fn check(&self, read_data: bool) -> Result<Vec<String>, RepoError> {
        let found = self
            .open()?
            .check(CheckOptions::default().read_data(read_data))
            .map_err(other("check"))?;
        Ok(found
            .0
            .iter()
            .map(|(level, e)| format!("{level:?}: {e}"))
            .collect())
    }

    /// Which documents snapshots the keep counts would forget (pure listing; nothing changes).
    pub fn plan_forget(&self, keep: &KeepOptions) -> Result<PrunePlan, RepoError> {
        let snaps = self
            .open()?
            .get_matching_snapshots(|s| s.label == LABEL)
            .map_err(other("list"))?;
        let groups = ForgetGroups::from_grouped_snapshots_with_retention(
            Grouped::from_items(snaps, SnapshotGroupCriterion::default()),
            keep,
            &rustic_core::jiff::Zoned::now(),
        )
        .map_err(other("retention"))?;
        let mut forget = Vec::new();
        let mut kept = 0;
        for group in &groups.0 {
            for item in &group.items {
                if item.keep {
                    kept += 1;
                } else {
                    forget.push(Snapshot::from_file(&item.snapshot));
                }
            }
        }
        Ok(PrunePlan { forget, keep: kept })
    }

    /// Forgets the snapshots of `plan` and prunes the data only they used.
    pub fn apply_forget(&self, plan: &PrunePlan) -> Result<(), RepoError> {
        let ids: Vec<_> = plan
            .forget
            .iter()
            .filter_map(|s| s.id.parse().ok())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let repo = self.open()?;
        repo.delete_snapshots(&ids).map_err(other("forget"))?;
        let options = PruneOptions::default();
        let prune = repo.prune_plan(&options).map_err(other("plan the prune"))?;
        repo.prune(&options, prune).map_err(other("prune"))
    }

    /// What a technician needs to open the repository elsewhere.
    pub fn recovery_key(&self) -> String {
        format!(
            "OSCAR Box backup repository\nrepository: {}\npassword: {}\n\nWith stock restic: RESTIC_REPOSITORY={} RESTIC_PASSWORD='{}' restic snapshots\n",
            self.path.display(),
            self.password,
            self.path.display(),
            self.password
        )
    }
}
