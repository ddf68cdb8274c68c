//! The continuous binlog archive: stock `mariadb-binlog --read-from-remote-server --raw
//! --stop-never`, supervised, copies the primary's binlog through the database endpoint onto
//! the backup disk as it is written, so the database's recovery point is about a second.
//!
//! Why `mariadb-binlog` and not `mysql_async`'s binlog stream: the stream decodes none of
//! MariaDB's own events and starts from a GTID only the MySQL way, while `mariadb-binlog`
//! is MariaDB's own client for exactly this, writes files that stock tools read, and starts
//! from a MariaDB GTID position. What it lacks (reconnecting, durability, sealing, following a
//! failover) is what this module adds.
//!
//! Layout, under `<disk>/binlog/`: one directory per connection (a *session*, numbered
//! `00000001`, ...), holding `start` (the GTID position it started after; empty for the very
//! first, which starts at the first binlog file), the files as the server names them while
//! they are written, and once complete `NAME.zst` (zstd) with `NAME.zst.sha256` (a line
//! `sha256sum -c` reads), and `position` (the last complete transaction of each domain, kept
//! as files are sealed). When a connection ends (a failover cuts it, the primary restarts),
//! the session is closed: its last file is cut back to its last complete transaction, sealed,
//! and the next session starts after that position, through the endpoint, from whichever node
//! is now the primary. A transaction cut off mid-way is thus fetched whole again, and every
//! archived file replays on its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oscarbox_config::Config;
use sha2::Digest as _;
use tokio_util::sync::CancellationToken;

use crate::binlog::{self, GtidList};
use crate::state::State;

/// The server id the archive's binlog dump announces itself with: not a node's (1, 2).
pub const SERVER_ID: u32 = 901;
/// A node's first binlog file (`--log-bin=mariadb-bin`), where the first session starts.
pub const FIRST_FILE: &str = "mariadb-bin.000001";
/// How often what arrived is made durable (the archive's recovery point, about).
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// How often the status's "newest database backup" time is refreshed while connected.
const STATE_EVERY: Duration = Duration::from_secs(5);
/// How long the archive may fail before it alerts (a failover takes a few seconds).
const ALERT_AFTER: Duration = Duration::from_secs(60);
const START: &str = "start";
const POSITION: &str = "position";
const SEALED: &str = "zst";

/// The archive's directory on the backup disk.
pub fn dir(config: &Config) -> PathBuf {
    config.backup.disk.join("binlog")
}

/// The sessions under `dir`, oldest first.
pub fn sessions(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() == 8 && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    out.sort();
    out
}

/// A binlog file of a session, raw (still written, or left by a crash) or sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedFile {
    /// The server's name for it (`mariadb-bin.000007`).
    pub name: String,
    pub path: PathBuf,
    pub sealed: bool,
}

/// A session's binlog files, in the server's order.
pub fn files(session: &Path) -> Vec<ArchivedFile> {
    let mut out: Vec<ArchivedFile> = std::fs::read_dir(session)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let (base, sealed) = match name.strip_suffix(".zst") {
                Some(base) => (base.to_owned(), true),
                None => (name.clone(), false),
            };
            // The server's names end in a number: `start`, `position`, checksums and
            // temporaries are not binlog files.
            let numbered = base
                .rsplit_once('.')
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            numbered.then(|| ArchivedFile {
                name: base,
                path: e.path(),
                sealed,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A file's binlog bytes: a sealed one is checked against its checksum, then decompressed.
pub fn read(file: &ArchivedFile) -> std::io::Result<Vec<u8>> {
    let bytes = std::fs::read(&file.path)?;
    if !file.sealed {
        return Ok(bytes);
    }
    let sum_path = checksum_path(&file.path);
    let recorded = std::fs::read_to_string(&sum_path)?;
    let actual = hex(&sha2::Sha256::digest(&bytes));
    if recorded.split_whitespace().next() != Some(actual.as_str()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} does not match its checksum in {}: the archived file is damaged",
                file.path.display(),
                sum_path.display()
            ),
        ));
    }
    zstd::decode_all(bytes.as_slice())
}

fn checksum_path(sealed: &Path) -> PathBuf {
    let mut p = sealed.as_os_str().to_owned();
    p.push(".sha256");
    PathBuf::from(p)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The position a session started after (empty: from the first binlog file).
fn start_of(session: &Path) -> std::io::Result<GtidList> {
    parse_position(&std::fs::read_to_string(session.join(START))?, session)
}

fn parse_position(text: &str, session: &Path) -> std::io::Result<GtidList> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(GtidList::default());
    }
    text.parse().map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", session.display()),
        )
    })
}

/// The position a session has reached in its sealed files.
fn sealed_position(session: &Path) -> std::io::Result<GtidList> {
    match std::fs::read_to_string(session.join(POSITION)) {
        Ok(text) => parse_position(&text, session),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => start_of(session),
        Err(e) => Err(e),
    }
}

/// Seals a complete raw file: `NAME.zst` and its checksum, durably, then the raw file goes;
/// the session's position advances past its transactions.
pub fn seal(session: &Path, file: &ArchivedFile) -> std::io::Result<()> {
    let bytes = std::fs::read(&file.path)?;
    let mut position = sealed_position(session)?;
    for t in binlog::scan(&bytes).transactions {
        position.insert(t.gtid);
    }
    let packed = zstd::encode_all(bytes.as_slice(), 3)?;
    let sealed = session.join(format!("{}.{SEALED}", file.name));
    oscarbox_common::write_private(
        &checksum_path(&sealed),
        format!(
            "{}  {}.{SEALED}\n",
            hex(&sha2::Sha256::digest(&packed)),
            file.name
        )
        .as_bytes(),
    )?;
    oscarbox_common::write_private(&sealed, &packed)?;
    oscarbox_common::write_private(&session.join(POSITION), format!("{position}\n").as_bytes())?;
    std::fs::remove_file(&file.path)?;
    sync_dir(session)
}

/// Closes a session whose `mariadb-binlog` has ended (or was left by a crash): the last raw
/// file is cut back to its last complete transaction, every raw file is sealed. Returns the
/// position reached; an empty session is removed.
pub fn close(session: &Path) -> std::io::Result<GtidList> {
    let raw: Vec<ArchivedFile> = files(session).into_iter().filter(|f| !f.sealed).collect();
    if let Some(last) = raw.last() {
        let bytes = std::fs::read(&last.path)?;
        let scan = binlog::scan(&bytes);
        if scan.is_binlog && scan.whole < bytes.len() as u64 {
            let f = std::fs::OpenOptions::new().write(true).open(&last.path)?;
            f.set_len(scan.whole)?;
            f.sync_all()?;
        }
    }
    for f in &raw {
        seal(session, f)?;
    }
    let position = sealed_position(session)?;
    if files(session).is_empty() {
        // A connection that brought nothing: the previous session's position stands.
        std::fs::remove_dir_all(session)?;
    }
    Ok(position)
}

/// Where the archive stands: the newest session closed (a crash may have left it open) and
/// its position; `None` when the archive is empty.
pub fn resume(dir: &Path) -> std::io::Result<Option<GtidList>> {
    while let Some(newest) = sessions(dir).pop() {
        let position = close(&newest)?;
        if std::fs::metadata(&newest).is_ok() || !position.is_empty() {
            return Ok(Some(position));
        }
    }
    Ok(None)
}

/// The oldest closed sessions that a base backup at `oldest_base` makes unneeded: every
/// transaction they hold is in that base already, and a restore starts from a base. Only a
/// run of the oldest qualifies, and never the newest session (the archive resumes from it).
pub fn unneeded(dir: &Path, oldest_base: &GtidList) -> Vec<PathBuf> {
    let all = sessions(dir);
    let Some((_, closed)) = all.split_last() else {
        return Vec::new();
    };
    closed
        .iter()
        .take_while(|s| {
            files(s).iter().all(|f| f.sealed)
                && sealed_position(s).is_ok_and(|p| p.is_prefix_of(oldest_base))
        })
        .cloned()
        .collect()
}

/// Makes what arrived durable, and seals the files the server has rotated away from (every
/// raw file but the newest).
fn sync_and_seal(session: &Path) -> std::io::Result<bool> {
    let raw: Vec<ArchivedFile> = files(session).into_iter().filter(|f| !f.sealed).collect();
    let Some((newest, done)) = raw.split_last() else {
        return Ok(false);
    };
    for f in done {
        seal(session, f)?;
    }
    std::fs::File::open(&newest.path)?.sync_data()?;
    sync_dir(session)?;
    Ok(true)
}

/// How a session ended.
enum Ended {
    Shutdown,
    /// The connection ended; whether it brought anything, and what `mariadb-binlog` said.
    Disconnected {
        received: bool,
        said: String,
    },
}

/// The replication account the archive connects as (it needs only REPLICATION SLAVE).
#[derive(Debug, Clone)]
pub struct Account {
    pub user: String,
    pub password_file: PathBuf,
}

/// Runs until `shutdown`: one session after another, through the endpoint, following
/// failovers.
pub async fn run(config: Arc<Config>, account: Account, shutdown: CancellationToken) {
    let mut failing_since: Option<tokio::time::Instant> = None;
    let mut alerted = false;
    let mut backoff = Duration::from_secs(1);
    loop {
        let outcome = session(&config, &account, &shutdown).await;
        let why = match outcome {
            Ok(Ended::Shutdown) => return,
            Ok(Ended::Disconnected {
                received: true,
                said,
            }) => {
                tracing::info!(
                    "the binlog archive's connection ended ({}); resuming from the new primary",
                    if said.is_empty() {
                        "closed"
                    } else {
                        said.as_str()
                    }
                );
                failing_since = None;
                backoff = Duration::from_secs(1);
                if std::mem::take(&mut alerted) {
                    tracing::info!("the binlog archive works again");
                }
                continue;
            }
            Ok(Ended::Disconnected {
                received: false,
                said,
            }) => said,
            Err(why) => why,
        };
        let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() >= ALERT_AFTER && !alerted {
            tracing::error!(
                alert = true,
                "the binlog archive has been failing for {}s: {why}",
                since.elapsed().as_secs()
            );
            alerted = true;
        } else if !alerted {
            tracing::warn!("the binlog archive could not connect ({why}); trying again");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// One session: guard, resume position, `mariadb-binlog` until it ends, close.
async fn session(
    config: &Config,
    account: &Account,
    shutdown: &CancellationToken,
) -> Result<Ended, String> {
    // Not `guard`: a nearly full disk still takes the binlog, the most valuable thing on it.
    crate::documents::guard_for_upkeep(config).await?;
    let dir = dir(config);
    let password = std::fs::read_to_string(&account.password_file).map_err(|e| {
        format!(
            "the replication password {}: {e}",
            account.password_file.display()
        )
    })?;
    let dir2 = dir.clone();
    let (resumed, session) = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir2)?;
        let resumed = resume(&dir2)?;
        let next = sessions(&dir2)
            .last()
            .and_then(|p| p.file_name()?.to_str()?.parse::<u64>().ok())
            .map_or(1, |n| n + 1);
        let session = dir2.join(format!("{next:08}"));
        std::fs::create_dir_all(&session)?;
        let start = resumed.clone().unwrap_or_default();
        oscarbox_common::write_private(&session.join(START), format!("{start}\n").as_bytes())?;
        Ok::<_, std::io::Error>((start, session))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("the binlog archive on {}: {e}", dir.display()))?;

    // The account's password goes in a private options file, never on the command line.
    let options = config.box_.state_dir.join("run").join("binlog-archive.cnf");
    oscarbox_common::write_private(
        &options,
        format!(
            "[client]\nuser={}\npassword={}\n",
            account.user,
            password.trim()
        )
        .as_bytes(),
    )
    .map_err(|e| format!("{}: {e}", options.display()))?;
    let endpoint = config.database.endpoint;
    let mut command = tokio::process::Command::new("mariadb-binlog");
    command
        .arg(format!("--defaults-extra-file={}", options.display()))
        .args([
            "--read-from-remote-server",
            "--raw",
            "--stop-never",
            "--protocol=TCP",
        ])
        .arg(format!("--host={}", endpoint.ip()))
        .arg(format!("--port={}", endpoint.port()))
        .arg(format!("--stop-never-slave-server-id={SERVER_ID}"))
        .arg(format!("--result-file={}/", session.display()));
    if !resumed.is_empty() {
        command.arg(format!("--start-position={resumed}"));
    }
    command
        .arg(FIRST_FILE)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run mariadb-binlog (is mariadb-client installed?): {e}"))?;
    let stderr = child.stderr.take();
    let said = tokio::spawn(async move {
        let mut text = String::new();
        if let Some(mut s) = stderr {
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut s, &mut text).await;
        }
        text
    });
    let state = State::path(&config.box_.state_dir);
    let mut received = false;
    let mut last_state: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(SYNC_EVERY);
    let shut = loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                break true;
            }
            _ = child.wait() => break false,
            _ = tick.tick() => {
                let s = session.clone();
                match tokio::task::spawn_blocking(move || sync_and_seal(&s)).await {
                    Ok(Ok(any)) => {
                        received |= any;
                        if any && last_state.is_none_or(|t| t.elapsed() >= STATE_EVERY) {
                            last_state = Some(tokio::time::Instant::now());
                            let now = crate::state::unix_now();
                            State::update(&state, |s| s.database_last = Some(now));
                        }
                    }
                    Ok(Err(e)) => tracing::error!(alert = true, session = %session.display(), "the binlog archive cannot make its file durable: {e}"),
                    Err(e) => tracing::error!("the binlog archive's sync task failed: {e}"),
                }
            }
        }
    };
    let said = said.await.unwrap_or_default().trim().replace('\n', " ");
    let s = session.clone();
    let position = tokio::task::spawn_blocking(move || close(&s))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| {
            format!(
                "closing the binlog archive's session {}: {e}",
                session.display()
            )
        })?;
    if received {
        let now = crate::state::unix_now();
        State::update(&state, |s| s.database_last = Some(now));
        tracing::debug!(%position, session = %session.display(), "binlog archive session closed");
    }
    Ok(if shut {
        Ended::Shutdown
    } else {
        Ended::Disconnected { received, said }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(dir: &Path, n: u32, position: &str, raw: bool) {
        let s = dir.join(format!("{n:08}"));
        std::fs::create_dir_all(&s).expect("a session");
        std::fs::write(s.join(START), "").expect("start");
        std::fs::write(s.join(POSITION), position).expect("position");
        let name = if raw {
            "mariadb-bin.000001"
        } else {
            "mariadb-bin.000001.zst"
        };
        std::fs::write(s.join(name), b"").expect("a file");
    }

    #[test]
    fn only_the_oldest_sessions_a_base_covers_are_unneeded() {
        let dir = tempfile::tempdir().expect("a directory");
        session(dir.path(), 1, "0-1-10", false);
        session(dir.path(), 2, "0-1-20", false);
        session(dir.path(), 3, "0-2-30", false);
        session(dir.path(), 4, "0-2-40", true);
        let base = |p: &str| p.parse::<GtidList>().expect("a position");
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter()
                .filter_map(|p| Some(p.file_name()?.to_str()?.to_owned()))
                .collect()
        };
        assert_eq!(
            names(unneeded(dir.path(), &base("0-1-5"))),
            Vec::<String>::new()
        );
        assert_eq!(
            names(unneeded(dir.path(), &base("0-1-20"))),
            ["00000001", "00000002"]
        );
        // The newest session is kept even when the base covers it.
        assert_eq!(
            names(unneeded(dir.path(), &base("0-2-99"))),
            ["00000001", "00000002", "00000003"]
        );
        assert_eq!(sessions(dir.path()).len(), 4, "nothing removed by asking");
    }
}
