//! `oscarbox up` and `oscarbox watchdog`.
//!
//! `up` runs the whole box in the foreground, for development and demos: MariaDB (one node
//! that clients reach directly, or, when the configuration names two nodes and an endpoint of
//! its own, the pair behind the stable endpoint with its executor), the EMR's account, the
//! watchdog with its instances, and the HTTPS proxy in front of them; it prints the address to
//! open once every instance answers `isAlive`. Ctrl-C stops everything in order: the proxy
//! (requests in flight finish), the watchdog and its instances, then MariaDB. `watchdog` runs
//! the watchdog and, when two nodes are configured, the database pair, as systemd does on the
//! appliance (the proxy is its own unit).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use oscarbox_config::Config;
use oscarbox_mariadb::NodeSpec;

use crate::database::{self, Layout, RunningPair};
use oscarbox_watchdog::control;
use oscarbox_watchdog_api::{Answer, Request};
use tokio_util::sync::CancellationToken;

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// MariaDB and the watchdog with its instances.
    Up,
    /// The watchdog with its instances.
    WatchdogOnly,
}

pub fn run(config_path: Option<&Path>, mode: Mode) -> ExitCode {
    crate::service::run(config_path, "the box", |config, shutdown| async move {
        let config_path = match config_path {
            Some(p) => absolute(p)?,
            None => materialize_default(&config)?,
        };
        match mode {
            Mode::Up => up(config, config_path, shutdown).await,
            Mode::WatchdogOnly => watchdog(config, config_path, shutdown).await,
        }
    })
}

/// The workers are given a config file as `{config}`; for the embedded default, that is a copy
/// of it in the state directory.
fn materialize_default(config: &Config) -> anyhow::Result<PathBuf> {
    let dir = absolute(&config.box_.state_dir)?.join("run");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join("dev.toml");
    std::fs::write(&path, oscarbox_config::DEV_TOML)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolve {}", p.display()))
}

async fn up(
    config: Arc<Config>,
    config_path: PathBuf,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (state_dir, password) = prepare(&config)?;
    match database::layout(&config)? {
        Layout::Pair(..) => {
            let Some(pair) = RunningPair::start(&config, &state_dir, &password, &shutdown).await?
            else {
                return Ok(());
            };
            let result = run_box(Arc::clone(&config), config_path, &shutdown).await;
            pair.stop().await;
            result
        }
        Layout::Single(node) => {
            let spec = database::node_spec(&config, node, &state_dir, Vec::new())?;
            up_single(config, config_path, spec, &password, shutdown).await
        }
    }
}

/// `oscarbox watchdog`: the EMR instances under the watchdog, and with two nodes configured the
/// database pair, which the watchdog owns (DESIGN.md, "Processes"). With one node, MariaDB is
/// run by something else and reached at the endpoint.
async fn watchdog(
    config: Arc<Config>,
    config_path: PathBuf,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if !matches!(database::layout(&config)?, Layout::Pair(..)) {
        return supervise(config, config_path, shutdown).await;
    }
    let (state_dir, password) = prepare(&config)?;
    let Some(pair) = RunningPair::start(&config, &state_dir, &password, &shutdown).await? else {
        return Ok(());
    };
    let result = supervise(Arc::clone(&config), config_path, shutdown).await;
    pair.stop().await;
    result
}

/// The watchdog over the instances, with the documents' backups beside it and, when the box
/// runs the database pair, the binlog archive and the base backups.
async fn supervise(
    config: Arc<Config>,
    config_path: PathBuf,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let backups = tokio::spawn(oscarbox_backup::documents::run(
        Arc::clone(&config),
        shutdown.clone(),
    ));
    let archive = matches!(database::layout(&config)?, Layout::Pair(..)).then(|| {
        let account = oscarbox_backup::archive::Account {
            user: oscarbox_dbpair::executor::REPL_USER.to_owned(),
            password_file: config
                .box_
                .state_dir
                .join("secrets")
                .join("db-replication-password"),
        };
        let archive = tokio::spawn(oscarbox_backup::archive::run(
            Arc::clone(&config),
            account,
            shutdown.clone(),
        ));
        let bases = tokio::spawn(oscarbox_backup::base::run(
            Arc::clone(&config),
            shutdown.clone(),
        ));
        (archive, bases)
    });
    let result = oscarbox_watchdog::run(config, config_path, shutdown.clone()).await;
    shutdown.cancel();
    let _ = backups.await;
    if let Some((archive, bases)) = archive {
        let _ = tokio::join!(archive, bases);
    }
    result
}

/// The state directory's `run` (private) and `log`, the documents directory, and the EMR's
/// database password (generated once).
fn prepare(config: &Config) -> anyhow::Result<(PathBuf, String)> {
    let state_dir = absolute(&config.box_.state_dir)?;
    for dir in [state_dir.join("run"), state_dir.join("log")] {
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    }
    set_private(&state_dir.join("run"))?;
    std::fs::create_dir_all(&config.emr.documents_dir)
        .with_context(|| format!("create {}", config.emr.documents_dir.display()))?;
    let password = oscarbox_mariadb::secrets::ensure(&config.database.app_password_file)
        .with_context(|| {
            format!(
                "read or create {}",
                config.database.app_password_file.display()
            )
        })?;
    Ok((state_dir, password))
}

/// One `mariadbd`, which clients reach directly.
async fn up_single(
    config: Arc<Config>,
    config_path: PathBuf,
    spec: NodeSpec,
    password: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if oscarbox_mariadb::init_data_dir(&spec).await? {
        tracing::info!(node = %spec.name, data_dir = %spec.data_dir.display(), "initialized a new MariaDB data directory");
    }
    let mut mariadb = oscarbox_mariadb::start(&spec, Duration::from_secs(120))
        .await
        .context("start MariaDB")?;
    tracing::info!(node = %spec.name, port = spec.port, log = %spec.log_file.display(), "MariaDB is up");
    let result = async {
        oscarbox_mariadb::bootstrap_app(
            &spec.socket,
            &config.database.name,
            &config.database.app_user,
            password,
        )
        .await
        .context("create the EMR database and account")?;
        run_box(Arc::clone(&config), config_path, &shutdown).await
    }
    .await;

    tracing::info!("stopping MariaDB");
    match mariadb.terminate(Duration::from_secs(60)).await {
        Ok((status, false)) => tracing::info!(%status, "MariaDB stopped"),
        Ok((status, true)) => tracing::warn!(%status, "MariaDB had to be killed"),
        Err(e) => tracing::warn!("failed to stop MariaDB: {e}"),
    }
    result
}

fn set_private(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("make {} private", dir.display()))
}

async fn run_box(
    config: Arc<Config>,
    config_path: PathBuf,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    // Stopping goes outside in: the proxy finishes the requests in flight, then the watchdog
    // stops its instances, then (in the caller) MariaDB.
    let watchdog_token = CancellationToken::new();
    let proxy_token = CancellationToken::new();
    let mut watchdog = tokio::spawn(supervise(
        Arc::clone(&config),
        config_path.clone(),
        watchdog_token.clone(),
    ));
    let mut proxy = tokio::spawn(oscarbox_proxy::run(
        Arc::clone(&config),
        Some(config_path),
        proxy_token.clone(),
    ));
    let early = tokio::select! {
        () = async {
            announce_when_ready(&config, shutdown).await;
            shutdown.cancelled().await;
        } => None,
        result = &mut watchdog => Some(("the watchdog", result)),
        result = &mut proxy => Some(("the proxy", result)),
    };
    proxy_token.cancel();
    watchdog_token.cancel();
    if let Some((what, result)) = early {
        let _ = proxy.await;
        let _ = watchdog.await;
        result
            .with_context(|| format!("join {what}"))?
            .with_context(|| format!("run {what}"))?;
        bail!("{what} stopped without being asked to");
    }
    let proxied = proxy.await.context("join the proxy")?;
    watchdog.await.context("join the watchdog")??;
    proxied
}

/// Prints where to reach the box once the watchdog reports every instance healthy, or returns
/// on shutdown. The watchdog already probes them; this reads its verdict rather than probing
/// again.
async fn announce_when_ready(config: &Config, shutdown: &CancellationToken) {
    let want = config.emr.instances.get() as usize;
    loop {
        if let Ok(Answer::Status(s)) =
            control::ask(&config.watchdog.control_socket, &Request::Status).await
        {
            if s.workers.len() == want && s.workers.iter().all(|w| w.state == "healthy") {
                announce(config);
                return;
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

#[expect(
    clippy::print_stdout,
    reason = "the one message a person running the box needs"
)]
fn announce(config: &Config) {
    println!(
        "\nOSCAR Box \"{}\" is up. Ctrl-C stops it.",
        config.box_.name
    );
    if let Some(port) = config.proxy.https_ports.first() {
        let host = if config.proxy.listen_address.is_unspecified()
            || config.proxy.listen_address.is_loopback()
        {
            "localhost".to_owned()
        } else {
            config.proxy.listen_address.to_string()
        };
        println!("  Open https://{host}:{port}/oscar/ws/  (SOAP services and their WSDLs)");
        println!(
            "  The box's status: https://localhost:{}/  (also /health and /metrics)",
            config.status.listen.port()
        );
        if config.proxy.tls_cert_file.is_none() {
            println!(
                "  Its certificate is signed by this box's own authority: trust {} in the browser.",
                oscarbox_config::ProxyConfig::tls_dir(&config.box_.state_dir)
                    .join("ca.crt")
                    .display()
            );
        }
    }
    println!(
        "  {} EMR instances behind it; `oscarbox status` and `oscarbox proxy backends` show them.",
        config.emr.instances
    );
    let credentials = config.box_.initial_admin_credentials();
    if std::fs::metadata(&credentials).is_ok() {
        println!(
            "  First sign-in: the administrator's initial password is in {} (delete it afterwards).",
            credentials.display()
        );
    }
    println!();
}
