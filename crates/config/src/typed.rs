//! The validated stage: typed values that the rest of the box can trust.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{ConfigError, ConfigErrors};
use crate::raw::{
    RawAlerts, RawBackup, RawBox, RawConfig, RawDatabase, RawDbNode, RawEmr, RawFaultInjection,
    RawProxy, RawStatus, RawWatchdog,
};

/// Whether this is the real appliance or a developer's or test machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Appliance,
    Dev,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub box_: BoxConfig,
    pub emr: EmrConfig,
    pub watchdog: WatchdogConfig,
    pub database: DatabaseConfig,
    pub proxy: ProxyConfig,
    pub backup: BackupConfig,
    pub status: StatusConfig,
    pub alerts: AlertsConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BoxConfig {
    pub name: String,
    pub profile: Profile,
    pub state_dir: PathBuf,
    pub log_level: String,
}

impl BoxConfig {
    /// Where the first administrator's generated password and PIN are written (mode 0600).
    pub fn initial_admin_credentials(&self) -> PathBuf {
        self.state_dir
            .join("secrets")
            .join("initial-admin-password")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmrConfig {
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub kind: WorkerKind,
    pub probe_path: String,
    pub instances: NonZeroU32,
    pub listen_address: IpAddr,
    pub base_port: u16,
    pub documents_dir: PathBuf,
    pub max_request_body_bytes: usize,
    pub max_document_bytes: u64,
    pub session_idle_timeout: Duration,
    pub session_max_age: Duration,
    pub shutdown_grace: Duration,
    pub login_max_failures: NonZeroU32,
    pub login_lockout: Duration,
    pub db_pool_max: NonZeroU32,
    pub db_connect_timeout: Duration,
    pub fault_injection: FaultInjection,
}

impl EmrConfig {
    /// The worker's arguments for instance `n`, placeholders replaced.
    pub fn worker_args(&self, config_path: &std::path::Path, n: u32) -> Vec<String> {
        let port = self.instance_addr(n).map_or(0, |a| a.port());
        self.args
            .iter()
            .map(|a| {
                a.replace("{config}", &config_path.display().to_string())
                    .replace("{instance}", &n.to_string())
                    .replace("{port}", &port.to_string())
            })
            .collect()
    }

    /// `http://ADDR` plus the probe path's context (`/oscar` for stock OSCAR) for instance `n`:
    /// what [`oscar_soap`]'s probe is sent to.
    pub fn probe_base(&self, n: u32) -> Option<String> {
        let addr = self.instance_addr(n)?;
        let prefix = self
            .probe_path
            .strip_suffix("/ws/SystemInfoService")
            .unwrap_or("");
        Some(format!("http://{addr}{prefix}"))
    }

    /// The address instance `n` (1-based) listens on, if `n` is configured.
    pub fn instance_addr(&self, n: u32) -> Option<SocketAddr> {
        if n == 0 || n > self.instances.get() {
            return None;
        }
        let port = u16::try_from(u32::from(self.base_port) + n - 1).ok()?;
        Some(SocketAddr::new(self.listen_address, port))
    }
}

/// What sort of program a worker is, which decides how it is diagnosed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerKind {
    /// Ours: SIGQUIT logs a task dump ending in `task dump: end`.
    OscarEmr,
    /// A JVM (stock OSCAR on Tomcat): SIGQUIT writes a thread dump; GC pauses are read from
    /// its hsperfdata counters.
    Jvm,
    /// Anything else: no diagnostic.
    Process,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WatchdogConfig {
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    pub failure_threshold: NonZeroU32,
    pub startup_budget: Duration,
    pub gc_max_extension: Duration,
    pub dump_wait: Duration,
    pub stop_grace: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub crash_loop_restarts: NonZeroU32,
    pub crash_loop_window: Duration,
    pub failed_retry_interval: Duration,
    /// Bytes; `None` when there is no ceiling.
    pub memory_ceiling: Option<u64>,
    /// The control socket `oscarbox status` talks to (mode 0600).
    pub control_socket: PathBuf,
}

/// Test-only behaviour switches; see `oscar-emr`'s fault module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultInjection {
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConfig {
    pub name: String,
    pub app_user: String,
    pub app_password_file: PathBuf,
    pub endpoint: SocketAddr,
    pub nodes: Vec<DbNode>,
    /// The database pair's control socket (`oscarbox db status|switchover`), mode 0600.
    pub control_socket: PathBuf,
}

impl DatabaseConfig {
    /// Whether the database runs as the pair: two nodes behind an endpoint of their own (the
    /// layout whose binlog the box archives). Otherwise the first node serves alone.
    pub fn is_pair(&self) -> bool {
        self.nodes.len() == 2 && self.nodes.iter().all(|n| n.port != self.endpoint.port())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DbNode {
    pub name: String,
    pub port: u16,
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    pub https_ports: Vec<u16>,
    pub http_port: Option<u16>,
    pub listen_address: IpAddr,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub hsts: bool,
    pub admin_socket: PathBuf,
    pub health_interval: Duration,
    pub health_timeout: Duration,
    pub health_rise: NonZeroU32,
    pub health_fall: NonZeroU32,
    pub passive_fall: NonZeroU32,
    pub slow_start: Duration,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub request_timeout: Duration,
    pub document_timeout: Duration,
    pub retry_budget_percent: u32,
    pub max_request_body_bytes: u64,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub sticky_sessions: bool,
    pub shutdown_grace: Duration,
}

impl ProxyConfig {
    /// Where the proxy keeps the certificate it generates (`ca.crt` is what browsers trust).
    pub fn tls_dir(state_dir: &std::path::Path) -> PathBuf {
        state_dir.join("tls")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackupConfig {
    pub disk: PathBuf,
    pub require_mount: bool,
    pub password_file: PathBuf,
    pub high_water_percent: u8,
    pub documents_debounce: Duration,
    pub documents_rescan: Duration,
    pub keep: Keep,
}

/// Restore points kept: the newest snapshot of each of the last `hourly` hours, `daily` days,
/// `weekly` weeks and `monthly` months.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

impl BackupConfig {
    /// The restic-format repository on the backup disk.
    pub fn repository(&self) -> PathBuf {
        self.disk.join("repository")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatusConfig {
    pub listen: SocketAddr,
    pub token_file: PathBuf,
    pub interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    pub webhook_url: Option<String>,
    pub pending: Duration,
    pub repeat_interval: Duration,
    pub heartbeat: Option<HeartbeatConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatConfig {
    pub url: String,
    pub interval: Duration,
    pub style: HeartbeatStyle,
}

/// Which push monitor a heartbeat URL belongs to, which decides how "down" is said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatStyle {
    Healthchecks,
    UptimeKuma,
}

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

/// Collects errors with their key paths; lines are looked up once at the end.
struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn err(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line: key_line(self.text, key),
            key: Some(key.to_owned()),
            message: message.into(),
        });
    }

    fn port(&mut self, key: &str, v: i64) -> u16 {
        match u16::try_from(v) {
            Ok(p) if p > 0 => p,
            _ => {
                self.err(
                    key,
                    format!("expected a port number from 1 to 65535, found {v}"),
                );
                1
            }
        }
    }

    fn nonzero(&mut self, key: &str, v: i64, max: u32) -> NonZeroU32 {
        match u32::try_from(v).ok().and_then(NonZeroU32::new) {
            Some(n) if n.get() <= max => n,
            _ => {
                self.err(
                    key,
                    format!("expected a whole number from 1 to {max}, found {v}"),
                );
                NonZeroU32::MIN
            }
        }
    }

    fn duration(&mut self, key: &str, v: &str) -> Duration {
        match humantime::parse_duration(v) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.err(key, format!("expected a duration above zero, found {v:?}"));
                Duration::from_secs(1)
            }
            Err(e) => {
                self.err(
                    key,
                    format!("expected a duration such as \"500ms\", \"10s\" or \"5m\", found {v:?} ({e})"),
                );
                Duration::from_secs(1)
            }
        }
    }

    /// A duration from `min` to `max`: for loops where a tiny value would hammer something and
    /// a huge one would overflow a timer or mean "never".
    fn duration_within(&mut self, key: &str, v: &str, min: Duration, max: Duration) -> Duration {
        let d = self.duration(key, v);
        if d < min || d > max {
            self.err(
                key,
                format!(
                    "expected from {} to {}, found {v:?}",
                    humantime::format_duration(min),
                    humantime::format_duration(max)
                ),
            );
            return min;
        }
        d
    }

    fn ip(&mut self, key: &str, v: &str) -> IpAddr {
        v.parse().unwrap_or_else(|_| {
            self.err(
                key,
                format!("expected an IP address such as \"127.0.0.1\", found {v:?}"),
            );
            IpAddr::from([127, 0, 0, 1])
        })
    }

    fn path(&mut self, key: &str, v: &str) -> PathBuf {
        if v.trim().is_empty() {
            self.err(key, "expected a path, found an empty string");
        } else if v.contains('\0') {
            self.err(key, "a path cannot contain a NUL character");
        }
        PathBuf::from(v)
    }

    /// An alert or heartbeat URL: https, so that what it carries travels encrypted (a dev box
    /// may use a local http receiver).
    fn alert_url(&mut self, key: &str, url: Option<&str>, profile: Profile) {
        let Some(url) = url else { return };
        let plain_allowed = profile == Profile::Dev && url.starts_with("http://");
        if !url.starts_with("https://") && !plain_allowed {
            self.err(
                key,
                format!("expected an https:// URL so that alerts travel encrypted, found {url:?}"),
            );
        } else if url.len() < 12 || url.contains(char::is_whitespace) {
            self.err(
                key,
                format!(
                    "expected a URL such as \"https://hc.example.org/ping/UUID\", found {url:?}"
                ),
            );
        }
    }

    fn existing_file(&mut self, key: &str, v: &str) -> PathBuf {
        let p = self.path(key, v);
        match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => {}
            Ok(_) => self.err(key, format!("{v} is not a regular file")),
            Err(e) => self.err(key, format!("cannot read {v}: {e}")),
        }
        p
    }

    fn name(&mut self, key: &str, v: &str, what: &str) {
        let ok = !v.is_empty()
            && v.len() <= 32
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            self.err(
                key,
                format!("expected {what} of 1 to 32 letters, digits, '-' or '_', found {v:?}"),
            );
        }
    }
}

impl RawConfig {
    /// Validates into typed values, naming `file` and looking lines up in `text`.
    pub fn validate_in(self, file: &str, text: &str) -> Result<Config, ConfigErrors> {
        let mut c = Checker {
            file,
            text,
            errors: Vec::new(),
        };
        // Destructure so that a new raw field cannot be forgotten here.
        let RawConfig {
            version,
            box_,
            emr,
            watchdog,
            database,
            proxy,
            backup,
            status,
            alerts,
        } = self;

        match version {
            Some(1) => {}
            Some(v) => c.err(
                "version",
                format!("this oscarbox understands configuration version 1, found {v}"),
            ),
            None => c.err(
                "version",
                "missing; add `version = 1` at the top of the file",
            ),
        }

        let RawBox {
            name,
            profile,
            state_dir,
            log_level,
        } = box_;
        c.name("box.name", &name, "a box name");
        let profile = match profile.as_str() {
            "appliance" => Profile::Appliance,
            "dev" => Profile::Dev,
            other => {
                c.err(
                    "box.profile",
                    format!("expected \"appliance\" or \"dev\", found {other:?}"),
                );
                Profile::Appliance
            }
        };
        let box_ = BoxConfig {
            name,
            profile,
            state_dir: c.path("box.state-dir", &state_dir),
            log_level,
        };

        let RawEmr {
            command,
            args,
            env,
            kind,
            probe_path,
            instances,
            listen_address,
            base_port,
            documents_dir,
            max_request_body_bytes,
            max_document_mib,
            session_idle_timeout,
            session_max_age,
            shutdown_grace,
            login_max_failures,
            login_lockout,
            db_pool_max,
            db_connect_timeout,
            fault_injection: RawFaultInjection { enabled: faults },
        } = emr;
        if command.trim().is_empty() {
            c.err(
                "emr.command",
                "expected a program name or path, found an empty string",
            );
        }
        let instances = c.nonzero("emr.instances", instances, 32);
        let base_port = c.port("emr.base-port", base_port);
        if u32::from(base_port) + instances.get() - 1 > u32::from(u16::MAX) {
            c.err(
                "emr.base-port",
                format!(
                    "{} instances starting at port {base_port} run past port 65535; lower emr.base-port",
                    instances.get()
                ),
            );
        }
        let max_body = c.nonzero(
            "emr.max-request-body-bytes",
            max_request_body_bytes,
            1 << 30,
        );
        if faults && profile != Profile::Dev {
            c.err(
                "emr.fault-injection.enabled",
                "fault injection is for development and tests only; remove it, or set box.profile = \"dev\" on a machine that holds no patient data",
            );
        }
        let kind = match kind.as_str() {
            "oscar-emr" => WorkerKind::OscarEmr,
            "jvm" => WorkerKind::Jvm,
            "process" => WorkerKind::Process,
            other => {
                c.err(
                    "emr.kind",
                    format!("expected \"oscar-emr\", \"jvm\" or \"process\", found {other:?}"),
                );
                WorkerKind::Process
            }
        };
        // The probe is always SOAP isAlive; only the context path before it varies.
        if !probe_path.starts_with('/') || !probe_path.ends_with("/ws/SystemInfoService") {
            c.err(
                "emr.probe-path",
                format!("expected the SystemInfoService path under the worker's context, such as \"/ws/SystemInfoService\" or \"/oscar/ws/SystemInfoService\", found {probe_path:?}"),
            );
        }
        for (i, a) in args.iter().enumerate() {
            let mut rest = a.as_str();
            while let Some(open) = rest.find('{') {
                let after = &rest[open + 1..];
                let Some(close) = after.find('}') else { break };
                let name = &after[..close];
                if !matches!(name, "config" | "instance" | "port") {
                    c.err(
                        &format!("emr.args[{i}]"),
                        format!("unknown placeholder {{{name}}}: expected {{config}}, {{instance}} or {{port}}"),
                    );
                }
                rest = &after[close + 1..];
            }
        }
        let lockout = c.duration("emr.login-lockout", &login_lockout);
        if lockout > Duration::from_secs(24 * 3600) {
            c.err(
                "emr.login-lockout",
                format!("expected at most 24h (a longer lock is a denial of service on the account), found {login_lockout:?}"),
            );
        }
        let emr = EmrConfig {
            command,
            args,
            env: env.into_iter().collect(),
            kind,
            probe_path,
            instances,
            listen_address: c.ip("emr.listen-address", &listen_address),
            base_port,
            documents_dir: c.path("emr.documents-dir", &documents_dir),
            max_request_body_bytes: max_body.get() as usize,
            max_document_bytes: u64::from(
                c.nonzero("emr.max-document-mib", max_document_mib, 4096)
                    .get(),
            ) * 1024
                * 1024,
            session_idle_timeout: c.duration_within(
                "emr.session-idle-timeout",
                &session_idle_timeout,
                Duration::from_secs(60),
                Duration::from_secs(24 * 3600),
            ),
            session_max_age: c.duration_within(
                "emr.session-max-age",
                &session_max_age,
                Duration::from_secs(60),
                Duration::from_secs(7 * 24 * 3600),
            ),
            shutdown_grace: c.duration("emr.shutdown-grace", &shutdown_grace),
            login_max_failures: c.nonzero("emr.login-max-failures", login_max_failures, 1000),
            login_lockout: lockout,
            db_pool_max: c.nonzero("emr.db-pool-max", db_pool_max, 1000),
            db_connect_timeout: c.duration("emr.db-connect-timeout", &db_connect_timeout),
            fault_injection: FaultInjection { enabled: faults },
        };

        let RawWatchdog {
            probe_interval,
            probe_timeout,
            failure_threshold,
            startup_budget,
            gc_max_extension,
            dump_wait,
            stop_grace,
            backoff_initial,
            backoff_max,
            crash_loop_restarts,
            crash_loop_window,
            failed_retry_interval,
            memory_ceiling_mib,
        } = watchdog;
        let memory_ceiling = match u64::try_from(memory_ceiling_mib) {
            Ok(0) => None,
            Ok(mib) if mib <= 1 << 30 => Some(mib * 1024 * 1024),
            _ => {
                c.err(
                    "watchdog.memory-ceiling-mib",
                    format!("expected 0 (no ceiling) or a size in MiB, found {memory_ceiling_mib}"),
                );
                None
            }
        };
        let watchdog = WatchdogConfig {
            probe_interval: c.duration("watchdog.probe-interval", &probe_interval),
            probe_timeout: c.duration("watchdog.probe-timeout", &probe_timeout),
            failure_threshold: c.nonzero("watchdog.failure-threshold", failure_threshold, 100),
            startup_budget: c.duration("watchdog.startup-budget", &startup_budget),
            gc_max_extension: c.duration("watchdog.gc-max-extension", &gc_max_extension),
            dump_wait: c.duration("watchdog.dump-wait", &dump_wait),
            stop_grace: c.duration("watchdog.stop-grace", &stop_grace),
            backoff_initial: c.duration("watchdog.backoff-initial", &backoff_initial),
            backoff_max: c.duration("watchdog.backoff-max", &backoff_max),
            crash_loop_restarts: c.nonzero(
                "watchdog.crash-loop-restarts",
                crash_loop_restarts,
                1000,
            ),
            crash_loop_window: c.duration("watchdog.crash-loop-window", &crash_loop_window),
            failed_retry_interval: c
                .duration("watchdog.failed-retry-interval", &failed_retry_interval),
            memory_ceiling,
            control_socket: box_.state_dir.join("run").join("watchdog.sock"),
        };
        if watchdog.probe_interval < Duration::from_millis(50) {
            c.err(
                "watchdog.probe-interval",
                format!("expected at least 50ms (a probe every few milliseconds is load, not vigilance), found {probe_interval:?}"),
            );
        }
        if emr.shutdown_grace >= watchdog.stop_grace {
            c.err(
                "watchdog.stop-grace",
                format!(
                    "must be longer than emr.shutdown-grace ({:?}), so that an instance finishes draining before it is killed",
                    emr.shutdown_grace
                ),
            );
        }

        let RawDatabase {
            name,
            app_user,
            app_password_file,
            endpoint,
            nodes,
        } = database;
        c.name("database.name", &name, "a database name");
        c.name("database.app-user", &app_user, "a user name");
        let endpoint = endpoint.parse::<SocketAddr>().unwrap_or_else(|_| {
            c.err(
                "database.endpoint",
                format!("expected an address such as \"127.0.0.1:3306\", found {endpoint:?}"),
            );
            SocketAddr::from(([127, 0, 0, 1], 3306))
        });
        if !endpoint.ip().is_loopback() {
            c.err(
                "database.endpoint",
                format!("the database endpoint must be on loopback so that the database is never exposed, found {endpoint}"),
            );
        }
        let app_password_file = match app_password_file {
            Some(p) => c.path("database.app-password-file", &p),
            None => box_.state_dir.join("secrets").join("db-app.password"),
        };
        if nodes.is_empty() {
            c.err(
                "database.nodes",
                "expected at least one [[database.nodes]] entry (the primary)",
            );
        }
        if nodes.len() > 2 {
            c.err(
                "database.nodes",
                format!(
                    "expected one or two nodes (primary and replica), found {}",
                    nodes.len()
                ),
            );
        }
        let mut typed_nodes = Vec::with_capacity(nodes.len());
        for (
            i,
            RawDbNode {
                name,
                port,
                data_dir,
            },
        ) in nodes.into_iter().enumerate()
        {
            c.name(&format!("database.nodes[{i}].name"), &name, "a node name");
            let port = c.port(&format!("database.nodes[{i}].port"), port);
            let data_dir = c.path(&format!("database.nodes[{i}].data-dir"), &data_dir);
            typed_nodes.push(DbNode {
                name,
                port,
                data_dir,
            });
        }
        for (i, a) in typed_nodes.iter().enumerate() {
            for b in &typed_nodes[..i] {
                if a.name == b.name {
                    c.err(
                        &format!("database.nodes[{i}].name"),
                        format!(
                            "node name {:?} is used twice; give each node its own name",
                            a.name
                        ),
                    );
                }
                if a.data_dir == b.data_dir {
                    c.err(
                        &format!("database.nodes[{i}].data-dir"),
                        "two nodes cannot share a data directory",
                    );
                }
            }
        }
        let database = DatabaseConfig {
            name,
            app_user,
            app_password_file,
            endpoint,
            nodes: typed_nodes,
            control_socket: box_.state_dir.join("run").join("db.sock"),
        };

        let RawProxy {
            https_ports,
            http_port,
            listen_address,
            tls_cert_file,
            tls_key_file,
            hsts,
            admin_socket,
            health_interval,
            health_timeout,
            health_rise,
            health_fall,
            passive_fall,
            slow_start,
            connect_timeout,
            first_byte_timeout,
            request_timeout,
            document_timeout,
            retry_budget_percent,
            max_request_body_mib,
            max_header_kib,
            header_read_timeout,
            sticky_sessions,
            shutdown_grace,
        } = proxy;
        if https_ports.is_empty() {
            c.err(
                "proxy.https-ports",
                "expected at least one HTTPS port, such as [443, 8443]",
            );
        }
        let https_ports: Vec<u16> = https_ports
            .iter()
            .enumerate()
            .map(|(i, &p)| c.port(&format!("proxy.https-ports[{i}]"), p))
            .collect();
        let http_port = http_port.map(|p| c.port("proxy.http-port", p));
        if tls_cert_file.is_some() != tls_key_file.is_some() {
            c.err(
                if tls_cert_file.is_some() { "proxy.tls-cert-file" } else { "proxy.tls-key-file" },
                "set both proxy.tls-cert-file and proxy.tls-key-file, or neither to use the generated certificate",
            );
        }
        let proxy = ProxyConfig {
            https_ports,
            http_port,
            listen_address: c.ip("proxy.listen-address", &listen_address),
            tls_cert_file: tls_cert_file.map(|p| c.existing_file("proxy.tls-cert-file", &p)),
            tls_key_file: tls_key_file.map(|p| c.existing_file("proxy.tls-key-file", &p)),
            hsts,
            admin_socket: match admin_socket {
                Some(p) => c.path("proxy.admin-socket", &p),
                None => box_.state_dir.join("run").join("proxy.sock"),
            },
            health_interval: c.duration("proxy.health-interval", &health_interval),
            health_timeout: c.duration("proxy.health-timeout", &health_timeout),
            health_rise: c.nonzero("proxy.health-rise", health_rise, 100),
            health_fall: c.nonzero("proxy.health-fall", health_fall, 100),
            passive_fall: c.nonzero("proxy.passive-fall", passive_fall, 100),
            slow_start: c.duration("proxy.slow-start", &slow_start),
            connect_timeout: c.duration("proxy.connect-timeout", &connect_timeout),
            first_byte_timeout: c.duration("proxy.first-byte-timeout", &first_byte_timeout),
            request_timeout: c.duration("proxy.request-timeout", &request_timeout),
            document_timeout: c.duration("proxy.document-timeout", &document_timeout),
            retry_budget_percent: match u32::try_from(retry_budget_percent) {
                Ok(p) if p <= 100 => p,
                _ => {
                    c.err(
                        "proxy.retry-budget-percent",
                        format!(
                            "expected a percentage from 0 to 100, found {retry_budget_percent}"
                        ),
                    );
                    0
                }
            },
            max_request_body_bytes: u64::from(
                c.nonzero(
                    "proxy.max-request-body-mib",
                    max_request_body_mib,
                    16 * 1024,
                )
                .get(),
            ) << 20,
            // hyper needs at least 8 KiB of read buffer.
            max_header_bytes: match usize::try_from(max_header_kib) {
                Ok(k) if (8..=1024).contains(&k) => k << 10,
                _ => {
                    c.err(
                        "proxy.max-header-kib",
                        format!("expected a size from 8 to 1024 KiB, found {max_header_kib}"),
                    );
                    32 << 10
                }
            },
            header_read_timeout: c.duration("proxy.header-read-timeout", &header_read_timeout),
            sticky_sessions,
            shutdown_grace: c.duration("proxy.shutdown-grace", &shutdown_grace),
        };
        if proxy.health_timeout > proxy.health_interval * 4 {
            c.err(
                "proxy.health-timeout",
                "expected at most four health intervals: a longer probe hides a hung instance for too long",
            );
        }

        let RawBackup {
            disk,
            require_mount,
            password_file,
            high_water_percent,
            documents_debounce,
            documents_rescan,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
        } = backup;
        if !require_mount && profile != Profile::Dev {
            c.err(
                "backup.require-mount",
                "the appliance must refuse to back up to a disk that is not mounted; remove this key",
            );
        }
        let keep = |c: &mut Checker, key: &str, v: i64| match u32::try_from(v) {
            Ok(n) if n <= 1000 => n,
            _ => {
                c.err(key, format!("expected a count from 0 to 1000, found {v}"));
                0
            }
        };
        let backup = BackupConfig {
            disk: c.path("backup.disk", &disk),
            require_mount,
            password_file: match password_file {
                Some(p) => c.path("backup.password-file", &p),
                None => box_
                    .state_dir
                    .join("secrets")
                    .join("backup-repository.password"),
            },
            high_water_percent: match u8::try_from(high_water_percent) {
                Ok(p) if (50..=99).contains(&p) => p,
                _ => {
                    c.err(
                        "backup.high-water-percent",
                        format!("expected a percentage from 50 to 99, found {high_water_percent}"),
                    );
                    90
                }
            },
            documents_debounce: c.duration_within(
                "backup.documents-debounce",
                &documents_debounce,
                Duration::from_secs(1),
                Duration::from_secs(60),
            ),
            documents_rescan: c.duration_within(
                "backup.documents-rescan",
                &documents_rescan,
                Duration::from_secs(60),
                Duration::from_secs(24 * 3600),
            ),
            keep: Keep {
                hourly: keep(&mut c, "backup.keep-hourly", keep_hourly),
                daily: keep(&mut c, "backup.keep-daily", keep_daily),
                weekly: keep(&mut c, "backup.keep-weekly", keep_weekly),
                monthly: keep(&mut c, "backup.keep-monthly", keep_monthly),
            },
        };

        let RawStatus {
            listen_address,
            port,
            token_file,
            interval,
        } = status;
        let status = StatusConfig {
            listen: SocketAddr::new(
                c.ip("status.listen-address", &listen_address),
                c.port("status.port", port),
            ),
            token_file: match token_file {
                Some(f) => c.path("status.token-file", &f),
                None => box_.state_dir.join("secrets").join("status-token"),
            },
            interval: c.duration_within("status.interval", &interval, SECOND, 5 * MINUTE),
        };

        let RawAlerts {
            webhook_url,
            pending,
            repeat_interval,
            heartbeat_url,
            heartbeat_interval,
            heartbeat_style,
        } = alerts;
        for (key, url) in [
            ("alerts.webhook-url", &webhook_url),
            ("alerts.heartbeat-url", &heartbeat_url),
        ] {
            c.alert_url(key, url.as_deref(), profile);
        }
        let style = match heartbeat_style.as_str() {
            "healthchecks" => HeartbeatStyle::Healthchecks,
            "uptime-kuma" => HeartbeatStyle::UptimeKuma,
            other => {
                c.err(
                    "alerts.heartbeat-style",
                    format!("expected \"healthchecks\" or \"uptime-kuma\", found {other:?}"),
                );
                HeartbeatStyle::Healthchecks
            }
        };
        let heartbeat_interval = c.duration_within(
            "alerts.heartbeat-interval",
            &heartbeat_interval,
            SECOND,
            DAY,
        );
        let alerts = AlertsConfig {
            webhook_url,
            pending: c.duration_within("alerts.pending", &pending, SECOND, 60 * MINUTE),
            repeat_interval: c.duration_within(
                "alerts.repeat-interval",
                &repeat_interval,
                MINUTE,
                7 * DAY,
            ),
            heartbeat: heartbeat_url.map(|url| HeartbeatConfig {
                url,
                interval: heartbeat_interval,
                style,
            }),
        };

        // Ports the box itself binds must not collide. Only checked on otherwise valid values,
        // so that a placeholder for an invalid port never reports a collision of its own.
        let check_collisions = c.errors.is_empty();
        let mut bound: Vec<(String, u16)> = Vec::new();
        for n in 1..=emr.instances.get() {
            if let Some(a) = emr.instance_addr(n) {
                bound.push((format!("emr instance {n}"), a.port()));
            }
        }
        for (i, n) in database.nodes.iter().enumerate() {
            bound.push((format!("database.nodes[{i}].port"), n.port));
        }
        for (i, &p) in proxy.https_ports.iter().enumerate() {
            bound.push((format!("proxy.https-ports[{i}]"), p));
        }
        if let Some(p) = proxy.http_port {
            bound.push(("proxy.http-port".into(), p));
        }
        bound.push(("status.port".into(), status.listen.port()));
        for (i, (what, port)) in bound.iter().enumerate().filter(|_| check_collisions) {
            if let Some((other, _)) = bound[..i].iter().find(|(_, p)| p == port) {
                let key = if what.starts_with("emr instance") {
                    "emr.base-port"
                } else {
                    what.as_str()
                };
                c.err(key, format!("port {port} of {what} is also used by {other}; give each listener its own port"));
            }
        }

        if c.errors.is_empty() {
            Ok(Config {
                box_,
                emr,
                watchdog,
                database,
                proxy,
                backup,
                status,
                alerts,
            })
        } else {
            Err(ConfigErrors(c.errors))
        }
    }
}

/// The line of `key` (a dotted path with `[i]` indexes) in `text`: the line of the deepest part
/// of the path that is written there, so a missing key points at its section.
pub(crate) fn key_line(text: &str, key: &str) -> Option<usize> {
    let doc = toml_edit::Document::parse(text).ok()?;
    let mut table: &dyn toml_edit::TableLike = doc.as_table();
    let mut span = None;
    for part in key.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some((k, item)) = table.get_key_value(name) else {
            break;
        };
        span = k.span().or(span);
        let next = match index {
            None => item.as_table_like(),
            Some(i) => {
                if let Some(t) = item.as_array_of_tables().and_then(|a| a.get(i)) {
                    span = t.span().or(span);
                    Some(t as &dyn toml_edit::TableLike)
                } else {
                    span = item
                        .as_array()
                        .and_then(|a| a.get(i))
                        .and_then(|v| v.span())
                        .or(span);
                    None
                }
            }
        };
        match next {
            Some(t) => table = t,
            None => break,
        }
    }
    span.map(|s| crate::line_of(text, s.start))
}
