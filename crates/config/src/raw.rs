//! The raw stage: the TOML as written, every key optional, unknown keys refused.
//!
//! Numbers that become ports or counts are read as `i64` so that validation, not serde, says
//! what range is allowed. Durations are strings such as `"500ms"` or `"10m"`.

use serde::{Deserialize, Serialize};

/// The whole file. `version` is the schema version; only 1 exists.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawConfig {
    pub version: Option<i64>,
    #[serde(rename = "box")]
    pub box_: RawBox,
    pub emr: RawEmr,
    pub watchdog: RawWatchdog,
    pub database: RawDatabase,
    pub proxy: RawProxy,
    pub backup: RawBackup,
    pub status: RawStatus,
    pub alerts: RawAlerts,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawBox {
    /// A name for this box in alerts and fleet views (never a patient's or clinic's data).
    pub name: String,
    /// `appliance` on the real box, `dev` on a developer's machine or in tests.
    pub profile: String,
    /// Watchdog state, secrets and sockets.
    pub state_dir: String,
    /// Default `tracing` filter, e.g. `info` or `oscar_emr=debug,info`.
    pub log_level: String,
}

impl Default for RawBox {
    fn default() -> Self {
        RawBox {
            name: "oscarbox".into(),
            profile: "appliance".into(),
            state_dir: "/var/lib/oscarbox".into(),
            log_level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawEmr {
    /// The worker's program; `oscar-emr` is looked up beside `oscarbox`, then on `PATH`.
    pub command: String,
    /// Its arguments; `{config}`, `{instance}` and `{port}` are replaced per instance.
    pub args: Vec<String>,
    /// Extra environment variables for the worker.
    pub env: std::collections::BTreeMap<String, String>,
    /// `oscar-emr`, `jvm` (stock OSCAR on Tomcat: thread dumps, GC-aware patience) or `process`.
    pub kind: String,
    /// Where the worker answers SOAP `isAlive`: `/ws/SystemInfoService` for ours,
    /// `/oscar/ws/SystemInfoService` for stock OSCAR.
    pub probe_path: String,
    pub instances: i64,
    pub listen_address: String,
    /// Instance N (from 1) listens on `base-port + N - 1`.
    pub base_port: i64,
    /// Patient documents (OSCAR's `DOCUMENT_DIR`).
    pub documents_dir: String,
    pub max_request_body_bytes: i64,
    /// The largest patient document an upload may carry, in MiB (streamed, never held whole).
    pub max_document_mib: i64,
    /// A browser session unused this long is signed out.
    pub session_idle_timeout: String,
    /// A browser session ends this long after sign-in, used or not.
    pub session_max_age: String,
    pub shutdown_grace: String,
    /// Failed logins before an account is locked.
    pub login_max_failures: i64,
    pub login_lockout: String,
    pub db_pool_max: i64,
    pub db_connect_timeout: String,
    pub fault_injection: RawFaultInjection,
}

impl Default for RawEmr {
    fn default() -> Self {
        RawEmr {
            command: "oscar-emr".into(),
            args: ["--config", "{config}", "--instance", "{instance}"]
                .map(String::from)
                .to_vec(),
            env: std::collections::BTreeMap::new(),
            kind: "oscar-emr".into(),
            probe_path: "/ws/SystemInfoService".into(),
            instances: 2,
            listen_address: "127.0.0.1".into(),
            base_port: 8081,
            documents_dir: "/var/lib/oscarbox/documents".into(),
            max_request_body_bytes: 1024 * 1024,
            max_document_mib: 200,
            session_idle_timeout: "30m".into(),
            session_max_age: "12h".into(),
            shutdown_grace: "10s".into(),
            login_max_failures: 5,
            login_lockout: "10m".into(),
            db_pool_max: 16,
            db_connect_timeout: "5s".into(),
            fault_injection: RawFaultInjection::default(),
        }
    }
}

/// How the watchdog supervises the workers.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawWatchdog {
    pub probe_interval: String,
    pub probe_timeout: String,
    /// Consecutive failed probes that make a started worker hung.
    pub failure_threshold: i64,
    /// Time a new process gets to answer its first probe (stock OSCAR on Tomcat: minutes).
    pub startup_budget: String,
    /// The most extra time a JVM worker gets while it is collecting garbage.
    pub gc_max_extension: String,
    /// How long to wait for a thread or task dump before stopping a hung worker.
    pub dump_wait: String,
    /// Between SIGTERM and SIGKILL when stopping a worker.
    pub stop_grace: String,
    pub backoff_initial: String,
    pub backoff_max: String,
    /// This many restarts within `crash-loop-window` is a crash loop.
    pub crash_loop_restarts: i64,
    pub crash_loop_window: String,
    /// How often a crash-looping worker is still tried.
    pub failed_retry_interval: String,
    /// Restart a worker whose resident memory exceeds this many MiB (0: no ceiling).
    pub memory_ceiling_mib: i64,
}

impl Default for RawWatchdog {
    fn default() -> Self {
        RawWatchdog {
            probe_interval: "500ms".into(),
            probe_timeout: "1s".into(),
            failure_threshold: 2,
            startup_budget: "60s".into(),
            gc_max_extension: "30s".into(),
            dump_wait: "5s".into(),
            stop_grace: "15s".into(),
            backoff_initial: "1s".into(),
            backoff_max: "60s".into(),
            crash_loop_restarts: 5,
            crash_loop_window: "10m".into(),
            failed_retry_interval: "1m".into(),
            memory_ceiling_mib: 0,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawFaultInjection {
    /// Lets tests make an instance hang, answer slowly or exit. Refused unless `box.profile = "dev"`.
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawDatabase {
    /// OSCAR's database name (`oscar_mcmaster` on stock installs, `oscar` on OpenOSP).
    pub name: String,
    /// The least-privilege account the EMR uses.
    pub app_user: String,
    /// Where the app password lives (mode 0600); generated once on first start.
    pub app_password_file: Option<String>,
    /// The one address clients connect to.
    pub endpoint: String,
    pub nodes: Vec<RawDbNode>,
}

impl Default for RawDatabase {
    fn default() -> Self {
        RawDatabase {
            name: "oscar".into(),
            app_user: "oscar_app".into(),
            app_password_file: None,
            endpoint: "127.0.0.1:3306".into(),
            nodes: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawDbNode {
    pub name: String,
    pub port: i64,
    pub data_dir: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawProxy {
    pub https_ports: Vec<i64>,
    /// Plain HTTP, only to redirect to HTTPS.
    pub http_port: Option<i64>,
    pub listen_address: String,
    /// A certificate to use instead of the self-signed one generated on first start.
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    /// Send `Strict-Transport-Security` (browsers then refuse plain HTTP and certificate
    /// warnings for this host).
    pub hsts: bool,
    /// The admin API's unix socket; default `<state-dir>/run/proxy.sock`.
    pub admin_socket: Option<String>,
    /// How often each instance gets a SOAP `isAlive` probe, and how long one may take.
    pub health_interval: String,
    pub health_timeout: String,
    /// Consecutive passed probes that bring an ejected instance back.
    pub health_rise: i64,
    /// Consecutive failed probes that eject an instance.
    pub health_fall: i64,
    /// Consecutive failed requests (no connection, no answer in time, 502/503/504) that eject
    /// an instance before its probes do.
    pub passive_fall: i64,
    /// An instance back from ejection takes a growing share of requests over this time.
    pub slow_start: String,
    pub connect_timeout: String,
    /// How long an idempotent request waits for an instance's first byte before it is tried
    /// on another instance.
    pub first_byte_timeout: String,
    /// How long any other request waits for the answer's first byte (then 504).
    pub request_timeout: String,
    /// The same, for routes that carry documents (uploads are slow on clinic uplinks).
    pub document_timeout: String,
    /// Retries allowed, as a percentage of requests (plus a few per second), so that a sick
    /// box is not hit by a retry storm.
    pub retry_budget_percent: i64,
    /// Request bodies above this many MiB get 413.
    pub max_request_body_mib: i64,
    /// Request heads (request line and headers) above this many KiB get 431.
    pub max_header_kib: i64,
    /// A client must send a whole request head within this time (slow clients are cut off).
    pub header_read_timeout: String,
    /// Route a browser back to the instance that served it (a cookie), for stock OSCAR whose
    /// sessions live in one Tomcat's memory.
    pub sticky_sessions: bool,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: String,
}

impl Default for RawProxy {
    fn default() -> Self {
        RawProxy {
            https_ports: vec![443, 8443],
            http_port: Some(80),
            listen_address: "0.0.0.0".into(),
            tls_cert_file: None,
            tls_key_file: None,
            hsts: true,
            admin_socket: None,
            health_interval: "500ms".into(),
            health_timeout: "1s".into(),
            health_rise: 2,
            health_fall: 2,
            passive_fall: 2,
            slow_start: "10s".into(),
            connect_timeout: "1s".into(),
            first_byte_timeout: "800ms".into(),
            request_timeout: "120s".into(),
            document_timeout: "30m".into(),
            retry_budget_percent: 20,
            max_request_body_mib: 256,
            max_header_kib: 32,
            header_read_timeout: "10s".into(),
            sticky_sessions: false,
            shutdown_grace: "30s".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawBackup {
    /// Where the backup disk is mounted.
    pub disk: String,
    /// Refuse to write unless `disk` is a mount point (only a dev box may turn this off).
    pub require_mount: bool,
    /// The repository's password (generated once); default `<state-dir>/secrets/backup-repository.password`.
    pub password_file: Option<String>,
    /// Above this share of the disk in use, new snapshots wait and an alert is raised.
    pub high_water_percent: i64,
    /// How long the documents must stay unchanged before a snapshot is taken.
    pub documents_debounce: String,
    /// How often the whole documents directory is scanned, whatever the watcher saw.
    pub documents_rescan: String,
    /// Restore points kept: the newest of each hour, day, week and month, this many of each.
    pub keep_hourly: i64,
    pub keep_daily: i64,
    pub keep_weekly: i64,
    pub keep_monthly: i64,
}

impl Default for RawBackup {
    fn default() -> Self {
        RawBackup {
            disk: "/srv/backup".into(),
            require_mount: true,
            password_file: None,
            high_water_percent: 90,
            documents_debounce: "10s".into(),
            documents_rescan: "24h".into(),
            keep_hourly: 48,
            keep_daily: 14,
            keep_weekly: 8,
            keep_monthly: 12,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawStatus {
    /// The admin listener (HTTPS, the box's certificate): `/health`, `/metrics` and the status
    /// page. Loopback clients need no token; any other client must present it.
    pub listen_address: String,
    pub port: i64,
    /// The bearer token for clients that are not on loopback; generated once (mode 0600).
    /// Default `<state-dir>/secrets/status-token`.
    pub token_file: Option<String>,
    /// How often the box's status is gathered.
    pub interval: String,
}

impl Default for RawStatus {
    fn default() -> Self {
        RawStatus {
            listen_address: "127.0.0.1".into(),
            port: 9443,
            token_file: None,
            interval: "5s".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawAlerts {
    /// An HTTPS webhook that receives alerts (JSON, POST); none by default.
    pub webhook_url: Option<String>,
    /// A problem must last this long before it is sent (a restart that heals itself in
    /// seconds wakes nobody).
    pub pending: String,
    /// A problem that lasts is sent again this often.
    pub repeat_interval: String,
    /// A push-monitor URL (Healthchecks.io, Uptime Kuma) pinged while the box runs, so that a
    /// box that goes silent is noticed; none by default.
    pub heartbeat_url: Option<String>,
    pub heartbeat_interval: String,
    /// `healthchecks` (POST; `/fail` when critical) or `uptime-kuma` (GET with `status=`).
    pub heartbeat_style: String,
}

impl Default for RawAlerts {
    fn default() -> Self {
        RawAlerts {
            webhook_url: None,
            pending: "30s".into(),
            repeat_interval: "4h".into(),
            heartbeat_url: None,
            heartbeat_interval: "60s".into(),
            heartbeat_style: "healthchecks".into(),
        }
    }
}
