//! The binlog archive end to end: `oscarbox watchdog` runs the database pair and archives the
//! primary's binlog onto the backup disk while writers write through the endpoint; the primary
//! hangs (SIGSTOP) and the pair fails over; the archive follows the new primary. Afterwards
//! the archived GTID sequence has no gap and reaches the new primary's position, every sealed
//! file matches its checksum, and stock `mariadb-binlog` reads every file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_async::prelude::Queryable as _;
use nix::sys::signal::Signal;
use oscarbox_backup::archive;
use oscarbox_backup::binlog::{self, Gtid};
use oscarbox_test_harness::backups::{self, documents_saved_after, newest_documents, said};
use oscarbox_test_harness::pair::writer;
use oscarbox_test_harness::{descendants, write_pair_config, EmrConfig, Watchdog};

const OSCARBOX: &str = env!("CARGO_BIN_EXE_oscarbox");
const MINUTE: Duration = Duration::from_secs(60);

/// Every complete transaction in the archive, in order: sessions, then files.
fn archived(dir: &Path) -> anyhow::Result<Vec<Gtid>> {
    let mut out = Vec::new();
    for session in archive::sessions(dir) {
        for file in archive::files(&session) {
            let bytes = archive::read(&file)?;
            out.extend(
                binlog::scan(&bytes)
                    .transactions
                    .into_iter()
                    .map(|t| t.gtid),
            );
        }
    }
    Ok(out)
}

/// The pid of the `mariadbd` under `watchdog` listening on `port`.
fn mariadbd_on(watchdog: i32, port: u16) -> Option<i32> {
    descendants(watchdog).into_iter().find(|p| {
        std::fs::read_to_string(format!("/proc/{p}/cmdline"))
            .is_ok_and(|c| c.contains("mariadbd") && c.contains(&format!("--port={port}")))
    })
}

async fn primary_position(endpoint: u16, password: &str) -> anyhow::Result<String> {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(endpoint)
        .user(Some("oscar_app"))
        .pass(Some(password))
        .prefer_socket(false);
    let mut conn = mysql_async::Conn::new(opts).await?;
    let pos: Option<String> = conn.query_first("SELECT @@global.gtid_binlog_pos").await?;
    Ok(pos.unwrap_or_default())
}

#[tokio::test]
async fn a_failover_during_archiving_leaves_no_gap_and_stock_tools_read_the_archive(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (config, endpoint, mut wd, password) = serving_pair(dir.path(), "").await?;
    let text = std::fs::read_to_string(&config.path)?;
    let port_of = |name: &str| -> Option<u16> {
        let at = text.find(&format!("name = \"{name}\""))?;
        text[at..]
            .lines()
            .find_map(|l| l.strip_prefix("port = ")?.trim().parse().ok())
    };
    let db1 = port_of("db1").expect("db1's port");
    // The failover is alerted, as is the fenced node until it is back; a base backup the
    // watchdog takes at its start may meet the hung primary.
    wd.allow_error("database pair: ");
    wd.allow_error("the database base backup failed");
    app(endpoint, &password)
        .await?
        .query_drop("CREATE TABLE IF NOT EXISTS acked (writer int NOT NULL, seq int NOT NULL, PRIMARY KEY (writer, seq)) ENGINE=InnoDB")
        .await?;

    // Two writers through the endpoint.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(0u64));
    let at: std::net::SocketAddr = ([127, 0, 0, 1], endpoint).into();
    let writers: Vec<_> = (1..=2)
        .map(|id| {
            let acked = Arc::clone(&acked);
            tokio::spawn(writer(
                at,
                password.clone(),
                id,
                move |_, _, _| *acked.lock().expect("count") += 1,
                Arc::clone(&stop),
            ))
        })
        .collect();
    let archive_dir = dir.path().join("backup/binlog");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while archived(&archive_dir).map_or(0, |g| g.len()) < 50 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the archive took in nothing:\n{}",
            wd.log().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The primary hangs: the pair fails over to db2, and the archive follows it.
    let hung = mariadbd_on(wd.pid(), db1).expect("db1's mariadbd under the watchdog");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(hung), Signal::SIGSTOP)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let out = tokio::process::Command::new(OSCARBOX)
            .args(["db", "status", "--json", "--config"])
            .arg(&config.path)
            .output()
            .await?;
        let pair: Option<oscarbox_watchdog_api::db::DbPairStatus> =
            std::str::from_utf8(&out.stdout)
                .ok()
                .and_then(|l| oscarbox_watchdog_api::from_line(l).ok());
        if pair.is_some_and(|p| p.primary == "B") {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no failover to db2 within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The fenced node is killed by the pair, never continued: nothing to undo here.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await?;
    }
    let written = *acked.lock().expect("count");
    assert!(written > 50, "the writers wrote ({written})");

    // The archive reaches the new primary's position, with no gap on the way.
    let target: Gtid = primary_position(endpoint, &password)
        .await?
        .parse()
        .map_err(|e| anyhow::anyhow!("the primary's position: {e}"))?;
    assert_eq!(target.server, 2, "db2 (server 2) is the primary now");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let gtids = loop {
        let gtids = archived(&archive_dir)?;
        if gtids.contains(&target) {
            break gtids;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the archive did not reach {target}: its last is {:?}\n{}",
            gtids.last(),
            wd.log().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        gtids.first().map(|g| g.seq),
        Some(1),
        "the archive starts at the first transaction"
    );
    assert_eq!(binlog::first_gap(gtids.iter().copied()), None, "no gap");
    let distinct: BTreeSet<u64> = gtids.iter().map(|g| g.seq).collect();
    assert_eq!(distinct.len() as u64, target.seq, "every transaction, once");
    assert!(
        archive::sessions(&archive_dir).len() >= 2,
        "the failover ended a session and started another"
    );

    // Stop the box: every session is sealed. Each sealed file matches its checksum
    // (`sha256sum -c`), and stock mariadb-binlog reads each one whole.
    wd.signal(Signal::SIGTERM);
    wd.wait_exit(Duration::from_secs(120)).await?;
    let scratch = tempfile::tempdir()?;
    let mut read = 0;
    for session in archive::sessions(&archive_dir) {
        for file in archive::files(&session) {
            assert!(file.sealed, "{} sealed at the stop", file.path.display());
            let sum = tokio::process::Command::new("sha256sum")
                .arg("-c")
                .arg(format!("{}.zst.sha256", file.name))
                .current_dir(&session)
                .output()
                .await?;
            assert!(sum.status.success(), "{sum:?}");
            let plain: PathBuf = scratch.path().join(format!("{read}-{}", file.name));
            std::fs::write(&plain, archive::read(&file)?)?;
            let out = tokio::process::Command::new("mariadb-binlog")
                .arg(&plain)
                .output()
                .await?;
            assert!(
                out.status.success(),
                "mariadb-binlog {}: {}",
                file.name,
                String::from_utf8_lossy(&out.stderr)
            );
            read += 1;
        }
    }
    assert!(read >= 2, "files read: {read}");
    Ok(())
}

/// The pair under a watchdog, serving at its endpoint: the config, the endpoint's port, the
/// EMR account's password.
async fn serving_pair(
    dir: &Path,
    extra_backup: &str,
) -> anyhow::Result<(EmrConfig, u16, Watchdog, String)> {
    let (config, endpoint) = write_pair_config(dir, 1, "")?;
    let text = std::fs::read_to_string(&config.path)?.replace(
        "require-mount = false",
        &format!("require-mount = false\n{extra_backup}"),
    );
    std::fs::write(&config.path, text)?;
    let (wd, password) = serve(&config, endpoint).await?;
    Ok((config, endpoint, wd, password))
}

/// `oscarbox watchdog` on `config`, once the instance is healthy and the pair serves at
/// `endpoint`; with the EMR account's password.
async fn serve(config: &EmrConfig, endpoint: u16) -> anyhow::Result<(Watchdog, String)> {
    let wd = Watchdog::start(OSCARBOX.as_ref(), config)?;
    // The EMR instance up (its migrations done) before anything else happens.
    wd.wait_until(Duration::from_secs(180), "the instance healthy", |s| {
        !s.workers.is_empty() && s.workers.iter().all(|w| w.state == "healthy")
    })
    .await?;
    let password_file = config.state_dir.join("secrets/db-app.password");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(p) = std::fs::read_to_string(&password_file) {
            if primary_position(endpoint, p.trim()).await.is_ok() {
                return Ok((wd, p.trim().to_owned()));
            }
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the pair never served at the endpoint:\n{}",
            wd.log().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until the archive under `dir`'s backup disk holds the primary's newest transaction.
async fn archive_reaches_primary(
    dir: &Path,
    endpoint: u16,
    password: &str,
) -> anyhow::Result<Gtid> {
    let target: Gtid = primary_position(endpoint, password)
        .await?
        .parse()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let archive_dir = dir.join("backup/binlog");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !archived(&archive_dir)?.contains(&target) {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the archive did not reach {target}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(target)
}

async fn app(endpoint: u16, password: &str) -> anyhow::Result<mysql_async::Conn> {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(endpoint)
        .user(Some("oscar_app"))
        .pass(Some(password))
        .db_name(Some("oscar"))
        .prefer_socket(false);
    Ok(mysql_async::Conn::new(opts).await?)
}

async fn oscarbox(config: &EmrConfig, args: &[&str]) -> anyhow::Result<std::process::Output> {
    backups::oscarbox(OSCARBOX.as_ref(), config, args).await
}

/// `oscarbox restore db --to T --into DIR`, with more arguments.
async fn restore_db(
    config: &EmrConfig,
    t: &str,
    into: &Path,
    more: &[&str],
) -> anyhow::Result<std::process::Output> {
    let into = into.to_string_lossy();
    let mut args = vec!["restore", "db", "--to", t, "--into", &into];
    args.extend(more);
    oscarbox(config, &args).await
}

/// The box's local time now, to the second, as a technician would type it.
async fn local_now() -> anyhow::Result<String> {
    let out = tokio::process::Command::new("date")
        .arg("+%Y-%m-%d %H:%M:%S")
        .output()
        .await?;
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

#[tokio::test]
async fn a_point_in_time_restore_brings_back_exactly_the_rows_and_documents_up_to_then(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (config, endpoint, wd, password) =
        serving_pair(dir.path(), "documents-debounce = \"1s\"").await?;
    let docs = dir.path().join("documents");
    let mut conn = app(endpoint, &password).await?;
    conn.query_drop(
        "CREATE TABLE pitr (i int NOT NULL PRIMARY KEY, at datetime(6) NOT NULL) ENGINE=InnoDB",
    )
    .await?;

    // A base backup (with a documents snapshot), then the window: rows, a DDL change, rows.
    let out = oscarbox(&config, &["backup", "now"]).await?;
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("database base backup"),
        "{}",
        said(&out)
    );
    for i in 1..=3 {
        conn.exec_drop("INSERT INTO pitr (i, at) VALUES (?, NOW(6))", (i,))
            .await?;
    }
    conn.query_drop("ALTER TABLE pitr ADD COLUMN note varchar(20) NULL")
        .await?;
    for i in 4..=5 {
        conn.exec_drop(
            "INSERT INTO pitr (i, at, note) VALUES (?, NOW(6), 'after-ddl')",
            (i,),
        )
        .await?;
    }
    let seen = newest_documents(&config);
    std::fs::create_dir_all(&docs)?;
    std::fs::write(docs.join("20261123101500before.pdf"), b"%PDF-1.4 before\n")?;
    let seen = documents_saved_after(&config, seen.as_deref(), MINUTE).await?;

    // T, a second clear of both sides (binlog times have whole seconds).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = local_now().await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 6..=8 {
        conn.exec_drop(
            "INSERT INTO pitr (i, at, note) VALUES (?, NOW(6), 'too-late')",
            (i,),
        )
        .await?;
    }
    conn.query_drop("DELETE FROM pitr WHERE i = 1").await?;
    std::fs::write(docs.join("20261123101600after.pdf"), b"%PDF-1.4 after\n")?;
    documents_saved_after(&config, Some(&seen), MINUTE).await?;

    // The archive holds everything written (the primary's position).
    archive_reaches_primary(dir.path(), endpoint, &password).await?;

    // A dry run says what it would do and writes nothing.
    let restored = dir.path().join("restored");
    let out = restore_db(&config, &t, &restored, &["--dry-run"]).await?;
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("archived transaction(s)"),
        "{}",
        said(&out)
    );
    assert!(
        std::fs::metadata(&restored).is_err(),
        "a dry run writes nothing"
    );

    let out = restore_db(&config, &t, &restored, &[]).await?;
    assert!(out.status.success(), "{}", said(&out));

    // The restored directory serves exactly the rows up to T, with the DDL change.
    let rows = oscarbox_backup::pitr::with_scratch_server(
        &restored,
        &dir.path().join("check"),
        |socket| async move {
            let mut root = mysql_async::Conn::new(oscarbox_mariadb::root_opts(&socket)).await?;
            let rows: Vec<(i32, Option<String>)> = root
                .query("SELECT i, note FROM oscar.pitr ORDER BY i")
                .await?;
            root.disconnect().await?;
            anyhow::Ok(rows)
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!(e))??;
    let expected: Vec<(i32, Option<String>)> = (1..=5)
        .map(|i| (i, (i > 3).then(|| "after-ddl".to_owned())))
        .collect();
    assert_eq!(rows, expected, "exactly the rows written before {t}");

    // A second restore into the same directory is refused: nothing is written over.
    let out = restore_db(&config, &t, &restored, &[]).await?;
    assert!(!out.status.success());
    assert!(said(&out).contains("is not empty"), "{}", said(&out));

    // The documents that existed at T.
    let at_t = dir.path().join("documents-at-t");
    let out = oscarbox(
        &config,
        &[
            "restore",
            "documents",
            "--at",
            &t,
            "--to",
            &at_t.to_string_lossy(),
        ],
    )
    .await?;
    assert!(out.status.success(), "{}", said(&out));
    assert!(std::fs::metadata(at_t.join("20261123101500before.pdf")).is_ok());
    assert!(
        std::fs::metadata(at_t.join("20261123101600after.pdf")).is_err(),
        "written after T"
    );

    // The restore drill: a second base, then the first one with the archive replayed up to
    // the second's position must have the tables the second recorded.
    let out = oscarbox(&config, &["backup", "now"]).await?;
    assert!(out.status.success(), "{}", said(&out));
    let out = oscarbox(&config, &["backup", "drill"]).await?;
    let report = said(&out);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("archived transaction(s) replayed") && report.contains("all match"),
        "{report}"
    );
    assert!(report.contains("identical to the live ones"), "{report}");
    let status = oscarbox(&config, &["backup", "status"]).await?;
    assert!(
        said(&status).contains("binlog archive: current at"),
        "{}",
        said(&status)
    );
    // The box's status carries it once its next gathering has run.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = wd.box_status().await?;
        if s.backups.last_drill.as_ref().is_some_and(|d| d.passed) {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the status never showed the drill: {:?}",
            s.backups
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(wd);
    Ok(())
}

/// The rows of `kept` through the endpoint.
async fn kept_rows(endpoint: u16, password: &str) -> anyhow::Result<Vec<i32>> {
    let mut conn = app(endpoint, password).await?;
    let rows = conn.query("SELECT i FROM kept ORDER BY i").await?;
    conn.disconnect().await?;
    Ok(rows)
}

/// The entries of `dir` whose names start with `prefix`.
fn named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect()
}

#[tokio::test]
async fn a_restore_replaces_the_live_database_and_rebuilds_the_whole_box_on_a_fresh_machine(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (config, endpoint, mut wd, password) =
        serving_pair(dir.path(), "documents-debounce = \"1s\"").await?;
    let mut conn = app(endpoint, &password).await?;
    conn.query_drop("CREATE TABLE kept (i int NOT NULL PRIMARY KEY) ENGINE=InnoDB")
        .await?;
    let out = oscarbox(&config, &["backup", "now"]).await?;
    assert!(out.status.success(), "{}", said(&out));
    for i in 1..=3 {
        conn.exec_drop("INSERT INTO kept (i) VALUES (?)", (i,))
            .await?;
    }
    // Documents as the EMR files them: one flat directory, linked to patients in the database
    // (the third is linked but its file never arrived).
    let seen = newest_documents(&config);
    let docs = dir.path().join("documents");
    std::fs::create_dir_all(&docs)?;
    std::fs::write(docs.join("20261124090000letter.pdf"), b"%PDF-1.4 letter\n")?;
    std::fs::write(docs.join("20261124090001other.pdf"), b"%PDF-1.4 other\n")?;
    for (file, patient) in [
        ("20261124090000letter.pdf", 7),
        ("20261124090001other.pdf", 8),
        ("20261124090002never.pdf", 7),
    ] {
        conn.exec_drop(
            "INSERT INTO document (docfilename, restrictToProgram) VALUES (?, 0)",
            (file,),
        )
        .await?;
        conn.exec_drop(
            "INSERT INTO ctl_document (module, module_id, document_no, status) VALUES ('demographic', ?, LAST_INSERT_ID(), 'A')",
            (patient,),
        )
        .await?;
    }
    documents_saved_after(&config, seen.as_deref(), MINUTE).await?;
    let patient = dir.path().join("patient-7");
    let out = oscarbox(
        &config,
        &[
            "restore",
            "documents",
            "--patient",
            "7",
            "--to",
            &patient.to_string_lossy(),
        ],
    )
    .await?;
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("restored 1 of the 2 document(s) of patient 7"),
        "{}",
        said(&out)
    );
    assert!(
        said(&out).contains(
            "not in this snapshot (written after it, or never saved): 20261124090002never.pdf"
        ),
        "{}",
        said(&out)
    );
    assert_eq!(
        named(&patient, ""),
        vec![patient.join("20261124090000letter.pdf")]
    );
    let out = oscarbox(
        &config,
        &[
            "restore",
            "documents",
            "--patient",
            "9",
            "--to",
            &dir.path().join("patient-9").to_string_lossy(),
        ],
    )
    .await?;
    assert!(
        said(&out).contains("links no documents to patient 9"),
        "{}",
        said(&out)
    );
    // T, then the mistake to undo.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = local_now().await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 4..=5 {
        conn.exec_drop("INSERT INTO kept (i) VALUES (?)", (i,))
            .await?;
    }
    conn.disconnect().await?;
    archive_reaches_primary(dir.path(), endpoint, &password).await?;

    // Refused while the box runs; and a live replacement must be asked for by name.
    let out = oscarbox(&config, &["restore", "db", "--to", &t, "--replace-live"]).await?;
    assert!(!out.status.success());
    assert!(said(&out).contains("the box is running"), "{}", said(&out));
    let out = oscarbox(&config, &["restore", "db", "--to", &t]).await?;
    assert_eq!(out.status.code(), Some(64), "{}", said(&out));
    assert!(said(&out).contains("--into"), "{}", said(&out));
    wd.signal(Signal::SIGTERM);
    wd.wait_exit(Duration::from_secs(120)).await?;
    drop(wd);

    // A dry run changes nothing; the restore keeps the data directories it replaces.
    let out = oscarbox(
        &config,
        &["restore", "db", "--to", &t, "--replace-live", "--dry-run"],
    )
    .await?;
    assert!(out.status.success(), "{}", said(&out));
    assert!(named(dir.path(), "db1.")
        .iter()
        .all(|p| !p.to_string_lossy().contains("before-restore")));
    let out = oscarbox(&config, &["restore", "db", "--to", &t, "--replace-live"]).await?;
    assert!(out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("kept at"), "{}", said(&out));
    assert_eq!(
        named(dir.path(), "db1.before-restore-").len(),
        1,
        "{}",
        said(&out)
    );
    assert_eq!(
        named(&dir.path().join("backup"), "db2.before-restore-").len(),
        1
    );

    // Started again: the rows up to T, the replica rebuilt from the restored primary, new
    // writes archived after everything archived before (no GTID used twice).
    let (mut wd, password) = serve(&config, endpoint).await?;
    assert_eq!(kept_rows(endpoint, &password).await?, vec![1, 2, 3]);
    let mut conn = app(endpoint, &password).await?;
    conn.exec_drop("INSERT INTO kept (i) VALUES (?)", (6,))
        .await?;
    conn.disconnect().await?;
    archive_reaches_primary(dir.path(), endpoint, &password).await?;
    let all = archived(&dir.path().join("backup/binlog"))?;
    let seqs: BTreeSet<(u32, u64)> = all.iter().map(|g| (g.domain, g.seq)).collect();
    assert_eq!(
        seqs.len(),
        all.len(),
        "a GTID sequence number archived twice: {all:?}"
    );
    let db2 = oscarbox_mariadb::node_socket(&config.state_dir, "db2");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let on_replica = async {
            let mut root = mysql_async::Conn::new(oscarbox_mariadb::root_opts(&db2)).await?;
            let rows: Vec<i32> = root.query("SELECT i FROM oscar.kept ORDER BY i").await?;
            root.disconnect().await?;
            anyhow::Ok(rows)
        };
        if on_replica.await.ok() == Some(vec![1, 2, 3, 6]) {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the replica was not rebuilt from the restored primary:\n{}",
            wd.log().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A base of the new history; restores on either side of the replacement plan from their own.
    let out = oscarbox(&config, &["backup", "now"]).await?;
    assert!(out.status.success(), "{}", said(&out));
    let out = oscarbox(&config, &["restore", "list"]).await?;
    let bases: Vec<String> = said(&out)
        .lines()
        .filter(|l| l.contains("  database  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert_eq!(bases.len(), 2, "{}", said(&out));
    let probe = dir.path().join("probe");
    let probe = probe.to_string_lossy();
    let out = oscarbox(
        &config,
        &["restore", "db", "--to", &t, "--into", &probe, "--dry-run"],
    )
    .await?;
    assert!(
        said(&out).contains(&format!("base backup {}", bases[0])),
        "{}",
        said(&out)
    );
    let now = local_now().await?;
    let out = oscarbox(
        &config,
        &["restore", "db", "--to", &now, "--into", &probe, "--dry-run"],
    )
    .await?;
    assert!(
        said(&out).contains(&format!("base backup {}", bases[1])),
        "{}",
        said(&out)
    );
    let key = oscarbox(&config, &["backup", "recovery-key"]).await?;
    assert!(key.status.success(), "{}", said(&key));
    wd.signal(Signal::SIGTERM);
    wd.wait_exit(Duration::from_secs(120)).await?;
    drop(wd);

    // A fresh machine: its own state, documents and data directory; the box's backup disk
    // (with the replica's directory on it), and the recovery key.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir_all(&fresh)?;
    let (config2, endpoint2) = write_pair_config(&fresh, 1, "")?;
    let text = std::fs::read_to_string(&config2.path)?.replace(
        &fresh.join("backup").display().to_string(),
        &dir.path().join("backup").display().to_string(),
    );
    std::fs::write(&config2.path, text)?;
    let key_file = fresh.join("recovery-key");
    std::fs::write(&key_file, &key.stdout)?;
    let key_file = key_file.to_string_lossy();
    let out = oscarbox(
        &config2,
        &["restore", "box", "--key", &key_file, "--dry-run"],
    )
    .await?;
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        std::fs::metadata(config2.state_dir.join("secrets/box-id")).is_err(),
        "a dry run adopts nothing"
    );
    let out = oscarbox(&config2, &["restore", "box", "--key", &key_file]).await?;
    assert!(out.status.success(), "{}", said(&out));
    let out = oscarbox(&config2, &["restore", "box", "--key", &key_file]).await?;
    assert!(!out.status.success());
    assert!(
        said(&out).contains("already holds a box's data"),
        "{}",
        said(&out)
    );
    assert_eq!(
        std::fs::read(fresh.join("documents/20261124090000letter.pdf"))?,
        b"%PDF-1.4 letter\n"
    );
    let (wd, password2) = serve(&config2, endpoint2).await?;
    assert_eq!(kept_rows(endpoint2, &password2).await?, vec![1, 2, 3, 6]);
    let status = oscarbox(&config2, &["backup", "status"]).await?;
    assert!(said(&status).contains("(this box's)"), "{}", said(&status));
    drop(wd);
    Ok(())
}
