//! `oscarbox-bench backup`: the backups against stock restic (Debian's), in the same run.
//!
//! 1. Documents: a generated set of PDF-sized files (1,200 of 16 to 240 KiB, random bytes
//!    behind a PDF header, so neither tool can compress or deduplicate them). Ours
//!    (`rustic_core`, as `oscarbox backup now` runs it) and `restic backup` each take a first
//!    snapshot into a repository of their own, then an incremental one after 5% of the files
//!    changed and 50 were added, then restore everything into an empty directory. Both run
//!    without a cache and read a page-cached tree. Rates in MB/s and ours as a ratio of
//!    restic's.
//! 2. The binlog archive's recovery point under write load: one MariaDB with a binlog, the
//!    archive (`oscarbox_backup::archive::run`, a supervised `mariadb-binlog`) following it,
//!    and a writer committing rows one by one as fast as it can for 10 s. Every 50 ms the
//!    archive's files are read back; for each transaction, the time from its commit being
//!    acknowledged to its being complete in the archive is its lag. Target: at most about a
//!    second.
//!
//! Prints a table; asserts nothing.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context as _};
use mysql_async::prelude::Queryable as _;
use oscarbox_backup::repo::Repo;
use oscarbox_test_harness::MariaDb;
use tokio::time::Instant;

const FILES: usize = 1200;
const CHANGED: usize = FILES / 20;
const ADDED: usize = 50;
const PASSWORD: &str = "bench-password";
const WRITE_SECONDS: u64 = 10;

fn write_file(path: &Path, rng: &mut impl rand::RngCore) -> anyhow::Result<u64> {
    let size = 16 * 1024 + (rng.next_u32() as usize % (224 * 1024));
    let mut bytes = vec![0u8; size];
    rng.fill_bytes(&mut bytes);
    bytes[..9].copy_from_slice(b"%PDF-1.4\n");
    std::fs::write(path, &bytes)?;
    Ok(size as u64)
}

fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

async fn restic(repo: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("restic")
        .args(args)
        .arg("--no-cache")
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .await
        .context("run restic (scripts/install-deps --test installs it)")?;
    ensure!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Seconds `work` took.
async fn timed<T>(
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    work.await?;
    Ok(started.elapsed().as_secs_f64())
}

async fn ours<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, oscarbox_backup::repo::RepoError> + Send + 'static,
) -> anyhow::Result<T> {
    Ok(tokio::task::spawn_blocking(work).await??)
}

fn row(what: &str, bytes: u64, ours: f64, restic: f64) {
    #[expect(clippy::cast_precision_loss, reason = "a rate")]
    let mb = bytes as f64 / 1e6;
    println!(
        "{what:<34} {:>9.1} MB/s ({ours:>6.2} s) {:>9.1} MB/s ({restic:>6.2} s) {:>7.2}",
        mb / ours,
        mb / restic,
        restic / ours
    );
}

async fn documents() -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let docs = work.path().join("documents");
    std::fs::create_dir_all(&docs)?;
    let mut rng = rand::rng();
    for month in 0..12 {
        std::fs::create_dir_all(docs.join(format!("2026/{month:02}")))?;
    }
    for i in 0..FILES {
        write_file(
            &docs.join(format!("2026/{:02}/{i:05}scan.pdf", i % 12)),
            &mut rng,
        )?;
    }
    let total = tree_bytes(&docs);
    println!(
        "documents: {FILES} files, {:.1} MB (random bytes: nothing compresses or deduplicates)",
        total as f64 / 1e6
    );
    let (ours_repo, restic_repo) = (work.path().join("ours"), work.path().join("restic"));
    let repo = ours({
        let p = ours_repo.clone();
        move || Repo::open_or_init(&p, PASSWORD)
    })
    .await?;
    restic(&restic_repo, &["init"]).await?;

    let first_ours = timed(ours({
        let (r, d) = (repo.clone(), docs.clone());
        move || r.backup_documents(&d, "bench", None)
    }))
    .await?;
    let docs_text = docs.to_string_lossy().into_owned();
    let first_restic = timed(restic(
        &restic_repo,
        &["backup", "--host", "bench", &docs_text],
    ))
    .await?;

    let mut changed = 0;
    for i in (0..FILES).step_by(FILES / CHANGED) {
        changed += write_file(
            &docs.join(format!("2026/{:02}/{i:05}scan.pdf", i % 12)),
            &mut rng,
        )?;
    }
    for i in 0..ADDED {
        changed += write_file(&docs.join(format!("2026/new-{i:03}.pdf")), &mut rng)?;
    }
    let next_ours = timed(ours({
        let (r, d) = (repo.clone(), docs.clone());
        move || r.backup_documents(&d, "bench", None)
    }))
    .await?;
    let next_restic = timed(restic(
        &restic_repo,
        &["backup", "--host", "bench", &docs_text],
    ))
    .await?;

    let (into_ours, into_restic) = (
        work.path().join("restored-ours"),
        work.path().join("restored-restic"),
    );
    let restore_ours = timed(ours({
        let (r, d) = (repo.clone(), into_ours.clone());
        move || r.restore("latest", oscarbox_backup::repo::DOCUMENTS, &d)
    }))
    .await?;
    let restic_target = into_restic.to_string_lossy().into_owned();
    let restore_restic = timed(restic(
        &restic_repo,
        &["restore", "latest", "--target", &restic_target],
    ))
    .await?;
    let total_after = tree_bytes(&docs);
    ensure!(
        tree_bytes(&into_ours) == total_after,
        "our restore is not whole: {} of {total_after} bytes",
        tree_bytes(&into_ours)
    );

    println!(
        "{:<34} {:>24} {:>24} {:>7}",
        "", "ours (rustic_core)", "restic 0.14 (anchor)", "ours/x"
    );
    row("first snapshot", total, first_ours, first_restic);
    row(
        &format!("incremental ({CHANGED} changed, {ADDED} new)"),
        changed,
        next_ours,
        next_restic,
    );
    row("full restore", total_after, restore_ours, restore_restic);
    println!("targets: at least restic's throughput (ratio >= 1); full restore >= 100 MB/s");
    Ok(())
}

/// The time each transaction was acknowledged, by sequence number.
type Acked = Arc<Mutex<Vec<(u64, Instant)>>>;

async fn archive_lag() -> anyhow::Result<()> {
    let db = MariaDb::start_with(vec![
        "--log-bin=mariadb-bin".into(),
        "--server-id=1".into(),
        "--binlog-format=ROW".into(),
    ])
    .await?;
    let mut root = db.root().await?;
    root.query_drop("CREATE USER oscarbox_repl@'127.0.0.1' IDENTIFIED BY 'bench-repl'")
        .await?;
    root.query_drop("GRANT REPLICATION SLAVE ON *.* TO oscarbox_repl@'127.0.0.1'")
        .await?;
    root.query_drop("CREATE TABLE oscar.lag (i int PRIMARY KEY, at datetime(6)) ENGINE=InnoDB")
        .await?;
    let config = db.write_config(1, "")?;
    let loaded =
        oscarbox_config::load_or_default(Some(&config.path)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let secret = config.state_dir.join("bench-repl.password");
    std::fs::create_dir_all(&config.state_dir)?;
    std::fs::write(&secret, "bench-repl")?;
    let stop = tokio_util::sync::CancellationToken::new();
    let archiver = tokio::spawn(oscarbox_backup::archive::run(
        Arc::new(loaded.clone()),
        oscarbox_backup::archive::Account {
            user: "oscarbox_repl".into(),
            password_file: secret,
        },
        stop.clone(),
    ));
    let dir = oscarbox_backup::archive::dir(&loaded);

    let acked: Acked = Arc::default();
    let writing = {
        let acked = Arc::clone(&acked);
        let mut conn = db.root().await?;
        tokio::spawn(async move {
            let started = Instant::now();
            let mut i = 0u64;
            while started.elapsed() < Duration::from_secs(WRITE_SECONDS) {
                i += 1;
                if conn
                    .exec_drop("INSERT INTO oscar.lag VALUES (?, NOW(6))", (i,))
                    .await
                    .is_err()
                {
                    break;
                }
                let pos: Option<String> =
                    conn.query_first("SELECT @@last_gtid").await.ok().flatten();
                if let Some(seq) = pos.and_then(|p| p.rsplit('-').next()?.parse().ok()) {
                    acked.lock().expect("acked").push((seq, Instant::now()));
                }
            }
        })
    };
    // Sample the archive every 50 ms: the first time each sequence number is complete there.
    let mut archived_at: std::collections::BTreeMap<u64, Instant> =
        std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(WRITE_SECONDS + 10);
    loop {
        let now = Instant::now();
        let d = dir.clone();
        let seqs = tokio::task::spawn_blocking(move || {
            oscarbox_backup::pitr::scan_archive(&d).map(|files| {
                files
                    .iter()
                    .flat_map(|f| f.transactions.iter().map(|t| t.gtid.seq))
                    .collect::<Vec<_>>()
            })
        })
        .await?
        .unwrap_or_default();
        for s in seqs {
            archived_at.entry(s).or_insert(now);
        }
        let last_acked = acked.lock().expect("acked").last().map(|(s, _)| *s);
        if writing.is_finished() && last_acked.is_some_and(|s| archived_at.contains_key(&s)) {
            break;
        }
        if now > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let _ = archiver.await;
    let acked = acked.lock().expect("acked").clone();
    let mut lags: Vec<f64> = acked
        .iter()
        .filter_map(|(s, at)| {
            archived_at
                .get(s)
                .map(|a| a.saturating_duration_since(*at).as_secs_f64())
        })
        .collect();
    let missing = acked.len() - lags.len();
    lags.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "an index"
        )]
        let i = ((lags.len().saturating_sub(1)) as f64 * q).round() as usize;
        lags.get(i).copied().unwrap_or(f64::NAN)
    };
    println!(
        "binlog archive under {WRITE_SECONDS} s of one-by-one commits: {} transactions acknowledged, {missing} never seen archived",
        acked.len()
    );
    println!(
        "  acknowledged to complete in the archive: median {:.3} s, p99 {:.3} s, max {:.3} s (sampled every 50 ms; target <= 1 s)",
        pick(0.5),
        pick(0.99),
        lags.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}

pub async fn bench() -> anyhow::Result<()> {
    println!("== backup ==");
    documents().await?;
    println!();
    archive_lag().await
}
