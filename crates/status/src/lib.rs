//! The box's status for the people around it: one [`BoxStatus`] gathered every few seconds
//! ([`gather`]), its verdict in plain words ([`assess`]), and what is made from it: the IETF
//! health document ([`health`]), Prometheus metrics ([`metrics`]), the status page ([`page`]),
//! webhook alerts ([`alert`]) and push heartbeats ([`heartbeat`]), served by the admin
//! listener ([`listen`]) and sent by [`notify`].
//!
//! `alert`, `assess`, `health`, `heartbeat`, `metrics` and `page` are pure (a status in, text
//! or decisions out) and tested with a fake clock; the I/O around them is the rest.
//!
//! The watchdog runs [`start`] on a thread and runtime of its own, so that a busy or stuck
//! supervisor never silences the box's health, and the other way round.

pub mod alert;
pub mod assess;
pub mod gather;
pub mod health;
pub mod heartbeat;
pub mod listen;
pub mod metrics;
pub mod notify;
pub mod page;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context as _;
use oscarbox_config::Config;
pub use oscarbox_watchdog_api::BoxStatus;
use oscarbox_watchdog_api::WorkerStatus;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How the status asks the watchdog for its current configuration and its instances.
pub type Workers = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = (Arc<Config>, Vec<WorkerStatus>)> + Send>>
        + Send
        + Sync,
>;

/// How long the watchdog may take to say what its instances do; one that takes longer is
/// reported as not answering (a stuck supervisor must show, not freeze the status).
const WORKERS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// One gathering under the watchdog's current configuration (or `fallback` when the watchdog
/// does not answer in time).
async fn gather_once(
    gatherer: &mut gather::Gatherer,
    workers: &Workers,
    fallback: &Arc<Config>,
) -> BoxStatus {
    match tokio::time::timeout(WORKERS_TIMEOUT, workers()).await {
        Ok((config, instances)) => gatherer.gather(&config, Some(instances)).await,
        Err(_) => gatherer.gather(fallback, None).await,
    }
}

/// The running status service.
#[derive(Debug)]
pub struct Running {
    /// The newest status; the watchdog's control socket answers `box-status` from it.
    pub status: watch::Receiver<BoxStatus>,
    thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// Waits for the thread, after the token given to [`start`] was cancelled.
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// Starts gathering, the admin listener, alerts and heartbeats on a thread of their own. Fails
/// (before anything runs) when the listener's port cannot be bound or the certificate or the
/// token cannot be read or made.
pub fn start(
    config: Arc<Config>,
    workers: Workers,
    token: CancellationToken,
) -> anyhow::Result<Running> {
    let bearer: Arc<str> = ensure_token(&config.status.token_file)?.into();
    let (tls_tx, tls_rx) = watch::channel(admin_tls(&config)?);
    let mut cert_changed = CertWatch::new(&config);
    let listener = std::net::TcpListener::bind(config.status.listen)
        .with_context(|| format!("listen on {} (status.port)", config.status.listen))?;
    listener
        .set_nonblocking(true)
        .context("make the admin listener non-blocking")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("build the status runtime")?;
    let client = notify::client()?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("oscarbox-status".into())
        .spawn(move || {
            runtime.block_on(async move {
                let mut gatherer = gather::Gatherer::default();
                let first = gather_once(&mut gatherer, &workers, &config).await;
                let (tx, rx) = watch::channel(first);
                let _ = ready_tx.send(rx.clone());
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    tracing::error!("failed to register the admin listener with the runtime");
                    return;
                };
                tracing::info!(address = %config.status.listen, "admin listener ready: /, /health, /metrics");
                let tasks = tokio_util::task::TaskTracker::new();
                tasks.spawn(listen::serve(listener, tls_rx, bearer, rx.clone(), token.clone()));
                tasks.spawn(notify::alerts(
                    config.alerts.clone(),
                    config.box_.name.clone(),
                    config.box_.state_dir.join("alerts-firing.json"),
                    client.clone(),
                    rx.clone(),
                    token.clone(),
                ));
                tasks.spawn(notify::heartbeats(
                    config.alerts.clone(),
                    client,
                    rx,
                    token.clone(),
                ));
                tasks.close();
                let mut tick = tokio::time::interval(config.status.interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tokio::select! {
                        () = token.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    let status = tokio::select! {
                        () = token.cancelled() => break,
                        s = gather_once(&mut gatherer, &workers, &config) => s,
                    };
                    // The proxy reissues the certificate (or a technician installs one): serve
                    // the new one without a restart.
                    if cert_changed.check(&config) {
                        match admin_tls(&config) {
                            Ok(tls) => {
                                tls_tx.send_replace(tls);
                                tracing::info!("the admin listener serves the renewed certificate");
                            }
                            Err(e) => tracing::warn!("failed to load the renewed certificate, keeping the old one: {e:#}"),
                        }
                    }
                    if status.verdict != tx.borrow().verdict {
                        let reasons: Vec<&str> = status.reasons.iter().map(|r| r.id.as_str()).collect();
                        tracing::info!(verdict = status.verdict.as_str(), ?reasons, "the box's status changed");
                    }
                    tx.send_replace(status);
                }
                let _ = tokio::time::timeout(std::time::Duration::from_secs(3), tasks.wait()).await;
            });
            // A disk check stuck in the kernel must not hold the watchdog's exit.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        })
        .context("start the status thread")?;
    let status = ready_rx
        .recv()
        .context("the status thread ended before its first status")?;
    Ok(Running { status, thread })
}

/// The box's certificate for the admin listener (HTTP/1.1 only).
fn admin_tls(config: &Config) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut tls =
        (*oscarbox_tls::for_box(config).context("set up the admin listener's TLS")?).clone();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

/// Notices when the served certificate file is replaced.
#[derive(Debug)]
struct CertWatch(Option<std::time::SystemTime>);

impl CertWatch {
    fn new(config: &Config) -> CertWatch {
        CertWatch(Self::modified(config))
    }

    fn modified(config: &Config) -> Option<std::time::SystemTime> {
        std::fs::metadata(oscarbox_tls::served_cert(config))
            .and_then(|m| m.modified())
            .ok()
    }

    fn check(&mut self, config: &Config) -> bool {
        let now = Self::modified(config);
        let changed = now.is_some() && now != self.0;
        self.0 = now;
        changed
    }
}

/// The status token: read, or made once (32 random bytes, hex, mode 0600).
pub fn ensure_token(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
        Ok(_) => anyhow::bail!(
            "{} is empty; delete it and restart the watchdog to make a new status token",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token: String = (0..32)
                .map(|_| format!("{:02x}", rand::random::<u8>()))
                .collect();
            // Written aside, then linked into place, which fails if another process made it
            // first: then both use that one, never two different tokens.
            let aside = path.with_file_name(format!(".status-token-{}", std::process::id()));
            oscarbox_common::write_private(&aside, token.as_bytes())
                .with_context(|| format!("write the status token to {}", aside.display()))?;
            let linked = std::fs::hard_link(&aside, path);
            let _ = std::fs::remove_file(&aside);
            match linked {
                Ok(()) => Ok(token),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => ensure_token(path),
                Err(e) => Err(e).with_context(|| format!("create {}", path.display())),
            }
        }
        Err(e) => Err(e).with_context(|| format!("read the status token {}", path.display())),
    }
}
