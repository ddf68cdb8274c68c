//! The pure decision core of the two-node MariaDB pair: observations in, a plan out.
//!
//! Every tick (about a second) the executor gathers an [`Observation`] of both nodes and the
//! promotion ledger, asks [`Pair::tick`] for a [`Plan`], logs it, and applies its [`Step`]s in
//! order. `oscarbox db switchover` asks [`plan_switchover`] instead. Nothing here does I/O or
//! reads a clock, so every decision is unit- and property-tested under a fake clock.
//!
//! The rules it keeps (see `DESIGN.md`, "Database"):
//! - Only the node holding the newest epoch of the durable ledger may be writable; any other
//!   writable node is set read-only on sight. A node is made writable only by a plan that first
//!   records a new, strictly greater epoch for it.
//! - A primary whose `mariadbd` exited with its data intact is restarted in place, a bounded
//!   number of times; one that stays dead, or hangs, is failed over only when the replica's
//!   own view agrees it is gone, never while the replica cannot apply what it received.
//! - A failover stops the old primary before anything else, drains the replica's relay log
//!   with its SQL thread (the IO thread is stopped, never restarted), then records the epoch,
//!   promotes and repoints.
//! - A holder that comes back read-only (after a restart in place, say) is promoted again
//!   under a new epoch, unless the other node has everything it has and more: then the other
//!   is promoted, so that a node behind is never chosen over one that is caught up.
//! - An old primary rejoins only if its history is a prefix of the new primary's; otherwise
//!   its extra transactions are saved for review and it is rebuilt.
//! - Every plan says why, in words a clinic without a DBA can follow.

mod decide;
pub mod gtid;
mod observe;
mod plan;

pub use decide::{plan_switchover, Pair, Policy, Refused};
pub use gtid::{Gtid, GtidError, GtidList, History};
pub use observe::{
    IoThread, Ledger, Node, NodeId, Observation, Replica, SemiSync, Status,
    ER_MASTER_FATAL_ERROR_READING_BINLOG,
};
pub use plan::{Incident, Kind, Plan, Step};
