//! The verdict on a [`BoxStatus`] in plain words: the gathered facts in, the reasons it is not
//! `ok` out, each with a stable id and what to do about it.
//!
//! Reasons are made only of our own words, numbers and the names the configuration gives (box,
//! database nodes). A worker's `why` or any other text a process reports is never copied into
//! them, because reasons travel further than the box: into alerts, metrics labels, heartbeats.

use oscarbox_watchdog_api::{BoxStatus, Reason, Severity, Space, SystemStatus, Verdict};

/// What the configuration says the box should have, which the facts alone cannot tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// EMR instances configured (numbered from 1).
    pub instances: u32,
    /// Whether the backup disk must be a mount point of its own (the box, not a laptop).
    pub require_backup_mount: bool,
    /// Whether backups are set up and have had time to run; until then, missing backup ages
    /// and drills are not a problem.
    pub backups_running: bool,
    /// Whether the database is backed up (the pair's binlog archive and base backups, which
    /// the restore drill needs); with one node, only the documents are.
    pub database_backups: bool,
}

/// The reasons' stable ids: alerts are de-duplicated and metrics labelled by them, so they are
/// a promise to whoever routes alerts; add new ones, never rename.
pub mod id {
    pub const WATCHDOG_DOWN: &str = "watchdog-down";
    pub const EMR_INSTANCE_DOWN: &str = "emr-instance-down";
    pub const EMR_NONE_HEALTHY: &str = "emr-none-healthy";
    pub const PROXY_DOWN: &str = "proxy-down";
    pub const PROXY_NO_BACKEND: &str = "proxy-no-backend";
    pub const DATABASE_DOWN: &str = "database-down";
    pub const DATABASE_READ_ONLY: &str = "database-read-only";
    pub const DATABASE_REPLICA_LAG: &str = "database-replica-lag";
    pub const DATABASE_SEMI_SYNC_OFF: &str = "database-semi-sync-off";
    pub const BACKUP_DISK_MISSING: &str = "backup-disk-missing";
    pub const BACKUP_DISK_FULL: &str = "backup-disk-full";
    pub const BACKUP_DATABASE_OLD: &str = "backup-database-old";
    pub const BACKUP_DOCUMENTS_OLD: &str = "backup-documents-old";
    pub const BACKUP_DRILL_FAILED: &str = "backup-drill-failed";
    pub const BACKUP_DRILL_OVERDUE: &str = "backup-drill-overdue";
    pub const SYSTEM_DISK_FULL: &str = "system-disk-full";
    pub const MEMORY_LOW: &str = "memory-low";
    pub const LOAD_HIGH: &str = "load-high";
    pub const TLS_EXPIRING: &str = "tls-expiring";
    pub const STATUS_STALE: &str = "status-stale";
}

/// How old the status may be before it is itself a problem: it is gathered every few seconds.
pub const STALE_AFTER_SECS: u64 = 120;
/// A replica further behind than this leaves recent saves unprotected for too long.
pub const REPLICA_LAG_WARN_SECS: f64 = 30.0;
/// The certificate's renewal should have happened well before this (ACME renews at 30 days).
pub const TLS_WARN_DAYS: u64 = 21;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

const RESTARTS_BY_ITSELF: &str = "Nothing yet: the watchdog restarts it by itself. If this lasts \
                                  more than 10 minutes, call your support provider.";
const CALL_SUPPORT_NOW: &str = "Call your support provider now.";
const CALL_SUPPORT_SOON: &str = "Call your support provider during working hours this week.";

/// The verdict on `s` and why, worst reason first (then by id and instance). `now` is the
/// current time in seconds since the Unix epoch, for ages and expiries.
pub fn assess(s: &BoxStatus, expect: &Expect, now: u64) -> (Verdict, Vec<Reason>) {
    let mut f = Found::default();
    watchdog_and_instances(s, expect, &mut f);
    proxy(s, &mut f);
    database(s, &mut f);
    backups(s, expect, now, &mut f);
    system(s, &mut f);
    tls(s, now, &mut f);
    if now.saturating_sub(s.checked_at) > STALE_AFTER_SECS {
        f.add(
            id::STATUS_STALE,
            Severity::Warning,
            "system",
            format!(
                "This status is {} old: the box stopped updating it.",
                duration(now - s.checked_at)
            ),
            "Look again in a minute. If it is still old, restart the box, then call your \
             support provider.",
        );
    }
    let mut reasons = f.0;
    reasons.sort_by(|a, b| {
        (b.severity.cmp(&a.severity))
            .then_with(|| a.id.cmp(&b.id))
            .then_with(|| a.instance.cmp(&b.instance))
    });
    (verdict(&reasons), reasons)
}

/// The verdict the reasons amount to: their worst severity, `ok` when there are none.
pub fn verdict(reasons: &[Reason]) -> Verdict {
    match reasons.iter().map(|r| r.severity).max() {
        None => Verdict::Ok,
        Some(Severity::Warning) => Verdict::Degraded,
        Some(Severity::Critical) => Verdict::Critical,
    }
}

/// The worst severity among the reasons in `s` with one of `ids` (and about `instance`, when
/// given): what the health document's checks and the status page's colours are judged by.
pub(crate) fn worst(s: &BoxStatus, ids: &[&str], instance: Option<u32>) -> Option<Severity> {
    (s.reasons.iter())
        .filter(|r| ids.contains(&r.id.as_str()) && instance.is_none_or(|n| r.instance == Some(n)))
        .map(|r| r.severity)
        .max()
}

#[derive(Default)]
struct Found(Vec<Reason>);

impl Found {
    fn add(
        &mut self,
        id: &str,
        severity: Severity,
        component: &str,
        what: String,
        todo: &str,
    ) -> &mut Reason {
        self.0.push(Reason {
            id: id.to_owned(),
            severity,
            component: component.to_owned(),
            instance: None,
            what,
            todo: todo.to_owned(),
        });
        self.0.last_mut().expect("just pushed")
    }
}

fn watchdog_and_instances(s: &BoxStatus, expect: &Expect, f: &mut Found) {
    if !s.watchdog_running {
        // Without the watchdog nothing is known about the instances; its own reason says
        // everything staff need, and listing every instance as unknown would only be noise.
        f.add(
            id::WATCHDOG_DOWN,
            Severity::Critical,
            "watchdog",
            "The watchdog that keeps OSCAR running is not running, so nothing restarts OSCAR \
             if it stops."
                .into(),
            "Restart the box. If this message is still here 10 minutes after the restart, call \
             your support provider.",
        );
        return;
    }
    // The configured instances and any the watchdog reports beyond them (during a change of
    // configuration): one the watchdog does not report at all is not running.
    let mut numbers: Vec<u32> = (1..=expect.instances)
        .chain(s.instances.iter().map(|w| w.instance))
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    let state = |n: u32| {
        s.instances
            .iter()
            .find(|w| w.instance == n)
            .map(|w| w.state.as_str())
    };
    let total = numbers.len();
    if total == 0 {
        return;
    }
    let healthy = numbers
        .iter()
        .filter(|&&n| state(n) == Some("healthy"))
        .count();
    // A box starting up (every instance healthy or still starting, within the watchdog's
    // startup budget) is not an emergency: paging someone at every boot would teach people
    // to ignore pages. A start that does not finish becomes failed or restarting, and critical.
    let starting_up = numbers
        .iter()
        .all(|&n| matches!(state(n), Some("healthy" | "starting")));
    let (severity, others) = if healthy > 0 {
        (Severity::Warning, " The others keep OSCAR working.")
    } else if starting_up {
        (Severity::Warning, "")
    } else {
        (Severity::Critical, "")
    };
    for &n in &numbers {
        let (happening, todo) = match state(n) {
            Some("healthy") => continue,
            Some("starting") => (
                "is starting up.",
                "Nothing: starting takes a few minutes. If it is still starting after 10 \
                 minutes, call your support provider.",
            ),
            Some("suspect") => ("is answering slowly or not at all.", RESTARTS_BY_ITSELF),
            Some("hung") => ("stopped answering.", RESTARTS_BY_ITSELF),
            Some("restarting") => ("is restarting.", RESTARTS_BY_ITSELF),
            Some("failed") => (
                "keeps crashing; the watchdog now only retries it now and then.",
                "Call your support provider: a technician needs to look at it.",
            ),
            None => (
                "is not running.",
                "Restart the box. If it is still not running afterwards, call your support \
                 provider.",
            ),
            Some(_) => (
                "is in a state this page does not know.",
                "Call your support provider: the box may need an update.",
            ),
        };
        let what = format!("OSCAR server {n} of {total} {happening}{others}");
        f.add(id::EMR_INSTANCE_DOWN, severity, "emr", what, todo)
            .instance = Some(n);
    }
    if healthy == 0 && starting_up {
        f.add(
            id::EMR_NONE_HEALTHY,
            Severity::Warning,
            "emr",
            format!("OSCAR is starting up: none of its {total} servers is ready yet."),
            "Wait a few minutes. If OSCAR is still not working after 10 minutes, call your \
             support provider.",
        );
    } else if healthy == 0 {
        f.add(
            id::EMR_NONE_HEALTHY,
            Severity::Critical,
            "emr",
            format!("Nobody can use OSCAR: none of its {total} servers is working."),
            "Wait a few minutes: the watchdog restarts them by itself. If OSCAR is still not \
             working after 10 minutes, call your support provider.",
        );
    }
}

fn proxy(s: &BoxStatus, f: &mut Found) {
    let healthy = s.instances.iter().filter(|w| w.state == "healthy").count();
    if !s.proxy.reachable {
        f.add(
            id::PROXY_DOWN,
            Severity::Critical,
            "proxy",
            "OSCAR's front door (the proxy) is not answering, so browsers and connected \
             services cannot reach OSCAR."
                .into(),
            "Nothing yet: the box restarts it by itself. If OSCAR cannot be reached for more \
             than 5 minutes, restart the box, then call your support provider.",
        );
    } else if s.proxy.backends_up == 0 && healthy > 0 {
        f.add(
            id::PROXY_NO_BACKEND,
            Severity::Critical,
            "proxy",
            format!(
                "OSCAR's front door (the proxy) reaches none of the OSCAR servers, although \
                 {healthy} of them work, so nobody can use OSCAR."
            ),
            "If this lasts more than 2 minutes, restart the box, then call your support \
             provider.",
        );
    }
}

fn database(s: &BoxStatus, f: &mut Found) {
    let db = &s.database;
    if !db.endpoint_reachable {
        f.add(
            id::DATABASE_DOWN,
            Severity::Critical,
            "database",
            "OSCAR's database is not answering, so nobody can open or save charts.".into(),
            "If this lasts more than 5 minutes, restart the box, then call your support \
             provider.",
        );
    } else if db.writable == Some(false) {
        f.add(
            id::DATABASE_READ_ONLY,
            Severity::Critical,
            "database",
            "OSCAR's database is read-only: charts open, but nobody can save anything.".into(),
            CALL_SUPPORT_NOW,
        );
    }
    let lagging: Vec<_> = (db.nodes.iter())
        .filter(|n| n.lag_seconds.is_some_and(|l| l > REPLICA_LAG_WARN_SECS))
        .collect();
    // One reason for all lagging nodes: reasons are keyed by id and EMR instance, and a node
    // is not an instance.
    if let Some(worst) = (lagging.iter())
        .filter_map(|n| n.lag_seconds)
        .max_by(f64::total_cmp)
    {
        f.add(
            id::DATABASE_REPLICA_LAG,
            Severity::Warning,
            "database",
            format!(
                "The database copy on {} is {} behind, so the newest saves are not yet \
                 protected by it.",
                names(lagging.iter().map(|n| n.name.as_str())),
                duration(whole_seconds(worst)),
            ),
            "Nothing yet: it usually catches up by itself. If this lasts more than 30 minutes, \
             call your support provider.",
        );
    }
    let unconfirmed = (db.nodes.iter())
        .filter(|n| n.role.as_deref() == Some("primary") && n.semi_sync == Some(false));
    let unconfirmed: Vec<&str> = unconfirmed.map(|n| n.name.as_str()).collect();
    if !unconfirmed.is_empty() {
        f.add(
            id::DATABASE_SEMI_SYNC_OFF,
            Severity::Warning,
            "database",
            format!(
                "The database on {} saves without waiting for its copy to confirm, so a disk \
                 failure could lose the last few seconds of work.",
                names(unconfirmed.into_iter())
            ),
            CALL_SUPPORT_SOON,
        );
    }
}

fn backups(s: &BoxStatus, expect: &Expect, now: u64, f: &mut Found) {
    let b = &s.backups;
    if !b.disk_present {
        if expect.require_backup_mount {
            let problem = b
                .disk_problem
                .as_deref()
                .map_or(String::new(), |p| format!(" ({})", p.trim_end_matches('.')));
            f.add(
                id::BACKUP_DISK_MISSING,
                Severity::Critical,
                "backup",
                format!("The backup disk is not there{problem}, so nothing is backed up."),
                "Call your support provider today: the box's second disk, which keeps the \
                 backups, needs a technician.",
            );
        }
    } else if let Some(space) = &b.disk {
        disk_full(f, id::BACKUP_DISK_FULL, "backup", space, (90.0, 97.0));
    }
    if let Some(space) = &s.system.disk {
        disk_full(f, id::SYSTEM_DISK_FULL, "system", space, (85.0, 95.0));
    }
    if !expect.backups_running {
        return;
    }
    if expect.database_backups {
        backup_age(
            f,
            id::BACKUP_DATABASE_OLD,
            "database",
            b.newest_database_age_seconds,
            (5 * MINUTE, HOUR),
        );
    }
    backup_age(
        f,
        id::BACKUP_DOCUMENTS_OLD,
        "documents",
        b.newest_documents_age_seconds,
        (2 * HOUR, DAY),
    );
    if !expect.database_backups {
        return;
    }
    let drill_todo = "Call your support provider during working hours: until a test restore \
                      works, nobody knows the backups can be used.";
    if b.last_drill.as_ref().is_some_and(|d| !d.passed) {
        let what = "The last test restore of the backups failed.".into();
        f.add(
            id::BACKUP_DRILL_FAILED,
            Severity::Warning,
            "backup",
            what,
            drill_todo,
        );
    }
    let since = b.last_drill.as_ref().map(|d| now.saturating_sub(d.at));
    if since.is_none_or(|since| since > 8 * DAY) {
        let what = match since {
            None => "The backups have never been test-restored.".to_owned(),
            Some(since) => format!(
                "The backups have not been test-restored for {}.",
                duration(since)
            ),
        };
        f.add(
            id::BACKUP_DRILL_OVERDUE,
            Severity::Warning,
            "backup",
            what,
            drill_todo,
        );
    }
}

/// A disk at or above `(warn, critical)` percent used.
fn disk_full(f: &mut Found, id: &str, which: &str, space: &Space, (warn, critical): (f64, f64)) {
    let used = space.used_percent();
    let (severity, todo) = if used >= critical {
        (
            Severity::Critical,
            "Call your support provider today: when the disk is full, saving stops.",
        )
    } else if used >= warn {
        (Severity::Warning, CALL_SUPPORT_SOON)
    } else {
        return;
    };
    let disk = if which == "backup" {
        "The backup disk"
    } else {
        "The box's main disk"
    };
    let what = format!(
        "{disk} is {} full ({} free of {}).",
        percent(used),
        bytes(space.available_bytes),
        bytes(space.total_bytes)
    );
    f.add(id, severity, which, what, todo);
}

/// The newest backup of `what`, older than `(warn, critical)` seconds or missing.
fn backup_age(f: &mut Found, id: &str, what: &str, age: Option<u64>, (warn, critical): (u64, u64)) {
    let severity = match age {
        Some(age) if age <= warn => return,
        Some(age) if age <= critical => Severity::Warning,
        _ => Severity::Critical,
    };
    let what = match age {
        None => format!("No backup of the {what} has been made yet."),
        Some(age) => format!("The newest backup of the {what} is {} old.", duration(age)),
    };
    let todo = match severity {
        Severity::Warning => {
            "Nothing yet: backups retry by themselves. If this lasts more than a few hours, \
             call your support provider."
        }
        Severity::Critical => "Call your support provider today: recent work is not protected.",
    };
    f.add(id, severity, "backup", what, todo);
}

fn system(s: &BoxStatus, f: &mut Found) {
    let sys = &s.system;
    if let Some(memory) = memory(sys).filter(|m| m.used_percent() > 90.0) {
        let free = 100.0 - memory.used_percent();
        f.add(
            id::MEMORY_LOW,
            Severity::Warning,
            "system",
            format!(
                "The box is short of memory: {} free ({} of {}).",
                percent(free),
                bytes(sys.memory_available_bytes),
                bytes(sys.memory_total_bytes)
            ),
            "Nothing yet: the watchdog restarts a server that grows too big. If this lasts more \
             than an hour, call your support provider.",
        );
    }
    let load = sys.load_average[1];
    if sys.cpus > 0 && load > 2.0 * f64::from(sys.cpus) {
        f.add(
            id::LOAD_HIGH,
            Severity::Warning,
            "system",
            format!(
                "The box is overloaded, so OSCAR may feel slow (load {load:.1} on {} \
                 processors over the last 5 minutes).",
                sys.cpus
            ),
            "If OSCAR stays slow for more than 30 minutes, call your support provider.",
        );
    }
}

fn tls(s: &BoxStatus, now: u64, f: &mut Found) {
    let Some(cert) = &s.tls else { return };
    let date = crate::health::rfc3339(cert.not_after);
    let date = date.get(..10).unwrap_or(&date);
    let (severity, what, todo) = if cert.not_after <= now {
        (
            Severity::Critical,
            format!(
                "The box's security certificate expired on {date}: browsers warn about the \
                 connection and connected services stop working."
            ),
            "Call your support provider now to renew the certificate.",
        )
    } else if cert.not_after - now < TLS_WARN_DAYS * DAY {
        let left = cert.not_after - now;
        let left = if left < DAY {
            "less than a day".to_owned()
        } else {
            duration(left - left % DAY)
        };
        (
            Severity::Warning,
            format!("The box's security certificate expires in {left}, on {date}."),
            "Call your support provider to renew it before then.",
        )
    } else {
        return;
    };
    f.add(id::TLS_EXPIRING, severity, "tls", what, todo);
}

/// Memory as a [`Space`], so it is shown and judged like the disks; `None` when unknown.
pub(crate) fn memory(sys: &SystemStatus) -> Option<Space> {
    (sys.memory_total_bytes > 0).then(|| Space {
        path: String::new(),
        total_bytes: sys.memory_total_bytes,
        available_bytes: sys.memory_available_bytes,
    })
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(" and ")
}

fn whole_seconds(secs: f64) -> u64 {
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a non-negative number of seconds, rounded"
    )]
    let whole = secs.max(0.0).round() as u64;
    whole
}

/// A share as staff read it: whole percent, rounded down so a threshold is never shown as
/// crossed before it is (90% full means at least 90%).
pub fn percent(p: f64) -> String {
    format!("{}%", p.clamp(0.0, 100.0).floor())
}

/// A size in GiB with one decimal, or MiB below one GiB.
pub fn bytes(n: u64) -> String {
    #[expect(clippy::cast_precision_loss, reason = "a size for reading")]
    let n = n as f64;
    let gib = n / f64::from(1u32 << 30);
    if gib >= 1.0 {
        format!("{gib:.1} GiB")
    } else {
        format!("{:.0} MiB", n / f64::from(1u32 << 20))
    }
}

/// A length of time in the one unit that reads naturally: "45 seconds", "12 minutes",
/// "5 hours", "3 days" (rounded down).
pub fn duration(secs: u64) -> String {
    let (n, unit) = match secs {
        s if s < 2 * MINUTE => (s, "second"),
        s if s < 2 * HOUR => (s / MINUTE, "minute"),
        s if s < 2 * DAY => (s / HOUR, "hour"),
        s => (s / DAY, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// A healthy box the other modules' tests start from and break one thing at a time.
#[cfg(test)]
pub(crate) mod fixture {
    use oscarbox_watchdog_api::{
        BackupStatus, BoxStatus, DatabaseStatus, DbNodeStatus, DrillSummary, ProxyStatus, Space,
        SystemStatus, TlsStatus, Verdict, WorkerStatus,
    };

    pub const NOW: u64 = 1_700_000_000;
    pub const GIB: u64 = 1 << 30;

    pub fn expect() -> super::Expect {
        super::Expect {
            instances: 2,
            require_backup_mount: true,
            backups_running: true,
            database_backups: true,
        }
    }

    pub fn worker(instance: u32, state: &str) -> WorkerStatus {
        WorkerStatus {
            instance,
            state: state.into(),
            why: format!("WHY-{instance} answers isAlive"),
            pid: Some(100 + i32::try_from(instance).expect("small")),
            uptime_seconds: Some(3 * 3600),
            restarts: instance,
            last_probe_ms: Some(1.5),
            rss_bytes: Some(700 << 20),
        }
    }

    pub fn space(path: &str, total_gib: u64, avail_gib: u64) -> Space {
        Space {
            path: path.into(),
            total_bytes: total_gib * GIB,
            available_bytes: avail_gib * GIB,
        }
    }

    pub fn fine() -> BoxStatus {
        BoxStatus {
            version: 1,
            box_name: "clinic-a".into(),
            software_version: "0.4.0".into(),
            checked_at: NOW,
            verdict: Verdict::Ok,
            reasons: Vec::new(),
            watchdog_running: true,
            instances: vec![worker(1, "healthy"), worker(2, "healthy")],
            proxy: ProxyStatus {
                reachable: true,
                backends_up: 2,
                backends: 2,
            },
            database: DatabaseStatus {
                endpoint_reachable: true,
                writable: Some(true),
                nodes: vec![
                    DbNodeStatus {
                        name: "db1".into(),
                        role: Some("primary".into()),
                        reachable: Some(true),
                        lag_seconds: None,
                        semi_sync: Some(true),
                    },
                    DbNodeStatus {
                        name: "db2".into(),
                        role: Some("replica".into()),
                        reachable: Some(true),
                        lag_seconds: Some(0.0),
                        semi_sync: Some(true),
                    },
                ],
                last_failover: None,
            },
            backups: BackupStatus {
                disk_present: true,
                disk_problem: None,
                disk: Some(space("/srv/backup", 1000, 800)),
                newest_database_age_seconds: Some(60),
                newest_documents_age_seconds: Some(1800),
                last_drill: Some(DrillSummary {
                    at: NOW - 86_400,
                    passed: true,
                }),
            },
            system: SystemStatus {
                disk: Some(space("/var/lib/oscarbox", 500, 400)),
                memory_total_bytes: 16 * GIB,
                memory_available_bytes: 8 * GIB,
                cpus: 4,
                cpu_usage_percent: 12.5,
                load_average: [0.5, 0.75, 1.0],
                uptime_seconds: 86_400,
            },
            tls: Some(TlsStatus {
                not_after: NOW + 60 * 86_400,
            }),
        }
    }

    /// `s` with its verdict and reasons filled in, as the gatherer hands it on.
    pub fn assessed(mut s: BoxStatus) -> BoxStatus {
        (s.verdict, s.reasons) = super::assess(&s, &expect(), NOW);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{expect, fine, space, worker, GIB, NOW};
    use super::*;
    use oscarbox_watchdog_api::DrillSummary;
    use proptest::prelude::*;

    fn run(s: &BoxStatus) -> (Verdict, Vec<Reason>) {
        assess(s, &expect(), NOW)
    }

    /// The reasons' keys and severities, for compact assertions.
    fn keys(s: &BoxStatus) -> Vec<(String, Severity)> {
        run(s).1.iter().map(|r| (r.key(), r.severity)).collect()
    }

    fn one(key: &str, severity: Severity) -> Vec<(String, Severity)> {
        vec![(key.to_owned(), severity)]
    }

    fn reason(s: &BoxStatus, key: &str) -> Reason {
        let (_, reasons) = run(s);
        reasons
            .into_iter()
            .find(|r| r.key() == key)
            .unwrap_or_else(|| panic!("no reason {key}"))
    }

    #[test]
    fn a_box_starting_up_is_degraded_until_a_start_fails() {
        let mut s = fine();
        s.instances = vec![worker(1, "starting"), worker(2, "starting")];
        let (verdict, reasons) = run(&s);
        assert_eq!(verdict, Verdict::Degraded, "{reasons:#?}");
        assert!(reasons
            .iter()
            .any(|r| r.id == id::EMR_NONE_HEALTHY && r.what.contains("starting up")));
        s.instances = vec![worker(1, "starting"), worker(2, "failed")];
        assert_eq!(run(&s).0, Verdict::Critical);
    }

    #[test]
    fn a_healthy_box_is_ok() {
        assert_eq!(run(&fine()), (Verdict::Ok, Vec::new()));
    }

    #[test]
    fn watchdog_down_is_critical_and_says_nothing_about_instances() {
        let mut s = fine();
        s.watchdog_running = false;
        s.instances.clear();
        assert_eq!(keys(&s), one("watchdog-down", Severity::Critical));
        assert_eq!(run(&s).0, Verdict::Critical);
    }

    #[test]
    fn one_instance_down_of_two_is_a_warning() {
        for state in ["starting", "suspect", "hung", "restarting", "failed", "odd"] {
            let mut s = fine();
            s.instances[1] = worker(2, state);
            assert_eq!(
                keys(&s),
                one("emr-instance-down/2", Severity::Warning),
                "{state}"
            );
            let r = reason(&s, "emr-instance-down/2");
            assert!(r.what.starts_with("OSCAR server 2 of 2 "), "{}", r.what);
            assert!(r.what.ends_with("The others keep OSCAR working."));
            assert_eq!(r.component, "emr");
            assert_eq!(run(&s).0, Verdict::Degraded);
        }
        let mut s = fine();
        s.instances[1] = worker(2, "failed");
        assert!(reason(&s, "emr-instance-down/2").todo.contains("support"));
        s.instances[1] = worker(2, "hung");
        assert_eq!(reason(&s, "emr-instance-down/2").todo, RESTARTS_BY_ITSELF);
    }

    #[test]
    fn no_healthy_instance_is_critical() {
        let mut s = fine();
        s.instances = vec![worker(1, "hung"), worker(2, "starting")];
        assert_eq!(
            keys(&s),
            vec![
                ("emr-instance-down/1".into(), Severity::Critical),
                ("emr-instance-down/2".into(), Severity::Critical),
                ("emr-none-healthy".into(), Severity::Critical),
            ]
        );
        // The proxy finding no backend is covered by the instances' own reasons.
        s.proxy.backends_up = 0;
        assert_eq!(keys(&s).len(), 3);
    }

    #[test]
    fn an_instance_the_watchdog_does_not_report_is_not_running() {
        let mut s = fine();
        s.instances.truncate(1);
        let r = reason(&s, "emr-instance-down/2");
        assert_eq!(
            r.what,
            "OSCAR server 2 of 2 is not running. The others keep OSCAR working."
        );
        // One beyond the configured count is still counted.
        s.instances = vec![
            worker(1, "healthy"),
            worker(2, "healthy"),
            worker(3, "hung"),
        ];
        assert_eq!(keys(&s), one("emr-instance-down/3", Severity::Warning));
    }

    #[test]
    fn proxy_down_and_without_backends() {
        let mut s = fine();
        s.proxy.reachable = false;
        assert_eq!(keys(&s), one("proxy-down", Severity::Critical));
        s.proxy.reachable = true;
        s.proxy.backends_up = 0;
        assert_eq!(keys(&s), one("proxy-no-backend", Severity::Critical));
        assert!(reason(&s, "proxy-no-backend")
            .what
            .contains("although 2 of them work"));
    }

    #[test]
    fn database_down_read_only_lagging_and_unconfirmed() {
        let mut s = fine();
        s.database.endpoint_reachable = false;
        s.database.writable = None;
        assert_eq!(keys(&s), one("database-down", Severity::Critical));

        let mut s = fine();
        s.database.writable = Some(false);
        assert_eq!(keys(&s), one("database-read-only", Severity::Critical));
        assert!(reason(&s, "database-read-only")
            .what
            .contains("nobody can save"));

        let mut s = fine();
        s.database.nodes[1].lag_seconds = Some(30.0);
        assert_eq!(run(&s).0, Verdict::Ok, "30 s is still fine");
        s.database.nodes[1].lag_seconds = Some(95.4);
        assert_eq!(keys(&s), one("database-replica-lag", Severity::Warning));
        let what = reason(&s, "database-replica-lag").what;
        assert!(
            what.starts_with("The database copy on db2 is 95 seconds behind"),
            "{what}"
        );

        let mut s = fine();
        s.database.nodes[1].semi_sync = Some(false);
        assert_eq!(
            run(&s).0,
            Verdict::Ok,
            "only the primary waits for confirmation"
        );
        s.database.nodes[0].semi_sync = Some(false);
        assert_eq!(keys(&s), one("database-semi-sync-off", Severity::Warning));
    }

    #[test]
    fn backup_disk_missing_says_why_unless_not_required() {
        let mut s = fine();
        s.backups.disk_present = false;
        s.backups.disk_problem = Some("/srv/backup is not a mount point.".into());
        assert_eq!(keys(&s), one("backup-disk-missing", Severity::Critical));
        assert_eq!(
            reason(&s, "backup-disk-missing").what,
            "The backup disk is not there (/srv/backup is not a mount point), so nothing is \
             backed up."
        );
        let relaxed = Expect {
            require_backup_mount: false,
            ..expect()
        };
        assert_eq!(assess(&s, &relaxed, NOW).0, Verdict::Ok);
    }

    #[test]
    fn disks_filling_up() {
        let mut s = fine();
        s.backups.disk = Some(space("/srv/backup", 1000, 101));
        assert_eq!(run(&s).0, Verdict::Ok, "89.9% used");
        s.backups.disk = Some(space("/srv/backup", 1000, 100));
        assert_eq!(keys(&s), one("backup-disk-full", Severity::Warning));
        assert_eq!(
            reason(&s, "backup-disk-full").what,
            "The backup disk is 90% full (100.0 GiB free of 1000.0 GiB)."
        );
        s.backups.disk = Some(space("/srv/backup", 1000, 30));
        assert_eq!(keys(&s), one("backup-disk-full", Severity::Critical));

        let mut s = fine();
        s.system.disk = Some(space("/", 100, 15));
        assert_eq!(keys(&s), one("system-disk-full", Severity::Warning));
        s.system.disk = Some(space("/", 100, 5));
        assert_eq!(keys(&s), one("system-disk-full", Severity::Critical));
        assert!(reason(&s, "system-disk-full")
            .what
            .starts_with("The box's main disk is 95% full"));
    }

    #[test]
    fn backup_ages_count_only_once_backups_run() {
        let mut s = fine();
        s.backups.newest_database_age_seconds = None;
        s.backups.newest_documents_age_seconds = None;
        s.backups.last_drill = None;
        let idle = Expect {
            backups_running: false,
            ..expect()
        };
        assert_eq!(assess(&s, &idle, NOW), (Verdict::Ok, Vec::new()));
        assert_eq!(
            keys(&s),
            vec![
                ("backup-database-old".into(), Severity::Critical),
                ("backup-documents-old".into(), Severity::Critical),
                ("backup-drill-overdue".into(), Severity::Warning),
            ]
        );
        assert_eq!(
            reason(&s, "backup-database-old").what,
            "No backup of the database has been made yet."
        );
    }

    #[test]
    fn one_node_expects_documents_backups_only() {
        let mut s = fine();
        s.backups.newest_database_age_seconds = None;
        s.backups.last_drill = None;
        let single = Expect {
            database_backups: false,
            ..expect()
        };
        assert_eq!(assess(&s, &single, NOW), (Verdict::Ok, Vec::new()));
        s.backups.newest_documents_age_seconds = None;
        let (_, reasons) = assess(&s, &single, NOW);
        let ids: Vec<&str> = reasons.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, vec!["backup-documents-old"]);
    }

    #[test]
    fn backup_age_thresholds() {
        let cases = [
            (Some(300), None, None),
            (Some(301), None, Some(Severity::Warning)),
            (Some(3600), None, Some(Severity::Warning)),
            (Some(3601), None, Some(Severity::Critical)),
            (None, Some(7200), None),
            (None, Some(7201), Some(Severity::Warning)),
            (None, Some(86_401), Some(Severity::Critical)),
        ];
        for (db, docs, want) in cases {
            let mut s = fine();
            if let Some(db) = db {
                s.backups.newest_database_age_seconds = Some(db);
            }
            if let Some(docs) = docs {
                s.backups.newest_documents_age_seconds = Some(docs);
            }
            let got: Vec<Severity> = run(&s).1.iter().map(|r| r.severity).collect();
            assert_eq!(got, want.into_iter().collect::<Vec<_>>(), "{db:?} {docs:?}");
        }
        let mut s = fine();
        s.backups.newest_documents_age_seconds = Some(3 * 3600 + 5);
        assert_eq!(
            reason(&s, "backup-documents-old").what,
            "The newest backup of the documents is 3 hours old."
        );
    }

    #[test]
    fn drills_failed_or_overdue() {
        let mut s = fine();
        s.backups.last_drill = Some(DrillSummary {
            at: NOW - 3600,
            passed: false,
        });
        assert_eq!(keys(&s), one("backup-drill-failed", Severity::Warning));
        s.backups.last_drill = Some(DrillSummary {
            at: NOW - 9 * 86_400,
            passed: true,
        });
        assert_eq!(keys(&s), one("backup-drill-overdue", Severity::Warning));
        assert_eq!(
            reason(&s, "backup-drill-overdue").what,
            "The backups have not been test-restored for 9 days."
        );
    }

    #[test]
    fn memory_and_load() {
        let mut s = fine();
        s.system.memory_available_bytes = GIB;
        assert_eq!(keys(&s), one("memory-low", Severity::Warning));
        assert_eq!(
            reason(&s, "memory-low").what,
            "The box is short of memory: 6% free (1.0 GiB of 16.0 GiB)."
        );
        let mut s = fine();
        s.system.load_average = [20.0, 8.5, 3.0];
        assert_eq!(keys(&s), one("load-high", Severity::Warning));
        assert!(reason(&s, "load-high")
            .what
            .contains("load 8.5 on 4 processors"));
        s.system.load_average[1] = 8.0;
        assert_eq!(run(&s).0, Verdict::Ok, "twice the processors is still fine");
    }

    #[test]
    fn certificate_expiring_and_expired() {
        let mut s = fine();
        let cert = |not_after| Some(oscarbox_watchdog_api::TlsStatus { not_after });
        s.tls = cert(NOW + 21 * DAY);
        assert_eq!(run(&s).0, Verdict::Ok);
        s.tls = cert(NOW + 20 * DAY + 5);
        assert_eq!(keys(&s), one("tls-expiring", Severity::Warning));
        assert_eq!(
            reason(&s, "tls-expiring").what,
            "The box's security certificate expires in 20 days, on 2023-12-04."
        );
        s.tls = cert(NOW + 3600);
        assert!(reason(&s, "tls-expiring").what.contains("less than a day"));
        s.tls = cert(NOW);
        assert_eq!(keys(&s), one("tls-expiring", Severity::Critical));
        assert!(reason(&s, "tls-expiring")
            .what
            .contains("expired on 2023-11-14"));
    }

    #[test]
    fn a_stale_status_is_a_warning() {
        let s = fine();
        assert_eq!(assess(&s, &expect(), NOW + 120).0, Verdict::Ok);
        let (verdict, reasons) = assess(&s, &expect(), NOW + 600);
        assert_eq!(verdict, Verdict::Degraded);
        assert_eq!(reasons[0].id, "status-stale");
        assert_eq!(
            reasons[0].what,
            "This status is 10 minutes old: the box stopped updating it."
        );
        // A status from the future (clocks disagree) is not stale.
        assert_eq!(assess(&s, &expect(), NOW - 600).0, Verdict::Ok);
    }

    #[test]
    fn worst_first_then_by_id_and_instance() {
        let mut s = fine();
        s.instances = vec![worker(2, "hung"), worker(1, "hung"), worker(3, "healthy")];
        s.proxy.reachable = false;
        s.system.memory_available_bytes = 0;
        let got: Vec<String> = run(&s).1.iter().map(Reason::key).collect();
        assert_eq!(
            got,
            [
                "proxy-down",
                "emr-instance-down/1",
                "emr-instance-down/2",
                "memory-low"
            ]
        );
    }

    #[test]
    fn words_for_people() {
        assert_eq!(duration(1), "1 second");
        assert_eq!(duration(119), "119 seconds");
        assert_eq!(duration(120), "2 minutes");
        assert_eq!(duration(2 * HOUR), "2 hours");
        assert_eq!(duration(3 * DAY + 5), "3 days");
        assert_eq!(bytes(512 << 20), "512 MiB");
        assert_eq!(bytes(3 * GIB / 2), "1.5 GiB");
        assert_eq!(percent(89.99), "89%");
        assert_eq!(percent(100.0), "100%");
    }

    fn arb_status() -> impl Strategy<Value = BoxStatus> {
        let states = prop::sample::select(vec![
            "starting",
            "healthy",
            "suspect",
            "hung",
            "restarting",
            "failed",
            "weird",
        ]);
        let worker = (1u32..5, states, "[a-z ]{0,12}").prop_map(|(n, state, why)| {
            let mut w = worker(n, state);
            w.why = format!("WHY<{why}>");
            w
        });
        let node = (
            any::<Option<bool>>(),
            prop::option::of(0.0f64..120.0),
            any::<bool>(),
        );
        let core = (
            any::<bool>(),
            prop::collection::vec(worker, 0..5),
            (any::<bool>(), 0u32..3),
            (any::<bool>(), any::<Option<bool>>()),
            prop::collection::vec(node, 0..3),
        );
        let rest = (
            (any::<bool>(), 0u64..=100, 0u64..=100),
            prop::option::of(0u64..200_000),
            prop::option::of((0u64..20 * DAY, any::<bool>())),
            (0u64..=16, 0u32..8, 0.0f64..40.0),
            prop::option::of(0u64..40 * DAY),
            0u64..1000,
        );
        (core, rest).prop_map(|(core, rest)| {
            let (watchdog, workers, (proxy_up, backends_up), (db_up, writable), nodes) = core;
            let (backup, age, drill, (mem_free, cpus, load), tls_left, stale) = rest;
            let mut s = fine();
            s.watchdog_running = watchdog;
            s.instances = if watchdog { workers } else { Vec::new() };
            s.proxy.reachable = proxy_up;
            s.proxy.backends_up = backends_up;
            s.database.endpoint_reachable = db_up;
            s.database.writable = writable;
            s.database.nodes = (nodes.into_iter().enumerate())
                .map(
                    |(i, (primary, lag, semi))| oscarbox_watchdog_api::DbNodeStatus {
                        name: format!("db{i}"),
                        role: primary.map(|p| if p { "primary" } else { "replica" }.into()),
                        reachable: Some(true),
                        lag_seconds: lag,
                        semi_sync: Some(semi),
                    },
                )
                .collect();
            s.backups.disk_present = backup.0;
            s.backups.disk = Some(space("/srv/backup", 100, backup.1));
            s.system.disk = Some(space("/", 100, backup.2));
            s.backups.newest_database_age_seconds = age;
            s.backups.newest_documents_age_seconds = age.map(|a| a * 10);
            s.backups.last_drill = drill.map(|(ago, passed)| DrillSummary {
                at: NOW - ago,
                passed,
            });
            s.system.memory_available_bytes = mem_free * GIB;
            s.system.cpus = cpus;
            s.system.load_average[1] = load;
            s.tls = tls_left.map(|left| oscarbox_watchdog_api::TlsStatus {
                not_after: NOW + left - 5 * DAY,
            });
            s.checked_at = NOW - stale;
            s
        })
    }

    proptest! {
        #[test]
        fn verdict_matches_the_reasons(s in arb_status(), running in any::<bool>()) {
            let expect = Expect { backups_running: running, ..expect() };
            let (verdict, reasons) = assess(&s, &expect, NOW);
            let worst = reasons.iter().map(|r| r.severity).max();
            prop_assert_eq!(verdict == Verdict::Ok, reasons.is_empty());
            prop_assert_eq!(verdict == Verdict::Critical, worst == Some(Severity::Critical));
            let mut keys: Vec<String> = reasons.iter().map(Reason::key).collect();
            keys.dedup();
            let n = keys.len();
            keys.sort();
            keys.dedup();
            prop_assert_eq!(keys.len(), n, "keys are unique");
            prop_assert!(reasons.windows(2).all(|w| w[0].severity >= w[1].severity));
            for r in &reasons {
                prop_assert!(!r.what.contains("WHY") && !r.todo.contains("WHY"), "{:?}", r);
                prop_assert!(!r.what.is_empty() && !r.todo.is_empty());
            }
        }
    }
}
