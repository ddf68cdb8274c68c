//! What crosses the database pair's control socket (`oscarbox db status|switchover`): one
//! JSON request line in, one JSON answer line out, like the watchdog's.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum DbRequest {
    /// Roles, epoch, positions, lag, semi-sync, the last plan and incident.
    Status,
    /// A planned switchover to the replica.
    Switchover,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "kebab-case")]
pub enum DbAnswer {
    Status(Box<DbPairStatus>),
    /// Done: the plan applied, in words.
    Switched {
        plan: String,
        /// How long writes were blocked (from the old primary's `read_only` to the new one's
        /// promotion), in milliseconds.
        write_block_ms: u64,
    },
    /// Not safe now; nothing was changed.
    Refused {
        message: String,
    },
    Error {
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbPairStatus {
    pub epoch: u64,
    /// `A` or `B`: the node the ledger names.
    pub primary: String,
    /// The node the endpoint forwards to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_target: Option<String>,
    pub nodes: Vec<DbPairNode>,
    /// The last plan with steps, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_plan: Option<String>,
    /// The newest failover, from its incident report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<DbFailover>,
}

/// A failover, as its incident report (`<state>/db/incidents/epoch-N.txt`) records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbFailover {
    /// The report's path.
    pub report: String,
    pub epoch: u64,
    /// `node A` or `node B`.
    pub from: String,
    pub to: String,
    /// Seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
    /// From the old primary's last service to the endpoint on the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_to_recover: Option<f64>,
    /// Whether semi-sync was on when the old primary was last seen; `None`: not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semi_sync_was_on: Option<bool>,
    /// Known once the old primary is back: 0, or how many of its transactions the new primary
    /// lacked (saved as SQL for review).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactions_lost: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbPairNode {
    /// `A` or `B`.
    pub id: String,
    pub name: String,
    pub address: String,
    /// `primary` or `replica`, as the ledger has it.
    pub role: String,
    /// `up`, `down` or `unresponsive`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_binlog_pos: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_current_pos: Option<String>,
    /// Both replication threads running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicating: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semi_sync_master: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semi_sync_active: Option<bool>,
    /// Why it is down or unresponsive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
