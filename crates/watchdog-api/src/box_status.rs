//! The box's status as one document: what `oscarbox status --json` prints, what the admin
//! listener's health document, metrics and status page are made from, and what `oscarbox
//! fleet status` reads back from other boxes. The facts are gathered by `oscarbox-status`; the
//! verdict and its reasons are derived from them by its pure `assess`.
//!
//! Never a patient's data: names, counts, states, sizes and times of the box only.
//!
//! A compatibility promise like the rest of this crate: add optional fields only.

use serde::{Deserialize, Serialize};

/// The whole box at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxStatus {
    /// This document's shape ([`crate::VERSION`]).
    pub version: u32,
    pub box_name: String,
    /// The `oscarbox` release that gathered it.
    pub software_version: String,
    /// When it was gathered, seconds since the Unix epoch.
    pub checked_at: u64,
    pub verdict: Verdict,
    /// Why the verdict is not `ok`, worst first; empty when it is.
    #[serde(default)]
    pub reasons: Vec<Reason>,
    /// Whether the watchdog answered; when it did not, `instances` is empty.
    pub watchdog_running: bool,
    #[serde(default)]
    pub instances: Vec<crate::WorkerStatus>,
    pub proxy: ProxyStatus,
    pub database: DatabaseStatus,
    pub backups: BackupStatus,
    pub system: SystemStatus,
    /// The certificate browsers and clients are shown; `None` when it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Everything works and is protected.
    Ok,
    /// Clinics can work, but something needs attention soon (one instance down, a disk
    /// filling, a certificate expiring).
    Degraded,
    /// Clinics cannot work, or patient data is not protected (no database, no instance, no
    /// backup disk).
    Critical,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Degraded => "degraded",
            Verdict::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One thing that is wrong, in plain words, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable and machine-readable (`emr-instance-down`, `backup-disk-missing`, ...): alerts
    /// are de-duplicated and metrics labelled by it, together with `instance` when set.
    pub id: String,
    pub severity: Severity,
    /// Which part of the box: `emr`, `proxy`, `database`, `backup`, `system`, `tls`, `watchdog`.
    pub component: String,
    /// The EMR instance concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u32>,
    /// What is wrong, for clinic staff.
    pub what: String,
    /// What to do about it, for whoever reads it.
    pub todo: String,
}

impl Reason {
    /// The key alerts are de-duplicated by: the id, and the instance when there is one.
    pub fn key(&self) -> String {
        match self.instance {
            Some(n) => format!("{}/{n}", self.id),
            None => self.id.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyStatus {
    /// Whether its admin socket answered.
    pub reachable: bool,
    /// Instances the proxy would send requests to now.
    pub backends_up: u32,
    pub backends: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseStatus {
    /// Whether the endpoint the EMR uses answered `SELECT 1` in time.
    pub endpoint_reachable: bool,
    /// Whether the node behind the endpoint takes writes; `None` when it could not be asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writable: Option<bool>,
    /// One entry per configured node; facts not yet observed are `None`.
    #[serde(default)]
    pub nodes: Vec<DbNodeStatus>,
    /// The last failover, once the box runs a database pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverSummary>,
}

impl DatabaseStatus {
    /// In one word: `down`, `read-only` or `ok`.
    pub fn summary(&self) -> &'static str {
        match (self.endpoint_reachable, self.writable) {
            (false, _) => "down",
            (true, Some(false)) => "read-only",
            (true, _) => "ok",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbNodeStatus {
    pub name: String,
    /// `primary`, `replica`, or `None` when not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semi_sync: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverSummary {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// From the old primary's last service to the endpoint on the new one; `None`: not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_to_recover: Option<f64>,
    /// Known once the old primary is back: 0, or how many of its transactions the new primary
    /// lacked (saved for review).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactions_lost: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupStatus {
    /// Whether the backup disk is there: a mount point when the config requires one.
    pub disk_present: bool,
    /// Why it is not, in plain words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_problem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Space>,
    /// Seconds since the newest database backup (binlog archive or base backup), once backups
    /// exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_database_age_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_documents_age_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<DrillSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillSummary {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub passed: bool,
}

/// A file system's size and what is left of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Space {
    pub path: String,
    /// What the box's services can fill: used plus available, without root's reserve (so the
    /// share in use is what `df` shows).
    pub total_bytes: u64,
    /// What an unprivileged writer can still use.
    pub available_bytes: u64,
}

impl Space {
    /// The share in use, 0 to 100.
    pub fn used_percent(&self) -> f64 {
        if self.total_bytes == 0 {
            return 0.0;
        }
        let used = self.total_bytes.saturating_sub(self.available_bytes);
        #[expect(clippy::cast_precision_loss, reason = "a percentage")]
        let p = used as f64 * 100.0 / self.total_bytes as f64;
        p
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemStatus {
    /// The file system holding the state directory (and on the box, the primary database and
    /// the documents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Space>,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    pub cpus: u32,
    /// Percent of all cores, 0 to 100.
    pub cpu_usage_percent: f64,
    /// 1, 5 and 15 minutes.
    pub load_average: [f64; 3],
    pub uptime_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TlsStatus {
    /// The certificate's end, seconds since the Unix epoch.
    pub not_after: u64,
}

impl TlsStatus {
    /// Whole days left at `now` (seconds since the Unix epoch), rounded down: negative once it
    /// has ended (-1 on its first day past the end).
    pub fn days_left(&self, now: u64) -> i64 {
        let left = i128::from(self.not_after) - i128::from(now);
        i64::try_from(left.div_euclid(86_400)).unwrap_or(i64::MAX)
    }
}
