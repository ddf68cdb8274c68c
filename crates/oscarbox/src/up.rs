//! `oscarbox up` and `oscarbox watchdog`.
//!
//! `up` runs the whole box in the foreground, for development and demos: MariaDB (one node
//! that clients reach directly, or, when the configuration names two nodes and an endpoint of
//! its own, the pair behind the stable endpoint with its executor), the EMR's account, the watchdog with its instances, and the HTTPS proxy in
//! front of them; it prints the address to open once every instance answers `isAlive`. Ctrl-C
//! stops everything in order: the proxy (requests in flight finish), the watchdog and its
//! instances, then MariaDB. `watchdog` runs only the watchdog, as
//! systemd does on the appliance.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use oscarbox_config::{Config, Profile};
use oscarbox_mariadb::NodeSpec;
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
            Mode::WatchdogOnly => oscarbox_watchdog::run(config, config_path, shutdown).await,
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
    match config.database.nodes.as_slice() {
        [a, b] if ![a.port, b.port].contains(&config.database.endpoint.port()) => {
            up_pair(config, config_path, &state_dir, &password, shutdown).await
        }
        [first, ..] if config.database.endpoint.port() == first.port => {
            up_single(config, config_path, &state_dir, &password, shutdown).await
        }
        [first, ..] => bail!(
            "database.endpoint ({}) must be either the first node's own address (127.0.0.1:{}, one node) or, with two nodes, a port of its own (the endpoint the watchdog points at the primary)",
            config.database.endpoint,
            first.port
        ),
        [] => bail!("no [[database.nodes]] configured"),
    }
}

fn node_spec(
    config: &Config,
    node: &oscarbox_config::DbNode,
    state_dir: &Path,
    extra_args: Vec<String>,
) -> anyhow::Result<NodeSpec> {
    Ok(NodeSpec {
        name: node.name.clone(),
        data_dir: absolute(&node.data_dir)?,
        bind: config.database.endpoint.ip(),
        port: node.port,
        socket: state_dir
            .join("run")
            .join(format!("mariadb-{}.sock", node.name)),
        log_file: state_dir
            .join("log")
            .join(format!("mariadb-{}.log", node.name)),
        small: config.box_.profile == Profile::Dev,
        extra_args,
    })
}

/// One `mariadbd`, which clients reach directly.
async fn up_single(
    config: Arc<Config>,
    config_path: PathBuf,
    state_dir: &Path,
    password: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let node = config
        .database
        .nodes
        .first()
        .context("no [[database.nodes]] configured")?;
    let spec = node_spec(&config, node, state_dir, Vec::new())?;
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

/// The two-node pair behind the stable endpoint, run by its executor in this process.
async fn up_pair(
    config: Arc<Config>,
    config_path: PathBuf,
    state_dir: &Path,
    password: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use oscarbox_dbpair::executor::{Executor, Paths};
    use oscarbox_failover::{NodeId, Policy};
    let (a, b) = match config.database.nodes.as_slice() {
        [a, b] => (a, b),
        _ => bail!("the pair needs exactly two [[database.nodes]]"),
    };
    let secrets = state_dir.join("secrets");
    let repl = oscarbox_mariadb::secrets::ensure(&secrets.join("db-replication-password"))
        .context("read or create the replication password")?;
    let monitor = oscarbox_mariadb::secrets::ensure(&secrets.join("db-monitor-password"))
        .context("read or create the monitoring password")?;
    let pair_token = CancellationToken::new();
    let endpoint =
        oscarbox_dbpair::endpoint::Endpoint::bind(config.database.endpoint, pair_token.clone())
            .await
            .with_context(|| {
                format!(
                    "listen on the database endpoint {} (database.endpoint)",
                    config.database.endpoint
                )
            })?;
    let mut ex = Executor::new(
        node_spec(&config, a, state_dir, oscarbox_dbpair::node::pair_args(1))?,
        node_spec(&config, b, state_dir, oscarbox_dbpair::node::pair_args(2))?,
        endpoint,
        Paths::under(state_dir),
        repl,
        Policy::default(),
    );
    ex.bootstrap(
        &config.database.name,
        &config.database.app_user,
        password,
        &monitor,
    )
    .await
    .context("set up the database pair")?;
    // The pair settles (a primary promoted, the endpoint on it) before the EMR starts; the
    // instances would wait for it anyway, but a clear error here beats a silent wait.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let plan = ex.tick().await;
        let primary = oscarbox_dbpair::ledger::read(&Paths::under(state_dir).ledger)?
            .map_or(NodeId::A, |l| l.primary);
        if ex.writable(primary).await == Some(true) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the database pair did not settle within 2 minutes: {plan}");
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(oscarbox_dbpair::executor::TICK) => {}
        }
    }
    tracing::info!(endpoint = %config.database.endpoint, "the database pair is up");
    // `oscarbox db status|switchover` reach the executor through its socket, between ticks.
    let (commands, requests) = tokio::sync::mpsc::channel::<oscarbox_dbpair::executor::Command>(8);
    let listener =
        oscarbox_socket_rpc::bind(&config.database.control_socket).with_context(|| {
            format!(
                "listen on the database pair's control socket {}",
                config.database.control_socket.display()
            )
        })?;
    tokio::spawn(oscarbox_socket_rpc::serve(
        listener,
        pair_token.clone().cancelled_owned(),
        |message| oscarbox_watchdog_api::db::DbAnswer::Error { message },
        move |request: oscarbox_watchdog_api::db::DbRequest| {
            let commands = commands.clone();
            async move {
                let (reply, answer) = tokio::sync::oneshot::channel();
                if commands.send((request, reply)).await.is_err() {
                    return oscarbox_watchdog_api::db::DbAnswer::Error {
                        message: "the database pair is stopping".into(),
                    };
                }
                answer
                    .await
                    .unwrap_or(oscarbox_watchdog_api::db::DbAnswer::Error {
                        message: "the database pair stopped before answering".into(),
                    })
            }
        },
    ));
    let pair = tokio::spawn(ex.run(pair_token.clone(), requests));
    let result = if shutdown.is_cancelled() {
        Ok(())
    } else {
        run_box(Arc::clone(&config), config_path, &shutdown).await
    };
    tracing::info!("stopping the database pair");
    pair_token.cancel();
    if let Err(e) = pair.await {
        tracing::warn!("failed to stop the database pair cleanly: {e}");
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
    let mut watchdog = tokio::spawn(oscarbox_watchdog::run(
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
