//! `oscarbox up`: the whole box in the foreground, for development and demos.
//!
//! Starts MariaDB (the first configured node), bootstraps the EMR's account, starts every EMR
//! instance, waits until each answers `isAlive`, and prints where to reach them. Ctrl-C stops
//! everything in order: the instances first (they drain), then MariaDB. Restarting failed
//! children is the watchdog's job; here an exit is reported.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use oscar_soap::probe::{self, ProbeAnswer};
use oscarbox_common::EX_USAGE;
use oscarbox_config::{Config, Profile};
use oscarbox_mariadb::NodeSpec;
use oscarbox_supervisor::{Child, ChildSpec, Output};
use tokio_util::sync::CancellationToken;

#[expect(
    clippy::print_stderr,
    reason = "errors before logging exists go to stderr"
)]
pub fn run(config_path: Option<&Path>) -> ExitCode {
    let config = match config_path {
        Some(p) => oscarbox_config::load(p),
        None => Ok(oscarbox_config::dev_default()),
    };
    let config = match config {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    oscarbox_common::init_logging(&config.box_.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("failed to build the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(up(config, config_path.map(Path::to_path_buf)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("failed to run the box: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `oscar-emr` program: beside this executable first (a cargo build or an installed
/// package puts them together), else the configured command as given (looked up on `PATH`).
fn emr_program(command: &str) -> PathBuf {
    if command == "oscar-emr" {
        if let Some(beside) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("oscar-emr")))
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
        {
            return beside;
        }
    }
    PathBuf::from(command)
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolve {}", p.display()))
}

async fn up(config: Arc<Config>, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    oscarbox_common::cancel_on_signals(shutdown.clone()).context("install signal handlers")?;

    let node = config
        .database
        .nodes
        .first()
        .context("no [[database.nodes]] configured")?;
    if config.database.endpoint.port() != node.port {
        bail!(
            "database.endpoint ({}) must be the first node's address 127.0.0.1:{} until the two-node database endpoint exists",
            config.database.endpoint,
            node.port
        );
    }
    let state_dir = absolute(&config.box_.state_dir)?;
    let spec = NodeSpec {
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
    };
    for dir in [state_dir.join("run"), state_dir.join("log")] {
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    }
    set_private(&state_dir.join("run"))?;
    std::fs::create_dir_all(&config.emr.documents_dir)
        .with_context(|| format!("create {}", config.emr.documents_dir.display()))?;

    if oscarbox_mariadb::init_data_dir(&spec).await? {
        tracing::info!(node = %spec.name, data_dir = %spec.data_dir.display(), "initialized a new MariaDB data directory");
    }
    let mut mariadb = oscarbox_mariadb::start(&spec, Duration::from_secs(120))
        .await
        .context("start MariaDB")?;
    tracing::info!(node = %spec.name, port = spec.port, log = %spec.log_file.display(), "MariaDB is up");

    let result = run_instances(&config, config_path.as_deref(), &spec, &shutdown).await;

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

async fn run_instances(
    config: &Config,
    config_path: Option<&Path>,
    spec: &NodeSpec,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let password = oscarbox_mariadb::secrets::ensure(&config.database.app_password_file)
        .with_context(|| {
            format!(
                "read or create {}",
                config.database.app_password_file.display()
            )
        })?;
    oscarbox_mariadb::bootstrap_app(
        &spec.socket,
        &config.database.name,
        &config.database.app_user,
        &password,
    )
    .await
    .context("create the EMR database and account")?;

    let program = emr_program(&config.emr.command);
    let mut instances: Vec<(u32, Child)> = Vec::new();
    for n in 1..=config.emr.instances.get() {
        let mut child_spec = ChildSpec::new(format!("emr-{n}"), &program).output(Output::Inherit);
        if let Some(p) = config_path {
            child_spec = child_spec.arg("--config").arg(absolute(p)?);
        }
        child_spec = child_spec.arg("--instance").arg(n.to_string());
        let child = Child::spawn(&child_spec)
            .with_context(|| format!("start {} (instance {n})", program.display()))?;
        instances.push((n, child));
    }

    let result = supervise(config, &mut instances, shutdown).await;

    tracing::info!("stopping the EMR instances");
    let grace = config.emr.shutdown_grace + Duration::from_secs(2);
    let stops = instances.iter_mut().map(|(n, child)| async move {
        match child.terminate(grace).await {
            Ok((_, true)) => tracing::warn!(instance = *n, "instance had to be killed"),
            Ok((status, false)) => tracing::info!(instance = *n, %status, "instance stopped"),
            Err(e) => tracing::warn!(instance = *n, "failed to stop the instance: {e}"),
        }
    });
    for stop in stops {
        stop.await;
    }
    result
}

/// Waits until every instance answers, reports where to reach them, then watches until asked
/// to stop.
async fn supervise(
    config: &Config,
    instances: &mut [(u32, Child)],
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("build the HTTP client")?;
    let mut ready = vec![false; instances.len()];
    let mut announced = false;
    let mut exited = vec![false; instances.len()];
    loop {
        for (i, (n, child)) in instances.iter_mut().enumerate() {
            if !exited[i] {
                if let Some(status) = child.try_wait().context("check an instance")? {
                    exited[i] = true;
                    tracing::error!(instance = *n, %status, "instance exited; `oscarbox up` does not restart instances (the watchdog does)");
                }
            }
            if !ready[i] && !exited[i] {
                let addr = config
                    .emr
                    .instance_addr(*n)
                    .expect("instances are numbered from the config");
                ready[i] = alive(&client, addr).await;
            }
        }
        if exited.iter().all(|e| *e) {
            bail!("every EMR instance has exited");
        }
        if !announced && ready.iter().zip(&exited).all(|(r, e)| *r || *e) {
            announced = true;
            announce(config);
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

async fn alive(client: &reqwest::Client, addr: std::net::SocketAddr) -> bool {
    probe::send(client, &format!("http://{addr}")).await == ProbeAnswer::Alive
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
    for n in 1..=config.emr.instances.get() {
        if let Some(addr) = config.emr.instance_addr(n) {
            println!(
                "  EMR instance {n}: http://{addr}/oscar/ws/  (SOAP services and their WSDLs)"
            );
        }
    }
    println!("  The HTTPS proxy in front of them is not part of this build yet.\n");
}
