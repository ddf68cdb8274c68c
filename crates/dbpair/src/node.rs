//! One node of the pair as the executor drives it: its `mariadbd` child, what it reports (the
//! decision core's [`Node`]), and the SQL of each step. Statements go through root on the
//! node's unix socket (root has no network account); values that reach SQL text are GTID lists
//! we parsed, ports and generated secrets, never anything a client sent.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use oscarbox_failover::{GtidList, IoThread, Node, NodeId, Replica, SemiSync, Status};
use oscarbox_mariadb::NodeSpec;
use oscarbox_supervisor::Child;

/// How long any one probe or statement may take before the node counts as unresponsive.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long semi-sync waits for the replica's acknowledgement before falling back to
/// asynchronous replication (recorded and alerted by the decision core). Long enough that a
/// replica stalled for a few seconds (a busy disk, a starved CPU) never turns an acknowledged
/// write into one only the primary has; the price is one pause of this length in writes when
/// the replica dies, before the primary carries on alone.
pub const SEMI_SYNC_TIMEOUT_MS: u32 = 10_000;

/// The replication settings of a pair node (DESIGN.md, "Database"): GTIDs in strict mode, every
/// commit durable in the binlog and InnoDB, replicated changes logged too (so either node can
/// become the primary), read-only until the watchdog says otherwise, replication started only
/// by the watchdog, and semi-sync available (enabled as master only on the primary).
pub fn pair_args(server_id: u32) -> Vec<String> {
    [
        format!("--server-id={server_id}"),
        "--log-bin=mariadb-bin".into(),
        "--relay-log=relay-bin".into(),
        "--binlog-format=ROW".into(),
        "--log-slave-updates=ON".into(),
        "--gtid-strict-mode=ON".into(),
        "--sync-binlog=1".into(),
        "--read-only=ON".into(),
        "--skip-slave-start".into(),
        "--rpl-semi-sync-slave-enabled=ON".into(),
        "--rpl-semi-sync-master-wait-point=AFTER_SYNC".into(),
        format!("--rpl-semi-sync-master-timeout={SEMI_SYNC_TIMEOUT_MS}"),
        // A replica whose primary hangs (its TCP connection open, silent) notices after this
        // long and reconnects; it must exceed the 1 s master heartbeat period.
        "--slave-net-timeout=3".into(),
    ]
    .into()
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{node} did not answer within {PROBE_TIMEOUT:?}")]
    Timeout { node: NodeId },
    #[error("{node}: {}", describe(source))]
    Sql {
        node: NodeId,
        source: mysql_async::Error,
    },
    #[error("{node}: waited {waited:?} for it to apply what it had received, in vain")]
    WaitTimedOut { node: NodeId, waited: Duration },
    #[error("{0}")]
    Other(String),
}

/// A MariaDB error without its message, which can quote row values.
fn describe(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("server error {} (SQLSTATE {})", s.code, s.state),
        mysql_async::Error::Io(io) => format!("connection error: {io}"),
        other => format!("{other}")
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// One node: its identity, how to run it, and its child when we started it.
#[derive(Debug)]
pub struct PairNode {
    pub id: NodeId,
    pub spec: NodeSpec,
    pub child: Option<Child>,
    /// How the last child ended.
    pub exited: Option<String>,
    /// What its IO thread had received when last observed (heartbeats, then the GTID
    /// position), and when that last changed: the replica's own view of its primary.
    heard: Option<(u64, String, tokio::time::Instant)>,
}

impl PairNode {
    pub fn new(id: NodeId, spec: NodeSpec) -> PairNode {
        PairNode {
            id,
            spec,
            child: None,
            exited: None,
            heard: None,
        }
    }

    pub fn data_intact(&self) -> bool {
        std::fs::metadata(self.spec.data_dir.join("mysql")).is_ok_and(|m| m.is_dir())
    }

    pub fn address(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.spec.bind, self.spec.port)
    }

    /// Whether the child is stopped (SIGSTOP): a hung process that cannot write a dump.
    fn stopped(&self) -> bool {
        let Some(pid) = self.child.as_ref().map(Child::pid) else {
            return false;
        };
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned))
            })
            .is_some_and(|state| state == "T")
    }

    /// A root connection over the socket, within the probe timeout.
    pub async fn conn(&self) -> Result<Conn, StepError> {
        let opts = oscarbox_mariadb::root_opts(&self.spec.socket);
        match tokio::time::timeout(PROBE_TIMEOUT, Conn::new(opts)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(source)) => Err(StepError::Sql {
                node: self.id,
                source,
            }),
            Err(_) => Err(StepError::Timeout { node: self.id }),
        }
    }

    /// What the decision core needs to know of this node now. `ports` maps the other node's
    /// port back to its id (a replica names its source by host and port).
    pub async fn observe(&mut self, other_port: u16) -> Node {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                self.exited = Some(status.to_string());
                self.child = None;
            }
        }
        if self.child.is_none() {
            return Node::Down {
                exited: self.exited.clone(),
                data_intact: self.data_intact(),
            };
        }
        let stopped = self.stopped();
        match tokio::time::timeout(PROBE_TIMEOUT * 2, self.status(other_port)).await {
            Ok(Ok(status)) => Node::Up(status),
            Ok(Err(e)) => Node::Unresponsive {
                stopped,
                reason: e.to_string(),
            },
            Err(_) => Node::Unresponsive {
                stopped,
                reason: format!("no answer within {:?}", PROBE_TIMEOUT * 2),
            },
        }
    }

    async fn status(&mut self, other_port: u16) -> Result<Status, StepError> {
        let id = self.id;
        let sql = |source| StepError::Sql { node: id, source };
        let mut conn = self.conn().await?;
        let row: Option<(i64, String, String, i64)> = conn
            .query_first(
                "SELECT @@global.read_only, @@global.gtid_binlog_pos, @@global.gtid_current_pos,
                        @@global.rpl_semi_sync_master_enabled",
            )
            .await
            .map_err(sql)?;
        let Some((read_only, binlog, current, semi_enabled)) = row else {
            return Err(StepError::Other(format!("{id} returned no variables")));
        };
        let semi: Vec<(String, String)> = conn
            .query(
                "SHOW GLOBAL STATUS WHERE Variable_name IN ('Rpl_semi_sync_master_status', 'Rpl_semi_sync_master_clients')",
            )
            .await
            .map_err(sql)?;
        let semi_value = |name: &str| {
            semi.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let replica = self.replica(&mut conn, other_port).await?;
        let heartbeat_lag = if replica.is_some() {
            conn.query_first::<Option<f64>, _>(
                "SELECT TIMESTAMPDIFF(MICROSECOND, MAX(beat), NOW(6)) / 1e6 FROM oscarbox_pair.heartbeat",
            )
            .await
            .ok()
            .flatten()
            .flatten()
            .map(|s| Duration::from_secs_f64(s.max(0.0)))
        } else {
            None
        };
        let _ = conn.disconnect().await;
        Ok(Status {
            read_only: read_only != 0,
            gtid_binlog_pos: parse_gtids(&binlog)?,
            gtid_current_pos: parse_gtids(&current)?,
            replica,
            semi_sync: SemiSync {
                enabled: semi_enabled != 0,
                active: semi_value("Rpl_semi_sync_master_status").eq_ignore_ascii_case("ON"),
                clients: semi_value("Rpl_semi_sync_master_clients")
                    .parse()
                    .unwrap_or(0),
            },
            heartbeat_lag,
        })
    }

    async fn replica(
        &mut self,
        conn: &mut Conn,
        other_port: u16,
    ) -> Result<Option<Replica>, StepError> {
        let id = self.id;
        let sql = |source| StepError::Sql { node: id, source };
        let row: Option<Row> = conn.query_first("SHOW SLAVE STATUS").await.map_err(sql)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let text = |name: &str| -> String {
            row.get_opt::<Option<String>, _>(name)
                .and_then(Result::ok)
                .flatten()
                .unwrap_or_default()
        };
        let number = |name: &str| text(name).parse::<u32>().unwrap_or(0);
        let port = number("Master_Port");
        let io = match text("Slave_IO_Running").as_str() {
            "Yes" => IoThread::Running,
            "Connecting" => IoThread::Connecting,
            _ => IoThread::Stopped,
        };
        let slave_pos: Option<String> = conn
            .query_first("SELECT @@global.gtid_slave_pos")
            .await
            .map_err(sql)?;
        // MariaDB reports no time of the last event received, so it is tracked here: the
        // primary sends a heartbeat every second, and anything received changes either the
        // heartbeat count or the received GTID position.
        let beats: Option<(String, String)> = conn
            .query_first("SHOW GLOBAL STATUS LIKE 'Slave_received_heartbeats'")
            .await
            .map_err(sql)?;
        let beats = beats.and_then(|(_, v)| v.parse::<u64>().ok()).unwrap_or(0);
        let io_pos = text("Gtid_IO_Pos");
        let now = tokio::time::Instant::now();
        let heard_at = match &self.heard {
            Some((b, p, at)) if *b == beats && *p == io_pos => *at,
            _ => now,
        };
        self.heard = Some((beats, io_pos, heard_at));
        let last_received =
            (io != IoThread::Stopped).then(|| now.saturating_duration_since(heard_at));
        Ok(Some(Replica {
            source: (port == u32::from(other_port)).then_some(self.id.other()),
            io,
            sql_running: text("Slave_SQL_Running") == "Yes",
            io_error: Some(number("Last_IO_Errno")).filter(|n| *n != 0),
            sql_error: Some(number("Last_SQL_Errno")).filter(|n| *n != 0),
            gtid_io_pos: parse_gtids(&text("Gtid_IO_Pos"))?,
            gtid_slave_pos: parse_gtids(&slave_pos.unwrap_or_default())?,
            last_received,
        }))
    }

    /// Runs statements in order on this node, each within the probe timeout.
    pub async fn exec(&self, statements: &[String]) -> Result<(), StepError> {
        let mut conn = self.conn().await?;
        for s in statements {
            match tokio::time::timeout(PROBE_TIMEOUT * 5, conn.query_drop(s.as_str())).await {
                Ok(Ok(())) => {}
                Ok(Err(source)) => {
                    return Err(StepError::Sql {
                        node: self.id,
                        source,
                    })
                }
                Err(_) => return Err(StepError::Timeout { node: self.id }),
            }
        }
        let _ = conn.disconnect().await;
        Ok(())
    }

    /// `Gtid_IO_Pos` now: everything its IO thread has written to the relay log.
    pub async fn received(&self) -> Result<GtidList, StepError> {
        let mut conn = self.conn().await?;
        let row: Option<Row> = conn
            .query_first("SHOW SLAVE STATUS")
            .await
            .map_err(|source| StepError::Sql {
                node: self.id,
                source,
            })?;
        let _ = conn.disconnect().await;
        let pos = row
            .and_then(|r| {
                r.get_opt::<Option<String>, _>("Gtid_IO_Pos")
                    .and_then(Result::ok)
                    .flatten()
            })
            .unwrap_or_default();
        parse_gtids(&pos)
    }

    /// `MASTER_GTID_WAIT(pos, timeout)`: true when reached.
    pub async fn gtid_wait(&self, pos: &GtidList, timeout: Duration) -> Result<bool, StepError> {
        let mut conn = self.conn().await?;
        let secs = timeout.as_secs_f64();
        let r: Option<i64> = tokio::time::timeout(
            timeout + PROBE_TIMEOUT,
            conn.exec_first("SELECT MASTER_GTID_WAIT(?, ?)", (pos.to_string(), secs)),
        )
        .await
        .map_err(|_| StepError::WaitTimedOut {
            node: self.id,
            waited: timeout,
        })?
        .map_err(|source| StepError::Sql {
            node: self.id,
            source,
        })?;
        let _ = conn.disconnect().await;
        Ok(r == Some(0))
    }
}

fn parse_gtids(text: &str) -> Result<GtidList, StepError> {
    text.parse::<GtidList>()
        .map_err(|e| StepError::Other(format!("unreadable GTID list: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_settings_are_durable_and_read_only() {
        let args = pair_args(7);
        for must in [
            "--server-id=7",
            "--gtid-strict-mode=ON",
            "--log-slave-updates=ON",
            "--sync-binlog=1",
            "--read-only=ON",
            "--skip-slave-start",
            "--rpl-semi-sync-master-wait-point=AFTER_SYNC",
        ] {
            assert!(args.iter().any(|a| a == must), "{must}");
        }
        assert!(
            !args
                .iter()
                .any(|a| a.starts_with("--rpl-semi-sync-master-enabled")),
            "master-side semi-sync is switched on at promotion only"
        );
    }
}
