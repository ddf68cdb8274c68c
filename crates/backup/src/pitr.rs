//! A point-in-time restore of the database: the newest base backup before the target is
//! restored into a directory, a scratch `mariadbd` is started on it (no network), and the
//! binlog archive is replayed into it with stock `mariadb-binlog | mariadb`, from the base's
//! position to the target, then the server is stopped. The directory is then a data directory
//! holding exactly the transactions up to the target.
//!
//! Which transactions are replayed is decided here ([`plan`], pure) from the archive's own
//! bytes, not left to `mariadb-binlog`'s filters: the replay starts at the byte offset of the
//! first transaction after the base in the first file and stops at the end of the last
//! transaction before the target in the last file, and the plan refuses an archive with a gap
//! between the two.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oscarbox_config::Config;
use rustic_core::jiff;

use crate::archive::{self, ArchivedFile};
use crate::binlog::{self, Gtid, GtidList, Transaction};
use crate::repo::{Repo, Snapshot, DATABASE, DATABASE_TAG};

/// Where to restore to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Everything written before this moment (Unix seconds), the box's clock.
    Time { unix: i64, shown: String },
    /// Everything up to and including this transaction.
    Gtid(Gtid),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Time { shown, .. } => write!(f, "{shown}"),
            Target::Gtid(g) => write!(f, "transaction {g}"),
        }
    }
}

impl Target {
    /// Everything the archive holds: the newest archived transaction.
    pub fn latest() -> Target {
        Target::Time {
            unix: i64::MAX,
            shown: "the newest archived transaction".into(),
        }
    }

    /// Whether the target lies after `replaced`, in the history the restore began.
    fn after(&self, replaced: &Replaced) -> bool {
        match self {
            Target::Time { unix, .. } => *unix >= replaced.unix,
            Target::Gtid(g) => replaced
                .position
                .get(g.domain)
                .is_some_and(|p| g.seq > p.seq),
        }
    }
}

/// A restore that replaced the live database. From `unix` on, the database's history went on
/// from `position` (the archive's end at the time, so that no GTID is ever used twice): the
/// transactions after it belong to the restored history, not to the one before, and a
/// restore to a later moment must start from a base backup taken after `unix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    pub unix: i64,
    pub position: GtidList,
}

/// The file in the archive's directory that lists the replacements, a line each:
/// `<unix seconds> <position>`.
const REPLACED: &str = "replaced";

/// The replacements recorded in the archive `dir`, oldest first.
pub fn replacements(dir: &Path) -> Result<Vec<Replaced>, String> {
    let path = dir.join(REPLACED);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (unix, position) = line
                .trim()
                .split_once(' ')
                .and_then(|(u, p)| Some((u.parse().ok()?, p.parse().ok()?)))
                .ok_or_else(|| {
                    format!(
                        "{} holds a line that is not `<unix seconds> <GTID position>`: {line:?}",
                        path.display()
                    )
                })?;
            Ok(Replaced { unix, position })
        })
        .collect()
}

/// Records a replacement in the archive `dir` (appended, then synced with the directory).
pub fn record_replacement(dir: &Path, replaced: &Replaced) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(REPLACED);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    writeln!(f, "{} {}", replaced.unix, replaced.position)?;
    f.sync_all()?;
    std::fs::File::open(dir)?.sync_all()
}

/// Whether `base` belongs to the history `target` lies in: no replacement of the live
/// database falls between the two.
pub fn same_history(base: &Snapshot, target: &Target, replaced: &[Replaced]) -> bool {
    replaced
        .iter()
        .all(|r| (base.unix_seconds >= r.unix) == target.after(r))
}

/// Reads `--to`: a GTID (`0-1-42`), an RFC 3339 time (`2026-11-23T10:15:00-05:00`), or the
/// box's local time (`2026-11-23 10:15:00`, seconds optional).
pub fn parse_target(text: &str) -> Result<Target, String> {
    let text = text.trim();
    if let Ok(g) = text.parse::<Gtid>() {
        return Ok(Target::Gtid(g));
    }
    let zone = jiff::tz::TimeZone::system();
    let at = text
        .parse::<jiff::Timestamp>()
        .ok()
        .or_else(|| {
            text.parse::<jiff::civil::DateTime>()
                .ok()
                .and_then(|dt| dt.to_zoned(zone.clone()).ok())
                .map(|z| z.timestamp())
        })
        .ok_or_else(|| {
            format!("--to {text:?} is neither a time (2026-11-23 10:15:00, the box's local time, or RFC 3339 with a zone) nor a GTID (0-1-42)")
        })?;
    Ok(Target::Time {
        unix: at.as_second(),
        shown: at
            .to_zoned(zone)
            .strftime("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
    })
}

/// One archived file with what it holds.
#[derive(Debug, Clone)]
pub struct Scanned {
    pub file: ArchivedFile,
    pub transactions: Vec<Transaction>,
}

/// What a restore will do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub base: Snapshot,
    pub base_position: GtidList,
    /// The files to replay, in order, with the byte range of the first and the last.
    pub files: Vec<ArchivedFile>,
    pub start_offset: u64,
    pub stop_offset: u64,
    /// How many transactions are replayed, and the last one.
    pub replayed: usize,
    pub last: Option<Gtid>,
    /// When the newest archived transaction was written (Unix seconds).
    pub archive_newest: Option<u32>,
}

/// Chooses the base and the replay for `target`. `bases` are the database snapshots, oldest
/// first; `archive` every archived file in order; `replaced` the replacements of the live
/// database (a base is used only within its own history).
pub fn plan(
    bases: &[Snapshot],
    archive: &[Scanned],
    target: &Target,
    replaced: &[Replaced],
) -> Result<Plan, String> {
    let position =
        |s: &Snapshot| -> GtidList { s.gtid().and_then(|g| g.parse().ok()).unwrap_or_default() };
    let before = |s: &&Snapshot| match target {
        Target::Time { unix, .. } => s.unix_seconds <= *unix,
        Target::Gtid(g) => position(s).get(g.domain).is_none_or(|b| b.seq <= g.seq),
    };
    let base = bases
        .iter()
        .rev()
        .filter(|s| same_history(s, target, replaced))
        .find(before)
        .ok_or_else(|| {
            let restored = replaced.iter().rev().find(|r| target.after(r));
            match (bases.first(), restored) {
                (_, Some(r)) if !bases.iter().any(|s| s.unix_seconds >= r.unix && before(&s)) => {
                    format!(
                        "the live database was replaced by a restore at {} (its history going on after {}); restore points after that begin with the first base backup taken since, and there is none before {target} yet: run `oscarbox backup now`",
                        when(r.unix),
                        r.position
                    )
                }
                (None, _) => "there is no database base backup yet: run `oscarbox backup now`, or wait for the watchdog's first".to_owned(),
                (Some(oldest), _) => format!(
                    "the oldest database base backup ({}, at {}) is after {target}: nothing older is kept",
                    oldest.short_id, oldest.time
                ),
            }
        })?;
    let base_position = position(base);
    let after_base = |g: &Gtid| base_position.get(g.domain).is_none_or(|b| g.seq > b.seq);
    let wanted = |t: &Transaction| match target {
        Target::Time { unix, .. } => i64::from(t.written) < *unix,
        Target::Gtid(g) => t.gtid.domain != g.domain || t.gtid.seq <= g.seq,
    };
    // The transactions to replay: (file index, transaction), in archive order, each once.
    let mut seen = base_position.clone();
    let mut replay: Vec<(usize, &Transaction)> = Vec::new();
    let mut chain: Vec<Gtid> = base_position.iter().collect();
    for (i, s) in archive.iter().enumerate() {
        for t in &s.transactions {
            if !after_base(&t.gtid) || seen.get(t.gtid.domain).is_some_and(|l| t.gtid.seq <= l.seq)
            {
                continue;
            }
            if !wanted(t) {
                break;
            }
            seen.insert(t.gtid);
            chain.push(t.gtid);
            replay.push((i, t));
        }
    }
    if let Some((before, after)) = binlog::first_gap(chain.iter().copied()) {
        return Err(format!(
            "the binlog archive has a gap between {before} and {after}: transactions in between are missing, so the database cannot be rebuilt past {before}. Restore to {before} or earlier, or from a later base backup"
        ));
    }
    if let Target::Gtid(g) = target {
        let reached = replay
            .last()
            .map(|(_, t)| t.gtid)
            .or(base_position.get(g.domain));
        if reached.is_none_or(|r| r.seq < g.seq) {
            return Err(format!(
                "the archive does not reach {g} (it has up to {}): it may not have happened yet",
                reached.map_or("nothing".to_owned(), |r| r.to_string())
            ));
        }
    }
    let (files, start_offset, stop_offset) = match (replay.first(), replay.last()) {
        (Some((first, t0)), Some((last, tn))) => (
            archive[*first..=*last]
                .iter()
                .map(|s| s.file.clone())
                .collect(),
            t0.start,
            tn.end,
        ),
        _ => (Vec::new(), 0, 0),
    };
    Ok(Plan {
        base: base.clone(),
        base_position,
        files,
        start_offset,
        stop_offset,
        replayed: replay.len(),
        last: replay.last().map(|(_, t)| t.gtid),
        archive_newest: archive
            .iter()
            .flat_map(|s| s.transactions.iter())
            .map(|t| t.written)
            .max(),
    })
}

/// The documents snapshot that goes with `target`: the newest taken by then (for a GTID, the
/// newest tagged with a database position not past it). `snapshots` oldest first.
pub fn documents_for<'a>(snapshots: &'a [Snapshot], target: &Target) -> Option<&'a Snapshot> {
    snapshots.iter().rev().find(|s| match target {
        Target::Time { unix, .. } => s.unix_seconds <= *unix,
        Target::Gtid(g) => s
            .gtid()
            .and_then(|p| p.parse::<GtidList>().ok())
            .and_then(|p| p.get(g.domain))
            .is_some_and(|p| p.seq <= g.seq),
    })
}

fn when(unix: i64) -> String {
    jiff::Timestamp::from_second(unix).map_or_else(
        |_| unix.to_string(),
        |t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        },
    )
}

/// Reads the whole archive (sealed files checked against their checksums).
pub fn scan_archive(dir: &Path) -> Result<Vec<Scanned>, String> {
    let mut out = Vec::new();
    for session in archive::sessions(dir) {
        for file in archive::files(&session) {
            let bytes =
                archive::read(&file).map_err(|e| format!("{}: {e}", file.path.display()))?;
            out.push(Scanned {
                transactions: binlog::scan(&bytes).transactions,
                file,
            });
        }
    }
    Ok(out)
}

/// The plan for `target` against this box's repository and archive.
pub async fn plan_for(config: &Config, target: &Target) -> Result<Plan, String> {
    let repo = crate::documents::open(config).await?;
    plan_in(Repo::clone(&repo), archive::dir(config), target).await
}

/// The plan for `target` against the repository `repo` and the archive in `dir`.
pub async fn plan_in(repo: Repo, dir: PathBuf, target: &Target) -> Result<Plan, String> {
    let bases = tokio::task::spawn_blocking(move || repo.snapshots(Some(DATABASE_TAG)))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let scanned = tokio::task::spawn_blocking(move || {
        Ok::<_, String>((scan_archive(&dir)?, replacements(&dir)?))
    })
    .await
    .map_err(|e| e.to_string())??;
    plan(&bases, &scanned.0, target, &scanned.1)
}

/// Carries out `plan` into `into` (absent or empty), saying each step through `step`.
pub async fn restore(
    config: &Config,
    plan: &Plan,
    into: &Path,
    step: &(dyn Fn(&str) + Sync),
) -> Result<(), String> {
    let into = std::path::absolute(into).map_err(|e| format!("{}: {e}", into.display()))?;
    let empty = std::fs::read_dir(&into).map_or(true, |mut d| d.next().is_none());
    if !empty {
        return Err(format!(
            "{} is not empty: a restore never writes over files; name a new directory",
            into.display()
        ));
    }
    // Beside the target: decompressed binlogs, the scratch server's log and temporary files.
    let work = with_suffix(&into, ".restore-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let result = async {
        step(&format!(
            "restoring base backup {} ({}, at {})",
            plan.base.short_id,
            plan.base.gtid().unwrap_or("no position"),
            plan.base.time
        ));
        let repo = crate::documents::open(config).await?;
        let (id, dest) = (plan.base.id.clone(), into.clone());
        tokio::task::spawn_blocking(move || repo.restore(&id, DATABASE, &dest))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if plan.replayed == 0 {
            step("no archived transaction to replay after the base");
            return Ok(());
        }
        // Sealed files decompressed beside the target (the replay reads plain binlogs).
        let (files, into_work) = (plan.files.clone(), work.clone());
        let plain = tokio::task::spawn_blocking(move || {
            let mut plain = Vec::new();
            for (i, f) in files.iter().enumerate() {
                let bytes = archive::read(f).map_err(|e| format!("{}: {e}", f.path.display()))?;
                let p = into_work.join(format!("{i:05}-{}", f.name));
                std::fs::write(&p, bytes).map_err(|e| format!("{}: {e}", p.display()))?;
                plain.push(p);
            }
            Ok::<_, String>(plain)
        })
        .await
        .map_err(|e| e.to_string())??;
        step(&format!(
            "replaying {} transactions from {} archived binlog file(s) into a scratch server",
            plan.replayed,
            plain.len()
        ));
        replay(&into, &work, &plain, plan).await
    }
    .await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// `path` with `suffix` added to its last component (`db1` → `db1.restoring`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Runs `work` against a scratch `mariadbd` on `data_dir` (no network; root on a private
/// socket, which `work` is given), then stops the server cleanly. Its log and temporary files
/// go in `scratch`.
pub async fn with_scratch_server<T, F, Fut>(
    data_dir: &Path,
    scratch: &Path,
    work: F,
) -> Result<T, String>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    scratch_server(data_dir, scratch, &["--server-id=4040".into()], work).await
}

async fn scratch_server<T, F, Fut>(
    data_dir: &Path,
    scratch: &Path,
    args: &[String],
    work: F,
) -> Result<T, String>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    static SERVERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    // A unix socket's path is short (108 bytes): in the system's temporary directory.
    let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let socket =
        std::env::temp_dir().join(format!("oscarbox-scratch-{}-{n}.sock", std::process::id()));
    let spec = oscarbox_mariadb::NodeSpec {
        name: format!("scratch-{n}"),
        data_dir: data_dir.to_path_buf(),
        bind: [127, 0, 0, 1].into(),
        port: 0,
        socket: socket.clone(),
        log_file: scratch.join("mariadbd.log"),
        small: true,
        extra_args: ["--skip-networking", "--skip-slave-start"]
            .map(String::from)
            .into_iter()
            .chain(args.iter().cloned())
            .collect(),
    };
    let mut server = oscarbox_mariadb::start(&spec, Duration::from_secs(120))
        .await
        .map_err(|e| format!("a scratch server on {}: {e}", data_dir.display()))?;
    let out = work(socket).await;
    let stopped = server.terminate(Duration::from_secs(120)).await;
    let _ = std::fs::remove_dir_all(spec.tmp_dir());
    match stopped {
        Ok((status, false)) if status.success() => Ok(out),
        Ok((status, _)) => Err(format!(
            "the scratch server did not stop cleanly ({status}); see {}",
            spec.log_file.display()
        )),
        Err(e) => Err(format!("stopping the scratch server: {e}")),
    }
}

/// Makes a restored `data_dir` ready to serve as the box's primary (node `server_id`): its
/// binlog begins at `position`, and so do its replication coordinates. `position` is the
/// archive's end, so the restored database's new transactions follow on from every GTID ever
/// archived, never reusing one, and the binlog archive resumes from it unchanged.
pub async fn continue_history(
    data_dir: &Path,
    scratch: &Path,
    server_id: u32,
    position: &GtidList,
) -> Result<(), String> {
    use mysql_async::prelude::Queryable as _;
    // A position is digits, '-' and ',' only (it was parsed): safe in the statement's text.
    let position = position.to_string();
    let args = [
        format!("--server-id={server_id}"),
        "--log-bin=mariadb-bin".into(),
    ];
    scratch_server(data_dir, scratch, &args, |socket| async move {
        let mut conn = mysql_async::Conn::new(oscarbox_mariadb::root_opts(&socket)).await?;
        conn.query_drop("RESET MASTER").await?;
        conn.query_drop(format!("SET GLOBAL gtid_binlog_state = '{position}'"))
            .await?;
        conn.query_drop(format!("SET GLOBAL gtid_slave_pos = '{position}'"))
            .await?;
        conn.disconnect().await
    })
    .await?
    .map_err(|e| format!("setting the restored database's position: {e}"))
}

/// Pipes the chosen part of `files` through `mariadb-binlog` into a scratch server on
/// `data_dir`.
async fn replay(
    data_dir: &Path,
    work: &Path,
    files: &[PathBuf],
    plan: &Plan,
) -> Result<(), String> {
    with_scratch_server(data_dir, work, |socket| async move {
        apply(files, plan, &socket).await
    })
    .await?
}

async fn apply(files: &[PathBuf], plan: &Plan, socket: &Path) -> Result<(), String> {
    use std::process::Stdio;
    let mut decode = tokio::process::Command::new("mariadb-binlog");
    decode
        .arg(format!("--start-position={}", plan.start_offset))
        .arg(format!("--stop-position={}", plan.stop_offset))
        .args(files)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut decoder = decode
        .spawn()
        .map_err(|e| format!("cannot run mariadb-binlog: {e}"))?;
    let text: Stdio = decoder
        .stdout
        .take()
        .ok_or("mariadb-binlog gave no output")?
        .try_into()
        .map_err(|e| format!("piping mariadb-binlog: {e}"))?;
    let client = tokio::process::Command::new("mariadb")
        .args(["--user=root", "--binary-mode"])
        .arg(format!("--socket={}", socket.display()))
        .stdin(text)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let (client, decoded) = tokio::join!(client, decoder.wait_with_output());
    let decoded = decoded.map_err(|e| format!("mariadb-binlog: {e}"))?;
    let client = client.map_err(|e| format!("mariadb: {e}"))?;
    if !decoded.status.success() {
        return Err(format!(
            "mariadb-binlog failed ({}): {}",
            decoded.status,
            String::from_utf8_lossy(&decoded.stderr).trim()
        ));
    }
    if !client.status.success() {
        return Err(format!(
            "replaying into the scratch server failed ({}): {}",
            client.status,
            String::from_utf8_lossy(&client.stderr).trim()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, unix: i64, gtid: &str) -> Snapshot {
        Snapshot {
            short_id: id.into(),
            id: id.into(),
            time: unix.to_string(),
            unix_seconds: unix,
            tags: vec![DATABASE_TAG.into(), format!("gtid={gtid}")],
            paths: vec![DATABASE.into()],
            files_new: 0,
            files_changed: 0,
            bytes_added: 0,
            total_files: 0,
            total_bytes: 0,
        }
    }

    fn file(name: &str, txs: &[(&str, u32)]) -> Scanned {
        let mut at = 100;
        Scanned {
            file: ArchivedFile {
                name: name.into(),
                path: PathBuf::from(name),
                sealed: true,
            },
            transactions: txs
                .iter()
                .map(|(g, w)| {
                    at += 10;
                    Transaction {
                        gtid: g.parse().expect("gtid"),
                        written: *w,
                        start: at - 10,
                        end: at,
                    }
                })
                .collect(),
        }
    }

    fn archive() -> Vec<Scanned> {
        vec![
            file(
                "a.000001",
                &[("0-1-1", 100), ("0-1-2", 110), ("0-1-3", 120)],
            ),
            // A failover: the new session fetched 0-1-3 again, then server 2 goes on.
            file(
                "a.000002",
                &[("0-1-3", 120), ("0-2-4", 130), ("0-2-5", 140)],
            ),
        ]
    }

    #[test]
    fn a_time_target_replays_from_the_newest_base_before_it() {
        let bases = [
            snap("b1", 90, "0-1-0"),
            snap("b2", 115, "0-1-2"),
            snap("b3", 200, "0-2-5"),
        ];
        let t = Target::Time {
            unix: 135,
            shown: "t".into(),
        };
        let p = plan(&bases, &archive(), &t, &[]).expect("a plan");
        assert_eq!(p.base.short_id, "b2");
        assert_eq!(p.replayed, 2, "0-1-3 and 0-2-4, written before 135");
        assert_eq!(p.last, Some("0-2-4".parse().expect("gtid")));
        assert_eq!(p.files.len(), 2);
        assert_eq!((p.start_offset, p.stop_offset), (120, 120));
    }

    #[test]
    fn a_gtid_target_is_included_and_must_be_reached() {
        let bases = [snap("b1", 90, "0-1-0")];
        let p = plan(
            &bases,
            &archive(),
            &Target::Gtid("0-2-5".parse().expect("gtid")),
            &[],
        )
        .expect("a plan");
        assert_eq!(p.replayed, 5);
        let e = plan(
            &bases,
            &archive(),
            &Target::Gtid("0-2-9".parse().expect("gtid")),
            &[],
        )
        .expect_err("refused");
        assert!(
            e.contains("does not reach 0-2-9 (it has up to 0-2-5)"),
            "{e}"
        );
    }

    #[test]
    fn a_gap_or_no_base_is_refused_with_what_to_do() {
        let bases = [snap("b1", 90, "0-1-0")];
        let mut holey = archive();
        holey[1].transactions.remove(1);
        let e = plan(
            &bases,
            &holey,
            &Target::Time {
                unix: 1000,
                shown: "t".into(),
            },
            &[],
        )
        .expect_err("refused");
        assert!(e.contains("gap between 0-1-3 and 0-2-5"), "{e}");
        let e = plan(
            &[],
            &archive(),
            &Target::Time {
                unix: 1000,
                shown: "t".into(),
            },
            &[],
        )
        .expect_err("refused");
        assert!(e.contains("no database base backup yet"), "{e}");
        let e = plan(
            &bases,
            &archive(),
            &Target::Time {
                unix: 10,
                shown: "then".into(),
            },
            &[],
        )
        .expect_err("refused");
        assert!(e.contains("is after then"), "{e}");
    }

    #[test]
    fn after_a_live_replacement_each_history_restores_from_its_own_bases() {
        // At 150 the live database was restored to 0-1-2, its history going on after 0-2-5
        // (the archive's end); 0-1-6 and 0-1-7 were written in the restored history, and b4
        // is the base taken just after the restore.
        let mut archive = archive();
        archive.push(file("b.000001", &[("0-1-6", 160), ("0-1-7", 170)]));
        let replaced = [Replaced {
            unix: 150,
            position: "0-2-5".parse().expect("gtid list"),
        }];
        let bases = [snap("b1", 90, "0-1-0"), snap("b4", 155, "0-2-5")];
        let time = |unix| Target::Time {
            unix,
            shown: "t".into(),
        };
        let gtid = |g: &str| Target::Gtid(g.parse().expect("gtid"));
        let p = plan(&bases, &archive, &time(165), &replaced).expect("a plan");
        assert_eq!((p.base.short_id.as_str(), p.replayed), ("b4", 1));
        assert_eq!(p.last, Some("0-1-6".parse().expect("gtid")));
        let p = plan(&bases, &archive, &gtid("0-1-7"), &replaced).expect("a plan");
        assert_eq!((p.base.short_id.as_str(), p.replayed), ("b4", 2));
        // Before the replacement, the history as it was: b1 and the archive, never b4.
        let p = plan(&bases, &archive, &gtid("0-2-5"), &replaced).expect("a plan");
        assert_eq!((p.base.short_id.as_str(), p.replayed), ("b1", 5));
        let p = plan(&bases, &archive, &time(135), &replaced).expect("a plan");
        assert_eq!((p.base.short_id.as_str(), p.replayed), ("b1", 4));
        // With no base since the replacement, a later target is refused, saying why.
        let e = plan(&bases[..1], &archive, &time(165), &replaced).expect_err("refused");
        assert!(e.contains("replaced by a restore"), "{e}");
        assert!(same_history(&bases[1], &time(165), &replaced));
        assert!(!same_history(&bases[0], &time(165), &replaced));
    }

    #[test]
    fn the_documents_that_go_with_a_target_are_the_newest_by_then() {
        let docs = |unix, gtid: &str| Snapshot {
            tags: vec!["documents".into(), format!("gtid={gtid}")],
            ..snap(&format!("d{unix}"), unix, gtid)
        };
        let snaps = [docs(100, "0-1-1"), docs(200, "0-1-5"), docs(300, "0-2-9")];
        let at = |unix| Target::Time {
            unix,
            shown: "t".into(),
        };
        let id = |t: &Target| documents_for(&snaps, t).map(|s| s.short_id.clone());
        assert_eq!(id(&at(250)), Some("d200".into()));
        assert_eq!(id(&at(50)), None);
        assert_eq!(id(&Target::latest()), Some("d300".into()));
        assert_eq!(
            id(&Target::Gtid("0-1-7".parse().expect("gtid"))),
            Some("d200".into())
        );
    }

    #[test]
    fn replacements_are_recorded_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(replacements(dir.path()), Ok(Vec::new()));
        let r = Replaced {
            unix: 1_795_428_900,
            position: "0-2-5".parse().expect("gtid list"),
        };
        record_replacement(dir.path(), &r).expect("recorded");
        record_replacement(dir.path(), &r).expect("recorded");
        assert_eq!(replacements(dir.path()), Ok(vec![r.clone(), r]));
        std::fs::write(dir.path().join(REPLACED), "soon 0-1-1\n").expect("write");
        let e = replacements(dir.path()).expect_err("refused");
        assert!(e.contains("not `<unix seconds> <GTID position>`"), "{e}");
    }

    #[test]
    fn a_base_at_the_target_replays_nothing() {
        let bases = [snap("b3", 200, "0-2-5")];
        let p = plan(
            &bases,
            &archive(),
            &Target::Time {
                unix: 300,
                shown: "t".into(),
            },
            &[],
        )
        .expect("a plan");
        assert_eq!((p.replayed, p.files.len()), (0, 0));
    }

    #[test]
    fn targets_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!(
            parse_target("0-1-42"),
            Ok(Target::Gtid("0-1-42".parse().expect("gtid")))
        );
        assert!(matches!(
            parse_target("2026-11-23T10:15:00Z"),
            Ok(Target::Time {
                unix: 1_795_428_900,
                ..
            })
        ));
        assert!(matches!(
            parse_target("2026-11-23 10:15:00"),
            Ok(Target::Time { .. })
        ));
        let e = parse_target("yesterday").expect_err("refused");
        assert!(e.contains("neither a time"), "{e}");
    }
}
