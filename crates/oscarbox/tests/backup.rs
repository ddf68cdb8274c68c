//! The documents' backups end to end, with real processes: `oscarbox backup` and `oscarbox
//! restore` against a real MariaDB (for the GTID tag), stock `restic` (Debian's) reading the
//! repository they write, a flipped byte found by verify, kill -9 in the middle of a snapshot,
//! the disk guard's refusals, the watchdog saving a new document within its debounce, and a
//! backup disk (a real, small mount) that fills up and empties again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use mysql_async::prelude::Queryable as _;
use oscarbox_test_harness::backups::{self, documents_saved_after, newest_documents, said};
use oscarbox_test_harness::{EmrConfig, MariaDb, Watchdog};
use oscarbox_watchdog_api::Severity;

const OSCARBOX: &str = env!("CARGO_BIN_EXE_oscarbox");

async fn oscarbox(config: &EmrConfig, args: &[&str]) -> anyhow::Result<Output> {
    backups::oscarbox(OSCARBOX.as_ref(), config, args).await
}

/// Stock restic on the repository, with the password from `oscarbox backup recovery-key`.
async fn restic(repo: &Path, password: &str, args: &[&str]) -> anyhow::Result<Output> {
    Ok(tokio::process::Command::new("restic")
        .args(args)
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", password)
        .env("RESTIC_CACHE_DIR", repo.with_extension("restic-cache"))
        .output()
        .await?)
}

/// Every file under `dir`: relative path → contents.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.insert(p.strip_prefix(dir).expect("under dir").to_path_buf(), bytes);
            }
        }
    }
    out
}

/// Documents as OSCAR names them, one in a folder, one binary.
fn write_documents(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("2026"))?;
    std::fs::write(dir.join("20261123101500scan (1).pdf"), b"%PDF-1.4 a scan\n")?;
    std::fs::write(
        dir.join("2026/20261123101600lab.txt"),
        "HbA1c 6.1 %\n".repeat(100),
    )?;
    let noise: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("20261123101700xray.dcm"), noise)?;
    Ok(())
}

fn documents_dir(config: &EmrConfig) -> PathBuf {
    config
        .path
        .parent()
        .expect("the config has a directory")
        .join("documents")
}

fn repository(config: &EmrConfig) -> PathBuf {
    config
        .path
        .parent()
        .expect("the config has a directory")
        .join("backup/repository")
}

async fn password(config: &EmrConfig) -> anyhow::Result<String> {
    let out = oscarbox(config, &["backup", "recovery-key"]).await?;
    anyhow::ensure!(out.status.success(), "{}", said(&out));
    let key = String::from_utf8(out.stdout)?;
    key.lines()
        .find_map(|l| l.strip_prefix("password: "))
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no password in the recovery key:\n{key}"))
}

#[tokio::test]
async fn documents_snapshots_open_with_stock_restic_and_restore_byte_for_byte() -> anyhow::Result<()>
{
    // With a binlog, so that the database has a GTID position to tag snapshots with.
    let db =
        MariaDb::start_with(vec!["--log-bin=mariadb-bin".into(), "--server-id=1".into()]).await?;
    db.root()
        .await?
        .query_drop("CREATE TABLE t (i int PRIMARY KEY)")
        .await?;
    let config = db.write_config(1, "")?;
    let docs = documents_dir(&config);
    write_documents(&docs)?;

    let out = oscarbox(&config, &["backup", "now"]).await?;
    assert!(out.status.success(), "{}", said(&out));
    let first = said(&out);
    assert!(first.contains("3 files (3 new, 0 changed)"), "{first}");
    assert!(
        first.contains("database at 0-1-"),
        "tagged with the GTID position: {first}"
    );

    // Stock restic opens it with the recovery key's password.
    let repo = repository(&config);
    let pw = password(&config).await?;
    let out = restic(&repo, &pw, &["snapshots", "--json"]).await?;
    assert!(out.status.success(), "{}", said(&out));
    let listed = String::from_utf8(out.stdout)?;
    assert!(
        listed.contains("\"documents\"")
            && listed.contains("\"gtid=0-1-")
            && listed.contains("\"/documents\""),
        "{listed}"
    );
    let out = restic(&repo, &pw, &["check", "--read-data"]).await?;
    assert!(out.status.success(), "restic check: {}", said(&out));
    let by_restic = tempfile::tempdir()?;
    let out = restic(
        &repo,
        &pw,
        &[
            "restore",
            "latest",
            "--target",
            &by_restic.path().to_string_lossy(),
        ],
    )
    .await?;
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(tree(&by_restic.path().join("documents")), tree(&docs));

    // A second snapshot saves only what changed.
    std::fs::write(docs.join("2026/20261123101600lab.txt"), "HbA1c 5.9 %\n")?;
    let out = oscarbox(&config, &["backup", "now"]).await?;
    assert!(said(&out).contains("(0 new, 1 changed)"), "{}", said(&out));

    // Our restore: everything, one file, a dry run, and refusals.
    let out = oscarbox(&config, &["restore", "list"]).await?;
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(
        said(&out)
            .lines()
            .filter(|l| l.contains("documents"))
            .count(),
        2,
        "{}",
        said(&out)
    );
    let into = tempfile::tempdir()?;
    let all = into.path().join("all");
    let out = oscarbox(
        &config,
        &["restore", "documents", "--to", &all.to_string_lossy()],
    )
    .await?;
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(tree(&all), tree(&docs));
    let one = into.path().join("one");
    let out = oscarbox(
        &config,
        &[
            "restore",
            "documents",
            "--to",
            &one.to_string_lossy(),
            "--path",
            "2026/20261123101600lab.txt",
        ],
    )
    .await?;
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(
        std::fs::read(one.join("20261123101600lab.txt"))?,
        b"HbA1c 5.9 %\n"
    );
    let dry = into.path().join("dry");
    let out = oscarbox(
        &config,
        &[
            "restore",
            "documents",
            "--to",
            &dry.to_string_lossy(),
            "--dry-run",
        ],
    )
    .await?;
    assert!(
        said(&out).contains("would restore /documents of snapshot"),
        "{}",
        said(&out)
    );
    assert!(std::fs::metadata(&dry).is_err(), "a dry run writes nothing");
    let out = oscarbox(
        &config,
        &["restore", "documents", "--to", &all.to_string_lossy()],
    )
    .await?;
    assert_eq!(out.status.code(), Some(69));
    assert!(said(&out).contains("is not empty"), "{}", said(&out));
    let out = oscarbox(
        &config,
        &[
            "restore",
            "documents",
            "--to",
            &dry.to_string_lossy(),
            "--snapshot",
            "ffffffff",
        ],
    )
    .await?;
    assert_eq!(out.status.code(), Some(69));
    assert!(said(&out).contains("no snapshot matches"), "{}", said(&out));
    Ok(())
}

#[tokio::test]
async fn a_flipped_byte_is_reported_by_verify() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let config = db.write_config(1, "")?;
    write_documents(&documents_dir(&config))?;
    let out = oscarbox(&config, &["backup", "now"]).await?;
    assert!(out.status.success(), "{}", said(&out));
    let out = oscarbox(&config, &["backup", "verify", "--read-data"]).await?;
    assert!(out.status.success(), "sound before: {}", said(&out));

    // Flip one byte in the middle of the largest data pack.
    let packs = tree(&repository(&config).join("data"));
    let (name, bytes) = packs
        .iter()
        .max_by_key(|(_, b)| b.len())
        .expect("a data pack");
    let path = repository(&config).join("data").join(name);
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    std::fs::write(&path, damaged)?;

    let out = oscarbox(&config, &["backup", "verify", "--read-data"]).await?;
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(said(&out).contains("DAMAGED"), "{}", said(&out));
    let out = oscarbox(&config, &["backup", "status"]).await?;
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(said(&out).contains("DAMAGE found"), "{}", said(&out));
    // Stock restic agrees.
    let pw = password(&config).await?;
    let out = restic(&repository(&config), &pw, &["check", "--read-data"]).await?;
    assert!(
        !out.status.success(),
        "restic check found it too: {}",
        said(&out)
    );
    Ok(())
}

#[tokio::test]
async fn kill_9_during_a_snapshot_leaves_a_sound_repository_and_the_next_one_completes(
) -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let config = db.write_config(1, "")?;
    let docs = documents_dir(&config);
    write_documents(&docs)?;
    // Enough to take a few seconds: 300 MiB that neither compresses nor deduplicates.
    let mut urandom = std::fs::File::open("/dev/urandom")?;
    for i in 0..300u32 {
        let mut noise = vec![0u8; 1 << 20];
        std::io::Read::read_exact(&mut urandom, &mut noise)?;
        std::fs::write(docs.join(format!("2026/bulk-{i:03}.bin")), noise)?;
    }
    let mut child = tokio::process::Command::new(OSCARBOX)
        .args(["backup", "now", "--config"])
        .arg(&config.path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Killed once it has written its first packs.
    let data = repository(&config).join("data");
    let packs = || {
        std::fs::read_dir(&data)
            .into_iter()
            .flatten()
            .flatten()
            .map(|d| std::fs::read_dir(d.path()).map_or(0, Iterator::count))
            .sum::<usize>()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while packs() < 1 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the snapshot wrote no data"
        );
        if child.try_wait()?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill()?;
    let status = child.wait().await?;
    assert!(
        !status.success(),
        "killed mid-way (a fast machine may finish first: {status})"
    );

    let out = oscarbox(&config, &["backup", "verify", "--read-data"]).await?;
    assert!(out.status.success(), "sound after the kill: {}", said(&out));
    let out = oscarbox(&config, &["backup", "now"]).await?;
    assert!(out.status.success(), "{}", said(&out));
    let into = tempfile::tempdir()?;
    let out = oscarbox(
        &config,
        &[
            "restore",
            "documents",
            "--to",
            &into.path().join("r").to_string_lossy(),
        ],
    )
    .await?;
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(tree(&into.path().join("r")), tree(&docs));
    Ok(())
}

#[tokio::test]
async fn the_disk_guard_refuses_an_unmounted_a_foreign_and_an_unmarked_disk() -> anyhow::Result<()>
{
    let db = MariaDb::start().await?;
    // An empty mount point: the disk is unplugged.
    let config = db.write_config(1, "")?;
    let text_of = std::fs::read_to_string(&config.path)?;
    std::fs::write(
        &config.path,
        text_of.replace("require-mount = false", "require-mount = true"),
    )?;
    let disk = config.path.parent().expect("a directory").join("backup");
    let out = oscarbox(&config, &["backup", "now"]).await?;
    assert_eq!(out.status.code(), Some(69), "{}", said(&out));
    assert!(
        said(&out).contains("nothing is mounted at"),
        "{}",
        said(&out)
    );
    assert_eq!(
        std::fs::read_dir(&disk)?.count(),
        0,
        "nothing written to the mount point"
    );

    // Another box's disk.
    std::fs::write(&config.path, text_of.clone())?;
    std::fs::write(
        disk.join("OSCARBOX-BACKUP-DISK"),
        "OSCAR Box backup disk\nbox-id: 00000000000000000000000000000000\nbox-name: other-clinic\nclaimed: 2026-01-01T00:00:00Z\n",
    )?;
    let out = oscarbox(&config, &["backup", "now"]).await?;
    assert_eq!(out.status.code(), Some(69), "{}", said(&out));
    assert!(
        said(&out).contains("the backup disk of another box (\"other-clinic\""),
        "{}",
        said(&out)
    );
    assert!(
        std::fs::metadata(disk.join("repository")).is_err(),
        "no repository made"
    );

    // A disk with someone's files and no marker.
    std::fs::remove_file(disk.join("OSCARBOX-BACKUP-DISK"))?;
    std::fs::write(disk.join("holiday.jpg"), b"not ours")?;
    let out = oscarbox(&config, &["backup", "now"]).await?;
    assert_eq!(out.status.code(), Some(69), "{}", said(&out));
    assert!(
        said(&out).contains("holds files (holiday.jpg) but no backup disk marker"),
        "{}",
        said(&out)
    );
    let out = oscarbox(&config, &["backup", "status"]).await?;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        said(&out).contains("backup disk: REFUSED"),
        "{}",
        said(&out)
    );

    // A person says it is this box's disk after all: claimed, and used.
    let out = oscarbox(&config, &["backup", "claim-disk"]).await?;
    assert!(out.status.success(), "{}", said(&out));
    let out = oscarbox(&config, &["backup", "now"]).await?;
    assert!(out.status.success(), "{}", said(&out));
    assert!(std::fs::read_to_string(disk.join("OSCARBOX-BACKUP-DISK"))?.contains("box-name: test"));
    Ok(())
}

#[tokio::test]
async fn the_watchdog_saves_a_new_document_within_its_debounce() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let config = db.write_config(1, "")?;
    // The harness writes the [backup] section: the debounce goes there.
    let text_of = std::fs::read_to_string(&config.path)?.replace(
        "require-mount = false",
        "require-mount = false\ndocuments-debounce = \"1s\"",
    );
    std::fs::write(&config.path, text_of)?;
    // The documents directory does not exist yet when the watchdog starts (the EMR makes it):
    // the watcher must still see what is written there.
    let docs = documents_dir(&config);
    let wd = Watchdog::start(OSCARBOX.as_ref(), &config)?;
    let newest = || newest_documents(&config);
    // The first snapshot (the start's full scan).
    let first = Some(documents_saved_after(&config, None, Duration::from_secs(60)).await?);
    write_documents(&docs)?;
    let written = tokio::time::Instant::now();
    std::fs::write(
        docs.join("20261123120000referral.pdf"),
        b"%PDF-1.4 referral\n",
    )?;
    // In a snapshot within the debounce (1 s, at most 6 s when changes keep coming) plus the
    // snapshot's own time; generous for a loaded machine.
    let deadline = written + Duration::from_secs(30);
    while newest() == first {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the new document was not saved within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pw = password(&config).await?;
    let out = restic(&repository(&config), &pw, &["ls", "latest"]).await?;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/documents/20261123120000referral.pdf"),
        "{}",
        said(&out)
    );
    // The status carries the newest snapshot's age.
    let s = wd.box_status().await?;
    assert!(
        s.backups
            .newest_documents_age_seconds
            .is_some_and(|a| a < 60),
        "{:?}",
        s.backups
    );
    drop(wd);
    Ok(())
}

/// A real, small file system mounted at a path for the length of a test: a tmpfs, which the
/// tests may mount because they run as root, as the box's services do.
struct Mounted(PathBuf);

impl Mounted {
    fn tmpfs(at: &Path, mib: u32) -> anyhow::Result<Mounted> {
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "mounting a {mib} MiB tmpfs at {} (this test needs root): {}",
            at.display(),
            said(&out)
        );
        Ok(Mounted(at.to_path_buf()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes `mib` MiB of noise that neither compresses nor deduplicates into `path`, stopping
/// quietly when the disk is full; the MiB written.
fn fill(path: &Path, mib: u32) -> anyhow::Result<u32> {
    let mut urandom = std::fs::File::open("/dev/urandom")?;
    let mut file = std::fs::File::create(path)?;
    let mut noise = vec![0u8; 1 << 20];
    for written in 0..mib {
        std::io::Read::read_exact(&mut urandom, &mut noise)?;
        if let Err(e) = std::io::Write::write_all(&mut file, &noise) {
            anyhow::ensure!(
                e.raw_os_error() == Some(28),
                "filling {}: {e}",
                path.display()
            );
            return Ok(written);
        }
    }
    Ok(mib)
}

#[tokio::test]
async fn a_full_backup_disk_alerts_loses_nothing_and_resumes_when_space_returns(
) -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let config = db.write_config(1, "")?;
    // A real disk this time (a mount is required), of 32 MiB, and a watchdog that retries
    // a failed snapshot after 6 s (six times its 1 s debounce).
    let text_of = std::fs::read_to_string(&config.path)?.replace(
        "require-mount = false",
        "require-mount = true\ndocuments-debounce = \"1s\"",
    );
    std::fs::write(&config.path, text_of)?;
    let disk = config.path.parent().expect("a directory").join("backup");
    let _mounted = Mounted::tmpfs(&disk, 32)?;
    let docs = documents_dir(&config);
    write_documents(&docs)?;
    let mut wd = Watchdog::start(OSCARBOX.as_ref(), &config)?;
    wd.allow_error("documents backup refused or failed");
    let newest = || newest_documents(&config);
    let first = Some(documents_saved_after(&config, None, Duration::from_secs(60)).await?);
    let saved = tree(&docs);

    // The disk fills up with something else, leaving 4 MiB, and 12 MiB of new documents
    // arrive: the snapshot runs out of space half-way.
    let ballast = disk.join("ballast");
    let filled = fill(&ballast, 64)?;
    std::fs::File::options()
        .write(true)
        .open(&ballast)?
        .set_len(u64::from(filled.saturating_sub(4)) << 20)?;
    for i in 0..12u32 {
        fill(&docs.join(format!("2026/scan-{i:02}.pdf")), 1)?;
    }
    let failed = |wd: &Watchdog| {
        wd.log()
            .iter()
            .filter(|l| l.contains("documents backup refused or failed"))
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while failed(&wd) == 0 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no alert for the full disk:\n{}",
            wd.log().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        wd.log()
            .iter()
            .any(|l| l.contains("refused or failed") && l.contains("No space left on device")),
        "the alert names the cause:\n{}",
        wd.log().join("\n")
    );
    // Then the disk is full to the last byte: refused as full, and the box says so.
    fill(&disk.join("ballast-2"), 64)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = wd.box_status().await?;
        let full = s.reasons.iter().find(|r| r.id == "backup-disk-full");
        if let Some(r) = full {
            assert_eq!(r.severity, Severity::Critical, "{r:?}");
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the status does not say the backup disk is full: {:#?}",
            s.reasons
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = oscarbox(&config, &["backup", "now"]).await?;
    assert_eq!(out.status.code(), Some(69), "{}", said(&out));
    assert!(said(&out).contains("is full ("), "{}", said(&out));
    assert_eq!(newest(), first, "no snapshot recorded while full");

    // Nothing already saved was lost: the repository checks sound and the first snapshot
    // restores whole, on the full disk.
    let out = oscarbox(&config, &["backup", "verify", "--read-data"]).await?;
    assert!(out.status.success(), "sound while full: {}", said(&out));
    let into = tempfile::tempdir()?;
    let to = into.path().join("first");
    let first_id = first.clone().unwrap_or_default();
    let out = oscarbox(
        &config,
        &[
            "restore",
            "documents",
            "--snapshot",
            &first_id,
            "--to",
            &to.to_string_lossy(),
        ],
    )
    .await?;
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(tree(&to), saved);

    // Space returns: the watchdog's next attempt saves everything, and says the backups work
    // again (logged just after the state file records the snapshot).
    std::fs::remove_file(&ballast)?;
    std::fs::remove_file(disk.join("ballast-2"))?;
    let recovered = |wd: &Watchdog| {
        wd.log()
            .iter()
            .any(|l| l.contains("documents backups work again"))
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while newest() == first || !recovered(&wd) {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no snapshot within 60 s of space returning:\n{}",
            wd.log().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let to = into.path().join("latest");
    let out = oscarbox(
        &config,
        &["restore", "documents", "--to", &to.to_string_lossy()],
    )
    .await?;
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(tree(&to), tree(&docs));
    let pw = password(&config).await?;
    let out = restic(&repository(&config), &pw, &["check", "--read-data"]).await?;
    assert!(out.status.success(), "restic check: {}", said(&out));
    drop(wd);
    Ok(())
}
