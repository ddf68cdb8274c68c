//! Two real `mariadbd` nodes run by the executor, under continuous writes through the stable
//! endpoint from several clients that log every acknowledged write. Faults: kill -9 the primary
//! (restarted in place), then SIGSTOP it (a hang: failed over to the replica). After each,
//! every acknowledged write is on the primary exactly once, and no sample ever found two
//! writable nodes.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use nix::sys::signal::Signal;
use oscarbox_dbpair::endpoint::Endpoint;
use oscarbox_dbpair::executor::{Executor, Paths};
use oscarbox_dbpair::{ledger, node};
use oscarbox_failover::{NodeId, Policy};
use oscarbox_mariadb::NodeSpec;
use oscarbox_test_harness::free_port;
use tokio::sync::Mutex as AsyncMutex;
use tokio_util::sync::CancellationToken;

fn spec(dir: &std::path::Path, name: &str, server_id: u32) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        data_dir: dir.join(name).join("data"),
        bind: [127, 0, 0, 1].into(),
        port: free_port(),
        socket: dir.join("run").join(format!("{name}.sock")),
        log_file: dir.join(format!("{name}.log")),
        small: true,
        extra_args: node::pair_args(server_id),
    }
}

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

async fn rows(socket: &std::path::Path) -> anyhow::Result<Vec<(u32, u32)>> {
    let mut conn = mysql_async::Conn::new(oscarbox_mariadb::root_opts(socket)).await?;
    Ok(conn.query("SELECT writer, seq FROM oscar.acked").await?)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_through_a_crash_and_a_hang() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, b) = (spec(dir.path(), "a", 1), spec(dir.path(), "b", 2));
    let (a_socket, b_socket) = (a.socket.clone(), b.socket.clone());
    let shutdown = CancellationToken::new();
    let endpoint = Endpoint::bind(([127, 0, 0, 1], free_port()).into(), shutdown.clone()).await?;
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
    {
        let mut conn = mysql_async::Conn::new(oscarbox_mariadb::root_opts(&a_socket)).await?;
        conn.query_drop("CREATE TABLE oscar.acked (writer int NOT NULL, seq int NOT NULL, PRIMARY KEY (writer, seq)) ENGINE=InnoDB").await?;
    }

    // The executor ticks on its own from here, as in the watchdog.
    let ticking = {
        let (ex, stop) = (Arc::clone(&ex), shutdown.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                ex.lock().await.tick().await;
                tokio::time::sleep(oscarbox_dbpair::executor::TICK).await;
            }
        })
    };
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

    stop_writers.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    let on_b: BTreeSet<(u32, u32)> = rows(&b_socket).await?.into_iter().collect();
    let acked = acked.lock().expect("not poisoned").clone();
    let lost: Vec<_> = acked.difference(&on_b).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes missing from the new primary: {:?}",
        lost.len(),
        lost.iter().take(10).collect::<Vec<_>>()
    );
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
