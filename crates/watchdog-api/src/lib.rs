//! What crosses the watchdog's control socket (a unix socket of mode 0600): one JSON request
//! line in, one JSON answer line out. These types are a compatibility promise between an
//! `oscarbox` CLI and a running watchdog of another version: add optional fields only, and bump
//! [`VERSION`] for anything else.

use serde::{Deserialize, Serialize};

mod box_status;
pub mod db;

pub use box_status::{
    BackupStatus, BoxStatus, DatabaseStatus, DbNodeStatus, DrillSummary, FailoverSummary,
    ProxyStatus, Reason, Severity, Space, SystemStatus, TlsStatus, Verdict,
};

/// The protocol version a watchdog speaks; a CLI refuses to guess at another.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    /// Every worker's state.
    Status,
    /// The whole box: instances, proxy, database, backups, system, and the verdict.
    BoxStatus,
    /// Restart the workers one at a time, each after its replacement is healthy.
    RestartWorkers,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "kebab-case")]
pub enum Answer {
    Status(Status),
    BoxStatus(Box<BoxStatus>),
    /// The rolling restart finished; `restarted` instances were replaced.
    Restarted {
        restarted: Vec<u32>,
    },
    Error {
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: u32,
    pub box_name: String,
    pub workers: Vec<WorkerStatus>,
}

/// One worker as `oscarbox status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub instance: u32,
    /// starting, healthy, suspect, hung, restarting or failed.
    pub state: String,
    /// Why it is in that state, in plain words.
    pub why: String,
    pub pid: Option<i32>,
    pub uptime_seconds: Option<u64>,
    pub restarts: u32,
    /// The last successful probe's round trip.
    pub last_probe_ms: Option<f64>,
    pub rss_bytes: Option<u64>,
}

pub use oscarbox_socket_rpc::{from_line, to_line};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_round_trip_as_one_line() {
        let line = to_line(&Request::Status);
        assert_eq!(line, "{\"request\":\"status\"}\n");
        assert_eq!(
            from_line::<Request>(&line).expect("decodes"),
            Request::Status
        );
        let answer = Answer::Status(Status {
            version: VERSION,
            box_name: "dev".into(),
            workers: vec![WorkerStatus {
                instance: 1,
                state: "healthy".into(),
                why: "answers isAlive".into(),
                pid: Some(42),
                uptime_seconds: Some(3),
                restarts: 0,
                last_probe_ms: Some(0.4),
                rss_bytes: Some(9 << 20),
            }],
        });
        let line = to_line(&answer);
        assert_eq!(line.matches('\n').count(), 1);
        assert_eq!(from_line::<Answer>(&line).expect("decodes"), answer);
    }
}
