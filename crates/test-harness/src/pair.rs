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
