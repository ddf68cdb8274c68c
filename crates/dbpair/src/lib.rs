//! The two-node MariaDB pair's executor (issue 8): what turns `oscarbox-failover`'s plans into
//! actions. `endpoint` is the stable local address clients use; `ledger` the durable promotion
//! epoch; `node` one `mariadbd` (its settings, what it reports, the SQL of each step);
//! `executor` the loop that observes, plans (through the pure core) and applies; `incident` the
//! failover reports; `rebuild` a diverged node's transactions saved, then the node rebuilt.

pub mod endpoint;
pub mod executor;
pub mod incident;
pub mod ledger;
pub mod node;
pub mod rebuild;
