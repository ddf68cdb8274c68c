//! Builders that start real processes for tests and benches: a throwaway `mariadbd` (temporary
//! data directory, free loopback port, killed on drop) and `oscar-emr` instances on a config
//! written for them. Instances capture their logs; dropping one fails the test if it logged an
//! ERROR that the test did not declare expected.

pub mod backups;
pub mod pair;

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use mysql_async::prelude::Queryable;
use oscarbox_mariadb::NodeSpec;
use oscarbox_supervisor::{Child, ChildSpec, Output};
use tokio::io::{AsyncBufReadExt as _, BufReader};

pub use nix::sys::signal::Signal;
pub use oscarbox_watchdog_api::Status as WatchdogStatus;

pub use oscar_soap::probe::IS_ALIVE_REQUEST as IS_ALIVE;

/// A free TCP port on loopback (bound, then released: good enough for tests).
pub fn free_port() -> u16 {
    free_ports(1)
}

/// Ports this test process has reserved, kept locked until the process exits (nextest runs
/// each test in its own process, so a reservation lasts exactly one test).
static RESERVED: std::sync::Mutex<Vec<nix::fcntl::Flock<std::fs::File>>> =
    std::sync::Mutex::new(Vec::new());

/// Reserves `port` against every other test process on this machine: an exclusive `flock` on
/// a file named for it. Binding to check a port and then releasing it is not enough, because
/// two processes can both find it free before either listens.
fn reserve(port: u16) -> bool {
    let dir = std::env::temp_dir().join("oscarbox-test-ports");
    if std::fs::create_dir_all(&dir).is_err() {
        return false;
    }
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
    else {
        return false;
    };
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => {
            RESERVED.lock().expect("reservation lock").push(lock);
            true
        }
        Err(_) => false,
    }
}

/// The first of `n` consecutive free loopback ports, reserved for this test process and chosen
/// below the kernel's ephemeral range: a port in that range can be taken at any moment as the
/// local end of some outgoing connection (a probe, a database client), and then nothing can
/// listen on it.
pub fn free_ports(n: u16) -> u16 {
    use rand::Rng as _;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok())
        })
        .unwrap_or(32_768);
    let top = ephemeral_low.saturating_sub(n).max(10_001 + n);
    for _ in 0..500 {
        let base: u16 = rand::rng().random_range(10_000..top);
        let all_free =
            (0..n).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok() && reserve(base + i));
        if all_free {
            return base;
        }
    }
    panic!("no {n} consecutive free ports on loopback");
}

/// A throwaway MariaDB server with the EMR's database and account already created.
#[derive(Debug)]
pub struct MariaDb {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub socket: PathBuf,
    pub database: String,
    pub app_user: String,
    pub password_file: PathBuf,
    child: Option<Child>,
}

impl MariaDb {
    pub async fn start() -> anyhow::Result<MariaDb> {
        MariaDb::start_with(Vec::new()).await
    }

    /// As [`MariaDb::start`], with more server options (`--log-bin`, for a GTID position).
    pub async fn start_with(extra_args: Vec<String>) -> anyhow::Result<MariaDb> {
        let dir = tempfile::Builder::new()
            .prefix("oscarbox-db-")
            .tempdir()
            .context("create a temporary directory")?;
        let port = free_port();
        let spec = NodeSpec {
            name: "test".into(),
            data_dir: dir.path().join("data"),
            bind: [127, 0, 0, 1].into(),
            port,
            socket: dir.path().join("run/mariadb.sock"),
            log_file: dir.path().join("mariadbd.log"),
            small: true,
            extra_args,
        };
        oscarbox_mariadb::init_data_dir(&spec).await?;
        let child = oscarbox_mariadb::start(&spec, Duration::from_secs(60)).await?;
        let password_file = dir.path().join("secrets/db-app.password");
        let password = oscarbox_mariadb::secrets::ensure(&password_file)?;
        let (database, app_user) = ("oscar".to_owned(), "oscar_app".to_owned());
        oscarbox_mariadb::bootstrap_app(&spec.socket, &database, &app_user, &password).await?;
        Ok(MariaDb {
            port,
            socket: spec.socket,
            database,
            app_user,
            password_file,
            child: Some(child),
            dir,
        })
    }

    /// A root connection (over the socket) with the EMR database selected.
    pub async fn root(&self) -> anyhow::Result<mysql_async::Conn> {
        let opts = mysql_async::OptsBuilder::from_opts(oscarbox_mariadb::root_opts(&self.socket))
            .db_name(Some(self.database.clone()));
        Ok(mysql_async::Conn::new(opts).await?)
    }

    /// `CHECKSUM TABLE` of every table in the EMR database except those named in `except`.
    pub async fn checksums(&self, except: &[&str]) -> anyhow::Result<Vec<(String, Option<i64>)>> {
        let mut conn = self.root().await?;
        let tables: Vec<String> = conn.query("SHOW TABLES").await?;
        let mut out = Vec::new();
        for t in tables.into_iter().filter(|t| !except.contains(&t.as_str())) {
            let row: Option<(String, Option<i64>)> =
                conn.query_first(format!("CHECKSUM TABLE `{t}`")).await?;
            out.push((t, row.and_then(|r| r.1)));
        }
        Ok(out)
    }

    /// A config file for `instances` EMR instances against this database. `extra` is appended
    /// verbatim (more TOML sections).
    pub fn write_config(&self, instances: u32, extra: &str) -> anyhow::Result<EmrConfig> {
        self.write_config_with(instances, "", extra)
    }

    /// As [`MariaDb::write_config`], with `emr` lines added to the `[emr]` section (a different
    /// worker command, arguments, probe path or kind).
    pub fn write_config_with(
        &self,
        instances: u32,
        emr: &str,
        extra: &str,
    ) -> anyhow::Result<EmrConfig> {
        self.write_config_full(instances, emr, "", extra)
    }

    /// As [`MariaDb::write_config_with`], with `proxy` lines added to the `[proxy]` section.
    pub fn write_config_full(
        &self,
        instances: u32,
        emr: &str,
        proxy: &str,
        extra: &str,
    ) -> anyhow::Result<EmrConfig> {
        let database = format!(
            "[database]\nname = \"{db}\"\napp-user = \"{user}\"\napp-password-file = \"{pw}\"\nendpoint = \"127.0.0.1:{port}\"\n\n[[database.nodes]]\nname = \"db1\"\nport = {port}\ndata-dir = \"{data}\"\n",
            db = self.database,
            user = self.app_user,
            pw = self.password_file.display(),
            port = self.port,
            data = self.dir.path().join("data").display(),
        );
        write_box_config(self.dir.path(), instances, emr, proxy, &database, extra)
    }

    /// Stops the server with SIGKILL.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.signal_group(Signal::SIGKILL);
            let _ = c.wait().await;
        }
    }
}

/// Writes a box config under `dir` for `instances` EMR instances on free ports, with
/// `database` as its database sections, `emr` and `proxy` lines added to those sections and
/// `extra` appended verbatim (more TOML sections).
pub fn write_box_config(
    dir: &Path,
    instances: u32,
    emr: &str,
    proxy: &str,
    database: &str,
    extra: &str,
) -> anyhow::Result<EmrConfig> {
    let base_port = free_ports(u16::try_from(instances).context("instance count")?);
    let (https_port, http_port, status_port) = (free_port(), free_port(), free_port());
    let path = dir.join(format!("box-{base_port}.toml"));
    let backup = dir.join("backup");
    std::fs::create_dir_all(&backup).with_context(|| format!("create {}", backup.display()))?;
    let text = format!(
        r#"version = 1
[box]
name = "test"
profile = "dev"
state-dir = "{state}"
log-level = "info"

[emr]
instances = {instances}
base-port = {base_port}
documents-dir = "{docs}"
shutdown-grace = "5s"
login-max-failures = 3
login-lockout = "10m"
{emr}

[emr.fault-injection]
enabled = true

{database}
[proxy]
https-ports = [{https}]
http-port = {http}
listen-address = "127.0.0.1"
{proxy}

[backup]
disk = "{backup}"
require-mount = false

[status]
port = {status_port}
interval = "1s"
{extra}"#,
        state = dir.join("state").display(),
        docs = dir.join("documents").display(),
        https = https_port,
        http = http_port,
        backup = backup.display(),
    );
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("write {}", path.display()))?;
    Ok(EmrConfig {
        path,
        base_port,
        https_port,
        http_port,
        status_port,
        state_dir: dir.join("state"),
    })
}

/// A box config under `dir` whose database is the two-node pair (`db1` under `dir`, `db2` on
/// the backup disk) behind an endpoint of its own, which `oscarbox watchdog` and `oscarbox up`
/// run themselves. Returns the config and the endpoint's port.
pub fn write_pair_config(
    dir: &Path,
    instances: u32,
    extra: &str,
) -> anyhow::Result<(EmrConfig, u16)> {
    let (endpoint, a, b) = (free_port(), free_port(), free_port());
    let d = dir.display();
    let database = format!(
        "[database]\nendpoint = \"127.0.0.1:{endpoint}\"\n[[database.nodes]]\nname = \"db1\"\nport = {a}\ndata-dir = \"{d}/db1\"\n[[database.nodes]]\nname = \"db2\"\nport = {b}\ndata-dir = \"{d}/backup/db2\"\n"
    );
    let config = write_box_config(dir, instances, "", "", &database, extra)?;
    Ok((config, endpoint))
}

/// A config written by [`MariaDb::write_config`].
#[derive(Debug, Clone)]
pub struct EmrConfig {
    pub path: PathBuf,
    pub base_port: u16,
    /// The proxy's listeners.
    pub https_port: u16,
    pub http_port: u16,
    /// The watchdog's admin listener (status page, `/health`, `/metrics`).
    pub status_port: u16,
    pub state_dir: PathBuf,
}

impl EmrConfig {
    pub fn addr(&self, instance: u32) -> SocketAddr {
        let port = self.base_port + u16::try_from(instance - 1).expect("small instance number");
        SocketAddr::from(([127, 0, 0, 1], port))
    }
}

/// Where cargo put a workspace binary: beside the test executable's `deps/` directory.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let dir = exe
        .parent()
        .map(|d| {
            if d.ends_with("deps") {
                d.parent().unwrap_or(d)
            } else {
                d
            }
        })
        .expect("the test executable is in a directory");
    dir.join(name)
}

/// One running `oscar-emr` instance with its captured log.
#[derive(Debug)]
pub struct Emr {
    pub instance: u32,
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    allowed_errors: Vec<String>,
    exited: Option<std::process::ExitStatus>,
    state_dir: PathBuf,
}

impl Emr {
    /// Starts instance `instance` of `config` without waiting for it. Its log lines are echoed
    /// to the test's stderr, which the test runner shows only for a failing test.
    pub fn spawn(binary: &Path, config: &EmrConfig, instance: u32) -> anyhow::Result<Emr> {
        let spec = ChildSpec::new(format!("emr-{instance}"), binary)
            .arg("--config")
            .arg(&config.path)
            .arg("--instance")
            .arg(instance.to_string())
            .env("RUST_LOG", "info")
            .output(Output::Piped);
        let mut child =
            Child::spawn(&spec).with_context(|| format!("start {}", binary.display()))?;
        let log = capture(&mut child, format!("emr-{instance}"));
        Ok(Emr {
            instance,
            addr: config.addr(instance),
            child,
            log,
            allowed_errors: Vec::new(),
            exited: None,
            state_dir: config
                .path
                .parent()
                .map_or_else(|| PathBuf::from("state"), |d| d.join("state")),
        })
    }

    /// Starts an instance and waits until it answers `isAlive`.
    pub async fn start(binary: &Path, config: &EmrConfig, instance: u32) -> anyhow::Result<Emr> {
        let mut emr = Emr::spawn(binary, config, instance)?;
        emr.wait_alive(Duration::from_secs(60)).await?;
        Ok(emr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> i32 {
        self.child.pid()
    }

    /// Polls `isAlive` until it answers `alive`, failing early if the process exits.
    pub async fn wait_alive(&mut self, within: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.exited = Some(status);
                bail!(
                    "oscar-emr instance {} exited with {status} before answering isAlive",
                    self.instance
                );
            }
            if is_alive(&client, self.addr).await {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "oscar-emr instance {} did not answer isAlive within {within:?}",
                    self.instance
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn signal(&self, signal: Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.pid()), signal)
            .expect("signal the instance");
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(
        &mut self,
        within: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .with_context(|| {
                format!("instance {} did not exit within {within:?}", self.instance)
            })??;
        self.exited = Some(status);
        Ok(status)
    }

    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Waits until a log line contains `needle`.
    pub async fn wait_for_log(&self, needle: &str, within: Duration) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(l) = self.log().into_iter().find(|l| l.contains(needle)) {
                return Ok(l);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("no log line containing {needle:?} within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Declares that ERROR lines containing `pattern` are expected in this test.
    pub fn allow_error(&mut self, pattern: &str) {
        self.allowed_errors.push(pattern.to_owned());
    }

    /// ERROR lines that no `allow_error` pattern covers.
    pub fn unexpected_errors(&self) -> Vec<String> {
        unexpected_errors(&self.log, &self.allowed_errors)
    }

    /// The administrator credentials, if this instance was the one that created them (it says
    /// so in its log; they are in the 0600 file in the state directory, never in the log).
    pub fn admin_credentials(&self) -> Option<(String, String)> {
        self.log()
            .iter()
            .find(|l| l.contains("OSCAR Box created the administrator account"))?;
        let text =
            std::fs::read_to_string(self.state_dir.join("secrets/initial-admin-password")).ok()?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
        };
        Some((field("user name:")?, field("password:")?))
    }
}

impl Drop for Emr {
    fn drop(&mut self) {
        let errors = self.unexpected_errors();
        if !errors.is_empty() && !std::thread::panicking() {
            panic!(
                "oscar-emr instance {} logged unexpected ERROR lines:\n{}",
                self.instance,
                errors.join("\n")
            );
        }
    }
}

/// Collects a child's stdout and stderr lines, echoing them to the test's stderr (which the
/// test runner shows only for a failing test), tagged with `tag`.
#[expect(
    clippy::print_stderr,
    reason = "the test runner captures stderr per test"
)]
fn capture(child: &mut Child, tag: String) -> Arc<Mutex<Vec<String>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let streams: [Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>; 2] = [
        child.stdout().map(|s| Box::new(s) as _),
        child.stderr().map(|s| Box::new(s) as _),
    ];
    for stream in streams.into_iter().flatten() {
        let log = Arc::clone(&log);
        let tag = tag.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[{tag}] {line}");
                log.lock().expect("log lock").push(line);
            }
        });
    }
    log
}

fn unexpected_errors(log: &Mutex<Vec<String>>, allowed: &[String]) -> Vec<String> {
    log.lock()
        .expect("log lock")
        .iter()
        .filter(|l| l.contains(" ERROR "))
        .filter(|l| !allowed.iter().any(|p| l.contains(p)))
        .cloned()
        .collect()
}

/// An `oscarbox` process with its captured log: the part [`Watchdog`] and [`Proxy`] share
/// (they dereference to it). Dropping it fails the test if the process logged an ERROR the
/// test did not declare expected.
#[derive(Debug)]
pub struct Captured {
    name: &'static str,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    allowed_errors: Vec<String>,
}

impl Captured {
    fn spawn(name: &'static str, spec: &ChildSpec) -> anyhow::Result<Captured> {
        let mut child = Child::spawn(spec).with_context(|| format!("start the {name}"))?;
        let log = capture(&mut child, name.into());
        Ok(Captured {
            name,
            child,
            log,
            allowed_errors: Vec::new(),
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.pid()
    }

    pub fn signal(&self, signal: Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.pid()), signal)
            .unwrap_or_else(|e| panic!("signal the {}: {e}", self.name));
    }

    pub async fn wait_exit(
        &mut self,
        within: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let name = self.name;
        Ok(tokio::time::timeout(within, self.child.wait())
            .await
            .with_context(|| format!("the {name} did not exit in time"))??)
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    pub fn allow_error(&mut self, pattern: &str) {
        self.allowed_errors.push(pattern.to_owned());
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        let errors = unexpected_errors(&self.log, &self.allowed_errors);
        if !errors.is_empty() && !std::thread::panicking() {
            panic!(
                "the {} logged unexpected ERROR lines:\n{}",
                self.name,
                errors.join("\n")
            );
        }
    }
}

/// A running `oscarbox watchdog` with its captured log.
#[derive(Debug)]
pub struct Watchdog {
    process: Captured,
    pub socket: PathBuf,
    pub config: EmrConfig,
}

impl std::ops::Deref for Watchdog {
    type Target = Captured;
    fn deref(&self) -> &Captured {
        &self.process
    }
}

impl std::ops::DerefMut for Watchdog {
    fn deref_mut(&mut self) -> &mut Captured {
        &mut self.process
    }
}

impl Watchdog {
    /// Starts `oscarbox watchdog --config` for `config` (written by [`MariaDb::write_config`],
    /// whose state directory holds the control socket).
    pub fn start(oscarbox: &Path, config: &EmrConfig) -> anyhow::Result<Watchdog> {
        Watchdog::start_with_env(oscarbox, config, &[])
    }

    /// As [`Watchdog::start`], with extra environment variables (e.g. `NOTIFY_SOCKET`).
    pub fn start_with_env(
        oscarbox: &Path,
        config: &EmrConfig,
        env: &[(&str, &Path)],
    ) -> anyhow::Result<Watchdog> {
        let mut spec = ChildSpec::new("watchdog", oscarbox)
            .arg("watchdog")
            .arg("--config")
            .arg(&config.path)
            .env("RUST_LOG", "info")
            .output(Output::Piped);
        for (k, v) in env {
            spec = spec.env(k, v);
        }
        let process = Captured::spawn("watchdog", &spec)?;
        let socket = config.state_dir.join("run/watchdog.sock");
        Ok(Watchdog {
            process,
            socket,
            config: config.clone(),
        })
    }

    /// The status document from the control socket.
    pub async fn status(&self) -> anyhow::Result<oscarbox_watchdog_api::Status> {
        let request = oscarbox_watchdog_api::Request::Status;
        match oscarbox_watchdog::control::ask(&self.socket, &request).await? {
            oscarbox_watchdog_api::Answer::Status(s) => Ok(s),
            other => bail!("unexpected answer {other:?}"),
        }
    }

    /// The whole box's status, as `oscarbox status --json` shows it.
    pub async fn box_status(&self) -> anyhow::Result<oscarbox_watchdog_api::BoxStatus> {
        let request = oscarbox_watchdog_api::Request::BoxStatus;
        match oscarbox_watchdog::control::ask(&self.socket, &request).await? {
            oscarbox_watchdog_api::Answer::BoxStatus(s) => Ok(*s),
            other => bail!("unexpected answer {other:?}"),
        }
    }

    /// `https://localhost:PORT{path}` on the admin listener.
    pub fn status_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.config.status_port)
    }

    /// Polls the status until `ok` holds for it, returning that status.
    pub async fn wait_until(
        &self,
        within: Duration,
        what: &str,
        ok: impl Fn(&oscarbox_watchdog_api::Status) -> bool,
    ) -> anyhow::Result<oscarbox_watchdog_api::Status> {
        let deadline = tokio::time::Instant::now() + within;
        let mut last = None;
        loop {
            if let Ok(s) = self.status().await {
                if ok(&s) {
                    return Ok(s);
                }
                last = Some(s);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("not {what} within {within:?}; last status: {last:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A client that trusts only the box's generated authority (no system roots): for the proxy
/// and the admin listener, which share the box's certificate.
pub fn box_client(config: &EmrConfig, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let pem = std::fs::read(config.state_dir.join("tls/ca.crt"))?;
    Ok(reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem)?)
        .timeout(timeout)
        .build()?)
}

/// A running `oscarbox proxy` with its captured log.
#[derive(Debug)]
pub struct Proxy {
    process: Captured,
    pub config: EmrConfig,
    /// The admin socket.
    pub socket: PathBuf,
}

impl std::ops::Deref for Proxy {
    type Target = Captured;
    fn deref(&self) -> &Captured {
        &self.process
    }
}

impl std::ops::DerefMut for Proxy {
    fn deref_mut(&mut self) -> &mut Captured {
        &mut self.process
    }
}

impl Proxy {
    /// Starts `oscarbox proxy --config` and waits until it serves HTTPS.
    pub async fn start(oscarbox: &Path, config: &EmrConfig) -> anyhow::Result<Proxy> {
        let spec = ChildSpec::new("proxy", oscarbox)
            .arg("proxy")
            .arg("--config")
            .arg(&config.path)
            .env("RUST_LOG", "info")
            .output(Output::Piped);
        let proxy = Proxy {
            process: Captured::spawn("proxy", &spec)?,
            config: config.clone(),
            socket: config.state_dir.join("run/proxy.sock"),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !proxy.log().iter().any(|l| l.contains("proxy listening")) {
            if tokio::time::Instant::now() > deadline {
                bail!("the proxy did not start listening within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(proxy)
    }

    /// The certificate authority the proxy generated, which clients trust.
    pub fn ca_cert(&self) -> PathBuf {
        self.config.state_dir.join("tls/ca.crt")
    }

    /// `https://localhost:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.config.https_port)
    }

    /// A client that trusts only the proxy's authority (no system roots).
    pub fn client(&self, timeout: Duration) -> anyhow::Result<reqwest::Client> {
        box_client(&self.config, timeout)
    }

    pub async fn ask(
        &self,
        request: &oscarbox_proxy_api::Request,
    ) -> anyhow::Result<oscarbox_proxy_api::Answer> {
        Ok(oscarbox_proxy::admin::ask(&self.socket, request).await?)
    }

    /// The proxy's view of its backends.
    pub async fn backends(&self) -> anyhow::Result<Vec<oscarbox_proxy_api::BackendStatus>> {
        match self.ask(&oscarbox_proxy_api::Request::Backends).await? {
            oscarbox_proxy_api::Answer::Backends { backends, .. } => Ok(backends),
            other => bail!("unexpected answer {other:?}"),
        }
    }

    /// Polls until `ok` holds for the backends.
    pub async fn wait_backends(
        &self,
        within: Duration,
        what: &str,
        ok: impl Fn(&[oscarbox_proxy_api::BackendStatus]) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let b = self.backends().await?;
            if ok(&b) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("not {what} within {within:?}: {b:#?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Every process descended from `pid`, read from /proc.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parents = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Ok(p) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
            if let Some(ppid) = after
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<i32>().ok())
            {
                parents.push((p, ppid));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let cur = found[i];
        found.extend(parents.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    found.remove(0);
    found
}

/// Whether `pid` is gone (or a zombie waiting to be reaped).
pub fn is_gone(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.is_empty()
        || stat
            .rsplit_once(')')
            .is_some_and(|(_, a)| a.trim_start().starts_with('Z'))
}

/// One `isAlive` round trip: true only for the real answer.
pub async fn is_alive(client: &reqwest::Client, addr: SocketAddr) -> bool {
    oscar_soap::probe::send(client, &format!("http://{addr}")).await
        == oscar_soap::probe::ProbeAnswer::Alive
}

/// POSTs a SOAP envelope and returns the status and body.
pub async fn soap(
    client: &reqwest::Client,
    url: &str,
    envelope: &str,
) -> anyhow::Result<(u16, String)> {
    let resp = client
        .post(url)
        .header("content-type", "text/xml; charset=UTF-8")
        .header("SOAPAction", "\"\"")
        .body(envelope.to_owned())
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?))
}

/// A `login2` (or `login`) request envelope.
pub fn login_envelope(op: &str, user: &str, password: &str) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ws="http://ws.oscarehr.org/"><soapenv:Header/><soapenv:Body><ws:{op}><arg0>{}</arg0><arg1>{}</arg1></ws:{op}></soapenv:Body></soapenv:Envelope>"#,
        esc(user),
        esc(password)
    )
}
