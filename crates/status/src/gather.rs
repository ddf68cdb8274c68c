//! Gathers the facts of a [`BoxStatus`]: the watchdog's instances (handed in), the proxy (its
//! admin socket), the database (`SELECT 1` through the endpoint, and the pair's executor on its
//! control socket), the disks (`statvfs`, and
//! whether the backup disk is really mounted), memory, CPU and load (`sysinfo`), and the
//! certificate's end. Each source is asked with a timeout, so one that hangs shows as down
//! instead of stalling the status.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mysql_async::prelude::Queryable as _;
use oscarbox_config::Config;
use oscarbox_watchdog_api::db::{DbAnswer, DbPairStatus, DbRequest};
use oscarbox_watchdog_api::{
    BackupStatus, BoxStatus, DatabaseStatus, DbNodeStatus, DrillSummary, FailoverSummary,
    ProxyStatus, Space, SystemStatus, TlsStatus, Verdict, WorkerStatus,
};

use crate::assess::{assess, Expect};

/// How long one source may take to answer.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(2);

/// Keeps what must persist between two gatherings: CPU usage is a difference between two
/// readings.
#[derive(Debug)]
pub struct Gatherer {
    system: sysinfo::System,
}

impl Default for Gatherer {
    fn default() -> Self {
        let mut system = sysinfo::System::new();
        system.refresh_cpu_usage();
        Gatherer { system }
    }
}

impl Gatherer {
    /// The box now, under `config` (the watchdog's current one: SIGHUP may have changed it).
    /// `workers` is the watchdog's view of its instances, `None` when the watchdog is not
    /// running or does not answer (as when `oscarbox status` finds no watchdog to ask).
    pub async fn gather(
        &mut self,
        config: &Arc<Config>,
        workers: Option<Vec<WorkerStatus>>,
    ) -> BoxStatus {
        let (proxy, database, disks) = tokio::join!(proxy(config), database(config), disks(config));
        let (backups, system_disk) = disks;
        let mut status = BoxStatus {
            version: oscarbox_watchdog_api::VERSION,
            box_name: config.box_.name.clone(),
            software_version: env!("CARGO_PKG_VERSION").to_owned(),
            checked_at: unix_now(),
            verdict: Verdict::Ok,
            reasons: Vec::new(),
            watchdog_running: workers.is_some(),
            instances: workers.unwrap_or_default(),
            proxy,
            database,
            backups,
            system: self.system(system_disk),
            tls: oscarbox_tls::not_after(&oscarbox_tls::served_cert(config))
                .ok()
                .map(|not_after| TlsStatus { not_after }),
        };
        let now = status.checked_at;
        reassess(&mut status, config, now);
        status
    }

    fn system(&mut self, disk: Option<Space>) -> SystemStatus {
        self.system.refresh_memory();
        self.system.refresh_cpu_usage();
        let load = sysinfo::System::load_average();
        SystemStatus {
            disk,
            memory_total_bytes: self.system.total_memory(),
            memory_available_bytes: self.system.available_memory(),
            cpus: u32::try_from(self.system.cpus().len()).unwrap_or(u32::MAX),
            cpu_usage_percent: f64::from(self.system.global_cpu_usage()),
            load_average: [load.one, load.five, load.fifteen],
            uptime_seconds: sysinfo::System::uptime(),
        }
    }
}

/// Replaces the instances in `status` with the watchdog's view now and assesses it again: the
/// control socket answers `oscarbox status` this way, so a person sees the instances as they
/// are, not as they were at the last gathering. It is judged at the present moment, so a
/// status service that stopped gathering shows as stale.
pub fn with_instances(
    mut status: BoxStatus,
    workers: Vec<WorkerStatus>,
    config: &Config,
) -> BoxStatus {
    status.instances = workers;
    status.watchdog_running = true;
    reassess(&mut status, config, unix_now());
    status
}

/// How long the watchdog runs before missing backups and drills count: its first documents
/// snapshot, archive connection, base backup and drill all come within a few minutes.
const BACKUPS_GRACE: u64 = 15 * 60;

fn reassess(status: &mut BoxStatus, config: &Config, now: u64) {
    // Assessed in the watchdog's process (the gathering and its control socket): its first
    // assessment is its start.
    static FIRST: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let running_since = *FIRST.get_or_init(|| now);
    let expect = Expect {
        instances: config.emr.instances.get(),
        require_backup_mount: config.backup.require_mount,
        backups_running: status.watchdog_running
            && now.saturating_sub(running_since) >= BACKUPS_GRACE,
        database_backups: config.database.is_pair(),
    };
    let (verdict, reasons) = assess(status, &expect, now);
    status.verdict = verdict;
    status.reasons = reasons;
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn proxy(config: &Config) -> ProxyStatus {
    let ask = oscarbox_proxy_api::client::ask(
        &config.proxy.admin_socket,
        &oscarbox_proxy_api::Request::Backends,
    );
    match tokio::time::timeout(SOURCE_TIMEOUT, ask).await {
        Ok(Ok(oscarbox_proxy_api::Answer::Backends { backends, .. })) => ProxyStatus {
            reachable: true,
            backends_up: count(backends.iter().filter(|b| b.state == "up")),
            backends: count(backends.iter()),
        },
        _ => ProxyStatus {
            reachable: false,
            backends_up: 0,
            backends: 0,
        },
    }
}

fn count<T>(items: impl Iterator<Item = T>) -> u32 {
    u32::try_from(items.count()).unwrap_or(u32::MAX)
}

/// Asks the endpoint the EMR uses, with the EMR's own account: what the clinic depends on.
/// The answer names the node behind the endpoint and whether it takes writes.
async fn database(config: &Config) -> DatabaseStatus {
    let db = &config.database;
    let mut nodes: Vec<DbNodeStatus> = db
        .nodes
        .iter()
        .map(|n| DbNodeStatus {
            name: n.name.clone(),
            role: None,
            reachable: None,
            lag_seconds: None,
            semi_sync: None,
        })
        .collect();
    let answer = match std::fs::read_to_string(&db.app_password_file) {
        Ok(password) => tokio::time::timeout(SOURCE_TIMEOUT, ask_endpoint(config, password.trim()))
            .await
            .ok()
            .and_then(Result::ok),
        Err(_) => None,
    };
    let pair = match db.nodes.as_slice() {
        [a, b] if ![a.port, b.port].contains(&db.endpoint.port()) => pair(config).await,
        _ => None,
    };
    let mut last_failover = None;
    if let Some(pair) = pair {
        // The pair's executor knows each node: its role by the ledger, whether it answers,
        // the replica's lag from the heartbeat row, the primary's semi-sync.
        for (node, seen) in nodes.iter_mut().zip(&pair.nodes) {
            node.role = Some(seen.role.clone());
            node.reachable = Some(seen.state == "up");
            node.lag_seconds = seen.lag_seconds;
            node.semi_sync = (seen.role == "primary")
                .then_some(seen.semi_sync_active)
                .flatten();
        }
        last_failover = pair.last_failover.and_then(|f| {
            Some(FailoverSummary {
                at: f.at?,
                seconds_to_recover: f.seconds_to_recover,
                transactions_lost: f.transactions_lost,
            })
        });
    }
    let Some(read_only) = answer else {
        return DatabaseStatus {
            endpoint_reachable: false,
            writable: None,
            nodes,
            last_failover,
        };
    };
    // With one node, the endpoint is that node's own address.
    if let Some(node) = db
        .nodes
        .iter()
        .position(|n| n.port == db.endpoint.port())
        .and_then(|i| nodes.get_mut(i))
    {
        node.reachable = Some(true);
        node.role = Some(if read_only { "replica" } else { "primary" }.to_owned());
    }
    DatabaseStatus {
        endpoint_reachable: true,
        writable: Some(!read_only),
        nodes,
        last_failover,
    }
}

/// The pair's own view, from its executor's control socket; `None` when it does not answer.
async fn pair(config: &Config) -> Option<DbPairStatus> {
    let ask = oscarbox_socket_rpc::ask::<_, DbAnswer>(
        "the database pair",
        &config.database.control_socket,
        &DbRequest::Status,
    );
    match tokio::time::timeout(SOURCE_TIMEOUT, ask).await {
        Ok(Ok(DbAnswer::Status(s))) => Some(*s),
        _ => None,
    }
}

async fn ask_endpoint(config: &Config, password: &str) -> Result<bool, mysql_async::Error> {
    let db = &config.database;
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(db.endpoint.ip().to_string())
        .tcp_port(db.endpoint.port())
        .user(Some(db.app_user.clone()))
        .pass(Some(password.to_owned()))
        .db_name(Some(db.name.clone()))
        .prefer_socket(false);
    let mut conn = mysql_async::Conn::new(opts).await?;
    let read_only: Option<bool> = conn.query_first("SELECT @@global.read_only").await?;
    let _ = conn.disconnect().await;
    Ok(read_only.unwrap_or(true))
}

/// The backup disk and the system disk, asked on the blocking pool with a timeout: a hung disk
/// (a failing USB drive, a dead network mount) blocks `stat` and `statvfs` for minutes, and must
/// not freeze the status with it.
async fn disks(config: &Config) -> (BackupStatus, Option<Space>) {
    let (backup, require_mount, state_dir) = (
        config.backup.disk.clone(),
        config.backup.require_mount,
        config.box_.state_dir.clone(),
    );
    let blocking = tokio::task::spawn_blocking(move || {
        (
            backups(&backup, require_mount, &state_dir),
            space(&state_dir),
        )
    });
    match tokio::time::timeout(SOURCE_TIMEOUT, blocking).await {
        Ok(Ok(found)) => found,
        _ => {
            let problem = format!(
                "{} does not answer: the disk may be failing",
                config.backup.disk.display()
            );
            let backups = BackupStatus {
                disk_present: false,
                disk_problem: Some(problem),
                disk: None,
                newest_database_age_seconds: None,
                newest_documents_age_seconds: None,
                last_drill: None,
            };
            (backups, None)
        }
    }
}

fn backups(disk: &Path, require_mount: bool, state_dir: &Path) -> BackupStatus {
    let problem = match std::fs::metadata(disk) {
        Err(_) => Some(format!("{} does not exist", disk.display())),
        Ok(m) if !m.is_dir() => Some(format!("{} is not a directory", disk.display())),
        Ok(_) if require_mount && !oscarbox_common::is_mount_point(disk) => Some(format!(
            "nothing is mounted at {}: the backup disk is unplugged or failed to mount",
            disk.display()
        )),
        Ok(_) => None,
    };
    let state =
        oscarbox_backup::state::State::read(&oscarbox_backup::state::State::path(state_dir));
    let now = oscarbox_backup::state::unix_now();
    BackupStatus {
        disk_present: problem.is_none(),
        disk: problem.is_none().then(|| space(disk)).flatten(),
        disk_problem: problem,
        newest_database_age_seconds: state
            .database_last
            .and_then(|t| u64::try_from(now.saturating_sub(t)).ok()),
        newest_documents_age_seconds: state
            .documents_last
            .and_then(|t| u64::try_from(now.saturating_sub(t)).ok()),
        last_drill: state
            .drill_last
            .zip(state.drill_passed)
            .map(|(at, passed)| DrillSummary {
                at: u64::try_from(at).unwrap_or(0),
                passed,
            }),
    }
}

/// The file system holding `path`; `None` when it cannot be asked.
pub fn space(path: &Path) -> Option<Space> {
    let (available_bytes, total_bytes) = oscarbox_common::space(path)?;
    Some(Space {
        path: path.display().to_string(),
        total_bytes,
        available_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_is_read_and_sane() {
        let s = space(Path::new("/")).expect("statvfs /");
        assert!(
            s.total_bytes > 0 && s.available_bytes <= s.total_bytes,
            "{s:?}"
        );
    }
}
