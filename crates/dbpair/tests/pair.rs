//! Two real `mariadbd` nodes run by the executor, under continuous writes through the stable
//! endpoint from several clients that log every acknowledged write. In turn: kill -9 the
//! primary (restarted in place); SIGSTOP it (a hang: failed over to the replica); the old
//! primary rejoins by itself as a replica; a planned switchover back; kill -9 the replica
//! (started again while the primary carries on); SIGSTOP the replica (semi-sync falls back,
//! the replica is restarted and semi-sync comes back); a switchover and back. After each,
//! every acknowledged write is on the primary exactly once; at the end both nodes hold the
//! same table; and no sample ever found two writable nodes. A diverged old primary is saved
//! for review and rebuilt.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use nix::sys::signal::Signal;
use oscarbox_dbpair::endpoint::Endpoint;
use oscarbox_dbpair::executor::{Executor, Paths};
use oscarbox_dbpair::{incident, ledger};
use oscarbox_failover::{NodeId, Policy};
use oscarbox_test_harness::{free_port, pair};
use tokio::sync::Mutex as AsyncMutex;
use tokio_util::sync::CancellationToken;

/// Acknowledged writes, per writer: (writer, sequence number) → when the answer came.
type Acked = Arc<Mutex<BTreeMap<(u32, u32), tokio::time::Instant>>>;

/// Waits until `probe` holds for the node at `socket`.
async fn wait_for<F, Fut>(
    what: &str,
    socket: &std::path::Path,
    within: Duration,
    probe: F,
) -> anyhow::Result<()>
where
    F: Fn(std::path::PathBuf) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !probe(socket.to_path_buf()).await {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{} was not {what} within {within:?}",
            socket.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn replicating(socket: &std::path::Path, within: Duration) -> anyhow::Result<()> {
    wait_for("replicating", socket, within, |s| async move {
        pair::replicating(&s).await
    })
    .await
}

async fn semi_sync_active(socket: &std::path::Path, within: Duration) -> anyhow::Result<()> {
    wait_for("serving with semi-sync", socket, within, |s| async move {
        pair::serving_semi_sync(&s).await
    })
    .await
}

async fn checksum(socket: &std::path::Path) -> anyhow::Result<Option<i64>> {
    let mut conn = mysql_async::Conn::new(oscarbox_mariadb::root_opts(socket)).await?;
    let row: Option<(String, Option<i64>)> = conn.query_first("CHECKSUM TABLE oscar.acked").await?;
    Ok(row.and_then(|r| r.1))
}

/// A settled pair (A primary, B replicating) with the test table, not yet ticking on its own.
struct Pair {
    dir: tempfile::TempDir,
    ex: Arc<AsyncMutex<Executor>>,
    endpoint_addr: std::net::SocketAddr,
    paths: Paths,
    a_socket: std::path::PathBuf,
    b_socket: std::path::PathBuf,
    shutdown: CancellationToken,
}

impl Pair {
    async fn start() -> anyhow::Result<Pair> {
        // The executor's plans and steps, in the test's output when it fails.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("info")
            .try_init();
        let dir = tempfile::tempdir()?;
        let (a, b) = (
            pair::node_spec(dir.path(), "a", 1),
            pair::node_spec(dir.path(), "b", 2),
        );
        let (a_socket, b_socket) = (a.socket.clone(), b.socket.clone());
        let shutdown = CancellationToken::new();
        let endpoint =
            Endpoint::bind(([127, 0, 0, 1], free_port()).into(), shutdown.clone()).await?;
        let endpoint_addr = endpoint.local_addr();
        let paths = Paths::under(dir.path());
        let policy = Policy {
            confirm_after: Duration::from_secs(2),
            replica_silence: Duration::from_secs(2),
            // A hung replica is restarted after 5 s rather than 30, to keep the test short.
            replica_grace: Duration::from_secs(5),
            ..Policy::default()
        };
        let mut ex = Executor::new(a, b, endpoint, paths.clone(), "replpw123".into(), policy);
        ex.bootstrap("oscar", "oscar_app", "apppw123", "monpw123")
            .await?;
        let ex = Arc::new(AsyncMutex::new(ex));
        pair::settle(&ex, NodeId::A, Duration::from_secs(30)).await?;
        let mut conn = mysql_async::Conn::new(oscarbox_mariadb::root_opts(&a_socket)).await?;
        conn.query_drop("CREATE TABLE oscar.acked (writer int NOT NULL, seq int NOT NULL, PRIMARY KEY (writer, seq)) ENGINE=InnoDB").await?;
        Ok(Pair {
            dir,
            ex,
            endpoint_addr,
            paths,
            a_socket,
            b_socket,
            shutdown,
        })
    }
}

/// Seconds from `origin` to `t`, negative when `t` came first.
fn signed_secs(t: tokio::time::Instant, origin: tokio::time::Instant) -> f64 {
    if t >= origin {
        (t - origin).as_secs_f64()
    } else {
        -(origin - t).as_secs_f64()
    }
}

/// The primary's semi-sync status and counters every 200 ms, the last 30 samples kept, for a
/// failure's explanation.
fn semi_sync_log(
    socket: std::path::PathBuf,
    stop: CancellationToken,
) -> Arc<Mutex<std::collections::VecDeque<String>>> {
    let log: Arc<Mutex<std::collections::VecDeque<String>>> = Arc::default();
    let kept = Arc::clone(&log);
    let started = tokio::time::Instant::now();
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            let sample = async {
                let mut conn = mysql_async::Conn::new(oscarbox_mariadb::root_opts(&socket))
                    .await
                    .ok()?;
                let rows: Vec<(String, String)> = conn
                    .query("SHOW GLOBAL STATUS WHERE Variable_name IN ('Rpl_semi_sync_master_status', 'Rpl_semi_sync_master_clients', 'Rpl_semi_sync_master_yes_tx', 'Rpl_semi_sync_master_no_tx', 'Rpl_semi_sync_master_wait_sessions')")
                    .await
                    .ok()?;
                let pos: Option<String> = conn
                    .query_first("SELECT @@global.gtid_binlog_pos")
                    .await
                    .ok()?;
                let _ = conn.disconnect().await;
                Some(format!(
                    "{:.1} s: {} binlog {}",
                    started.elapsed().as_secs_f64(),
                    rows.iter()
                        .map(|(n, v)| format!(
                            "{}={v}",
                            n.trim_start_matches("Rpl_semi_sync_master_")
                        ))
                        .collect::<Vec<_>>()
                        .join(" "),
                    pos.unwrap_or_default()
                ))
            };
            if let Ok(Some(line)) = tokio::time::timeout(Duration::from_millis(500), sample).await {
                let mut log = kept.lock().expect("not poisoned");
                log.push_back(line);
                if log.len() > 30 {
                    log.pop_front();
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    log
}

/// Where the `lost` rows are in each node's binlogs and relay logs (decoded with stock
/// `mariadb-binlog`): the GTID and file of each, for a failure's explanation.
async fn where_are(dir: &std::path::Path, lost: &[((u32, u32), tokio::time::Instant)]) -> String {
    let mut out = String::new();
    for node in ["a", "b"] {
        let data = dir.join(node).join("data");
        let Ok(entries) = std::fs::read_dir(&data) else {
            continue;
        };
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (name.starts_with("mariadb-bin.") || name.starts_with("relay-bin."))
                    && !name.ends_with(".index")
                    && !name.ends_with(".state")
            })
            .collect();
        files.sort();
        for file in files {
            let Ok(decoded) = tokio::process::Command::new("mariadb-binlog")
                .args(["--base64-output=decode-rows", "--verbose"])
                .arg(&file)
                .output()
                .await
            else {
                continue;
            };
            let text = String::from_utf8_lossy(&decoded.stdout);
            let (mut gtid, mut values) = (String::new(), Vec::new());
            for line in text.lines() {
                let mut words = line.split_whitespace();
                if words.any(|w| w == "GTID") {
                    gtid = words.next().unwrap_or_default().to_owned();
                }
                if let Some(v) = line.strip_prefix("###   @") {
                    values.push(
                        v.split_once('=')
                            .map(|(_, v)| v.to_owned())
                            .unwrap_or_default(),
                    );
                    if values.len() == 2 {
                        let row = (
                            values[0].parse().unwrap_or(0),
                            values[1].parse().unwrap_or(0),
                        );
                        if lost.iter().any(|(l, _)| *l == row) {
                            out.push_str(&format!(
                                "{row:?} in {node}/{} at GTID {gtid}\n",
                                file.file_name()
                                    .map(|n| n.to_string_lossy().into_owned())
                                    .unwrap_or_default()
                            ));
                        }
                        values.clear();
                    }
                } else {
                    values.clear();
                }
            }
        }
    }
    if out.is_empty() {
        out.push_str("in no binlog or relay log of either node\n");
    }
    out
}

/// A planned switchover to `to`, retried while refused (the replica still catching up) once
/// the current primary (`from_socket`) serves with semi-sync; then `to` holds the ledger and
/// the other node replicates from it.
async fn switch_over(
    ex: &pair::SharedExecutor,
    from_socket: &std::path::Path,
    to: NodeId,
    paths: &Paths,
) -> anyhow::Result<()> {
    semi_sync_active(from_socket, Duration::from_secs(30)).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let plan = loop {
        match ex.lock().await.switchover().await {
            Ok((plan, _)) => break plan,
            Err(oscarbox_dbpair::executor::SwitchoverError::Refused(why)) => {
                anyhow::ensure!(
                    tokio::time::Instant::now() < deadline,
                    "switchover still refused: {why}"
                );
            }
            Err(e) => anyhow::bail!("switchover failed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(plan.kind, oscarbox_failover::Kind::Switchover, "{plan}");
    assert_eq!(ledger::read(&paths.ledger)?.map(|l| l.primary), Some(to));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_through_a_crash_and_a_hang() -> anyhow::Result<()> {
    let Pair {
        dir: _dir,
        ex,
        endpoint_addr,
        paths,
        a_socket,
        b_socket,
        shutdown,
    } = Pair::start().await?;

    // The executor ticks on its own from here, as in the watchdog.
    let ticking = pair::ticking(&ex, &shutdown);
    // Never two writable nodes: sampled throughout.
    let both_writable = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (a, b, flag, stop) = (
            a_socket.clone(),
            b_socket.clone(),
            Arc::clone(&both_writable),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let writable = |socket: std::path::PathBuf| async move {
                let conn = tokio::time::timeout(
                    Duration::from_millis(500),
                    mysql_async::Conn::new(oscarbox_mariadb::root_opts(&socket)),
                )
                .await;
                let Ok(Ok(mut conn)) = conn else { return false };
                let ro: Option<i64> = conn
                    .query_first("SELECT @@global.read_only")
                    .await
                    .ok()
                    .flatten();
                ro == Some(0)
            };
            while !stop.is_cancelled() {
                if writable(a.clone()).await && writable(b.clone()).await {
                    flag.store(true, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let semi_log = semi_sync_log(a_socket.clone(), shutdown.clone());
    let acked: Acked = Arc::default();
    let stop_writers = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (1..=4)
        .map(|w| {
            let acked = Arc::clone(&acked);
            tokio::spawn(pair::writer(
                endpoint_addr,
                "apppw123".into(),
                w,
                move |seq, _, at| {
                    acked.lock().expect("not poisoned").insert((w, seq), at);
                },
                Arc::clone(&stop_writers),
            ))
        })
        .collect();
    let count = || acked.lock().expect("not poisoned").len();
    let wait_for_more = |than: usize, within: Duration| {
        let acked = Arc::clone(&acked);
        async move {
            let deadline = tokio::time::Instant::now() + within;
            while acked.lock().expect("not poisoned").len() < than + 50 {
                anyhow::ensure!(
                    tokio::time::Instant::now() < deadline,
                    "writes did not resume within {within:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok::<_, anyhow::Error>(())
        }
    };
    wait_for_more(0, Duration::from_secs(20)).await?;

    // A crash: kill -9 the primary. It is restarted in place, and stays the primary.
    ex.lock().await.signal(NodeId::A, Signal::SIGKILL);
    let before = count();
    wait_for_more(before, Duration::from_secs(60)).await?;
    assert_eq!(
        ledger::read(&paths.ledger)?.map(|l| l.primary),
        Some(NodeId::A)
    );

    // A hang: SIGSTOP the primary. The replica confirms it lost it; it is fenced and B promoted.
    // Injected while semi-sync is active, as it is in steady state: a write acknowledged while
    // it had fallen back to asynchronous replication may be lost, and the incident report says
    // so (that fallback is alerted).
    semi_sync_active(&a_socket, Duration::from_secs(30)).await?;
    ex.lock().await.signal(NodeId::A, Signal::SIGSTOP);
    let hung_at = tokio::time::Instant::now();
    let before = count();
    wait_for_more(before, Duration::from_secs(60)).await?;
    let held = ledger::read(&paths.ledger)?.expect("a ledger");
    assert_eq!(held.primary, NodeId::B, "failed over to B");
    assert!(
        std::fs::read_dir(&paths.incidents)?.count() >= 1,
        "an incident report was written"
    );
    {
        let ex = ex.lock().await;
        assert_ne!(
            ex.writable(NodeId::A).await,
            Some(true),
            "the old primary is fenced"
        );
        assert_eq!(ex.writable(NodeId::B).await, Some(true));
    }

    // What was acknowledged before B is read must all be on B (a write acknowledged after
    // the read may be missing from it, so the order matters).
    let so_far = acked.lock().expect("not poisoned").clone();
    let on_b: BTreeSet<(u32, u32)> = pair::acked_rows(&b_socket).await?.into_iter().collect();
    let lost: Vec<_> = so_far
        .iter()
        .filter(|(row, _)| !on_b.contains(row))
        .map(|(row, at)| (*row, *at))
        .collect();
    if !lost.is_empty() {
        let reports: String = std::fs::read_dir(&paths.incidents)?
            .filter_map(Result::ok)
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect();
        let semi = Vec::from(semi_log.lock().expect("not poisoned").clone()).join("\n");
        let found = where_are(_dir.path(), &lost).await;
        let when: Vec<String> = lost
            .iter()
            .map(|(row, at)| {
                format!(
                    "{row:?} acknowledged {:+.3} s after the SIGSTOP",
                    signed_secs(*at, hung_at)
                )
            })
            .collect();
        panic!(
            "{} acknowledged writes missing from the new primary (of {}):\n{}\n\nin the logs:\n{found}\n\nA's semi-sync before the hang:\n{semi}\n\n{reports}",
            lost.len(),
            so_far.len(),
            when.join("\n")
        );
    }

    // The old primary comes back by itself, as a replica of the new one, and the incident
    // report is completed with what it had that B lacked (never acknowledged: none, or the
    // transactions in flight when it hung, saved for review).
    replicating(&a_socket, Duration::from_secs(60)).await?;
    let report = paths.incidents.join(incident::file_name(held.epoch));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&report)?;
        if incident::parse("r", &text).transactions_lost.is_some() {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the report was not completed:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A planned switchover back to A, under the same writes. It is refused while the
    // returning node is still catching up, and done once it is.
    let before = count();
    switch_over(&ex, &b_socket, NodeId::A, &paths).await?;
    wait_for_more(before, Duration::from_secs(30)).await?;
    replicating(&b_socket, Duration::from_secs(60)).await?;

    // The replica crashes: the primary carries on, and the replica is started again and
    // catches up.
    ex.lock().await.signal(NodeId::B, Signal::SIGKILL);
    let before = count();
    wait_for_more(before, Duration::from_secs(30)).await?;
    replicating(&b_socket, Duration::from_secs(60)).await?;
    assert_eq!(
        ledger::read(&paths.ledger)?.map(|l| l.primary),
        Some(NodeId::A),
        "no failover for a replica"
    );

    // The replica hangs: semi-sync falls back to asynchronous after its timeout (alerted) and
    // the primary carries on; the replica is killed and started again, catches up, and
    // semi-sync is on again.
    semi_sync_active(&a_socket, Duration::from_secs(60)).await?;
    ex.lock().await.signal(NodeId::B, Signal::SIGSTOP);
    let before = count();
    wait_for_more(before, Duration::from_secs(60)).await?;
    replicating(&b_socket, Duration::from_secs(90)).await?;
    semi_sync_active(&a_socket, Duration::from_secs(60)).await?;
    assert_eq!(
        ledger::read(&paths.ledger)?.map(|l| l.primary),
        Some(NodeId::A),
        "no failover for a hung replica"
    );

    // Switchover and back.
    for to in [NodeId::B, NodeId::A] {
        let before = count();
        let from = if to == NodeId::A {
            &b_socket
        } else {
            &a_socket
        };
        switch_over(&ex, from, to, &paths).await?;
        wait_for_more(before, Duration::from_secs(30)).await?;
    }

    stop_writers.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    let on_a = pair::acked_rows(&a_socket).await?;
    let unique: BTreeSet<(u32, u32)> = on_a.iter().copied().collect();
    assert_eq!(unique.len(), on_a.len(), "every write is there once");
    let acked = acked.lock().expect("not poisoned").clone();
    let lost: Vec<_> = acked.keys().filter(|row| !unique.contains(row)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes missing after the switchover: {:?}",
        lost.len(),
        lost.iter().take(10).collect::<Vec<_>>()
    );
    // Both nodes end with the same table.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while checksum(&a_socket).await? != checksum(&b_socket).await? {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the nodes' tables differ"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !both_writable.load(Ordering::Relaxed),
        "two writable nodes were sampled"
    );

    shutdown.cancel();
    let _ = ticking.await;
    let _ = sampler.await;
    let ex = Arc::into_inner(ex).expect("the only owner").into_inner();
    ex.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverged_old_primary_is_saved_for_review_and_rebuilt() -> anyhow::Result<()> {
    let Pair {
        dir: _dir,
        ex,
        endpoint_addr: _,
        paths,
        a_socket,
        b_socket,
        shutdown,
    } = Pair::start().await?;
    // The replica stops replicating (no ticks yet, so nobody restarts it), semi-sync falls back
    // to asynchronous after its timeout, and the primary takes writes only it has.
    let mut b = mysql_async::Conn::new(oscarbox_mariadb::root_opts(&b_socket)).await?;
    b.query_drop("STOP SLAVE").await?;
    let mut a = mysql_async::Conn::new(oscarbox_mariadb::root_opts(&a_socket)).await?;
    for seq in 1..=3 {
        a.exec_drop(
            "INSERT INTO oscar.acked (writer, seq) VALUES (99, ?)",
            (seq,),
        )
        .await?;
    }
    drop(a);
    // Then it hangs. B, which never got those rows, is all there is: it takes over.
    ex.lock().await.signal(NodeId::A, Signal::SIGSTOP);
    let ticking = pair::ticking(&ex, &shutdown);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while ledger::read(&paths.ledger)?.map(|l| l.primary) != Some(NodeId::B) {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no failover to B");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A comes back, cannot follow B, has its three rows saved as SQL, and is rebuilt from B.
    replicating(&a_socket, Duration::from_secs(120)).await?;
    let saved: Vec<std::path::PathBuf> = std::fs::read_dir(&paths.preserved)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    anyhow::ensure!(saved.len() == 1, "one save of node A: {saved:?}");
    let readme = std::fs::read_to_string(saved[0].join("README.txt"))?;
    assert_eq!(
        readme.matches("  0-1-").count(),
        3,
        "the three extra transactions, GTID by GTID:\n{readme}"
    );
    let sql: String = std::fs::read_dir(&saved[0])?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "sql"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(
        sql.contains("INSERT INTO `oscar`.`acked`") && sql.contains("@1=99"),
        "the rows as SQL"
    );
    assert!(
        std::fs::read_dir(_dir.path().join("a"))?
            .filter_map(Result::ok)
            .any(|e| e
                .file_name()
                .to_string_lossy()
                .starts_with("data.replaced-")),
        "the old data directory is kept"
    );
    let epoch = ledger::read(&paths.ledger)?.map_or(0, |l| l.epoch);
    let report = std::fs::read_to_string(paths.incidents.join(incident::file_name(epoch)))?;
    assert!(
        report.contains("\ntransactions lost: 3 that node A had and node B lacked"),
        "the report names what was saved:\n{report}"
    );
    assert_eq!(
        incident::parse("r", &report).transactions_lost,
        Some(3),
        "{report}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while checksum(&a_socket).await? != checksum(&b_socket).await? {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the rebuilt node's table differs"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    let _ = ticking.await;
    let ex = Arc::into_inner(ex).expect("the only owner").into_inner();
    ex.stop().await;
    Ok(())
}
