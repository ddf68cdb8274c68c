//! The two-node database pair in tests and benchmarks: node settings in a temporary
//! directory, and the probes a test waits on (replicating, serving with semi-sync, the rows
//! written).

use std::path::Path;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use oscarbox_mariadb::NodeSpec;

/// How long any one probe waits for a node.
const PROBE: Duration = Duration::from_secs(2);

/// A pair node under `dir` with the pair's settings, on a free loopback port.
pub fn node_spec(dir: &Path, name: &str, server_id: u32) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        data_dir: dir.join(name).join("data"),
        bind: [127, 0, 0, 1].into(),
        port: crate::free_port(),
        socket: dir.join("run").join(format!("{name}.sock")),
        log_file: dir.join(format!("{name}.log")),
        small: true,
        extra_args: oscarbox_dbpair::node::pair_args(server_id),
    }
}

/// Root on a node's socket, or `None` if it does not answer in time.
async fn root(socket: &Path) -> Option<Conn> {
    tokio::time::timeout(PROBE, Conn::new(oscarbox_mariadb::root_opts(socket)))
        .await
        .ok()?
        .ok()
}

/// Whether the node replicates with both threads running (`SHOW SLAVE STATUS`).
pub async fn replicating(socket: &Path) -> bool {
    let Some(mut conn) = root(socket).await else {
        return false;
    };
    let row: Option<Row> = tokio::time::timeout(PROBE, conn.query_first("SHOW SLAVE STATUS"))
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    let running = |r: &Row, name: &str| {
        r.get_opt::<Option<String>, _>(name)
            .and_then(Result::ok)
            .flatten()
            .as_deref()
            == Some("Yes")
    };
    row.is_some_and(|r| running(&r, "Slave_IO_Running") && running(&r, "Slave_SQL_Running"))
}

/// Whether the node is writable and runs semi-sync as primary with its replica connected: the
/// steady state in which no acknowledged write may be lost.
pub async fn serving_semi_sync(socket: &Path) -> bool {
    let Some(mut conn) = root(socket).await else {
        return false;
    };
    let read_only: Option<i64> =
        tokio::time::timeout(PROBE, conn.query_first("SELECT @@global.read_only"))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
    if read_only != Some(0) {
        return false;
    }
    let rows: Vec<(String, String)> = tokio::time::timeout(
        PROBE,
        conn.query("SHOW GLOBAL STATUS WHERE Variable_name IN ('Rpl_semi_sync_master_status', 'Rpl_semi_sync_master_clients')"),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or_default();
    let on = rows
        .iter()
        .any(|(n, v)| n == "Rpl_semi_sync_master_status" && v == "ON");
    let clients = rows
        .iter()
        .any(|(n, v)| n == "Rpl_semi_sync_master_clients" && v != "0");
    on && clients
}

/// Every `(writer, seq)` row of the writers' table on a node.
pub async fn acked_rows(socket: &Path) -> anyhow::Result<Vec<(u32, u32)>> {
    let mut conn = Conn::new(oscarbox_mariadb::root_opts(socket)).await?;
    Ok(conn.query("SELECT writer, seq FROM oscar.acked").await?)
}

/// How long a [`writer`] waits for a write's answer before it reconnects.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// A writer through the endpoint `at` as `oscar_app`: inserts `(id, seq)` rows into
/// `oscar.acked` one by one, calling `acked(seq, sent, answered)` for each that MariaDB
/// acknowledged; on any error or timeout it reconnects and goes on with the next number (a write
/// whose answer was lost may or may not be there: only acknowledged ones must be). Runs until
/// `stop`.
pub async fn writer(
    at: std::net::SocketAddr,
    password: String,
    id: u32,
    mut acked: impl FnMut(u32, tokio::time::Instant, tokio::time::Instant) + Send,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(at.ip().to_string())
        .tcp_port(at.port())
        .user(Some("oscar_app"))
        .pass(Some(password))
        .db_name(Some("oscar"))
        .prefer_socket(false)
        .into();
    let mut seq = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let Ok(Ok(mut conn)) = tokio::time::timeout(PROBE, Conn::new(opts.clone())).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            let sent = tokio::time::Instant::now();
            let write = conn.exec_drop("INSERT INTO acked (writer, seq) VALUES (?, ?)", (id, seq));
            match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                Ok(Ok(())) => acked(seq, sent, tokio::time::Instant::now()),
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A pair executor shared between the ticking task and a test's own probes and faults.
pub type SharedExecutor = std::sync::Arc<tokio::sync::Mutex<oscarbox_dbpair::executor::Executor>>;

/// Ticks the executor every `TICK` until `stop`, as the watchdog does.
pub fn ticking(
    ex: &SharedExecutor,
    stop: &tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (ex, stop) = (std::sync::Arc::clone(ex), stop.clone());
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            ex.lock().await.tick().await;
            tokio::time::sleep(oscarbox_dbpair::executor::TICK).await;
        }
    })
}

/// Ticks by hand until `primary` is the only writable node (a first start, before the
/// executor ticks on its own).
pub async fn settle(
    ex: &SharedExecutor,
    primary: oscarbox_failover::NodeId,
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
