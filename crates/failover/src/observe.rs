//! What the executor observes about the pair every tick: the decision core's whole input.
//!
//! The executor folds the process state and the `SELECT 1` probe into one [`Node`], so that
//! impossible combinations (a stopped process that answered) cannot be expressed. Replication
//! errors are kept as error numbers only: MariaDB's error messages can quote row values, and
//! no patient data may reach a log or an alert.

use std::fmt;
use std::time::Duration;

use crate::gtid::GtidList;

/// One of the two database nodes. Which data directory and port each is, is the executor's
/// business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeId {
    A,
    B,
}

impl NodeId {
    pub fn other(self) -> NodeId {
        match self {
            NodeId::A => NodeId::B,
            NodeId::B => NodeId::A,
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeId::A => "node A",
            NodeId::B => "node B",
        })
    }
}

/// The durable promotion ledger (fsynced, atomically renamed): the newest epoch and the node
/// that holds it. Only the holder may be writable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ledger {
    pub epoch: u64,
    pub primary: NodeId,
}

/// One tick's observations.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Time since the executor started (a fake clock in tests).
    pub now: Duration,
    pub ledger: Ledger,
    /// Where the stable database endpoint forwards now (`None`: nowhere yet).
    pub endpoint: Option<NodeId>,
    pub a: Node,
    pub b: Node,
}

impl Observation {
    pub fn node(&self, id: NodeId) -> &Node {
        match id {
            NodeId::A => &self.a,
            NodeId::B => &self.b,
        }
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        match id {
            NodeId::A => &mut self.a,
            NodeId::B => &mut self.b,
        }
    }
}

/// A node as its process and its probe show it.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// No `mariadbd` runs: never started, or it exited.
    Down {
        /// How it ended (`"killed by signal 9"`), `None` if it was never started.
        exited: Option<String>,
        /// Its data directory is present, on the disk it belongs to, and readable: InnoDB crash
        /// recovery can bring it back.
        data_intact: bool,
    },
    /// The process runs, or is stopped (SIGSTOP), but connect and `SELECT 1` failed within the
    /// probe timeout.
    Unresponsive { stopped: bool, reason: String },
    /// It answered; what it reported.
    Up(Status),
}

impl Node {
    pub fn status(&self) -> Option<&Status> {
        match self {
            Node::Up(status) => Some(status),
            _ => None,
        }
    }

    /// Known to accept writes: it answered with `read_only=OFF`.
    pub fn is_writable(&self) -> bool {
        self.status().is_some_and(|s| !s.read_only)
    }
}

/// What a node that answered reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub read_only: bool,
    /// Everything it has written to its binlog (with `log_slave_updates`, also what it applied
    /// as a replica).
    pub gtid_binlog_pos: GtidList,
    /// Its binlog position or, where newer, what it applied as a replica: its history, even
    /// with the empty binlog of a node just restored from a backup.
    pub gtid_current_pos: GtidList,
    /// `SHOW REPLICA STATUS`; `None` when no replication is configured.
    pub replica: Option<Replica>,
    pub semi_sync: SemiSync,
    /// On a replica: the age of the newest heartbeat row it has applied (the primary writes one
    /// every second), i.e. how far behind it is.
    pub heartbeat_lag: Option<Duration>,
}

impl Status {
    /// Its history once its relay log is applied: a replica whose SQL thread works will reach
    /// its `Gtid_IO_Pos`; one whose SQL thread failed will not, so it counts only what it has.
    pub fn history_after_drain(&self) -> GtidList {
        match &self.replica {
            Some(r) if r.sql_error.is_none() => self.gtid_current_pos.advanced_to(&r.gtid_io_pos),
            _ => self.gtid_current_pos.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoThread {
    /// `Slave_IO_Running: Yes`: connected to its primary.
    Running,
    /// `Connecting`: it lost its primary and keeps trying.
    Connecting,
    /// `No`: stopped.
    Stopped,
}

/// A replica's own view of replication.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    /// The node its `Master_Host`/`Master_Port` name, if it is one of ours.
    pub source: Option<NodeId>,
    pub io: IoThread,
    pub sql_running: bool,
    /// `Last_IO_Errno`, when not 0.
    pub io_error: Option<u32>,
    /// `Last_SQL_Errno`, when not 0.
    pub sql_error: Option<u32>,
    /// `Gtid_IO_Pos`: what it has received into its relay log.
    pub gtid_io_pos: GtidList,
    /// `gtid_slave_pos`: what it has applied.
    pub gtid_slave_pos: GtidList,
    /// How long ago its IO thread last received anything from the primary, events or the
    /// master heartbeat (`MASTER_HEARTBEAT_PERIOD` is well below the policy's silence limit);
    /// `None` if it never has.
    pub last_received: Option<Duration>,
}

/// MariaDB's error 1236 as seen by a replica's IO thread: the primary cannot serve the GTID the
/// replica asked for, because the replica has transactions the primary never had (or the
/// primary purged the binlogs it needs). Either way it cannot follow without a rebuild.
pub const ER_MASTER_FATAL_ERROR_READING_BINLOG: u32 = 1236;

/// Master-side semi-sync on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SemiSync {
    /// `rpl_semi_sync_master_enabled`.
    pub enabled: bool,
    /// `Rpl_semi_sync_master_status`: off when it fell back to asynchronous replication.
    pub active: bool,
    /// `Rpl_semi_sync_master_clients`.
    pub clients: u32,
}
