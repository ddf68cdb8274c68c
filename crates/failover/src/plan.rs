//! The decision core's output: a plan of steps, applied and logged one by one by the executor.
//!
//! The executor applies the steps in order and stops at the first that fails; the next tick
//! observes what happened and plans again. Every plan is safe to cut short at any step: the
//! epoch is advanced only after the old primary is fenced and the new one drained, and a node
//! is made writable only after the ledger names it.

use std::fmt;
use std::time::Duration;

use crate::gtid::GtidList;
use crate::observe::NodeId;

/// What a plan is mostly about, for logs and `oscarbox db status`; ordered by significance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// All is well; nothing to do.
    Steady,
    /// Something is wrong but not yet confirmed, or a recovery is under way: watch.
    Waiting,
    /// Settings, endpoint or replica repairs while the primary carries on.
    Repair,
    /// An old primary or a stray node follows the primary again.
    Rejoin,
    /// A node is rebuilt from the primary (after saving anything only it had).
    Rebuild,
    /// Something needs doing that is not safe to do automatically: alert and explain.
    Blocked,
    /// The primary's `mariadbd` is started again on its own data.
    RestartPrimary,
    /// A read-only node is made the writable primary under a new epoch.
    Promote,
    Failover,
    Switchover,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Start `mariadbd` on its existing data directory (it comes up `read_only=ON`, as its
    /// configuration says; InnoDB crash recovery runs first).
    Start { node: NodeId },
    /// Fence by stopping: SIGTERM (SIGCONT for a stopped process), grace, SIGKILL to its
    /// process group. Done on a process that is already gone, it checks that none runs.
    Stop { node: NodeId },
    /// Fence without stopping: `SET GLOBAL read_only=ON` (it waits for commits in flight).
    SetReadOnly { node: NodeId },
    /// `STOP SLAVE IO_THREAD` (never restart it: a restarted IO thread purges the relay log and
    /// the events only it held), start the SQL thread if it is stopped, then
    /// `MASTER_GTID_WAIT` on the `Gtid_IO_Pos` read after the IO thread stopped (observed:
    /// `io_pos`). A timeout fails the step.
    DrainRelayLog {
        node: NodeId,
        io_pos: GtidList,
        timeout: Duration,
    },
    /// Read `gtid_binlog_pos` on `primary` (writes are blocked by now) and `MASTER_GTID_WAIT`
    /// for it on `replica`; a timeout fails the step.
    WaitForCatchUp {
        replica: NodeId,
        primary: NodeId,
        timeout: Duration,
    },
    /// Write the ledger (fsync, atomic rename) before anything can make `primary` writable.
    AdvanceEpoch { epoch: u64, primary: NodeId },
    /// Check the ledger names `node` at `epoch`; `STOP SLAVE; RESET SLAVE ALL`; semi-sync master
    /// on; `read_only=OFF`.
    Promote { node: NodeId, epoch: u64 },
    /// Point the stable endpoint at `to` and close every connection to the old target.
    RepointEndpoint { to: NodeId },
    /// Semi-sync master off; `CHANGE MASTER TO` `primary` with `MASTER_USE_GTID=slave_pos`
    /// (its position set from its own history); `START SLAVE`.
    AttachReplica { node: NodeId, primary: NodeId },
    /// `START SLAVE`: the threads were stopped without an error.
    StartReplication { node: NodeId },
    /// Switch master-side semi-sync on or off (on only on the primary: on a replica it stalls
    /// the SQL thread for the semi-sync timeout on every transaction).
    SetSemiSyncMaster { node: NodeId, on: bool },
    /// Save as readable SQL (`mariadb-binlog`, on disk, for a person to review) every
    /// transaction in `node`'s binlog that the primary's binlog lacks, checked GTID by GTID
    /// (positions alone cannot see a divergence below the last GTID); `primary_pos` is the
    /// primary's history when planned, for the report.
    PreserveExtra { node: NodeId, primary_pos: GtidList },
    /// Stop `node`, replace its data with a `mariabackup` of `from`, start it read-only and
    /// attach it at the backup's GTID.
    Rebuild { node: NodeId, from: NodeId },
    /// Write the incident report (the executor adds the timeline and the recovery time).
    Incident(Incident),
    /// An ERROR line marked `alert`: a person should look.
    Alert { message: String },
    /// An INFO line in the pair's history: something worth knowing, no action needed.
    Record { message: String },
}

/// What a failover report says beyond the executor's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub from: NodeId,
    pub to: NodeId,
    pub epoch: u64,
    pub cause: String,
    /// The old primary's `gtid_binlog_pos` when last seen; transactions past what the new
    /// primary received may be lost (they are preserved if the old primary comes back).
    pub last_seen_primary: Option<GtidList>,
    /// The new primary's history once drained.
    pub promoted_at: GtidList,
    /// Whether semi-sync was on when the old primary was last seen: if so, every acknowledged
    /// write reached the new primary.
    pub semi_sync_was_on: Option<bool>,
}

/// A plan: the steps in order, and why, in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub kind: Kind,
    pub reason: String,
    pub steps: Vec<Step>,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Start { node } => write!(f, "start {node} on its own data (read-only)"),
            Step::Stop { node } => write!(f, "stop {node}'s mariadbd"),
            Step::SetReadOnly { node } => write!(f, "set {node} read-only"),
            Step::DrainRelayLog {
                node,
                io_pos,
                timeout,
            } => write!(
                f,
                "stop {node}'s IO thread and wait up to {}s for it to apply its relay log up to {io_pos}",
                timeout.as_secs()
            ),
            Step::WaitForCatchUp {
                replica,
                primary,
                timeout,
            } => write!(
                f,
                "wait up to {:.1}s for {replica} to apply everything {primary} wrote",
                timeout.as_secs_f64()
            ),
            Step::AdvanceEpoch { epoch, primary } => {
                write!(f, "record epoch {epoch} for {primary} in the ledger")
            }
            Step::Promote { node, epoch } => {
                write!(f, "make {node} the writable primary (epoch {epoch})")
            }
            Step::RepointEndpoint { to } => {
                write!(f, "point the database endpoint at {to} and close old connections")
            }
            Step::AttachReplica { node, primary } => {
                write!(f, "attach {node} as a replica of {primary}")
            }
            Step::StartReplication { node } => write!(f, "start replication on {node}"),
            Step::SetSemiSyncMaster { node, on } => write!(
                f,
                "switch semi-sync master {} on {node}",
                if *on { "on" } else { "off" }
            ),
            Step::PreserveExtra { node, primary_pos } => write!(
                f,
                "save {node}'s transactions beyond {primary_pos} as SQL for review"
            ),
            Step::Rebuild { node, from } => write!(f, "rebuild {node} from {from} (mariabackup)"),
            Step::Incident(i) => write!(
                f,
                "write the incident report: failover from {} to {} (epoch {})",
                i.from, i.to, i.epoch
            ),
            Step::Alert { message } => write!(f, "alert: {message}"),
            Step::Record { message } => write!(f, "record: {message}"),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.reason)?;
        for (i, step) in self.steps.iter().enumerate() {
            write!(f, "\n  {}. {step}", i + 1)?;
        }
        Ok(())
    }
}
